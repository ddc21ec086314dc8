//! Every prefix of a file is rejected as truncated, whether the reader knows
//! the input's length (a cut file) or not (a stream that stops early).

use super::writer::TestFile;
use crate::{Array, GgmlType, GgufError, GgufErrorKind, GgufFile, Limits, Value};

/// A file touching every value kind, nested arrays and several tensors.
fn rich_file() -> Vec<u8> {
    TestFile::sample()
        .kv("general.alignment", Value::U32(64))
        .kv("x.u8", Value::U8(1))
        .kv("x.i64", Value::I64(-5))
        .kv("x.f64", Value::F64(0.5))
        .kv(
            "x.nested",
            Value::Array(Array::Array(vec![
                Array::U16(vec![1, 2, 3]),
                Array::String(vec!["ab".into(), "c".into()]),
                Array::Bool(vec![true, false]),
            ])),
        )
        .tensor("blk.0.attn_q.weight", &[32, 4, 2], GgmlType::Q4_0)
        .tensor("blk.0.ffn.weight", &[256, 2, 1, 1], GgmlType::Q6_K)
        .tensor("blk.0.empty", &[0, 8], GgmlType::F16)
        .tensor("blk.0.last", &[8], GgmlType::BF16)
        .with_alignment(64)
        .build()
}

impl TestFile {
    fn with_alignment(mut self, alignment: u64) -> TestFile {
        self.alignment = alignment;
        self
    }
}

#[test]
fn every_cut_of_a_file_is_rejected_as_truncated() {
    let bytes = rich_file();
    let full = GgufFile::parse(&bytes).expect("the whole file parses");
    assert_eq!(full.tensor_data_end().ok(), Some(bytes.len() as u64));
    for cut in 0..bytes.len() {
        match GgufFile::parse(&bytes[..cut]) {
            Ok(_) => panic!("a cut at {cut} of {} parsed", bytes.len()),
            Err(err) => {
                assert_eq!(err.kind(), GgufErrorKind::Truncated, "cut {cut}: {err}");
                assert!(err.to_string().contains("byte"), "cut {cut}: {err}");
            }
        }
    }
}

#[test]
fn every_cut_inside_the_header_of_a_stream_is_truncated_not_io() {
    let bytes = rich_file();
    let header_len = GgufFile::parse(&bytes).map(|f| f.data_offset).unwrap_or(0) as usize;
    let mut first_ok = None;
    for cut in 0..header_len {
        match GgufFile::read(&bytes[..cut], None, &Limits::default()) {
            Ok(file) => {
                first_ok.get_or_insert(cut);
                assert_eq!(file.tensors.len(), 7);
            }
            Err(err) => {
                assert_eq!(first_ok, None, "cut {cut} failed after a shorter one read");
                assert!(
                    matches!(err, GgufError::Truncated { .. }),
                    "cut {cut}: {err:?}"
                );
            }
        }
    }
    // A stream does not need the padding after the last tensor info.
    let first_ok = first_ok.expect("the header without its padding reads");
    assert!(header_len - first_ok < 64);
}

#[test]
fn truncation_message_names_the_key_and_byte() {
    let bytes = TestFile::sample().build();
    // Elements: [len 3]"<s>" [len 1]"a" [len 0]"". Cut inside the last length.
    const KEY: &[u8] = b"tokenizer.ggml.tokens";
    let value_start = bytes
        .windows(KEY.len())
        .position(|w| w == KEY)
        .expect("the key is in the file")
        + KEY.len();
    // Type tag 4, element type 4, count 8, then the elements.
    let elements = value_start + 16;
    let err = GgufFile::parse(&bytes[..elements + 25]).expect_err("cut in the vocabulary");
    assert_eq!(
        err.to_string(),
        format!(
            "truncated GGUF: file ends inside the value of key 'tokenizer.ggml.tokens', \
             which starts at byte {value_start} (an interrupted download or copy?)"
        )
    );
}
