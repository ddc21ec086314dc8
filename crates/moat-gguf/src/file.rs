//! The layout of a GGUF file: header, metadata, tensor infos, data section.
//!
//! Owns `GgufFile` and `TensorInfo`: reading the sections in order, checking
//! what ties them together (unique keys and names, alignment, tensor shapes,
//! tensor data inside the file) and the typed look-ups callers use. It does not
//! read tensor data, and it knows no architecture beyond the
//! `general.architecture` key naming the prefix of the others.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::GgufError;
use crate::ggml_type::GgmlType;
use crate::limits::Limits;
use crate::reader::{quote, Context, Source};
use crate::value::{Array, Value, ValueType};

/// The alignment of the data section and of every tensor when the file does
/// not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Header reads go through a buffer this large (headers are up to a few MiB).
const READ_BUFFER: usize = 256 << 10;

/// The parsed header of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// 2 or 3.
    pub version: u32,
    /// Metadata entries in file order; keys are unique.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order; names are unique.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Where the data section starts: the header's end rounded up to `alignment`.
    pub data_offset: u64,
    /// The length of the input when it was known; every tensor's data was then
    /// checked to lie inside it.
    pub file_size: Option<u64>,
}

/// Where one tensor's data lies and how it is shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost (row length) first; at most four.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements (the product of the dimensions; 1 for no dimensions).
    pub fn n_elements(&self) -> Result<u64, GgufError> {
        self.dims
            .iter()
            .try_fold(1u64, |product, &dim| product.checked_mul(dim))
            .ok_or_else(|| GgufError::Overflow {
                what: format!("the element count of tensor {}", quote(&self.name)),
            })
    }

    /// The number of bytes of data. Fails for a type this crate does not know,
    /// and for rows that are not a whole number of blocks.
    pub fn n_bytes(&self) -> Result<u64, GgufError> {
        let ty = self.ggml_type;
        let (Some(block_size), Some(type_size)) = (ty.block_size(), ty.type_size()) else {
            return Err(GgufError::UnknownGgmlType {
                name: self.name.clone(),
                type_id: ty.id(),
            });
        };
        let row_len = self.dims.first().copied().unwrap_or(1);
        if row_len % block_size != 0 {
            return Err(GgufError::PartialBlock {
                name: self.name.clone(),
                ggml_type: ty,
                row_len,
                block_size,
            });
        }
        (self.n_elements()? / block_size)
            .checked_mul(type_size)
            .ok_or_else(|| GgufError::Overflow {
                what: format!("the byte size of tensor {}", quote(&self.name)),
            })
    }
}

impl GgufFile {
    /// Reads the header of the file at `path` with the default [`Limits`],
    /// through a buffer, without reading the tensor data, and checks that every
    /// tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        GgufFile::open_with_limits(path, &Limits::default())
    }

    /// [`GgufFile::open`] with explicit limits.
    pub fn open_with_limits(path: &Path, limits: &Limits) -> Result<GgufFile, GgufError> {
        let file = File::open(path).map_err(GgufError::Io)?;
        let file_size = file.metadata().map_err(GgufError::Io)?.len();
        let reader = BufReader::with_capacity(READ_BUFFER, file);
        GgufFile::read(reader, Some(file_size), limits)
    }

    /// Parses a whole file held in memory (or a prefix of one, which then
    /// fails as truncated if it cuts into a tensor's data).
    pub fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        GgufFile::read(bytes, Some(bytes.len() as u64), &Limits::default())
    }

    /// Reads a header from `reader`. `total_len`, when known, is the length of
    /// the whole input: every declared length is then bounded by the bytes
    /// left, and every tensor's data must end within it. Only the header is
    /// consumed from `reader`.
    pub fn read<R: Read>(
        reader: R,
        total_len: Option<u64>,
        limits: &Limits,
    ) -> Result<GgufFile, GgufError> {
        let mut source = Source::new(reader, total_len, limits);
        let (version, tensor_count, kv_count) = read_preamble(&mut source)?;
        let metadata = read_metadata(&mut source, kv_count)?;
        let alignment = alignment_of(&metadata)?;
        let tensors = read_tensor_infos(&mut source, tensor_count, alignment)?;
        let data_offset = source
            .offset()
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| GgufError::Overflow {
                what: "the start of the data section".to_owned(),
            })?;
        let file = GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_size: total_len,
        };
        file.check_tensor_extents()?;
        Ok(file)
    }

    /// Checks that no tensor's data end overflows and, when the file size is
    /// known, that each lies inside the file. Tensors of unknown type are
    /// checked only for their start.
    fn check_tensor_extents(&self) -> Result<(), GgufError> {
        for tensor in &self.tensors {
            let n_bytes = if tensor.ggml_type.is_known() {
                tensor.n_bytes()?
            } else {
                0
            };
            let end = self.data_end_of(tensor, n_bytes)?;
            if let Some(file_size) = self.file_size.filter(|&size| end > size) {
                return Err(GgufError::TensorOutOfBounds {
                    name: tensor.name.clone(),
                    end,
                    file_size,
                });
            }
        }
        Ok(())
    }

    fn data_end_of(&self, tensor: &TensorInfo, n_bytes: u64) -> Result<u64, GgufError> {
        self.data_offset
            .checked_add(tensor.offset)
            .and_then(|start| start.checked_add(n_bytes))
            .ok_or_else(|| GgufError::Overflow {
                what: format!("the end of the data of tensor {}", quote(&tensor.name)),
            })
    }

    /// The file offset one past the last byte of tensor data (the data
    /// section's start when there are no tensors).
    pub fn tensor_data_end(&self) -> Result<u64, GgufError> {
        let mut end = self.data_offset;
        for tensor in &self.tensors {
            end = end.max(self.data_end_of(tensor, tensor.n_bytes()?)?);
        }
        Ok(end)
    }

    /// The sum of all tensors' element counts: the parameter count.
    pub fn total_elements(&self) -> Result<u64, GgufError> {
        self.tensors.iter().try_fold(0u64, |sum, tensor| {
            sum.checked_add(tensor.n_elements()?)
                .ok_or_else(|| GgufError::Overflow {
                    what: "the total element count".to_owned(),
                })
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|tensor| tensor.name == name)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Any unsigned integer, or a signed one that is not negative.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// Any integer that fits in an `i64`.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// A float, or an integer an `f64` holds exactly.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key)?.as_array()
    }

    /// The number of elements of an array value.
    pub fn array_len(&self, key: &str) -> Option<u64> {
        Some(self.get_array(key)?.len() as u64)
    }

    /// `general.architecture`, the prefix of the model's hyperparameter keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `{architecture}.{suffix}` as an integer: `arch_u64("context_length")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.get_u64(&format!("{}.{suffix}", self.architecture()?))
    }

    /// `{architecture}.{suffix}` as a float: `arch_f64("rope.freq_base")`.
    pub fn arch_f64(&self, suffix: &str) -> Option<f64> {
        self.get_f64(&format!("{}.{suffix}", self.architecture()?))
    }

    /// `general.file_type`; see [`crate::file_type_name`] for its name.
    pub fn file_type(&self) -> Option<u32> {
        u32::try_from(self.get_u64("general.file_type")?).ok()
    }
}

/// Magic, version, tensor count and metadata count.
fn read_preamble<R: Read>(source: &mut Source<'_, R>) -> Result<(u32, u64, u64), GgufError> {
    source.set_context(Context::Header("the magic number"));
    let found = source.bytes::<4>()?;
    if &found != b"GGUF" {
        return Err(GgufError::BadMagic { found });
    }
    source.set_context(Context::Header("the version"));
    let version = source.u32()?;
    if !matches!(version, 2 | 3) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    source.set_context(Context::Header("the tensor count"));
    let tensor_count = source.u64()?;
    source.set_context(Context::Header("the metadata count"));
    let kv_count = source.u64()?;
    source.set_context_at(Context::Header("the header"), 0);
    // No remaining-bytes check here: the entries are read one by one into
    // buffers of bounded first capacity, so a false count fails at the end of
    // the input with a message naming the entry.
    let limits = source.limits();
    source.check_limit(kv_count, limits.max_kv_count, "metadata entry count")?;
    source.check_limit(tensor_count, limits.max_tensor_count, "tensor count")?;
    Ok((version, tensor_count, kv_count))
}

fn read_metadata<R: Read>(
    source: &mut Source<'_, R>,
    kv_count: u64,
) -> Result<Vec<(String, Value)>, GgufError> {
    let mut metadata = Vec::with_capacity(kv_count.min(256) as usize);
    let mut key_offsets = Vec::with_capacity(metadata.capacity());
    for index in 0..kv_count {
        source.set_context(Context::KvKey(index));
        key_offsets.push(source.offset());
        let key = source.string()?;
        source.set_context(Context::KvValue(key.clone()));
        let ty = source.value_type()?;
        let value = source.value(ty)?;
        metadata.push((key, value));
    }
    let mut seen = HashSet::with_capacity(metadata.len());
    for ((key, _), offset) in metadata.iter().zip(&key_offsets) {
        if !seen.insert(key.as_str()) {
            return Err(GgufError::DuplicateKey {
                key: key.clone(),
                offset: *offset,
            });
        }
    }
    Ok(metadata)
}

/// `general.alignment`, which must be a u32 nonzero power of two.
fn alignment_of(metadata: &[(String, Value)]) -> Result<u64, GgufError> {
    const KEY: &str = "general.alignment";
    let Some((_, value)) = metadata.iter().find(|(key, _)| key == KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let Value::U32(alignment) = *value else {
        return Err(GgufError::WrongType {
            key: KEY.to_owned(),
            expected: ValueType::U32,
            found: value.value_type(),
        });
    };
    if !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment(alignment.into()));
    }
    Ok(alignment.into())
}

fn read_tensor_infos<R: Read>(
    source: &mut Source<'_, R>,
    tensor_count: u64,
    alignment: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(tensor_count.min(1024) as usize);
    let mut name_offsets = Vec::with_capacity(tensors.capacity());
    for index in 0..tensor_count {
        name_offsets.push(source.offset());
        let tensor = read_tensor_info(source, index)?;
        check_tensor_shape(&tensor, alignment)?;
        tensors.push(tensor);
    }
    let mut seen = HashSet::with_capacity(tensors.len());
    for (tensor, offset) in tensors.iter().zip(&name_offsets) {
        if !seen.insert(tensor.name.as_str()) {
            return Err(GgufError::DuplicateTensor {
                name: tensor.name.clone(),
                offset: *offset,
            });
        }
    }
    Ok(tensors)
}

/// Name, dimension count, dimensions, type, offset.
fn read_tensor_info<R: Read>(
    source: &mut Source<'_, R>,
    index: u64,
) -> Result<TensorInfo, GgufError> {
    let start = source.offset();
    source.set_context(Context::TensorName(index));
    let name = source.string()?;
    source.set_context_at(Context::TensorInfo(index, name.clone()), start);
    let n_dims = source.u32()?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TensorDims { name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(source.u64()?);
    }
    let ggml_type = GgmlType::from_id(source.u32()?);
    let offset = source.u64()?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
    })
}

/// What can be checked of one tensor without the others: its element count
/// and byte size are computable (unless its type is unknown) and it starts on
/// an aligned offset.
fn check_tensor_shape(tensor: &TensorInfo, alignment: u64) -> Result<(), GgufError> {
    tensor.n_elements()?;
    if tensor.ggml_type.is_known() {
        tensor.n_bytes()?;
    }
    if !tensor.offset.is_multiple_of(alignment) {
        return Err(GgufError::TensorMisaligned {
            name: tensor.name.clone(),
            offset: tensor.offset,
            alignment,
        });
    }
    Ok(())
}
