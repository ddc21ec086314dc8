//! Fuzz target: `GgufFile::parse` on arbitrary bytes, then every accessor on
//! whatever parsed, checking the invariants a parsed file promises.
//!
//! It knows the public API only; a crash here is a bug in the reader.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_gguf::{file_type_name, Array, GgufFile, Limits, Value};

fuzz_target!(|data: &[u8]| {
    match GgufFile::parse(data) {
        Ok(file) => {
            check_file(&file, data.len() as u64);
            // Judging what llama.cpp would abort on never panics either.
            let _ = moat_gguf::check_llama_safe(&file).map_err(|err| err.to_string());
            // Without a length the same header must read the same way.
            let streamed = GgufFile::read(data, None, &Limits::default());
            let streamed = streamed.expect("a header that parses also streams");
            assert_eq!(streamed.metadata.len(), file.metadata.len());
            for ((k1, v1), (k2, v2)) in streamed.metadata.iter().zip(&file.metadata) {
                assert!(k1 == k2 && same_value(v1, v2), "{k1}: {v1:?} != {v2:?}");
            }
            assert_eq!(streamed.tensors, file.tensors);
            assert_eq!(streamed.data_offset, file.data_offset);
        }
        Err(err) => {
            let _ = (err.to_string(), err.kind(), format!("{err:?}"));
        }
    }
});

/// Equality that holds for NaN: floats compare by their bits.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => same_array(x, y),
        _ => a == b,
    }
}

fn same_array(a: &Array, b: &Array) -> bool {
    match (a, b) {
        (Array::F32(x), Array::F32(y)) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        (Array::F64(x), Array::F64(y)) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        (Array::Array(x), Array::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_array(x, y))
        }
        _ => a == b,
    }
}

fn check_file(file: &GgufFile, len: u64) {
    assert!(matches!(file.version, 2 | 3));
    assert!(file.alignment.is_power_of_two());
    assert_eq!(file.data_offset % file.alignment, 0);
    assert_eq!(file.file_size, Some(len));
    for (key, value) in &file.metadata {
        check_value(value);
        assert!(file.get(key).is_some());
        let _ = (file.get_str(key), file.get_u64(key), file.get_i64(key));
        let _ = (file.get_f64(key), file.get_bool(key), file.get_array(key));
        let _ = file.array_len(key);
    }
    let _ = (file.architecture(), file.arch_u64("context_length"));
    let _ = file.arch_f64("rope.freq_base");
    let _ = file.file_type().map(file_type_name);
    for tensor in &file.tensors {
        assert!(tensor.dims.len() <= 4);
        assert_eq!(tensor.offset % file.alignment, 0);
        assert!(file.tensor(&tensor.name).is_some());
        let ty = tensor.ggml_type;
        let _ = (
            ty.name(),
            ty.id(),
            ty.block_size(),
            ty.type_size(),
            ty.to_string(),
        );
        let elements = tensor.n_elements().expect("checked while parsing");
        if let Ok(bytes) = tensor.n_bytes() {
            assert!(ty.is_known());
            let end = file.data_offset + tensor.offset + bytes;
            assert!(end <= len, "tensor data past the end of the input");
            let _ = elements;
        } else {
            assert!(
                !ty.is_known(),
                "a known type must have a size after parsing"
            );
        }
    }
    let _ = file.total_elements();
    if let Ok(end) = file.tensor_data_end() {
        assert!(file.tensors.is_empty() || end <= len);
    }
}

fn check_value(value: &Value) {
    let _ = (
        value.value_type(),
        value.as_u64(),
        value.as_i64(),
        value.as_f64(),
    );
    let _ = (value.as_bool(), value.as_str());
    if let Some(array) = value.as_array() {
        check_array(array);
    }
}

fn check_array(array: &Array) {
    let _ = (array.elem_type(), array.is_empty(), array.as_strings());
    let len = array.len();
    for index in [0, len / 2, len.saturating_sub(1), len] {
        let _ = (array.get(index), array.get_str(index));
        if let Some(inner) = array.get_array(index) {
            check_array(inner);
        }
    }
}
