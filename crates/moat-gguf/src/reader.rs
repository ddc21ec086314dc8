//! A bounds-checked little-endian byte source and the decoding of metadata values.
//!
//! Owns `Source`: it counts the offset, turns an early end of input into
//! `GgufError::Truncated` naming what was being read, and refuses any declared
//! length or count before allocating for it unless the bytes can exist (within
//! the known input length and the header limit) and the `Limits` allow it.
//! Buffers then grow as bytes actually arrive. It does not know the order of
//! the sections of a GGUF file; that is `file.rs`.

use std::io::{ErrorKind, Read};

use crate::error::GgufError;
use crate::limits::Limits;
use crate::value::{Array, Value, ValueType};

/// Elements decoded per read of a numeric array, and the first capacity of
/// any buffer sized from a declared count.
const CHUNK: usize = 4096;

/// Strings up to this length are read with one exact read; longer ones grow
/// their buffer as the bytes arrive.
const SMALL_STRING: u64 = 4096;

/// What the reader is in the middle of, for error messages.
pub(crate) enum Context {
    /// A fixed field of the header, named.
    Header(&'static str),
    /// The key of metadata entry `index`.
    KvKey(u64),
    /// The type tag or value of metadata key `key`.
    KvValue(String),
    /// The name of tensor `index`.
    TensorName(u64),
    /// The rest of the info of tensor `index` named `name`.
    TensorInfo(u64, String),
}

impl Context {
    fn describe(&self) -> String {
        match self {
            Context::Header(field) => (*field).to_owned(),
            Context::KvKey(index) => format!("the key of metadata entry {index}"),
            Context::KvValue(key) => format!("the value of key {}", quote(key)),
            Context::TensorName(index) => format!("the name of tensor {index}"),
            Context::TensorInfo(index, name) => {
                format!("the info of tensor {index} ({})", quote(name))
            }
        }
    }
}

/// A name from the file, quoted and escaped for a message, and cut short if a
/// hostile file made it huge.
pub(crate) fn quote(name: &str) -> String {
    const MAX_CHARS: usize = 120;
    let escaped: String = name.escape_debug().take(MAX_CHARS).collect();
    if escaped.len() < name.escape_debug().count() {
        format!("'{escaped}...'")
    } else {
        format!("'{escaped}'")
    }
}

/// The input of a header read, with the offset of the next byte.
pub(crate) struct Source<'a, R> {
    inner: R,
    offset: u64,
    total_len: Option<u64>,
    limits: &'a Limits,
    context: Context,
    /// Where the item named by `context` starts, for truncation messages.
    context_start: u64,
}

impl<'a, R: Read> Source<'a, R> {
    pub(crate) fn new(inner: R, total_len: Option<u64>, limits: &'a Limits) -> Self {
        Source {
            inner,
            offset: 0,
            total_len,
            limits,
            context: Context::Header("the header"),
            context_start: 0,
        }
    }

    /// The offset of the next byte to be read.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn limits(&self) -> &'a Limits {
        self.limits
    }

    /// Sets what is being read, starting at the current offset.
    pub(crate) fn set_context(&mut self, context: Context) {
        self.set_context_at(context, self.offset);
    }

    /// Sets what is being read, which started at `start`.
    pub(crate) fn set_context_at(&mut self, context: Context, start: u64) {
        self.context = context;
        self.context_start = start;
    }

    pub(crate) fn describe(&self) -> String {
        self.context.describe()
    }

    fn truncated(&self) -> GgufError {
        GgufError::Truncated {
            what: self.describe(),
            offset: self.context_start,
        }
    }

    fn io_error(&self, err: std::io::Error) -> GgufError {
        if err.kind() == ErrorKind::UnexpectedEof {
            self.truncated()
        } else {
            GgufError::Io(err)
        }
    }

    /// Fails unless `n` more header bytes can exist: within the input when its
    /// length is known, and within the header limit always.
    fn ensure_available(&self, n: u64) -> Result<(), GgufError> {
        let end = self
            .offset
            .checked_add(n)
            .ok_or_else(|| GgufError::Overflow {
                what: format!("the size of {}", self.describe()),
            })?;
        if self.total_len.is_some_and(|total| end > total) {
            return Err(self.truncated());
        }
        let limit = self.limits.max_header_bytes;
        if end > limit {
            return Err(GgufError::TooLarge {
                what: format!("header size (reached while reading {})", self.describe()),
                value: end,
                limit,
            });
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        let len = buf.len() as u64;
        self.ensure_available(len)?;
        self.inner
            .read_exact(buf)
            .map_err(|err| self.io_error(err))?;
        self.offset += len;
        Ok(())
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, GgufError> {
        self.bytes().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, GgufError> {
        self.bytes().map(u64::from_le_bytes)
    }

    /// Checks a declared count against `limit`.
    pub(crate) fn check_limit(&self, count: u64, limit: u64, what: &str) -> Result<(), GgufError> {
        if count > limit {
            return Err(GgufError::TooLarge {
                what: format!("{what} in {}", self.describe()),
                value: count,
                limit,
            });
        }
        Ok(())
    }

    /// Checks a declared count against `limit` and against the bytes left,
    /// given that each element takes at least `min_each` bytes.
    fn check_count(
        &self,
        count: u64,
        min_each: u64,
        limit: u64,
        what: &str,
    ) -> Result<usize, GgufError> {
        self.check_limit(count, limit, what)?;
        let overflow = || GgufError::Overflow {
            what: format!("the size of {}", self.describe()),
        };
        let bytes = count.checked_mul(min_each).ok_or_else(overflow)?;
        self.ensure_available(bytes)?;
        usize::try_from(count).map_err(|_| overflow())
    }

    /// A string: u64 byte length, then UTF-8 bytes.
    pub(crate) fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        let start = self.offset;
        let limit = self.limits.max_string_len;
        if len > limit {
            return Err(GgufError::TooLarge {
                what: format!("string length in {}", self.describe()),
                value: len,
                limit,
            });
        }
        self.ensure_available(len)?;
        let bytes = if len <= SMALL_STRING {
            let mut buf = vec![0u8; len as usize];
            self.inner
                .read_exact(&mut buf)
                .map_err(|err| self.io_error(err))?;
            buf
        } else {
            self.read_growing(len)?
        };
        self.offset += len;
        String::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
            what: self.describe(),
            offset: start,
        })
    }

    /// Reads `len` bytes into a buffer that grows only as bytes arrive, so a
    /// short stream cannot make it allocate the declared length.
    fn read_growing(&mut self, len: u64) -> Result<Vec<u8>, GgufError> {
        let mut buf = Vec::with_capacity(CHUNK);
        let read = (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|err| self.io_error(err))?;
        if (read as u64) < len {
            return Err(self.truncated());
        }
        Ok(buf)
    }

    /// A scalar or array value of type `ty`.
    pub(crate) fn value(&mut self, ty: ValueType) -> Result<Value, GgufError> {
        let value = match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            ValueType::Bool => {
                let offset = self.offset;
                let [byte] = self.bytes()?;
                Value::Bool(self.decode_bool(byte, offset)?)
            }
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => Value::Array(self.array(1)?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.bytes()?)),
        };
        Ok(value)
    }

    /// A value type tag.
    pub(crate) fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let offset = self.offset;
        let type_id = self.u32()?;
        ValueType::from_id(type_id).ok_or(GgufError::UnknownValueType { type_id, offset })
    }

    fn decode_bool(&self, byte: u8, offset: u64) -> Result<bool, GgufError> {
        match byte {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool {
                what: self.describe(),
                value,
                offset,
            }),
        }
    }

    /// An array at nesting level `depth` (1 for an array that is a metadata
    /// value): element type, u64 count, elements.
    fn array(&mut self, depth: u32) -> Result<Array, GgufError> {
        let max_depth = self.limits.max_array_depth;
        if depth > max_depth {
            return Err(GgufError::TooLarge {
                what: format!("array nesting depth in {}", self.describe()),
                value: depth.into(),
                limit: max_depth.into(),
            });
        }
        let elem = self.value_type()?;
        let count = self.u64()?;
        let n = self.check_count(
            count,
            elem.min_encoded_len(),
            self.limits.max_array_len,
            "array length",
        )?;
        let array = match elem {
            ValueType::U8 => Array::U8(self.numbers(n, u8::from_le_bytes)?),
            ValueType::I8 => Array::I8(self.numbers(n, i8::from_le_bytes)?),
            ValueType::U16 => Array::U16(self.numbers(n, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.numbers(n, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.numbers(n, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.numbers(n, i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.numbers(n, f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.numbers(n, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.numbers(n, i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.numbers(n, f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool(self.bools(n)?),
            ValueType::String => Array::String(self.repeat(n, Self::string)?),
            ValueType::Array => Array::Array(self.repeat(n, |s| s.array(depth + 1))?),
        };
        Ok(array)
    }

    /// `n` fixed-size little-endian numbers, read a chunk at a time.
    fn numbers<const N: usize, T>(
        &mut self,
        n: usize,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let mut out = Vec::with_capacity(n.min(CHUNK));
        let mut buf = vec![0u8; n.min(CHUNK) * N];
        let mut left = n;
        while left > 0 {
            let take = left.min(CHUNK);
            let bytes = &mut buf[..take * N];
            self.read_exact(bytes)?;
            out.extend(bytes.chunks_exact(N).map(|chunk| {
                let mut word = [0u8; N];
                word.copy_from_slice(chunk);
                decode(word)
            }));
            left -= take;
        }
        out.shrink_to_fit();
        Ok(out)
    }

    fn bools(&mut self, n: usize) -> Result<Vec<bool>, GgufError> {
        let start = self.offset;
        let bytes = self.numbers(n, u8::from_le_bytes)?;
        let mut out = Vec::with_capacity(bytes.len());
        for (index, byte) in bytes.into_iter().enumerate() {
            out.push(self.decode_bool(byte, start + index as u64)?);
        }
        Ok(out)
    }

    /// `n` elements each read by `read_one`, in a buffer that grows as they come.
    fn repeat<T>(
        &mut self,
        n: usize,
        mut read_one: impl FnMut(&mut Self) -> Result<T, GgufError>,
    ) -> Result<Vec<T>, GgufError> {
        let mut out = Vec::with_capacity(n.min(CHUNK));
        for _ in 0..n {
            out.push(read_one(self)?);
        }
        out.shrink_to_fit();
        Ok(out)
    }
}
