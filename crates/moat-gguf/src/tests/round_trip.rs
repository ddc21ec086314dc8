//! Well-formed files read back to what was written: every value type, arrays,
//! nested arrays, alignment, tensor layout and the typed look-ups.

use super::writer::TestFile;
use crate::{Array, GgmlType, GgufFile, Limits, Value, ValueType};

fn every_scalar() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1.5)),
        ("t.bool", Value::Bool(false)),
        ("t.string", Value::String("héllo".into())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-0.25)),
    ]
}

#[test]
fn every_value_type_round_trips_in_file_order() {
    let mut file = TestFile::new();
    for (key, value) in every_scalar() {
        file = file.kv(key, value);
    }
    let parsed = GgufFile::parse(&file.build()).expect("well-formed file");
    let expected: Vec<(String, Value)> = every_scalar()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(parsed.metadata, expected);
    assert_eq!(parsed.version, 3);
    assert!(parsed.tensors.is_empty());
}

#[test]
fn arrays_of_every_element_type_round_trip() {
    let arrays = vec![
        Array::U8(vec![1, 2, 255]),
        Array::I8(vec![-1, 0]),
        Array::U16(vec![65_535]),
        Array::I16(vec![-2, 2]),
        Array::U32(vec![7; 5000]),
        Array::I32(vec![-7, 7]),
        Array::F32(vec![0.5; 9000]),
        Array::Bool(vec![true, false, true]),
        Array::String(vec!["a".into(), "".into(), "ü".into()]),
        Array::U64(vec![u64::MAX, 0]),
        Array::I64(vec![i64::MIN]),
        Array::F64(vec![]),
    ];
    let mut file = TestFile::new();
    for (i, array) in arrays.iter().enumerate() {
        file = file.kv(&format!("a.{i}"), Value::Array(array.clone()));
    }
    let parsed = GgufFile::parse(&file.build()).expect("well-formed file");
    for (i, array) in arrays.iter().enumerate() {
        assert_eq!(parsed.get_array(&format!("a.{i}")), Some(array));
    }
    assert_eq!(parsed.array_len("a.4"), Some(5000));
}

#[test]
fn nested_arrays_keep_each_inner_element_type() {
    let nested = Array::Array(vec![
        Array::U8(vec![1, 2]),
        Array::String(vec!["x".into()]),
        Array::Array(vec![Array::F64(vec![1.0]), Array::Bool(vec![])]),
        Array::I32(vec![]),
    ]);
    let bytes = TestFile::new()
        .kv("nested", Value::Array(nested.clone()))
        .build();
    let parsed = GgufFile::parse(&bytes).expect("well-formed file");
    let read = parsed.get_array("nested").expect("array");
    assert_eq!(read, &nested);
    assert_eq!(read.elem_type(), ValueType::Array);
    assert_eq!(read.get_array(1).and_then(|a| a.get_str(0)), Some("x"));
    assert_eq!(read.get(0), None);
}

#[test]
fn tensors_lie_where_the_layout_puts_them() {
    let bytes = TestFile::sample().build();
    let file = GgufFile::parse(&bytes).expect("well-formed file");
    assert_eq!(file.alignment, 32);
    assert_eq!(file.data_offset % 32, 0);
    assert_eq!(file.file_size, Some(bytes.len() as u64));
    let names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["token_embd.weight", "output_norm.weight", "output.weight"]
    );
    let embd = file.tensor("token_embd.weight").expect("tensor");
    assert_eq!(embd.ggml_type, GgmlType::Q4_K);
    assert_eq!(embd.n_elements().ok(), Some(768));
    assert_eq!(embd.n_bytes().ok(), Some(3 * 144));
    assert_eq!(file.tensor("output.weight").map(|t| t.offset), Some(1472));
    assert_eq!(file.total_elements().ok(), Some(768 + 256 + 192));
    assert_eq!(file.tensor_data_end().ok(), Some(bytes.len() as u64));
}

#[test]
fn custom_alignment_moves_the_data_section() {
    let bytes = TestFile {
        alignment: 256,
        ..TestFile::sample().kv("general.alignment", Value::U32(256))
    }
    .build();
    let file = GgufFile::parse(&bytes).expect("well-formed file");
    assert_eq!(file.alignment, 256);
    assert_eq!(file.data_offset % 256, 0);
    assert!(file.tensors.iter().all(|t| t.offset % 256 == 0));
    assert_eq!(file.tensor_data_end().ok(), Some(bytes.len() as u64));
}

#[test]
fn version_2_reads_like_version_3() {
    let bytes = TestFile {
        version: 2,
        ..TestFile::sample()
    }
    .build();
    assert_eq!(GgufFile::parse(&bytes).map(|f| f.version).ok(), Some(2));
}

#[test]
fn typed_lookups_convert_only_losslessly() {
    let bytes = TestFile::sample()
        .kv("neg", Value::I32(-1))
        .kv("pos", Value::I16(5))
        .kv("big", Value::U64(u64::MAX))
        .build();
    let file = GgufFile::parse(&bytes).expect("well-formed file");
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.arch_u64("context_length"), Some(2048));
    assert_eq!(file.arch_f64("rope.freq_base"), Some(10000.0));
    assert_eq!(file.arch_u64("missing"), None);
    assert_eq!(file.file_type(), Some(15));
    assert_eq!(
        file.file_type().and_then(crate::file_type_name),
        Some("Q4_K_M")
    );
    assert_eq!(file.get_u64("neg"), None);
    assert_eq!(file.get_i64("neg"), Some(-1));
    assert_eq!(file.get_u64("pos"), Some(5));
    assert_eq!(file.get_i64("big"), None);
    assert_eq!(file.get_f64("big"), None);
    assert_eq!(file.get_f64("pos"), Some(5.0));
    assert_eq!(file.get_str("general.name"), Some("tiny"));
    assert_eq!(file.get_str("llama.context_length"), None);
    assert_eq!(file.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
    assert_eq!(file.array_len("tokenizer.ggml.tokens"), Some(3));
    assert_eq!(file.array_len("general.name"), None);
    assert_eq!(file.get("nope"), None);
}

#[test]
fn a_stream_of_unknown_length_reads_the_header_only() {
    let bytes = TestFile::sample().build();
    let file = GgufFile::read(&bytes[..], None, &Limits::default()).expect("header");
    assert_eq!(file.file_size, None);
    assert_eq!(file.tensors.len(), 3);
    // Without a length nothing bounds the tensors, but the header is the same.
    assert_eq!(
        file.data_offset,
        GgufFile::parse(&bytes).map(|f| f.data_offset).unwrap_or(0)
    );
}

#[test]
fn open_reads_a_file_from_disk() {
    let bytes = TestFile::sample().build();
    let path = std::env::temp_dir().join(format!("moat-gguf-open-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).expect("write temp file");
    let opened = GgufFile::open(&path);
    let _ = std::fs::remove_file(&path);
    let parsed = GgufFile::parse(&bytes).expect("well-formed file");
    assert_eq!(opened.ok(), Some(parsed));
}

#[test]
fn open_reports_a_missing_file_as_io() {
    let err =
        GgufFile::open(std::path::Path::new("/nonexistent/moat/x.gguf")).expect_err("no such file");
    assert_eq!(err.kind(), crate::GgufErrorKind::Io);
}

#[test]
fn a_file_without_tensors_needs_no_data_padding() {
    let bytes = TestFile::new().kv("k", Value::U8(1)).build();
    let file = GgufFile::parse(&bytes).expect("well-formed file");
    assert!(file.data_offset >= bytes.len() as u64);
    assert_eq!(file.tensor_data_end().ok(), Some(file.data_offset));
}

/// Found by the fuzzer (in the harness, not the reader): a NaN value is read
/// bit for bit, and since NaN != NaN, comparisons of parsed files that may
/// hold NaN must compare float bits, not use `==`.
#[test]
fn nan_metadata_is_read_bit_for_bit() {
    let quiet = f64::from_bits(0xFFFF_FF00_0000_0000);
    let bytes = TestFile::new()
        .kv("general.type", Value::F64(quiet))
        .kv("x", Value::Array(Array::F32(vec![f32::NAN])))
        .build();
    let file = GgufFile::parse(&bytes).expect("well-formed file");
    let Some(Value::F64(read)) = file.get("general.type") else {
        panic!("not an f64: {:?}", file.get("general.type"));
    };
    assert_eq!(read.to_bits(), quiet.to_bits());
    let Some(Array::F32(floats)) = file.get_array("x") else {
        panic!("not an f32 array");
    };
    assert_eq!(floats[0].to_bits(), f32::NAN.to_bits());
    assert_ne!(
        file,
        file.clone(),
        "NaN makes == false; compare bits instead"
    );
}
