//! A small GGUF writer for tests: well-formed files from a description, and
//! raw little-endian pieces for hand-made hostile ones.
//!
//! It knows the wire format only as far as tests need it and checks nothing:
//! it writes whatever it is told, which is the point for hostile cases.

use crate::value::{Array, Value};
use crate::GgmlType;

/// Little-endian bytes under construction.
#[derive(Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Bytes {
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A string with an honest length prefix (the bytes need not be UTF-8).
    pub(crate) fn string(&mut self, s: impl AsRef<[u8]>) -> &mut Self {
        let s = s.as_ref();
        self.u64(s.len() as u64).raw(s)
    }

    /// Magic, version and the two counts.
    pub(crate) fn preamble(&mut self, version: u32, tensors: u64, kvs: u64) -> &mut Self {
        self.raw(b"GGUF").u32(version).u64(tensors).u64(kvs)
    }

    /// A whole metadata entry: key, type tag, value.
    pub(crate) fn kv(&mut self, key: &str, value: &Value) -> &mut Self {
        self.string(key).u32(value.value_type().id());
        self.payload(value)
    }

    /// A value without its type tag.
    pub(crate) fn payload(&mut self, value: &Value) -> &mut Self {
        match value {
            Value::U8(v) => self.raw(&v.to_le_bytes()),
            Value::I8(v) => self.raw(&v.to_le_bytes()),
            Value::U16(v) => self.raw(&v.to_le_bytes()),
            Value::I16(v) => self.raw(&v.to_le_bytes()),
            Value::U32(v) => self.u32(*v),
            Value::I32(v) => self.raw(&v.to_le_bytes()),
            Value::F32(v) => self.raw(&v.to_le_bytes()),
            Value::Bool(v) => self.raw(&[u8::from(*v)]),
            Value::String(v) => self.string(v),
            Value::Array(v) => self.array(v),
            Value::U64(v) => self.u64(*v),
            Value::I64(v) => self.raw(&v.to_le_bytes()),
            Value::F64(v) => self.raw(&v.to_le_bytes()),
        }
    }

    /// An array: element type, count, elements.
    pub(crate) fn array(&mut self, array: &Array) -> &mut Self {
        self.u32(array.elem_type().id()).u64(array.len() as u64);
        match array {
            Array::Array(inner) => {
                for a in inner {
                    self.array(a);
                }
            }
            Array::Bool(v) => {
                for b in v {
                    self.raw(&[u8::from(*b)]);
                }
            }
            other => {
                for index in 0..other.len() {
                    if let Some(value) = other.get(index) {
                        self.payload(&value);
                    }
                }
            }
        }
        self
    }

    /// One tensor info.
    pub(crate) fn tensor_info(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: u32,
        offset: u64,
    ) -> &mut Self {
        self.string(name).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
}

/// A tensor for [`TestFile`]; its offset is assigned when the file is built.
pub(crate) struct TestTensor {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) type_id: u32,
}

/// A well-formed file: metadata, tensors laid out one after another at the
/// alignment, and a data section that ends exactly at the end of the last tensor.
pub(crate) struct TestFile {
    pub(crate) version: u32,
    pub(crate) kvs: Vec<(String, Value)>,
    pub(crate) tensors: Vec<TestTensor>,
    /// The alignment used for layout; add a `general.alignment` entry to match.
    pub(crate) alignment: u64,
}

impl TestFile {
    pub(crate) fn new() -> TestFile {
        TestFile {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }

    pub(crate) fn kv(mut self, key: &str, value: Value) -> TestFile {
        self.kvs.push((key.to_owned(), value));
        self
    }

    pub(crate) fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType) -> TestFile {
        self.tensors.push(TestTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id: ty.id(),
        });
        self
    }

    /// A small file with most value kinds and three tensors of different types.
    pub(crate) fn sample() -> TestFile {
        TestFile::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("general.name", Value::String("tiny".into()))
            .kv("general.file_type", Value::U32(15))
            .kv("llama.context_length", Value::U32(2048))
            .kv("llama.rope.freq_base", Value::F32(10000.0))
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array(Array::String(vec!["<s>".into(), "a".into(), "".into()])),
            )
            .kv(
                "tokenizer.ggml.scores",
                Value::Array(Array::F32(vec![0.0, -1.5, 2.0])),
            )
            .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
            .tensor("token_embd.weight", &[256, 3], GgmlType::Q4_K)
            .tensor("output_norm.weight", &[256], GgmlType::F32)
            .tensor("output.weight", &[64, 3], GgmlType::Q8_0)
    }

    /// Data offsets of each tensor, relative to the data section, and the
    /// section's length.
    fn layout(&self) -> (Vec<u64>, u64) {
        let mut offsets = Vec::new();
        let mut end = 0u64;
        for t in &self.tensors {
            let start = end.next_multiple_of(self.alignment);
            offsets.push(start);
            end = start + tensor_bytes(&t.dims, t.type_id);
        }
        (offsets, end)
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut out = Bytes::default();
        out.preamble(
            self.version,
            self.tensors.len() as u64,
            self.kvs.len() as u64,
        );
        for (key, value) in &self.kvs {
            out.kv(key, value);
        }
        let (offsets, data_len) = self.layout();
        for (t, offset) in self.tensors.iter().zip(offsets) {
            out.tensor_info(&t.name, &t.dims, t.type_id, offset);
        }
        if !self.tensors.is_empty() {
            let data_offset = (out.0.len() as u64).next_multiple_of(self.alignment);
            out.0.resize(data_offset as usize, 0);
            // A recognisable pattern, so misplaced reads of data would show.
            out.0.extend((0..data_len).map(|i| (i % 251) as u8));
        }
        out.0
    }
}

/// Bytes of a tensor of a known type (zero for unknown types).
fn tensor_bytes(dims: &[u64], type_id: u32) -> u64 {
    let ty = GgmlType::from_id(type_id);
    match (ty.block_size(), ty.type_size()) {
        (Some(block), Some(size)) => dims.iter().product::<u64>() / block * size,
        _ => 0,
    }
}
