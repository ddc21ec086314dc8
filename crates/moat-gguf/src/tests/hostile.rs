//! Malformed and hostile inputs, each asserted to give its specific error
//! quickly and without large allocations.

use std::io::Read;

use super::writer::{Bytes, TestFile};
use crate::{GgmlType, GgufError, GgufErrorKind, GgufFile, Limits, Value, ValueType};

/// A file with one metadata entry whose value bytes are `payload` after type `ty`.
fn one_kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Bytes::default();
    b.preamble(3, 0, 1).string(key).u32(ty).raw(payload);
    b.0
}

/// A file with one tensor info and no metadata.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = Bytes::default();
    b.preamble(3, 1, 0).tensor_info(name, dims, ty, offset);
    b.0
}

fn parse_err(bytes: &[u8]) -> GgufError {
    match GgufFile::parse(bytes) {
        Ok(file) => panic!("expected an error, parsed {file:?}"),
        Err(err) => err,
    }
}

#[test]
fn wrong_magic_is_bad_magic() {
    let mut bytes = TestFile::sample().build();
    bytes[..4].copy_from_slice(b"GGML");
    let err = parse_err(&bytes);
    assert!(matches!(err, GgufError::BadMagic { found } if &found == b"GGML"));
    assert_eq!(err.kind(), GgufErrorKind::Unsupported);
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn version_1_and_4_are_unsupported() {
    for version in [0, 1, 4, u32::MAX] {
        let bytes = TestFile {
            version,
            ..TestFile::sample()
        }
        .build();
        let err = parse_err(&bytes);
        assert!(matches!(err, GgufError::UnsupportedVersion(v) if v == version));
    }
}

#[test]
fn big_endian_file_says_so() {
    let mut b = Bytes::default();
    b.raw(b"GGUF").raw(&3u32.to_be_bytes()).u64(0).u64(0);
    let err = parse_err(&b.0);
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn huge_string_length_is_too_large() {
    let bytes = one_kv("k", ValueType::String.id(), &u64::MAX.to_le_bytes());
    let err = parse_err(&bytes);
    assert!(
        matches!(&err, GgufError::TooLarge { what, value: u64::MAX, .. } if what.contains("string length")),
        "{err}"
    );
    assert!(err.to_string().contains("key 'k'"), "{err}");
}

#[test]
fn huge_key_length_is_too_large() {
    let mut b = Bytes::default();
    b.preamble(3, 0, 1).u64(1 << 40).raw(&[0; 16]);
    assert!(matches!(parse_err(&b.0), GgufError::TooLarge { value, .. } if value == 1 << 40));
}

#[test]
fn string_longer_than_the_file_is_truncated() {
    let mut payload = 1000u64.to_le_bytes().to_vec();
    payload.extend_from_slice(b"short");
    let bytes = one_kv("general.name", ValueType::String.id(), &payload);
    let err = parse_err(&bytes);
    assert!(
        matches!(err, GgufError::Truncated { offset: 44, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "truncated GGUF: file ends inside the value of key 'general.name', \
         which starts at byte 44 \
         (an interrupted download or copy?)"
    );
}

#[test]
fn huge_array_count_is_too_large() {
    let mut payload = ValueType::U8.id().to_le_bytes().to_vec();
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    let err = parse_err(&one_kv(
        "tokenizer.ggml.tokens",
        ValueType::Array.id(),
        &payload,
    ));
    assert!(
        matches!(&err, GgufError::TooLarge { what, value: u64::MAX, limit } if what.contains("array length") && *limit == 16 << 20),
        "{err}"
    );
}

#[test]
fn array_count_beyond_the_file_is_truncated_before_allocating() {
    // Ten million strings claimed, a few bytes present: refused at the count.
    let mut payload = ValueType::String.id().to_le_bytes().to_vec();
    payload.extend_from_slice(&10_000_000u64.to_le_bytes());
    payload.extend_from_slice(&[0; 16]);
    let err = parse_err(&one_kv(
        "tokenizer.ggml.tokens",
        ValueType::Array.id(),
        &payload,
    ));
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
}

#[test]
fn huge_kv_count_is_too_large() {
    let mut b = Bytes::default();
    b.preamble(3, 0, u64::MAX);
    let err = parse_err(&b.0);
    assert!(
        matches!(&err, GgufError::TooLarge { what, .. } if what.contains("metadata entry count")),
        "{err}"
    );
}

#[test]
fn huge_tensor_count_is_too_large() {
    let mut b = Bytes::default();
    b.preamble(3, 1 << 50, 0);
    let err = parse_err(&b.0);
    assert!(
        matches!(&err, GgufError::TooLarge { what, limit: 1_000_000, .. } if what.contains("tensor count")),
        "{err}"
    );
}

#[test]
fn counts_within_limits_but_beyond_the_file_are_truncated() {
    let mut b = Bytes::default();
    b.preamble(3, 999_999, 0);
    assert!(matches!(parse_err(&b.0), GgufError::Truncated { .. }));
    let mut b = Bytes::default();
    b.preamble(3, 0, 65_000);
    assert!(matches!(parse_err(&b.0), GgufError::Truncated { .. }));
}

#[test]
fn unknown_value_type_names_its_offset() {
    let err = parse_err(&one_kv("k", 13, &[0; 8]));
    assert!(
        matches!(
            err,
            GgufError::UnknownValueType {
                type_id: 13,
                offset: 33
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_array_element_type_is_rejected() {
    let mut payload = 99u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    let err = parse_err(&one_kv("k", ValueType::Array.id(), &payload));
    assert!(
        matches!(
            err,
            GgufError::UnknownValueType {
                type_id: 99,
                offset: 37
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_ggml_type_parses_but_has_no_size() {
    let bytes = TestFile::new()
        .tensor("t", &[32, 2], GgmlType::Unknown(31))
        .build();
    let file = GgufFile::parse(&bytes).expect("the header is valid");
    let tensor = &file.tensors[0];
    assert_eq!(tensor.ggml_type, GgmlType::Unknown(31));
    assert_eq!(tensor.n_elements().ok(), Some(64));
    let err = tensor.n_bytes().expect_err("unknown size");
    assert!(
        matches!(err, GgufError::UnknownGgmlType { type_id: 31, .. }),
        "{err:?}"
    );
    assert!(file.tensor_data_end().is_err());
}

#[test]
fn more_than_four_dims_is_rejected() {
    let err = parse_err(&one_tensor("blk.0.w", &[1, 1, 1, 1, 1], 0, 0));
    assert!(matches!(&err, GgufError::TensorDims { name, n_dims: 5 } if name == "blk.0.w"));
    // The dimension count is checked before any dimension is read.
    let mut b = Bytes::default();
    b.preamble(3, 1, 0).string("w").u32(u32::MAX).raw(&[0; 32]);
    assert!(matches!(
        parse_err(&b.0),
        GgufError::TensorDims {
            n_dims: u32::MAX,
            ..
        }
    ));
}

#[test]
fn element_count_overflow_is_rejected() {
    let err = parse_err(&one_tensor("w", &[1 << 32, 1 << 32], 0, 0));
    assert!(
        matches!(&err, GgufError::Overflow { what } if what.contains("element count of tensor 'w'")),
        "{err}"
    );
    // Fits as elements, overflows as bytes.
    let err = parse_err(&one_tensor("w", &[1 << 62], 0, 0));
    assert!(
        matches!(&err, GgufError::Overflow { what } if what.contains("byte size")),
        "{err}"
    );
}

#[test]
fn partial_block_is_rejected() {
    let err = parse_err(&one_tensor("w", &[100, 2], GgmlType::Q4_K.id(), 0));
    assert!(
        matches!(
            err,
            GgufError::PartialBlock {
                row_len: 100,
                block_size: 256,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn misaligned_tensor_is_rejected() {
    let err = parse_err(&one_tensor("w", &[4], 0, 3));
    assert!(matches!(
        err,
        GgufError::TensorMisaligned {
            offset: 3,
            alignment: 32,
            ..
        }
    ));
}

#[test]
fn tensor_offset_near_u64_max_overflows() {
    let err = parse_err(&one_tensor("w", &[4], 0, u64::MAX - 31));
    assert!(matches!(err, GgufError::Overflow { .. }), "{err:?}");
}

#[test]
fn bad_alignment_is_rejected() {
    for alignment in [0, 3, 48, u32::MAX] {
        let bytes = TestFile::sample()
            .kv("general.alignment", Value::U32(alignment))
            .build();
        let err = parse_err(&bytes);
        assert!(
            matches!(err, GgufError::BadAlignment(a) if a == u64::from(alignment)),
            "{err:?}"
        );
    }
    let bytes = TestFile::new()
        .kv("general.alignment", Value::U64(64))
        .build();
    let err = parse_err(&bytes);
    assert!(
        matches!(
            err,
            GgufError::WrongType {
                found: ValueType::U64,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn duplicate_key_is_rejected_at_its_second_offset() {
    let bytes = TestFile::new()
        .kv("a", Value::U8(1))
        .kv("b", Value::U8(2))
        .kv("a", Value::U8(3))
        .build();
    let err = parse_err(&bytes);
    // Preamble 24, each entry 8 + 1 + 4 + 1 = 14 bytes.
    assert!(
        matches!(&err, GgufError::DuplicateKey { key, offset: 52 } if key == "a"),
        "{err:?}"
    );
}

#[test]
fn duplicate_tensor_name_is_rejected() {
    let bytes = TestFile::new()
        .tensor("w", &[32], GgmlType::F32)
        .tensor("w", &[32], GgmlType::F32)
        .build();
    assert!(matches!(parse_err(&bytes), GgufError::DuplicateTensor { name, .. } if name == "w"));
}

#[test]
fn invalid_utf8_is_rejected_in_keys_values_and_names() {
    let mut payload = 2u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&[0xC3, 0x28]);
    let err = parse_err(&one_kv("k", ValueType::String.id(), &payload));
    assert!(
        matches!(err, GgufError::InvalidUtf8 { offset: 45, .. }),
        "{err:?}"
    );

    let mut b = Bytes::default();
    b.preamble(3, 0, 1).string([0xFF]).u32(0).raw(&[0]);
    assert!(matches!(
        parse_err(&b.0),
        GgufError::InvalidUtf8 { offset: 32, .. }
    ));

    let mut b = Bytes::default();
    b.preamble(3, 1, 0)
        .string([0x80])
        .u32(1)
        .u64(4)
        .u32(0)
        .u64(0);
    assert!(matches!(parse_err(&b.0), GgufError::InvalidUtf8 { .. }));
}

#[test]
fn bool_other_than_0_or_1_is_rejected() {
    let err = parse_err(&one_kv("k", ValueType::Bool.id(), &[2]));
    assert!(
        matches!(
            err,
            GgufError::InvalidBool {
                value: 2,
                offset: 37,
                ..
            }
        ),
        "{err:?}"
    );
    let mut payload = ValueType::Bool.id().to_le_bytes().to_vec();
    payload.extend_from_slice(&3u64.to_le_bytes());
    payload.extend_from_slice(&[1, 0, 7]);
    let err = parse_err(&one_kv("k", ValueType::Array.id(), &payload));
    assert!(
        matches!(
            err,
            GgufError::InvalidBool {
                value: 7,
                offset: 51,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn deep_array_nesting_is_refused() {
    let mut payload = Vec::new();
    for _ in 0..10_000 {
        payload.extend_from_slice(&ValueType::Array.id().to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
    }
    let err = parse_err(&one_kv("k", ValueType::Array.id(), &payload));
    assert!(
        matches!(&err, GgufError::TooLarge { what, value: 9, limit: 8 } if what.contains("nesting")),
        "{err}"
    );
}

#[test]
fn tensor_past_the_end_of_the_file_is_out_of_bounds() {
    let bytes = TestFile::sample().build();
    let err = parse_err(&bytes[..bytes.len() - 1]);
    assert!(
        matches!(&err, GgufError::TensorOutOfBounds { name, end, file_size }
            if name == "output.weight" && *end == bytes.len() as u64 && *file_size == *end - 1),
        "{err:?}"
    );
}

#[test]
fn header_limit_bounds_a_stream_of_unknown_length() {
    let limits = Limits {
        max_header_bytes: 1000,
        ..Limits::default()
    };
    let bytes = one_kv("k", ValueType::String.id(), &5000u64.to_le_bytes());
    let err = GgufFile::read(&bytes[..], None, &limits).expect_err("over the header limit");
    assert!(
        matches!(err, GgufError::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
}

#[test]
fn stream_ending_inside_a_declared_string_is_truncated_not_io() {
    // 60 MiB declared, under every limit; the stream has 3 bytes. The reader
    // must grow its buffer only as bytes arrive and report Truncated.
    let mut payload = (60u64 << 20).to_le_bytes().to_vec();
    payload.extend_from_slice(b"abc");
    let bytes = one_kv("k", ValueType::String.id(), &payload);
    let err = GgufFile::read(&bytes[..], None, &Limits::default()).expect_err("short stream");
    assert!(
        matches!(err, GgufError::Truncated { offset: 33, .. }),
        "{err:?}"
    );
}

#[test]
fn a_failing_reader_is_an_io_error() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let err = GgufFile::read(Failing, None, &Limits::default()).expect_err("fails");
    assert!(matches!(err, GgufError::Io(_)));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn hostile_names_are_escaped_and_shortened_in_messages() {
    let long_key = format!("evil\n{}", "x".repeat(1000));
    let bytes = one_kv(&long_key, ValueType::Bool.id(), &[9]);
    let message = parse_err(&bytes).to_string();
    assert!(message.contains("'evil\\nxxx"), "{message}");
    assert!(message.len() < 400, "{message}");
}
