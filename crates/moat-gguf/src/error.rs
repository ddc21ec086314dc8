//! The one error type of this crate, with messages a user can act on.
//!
//! Owns `GgufError`, its `Display` text and a coarse `kind()` classification.
//! It does not know how a file is read; the reader fills in the byte offsets
//! and the human description of what was being read ("the value of key 'x'").

use std::fmt;

use crate::ggml_type::GgmlType;
use crate::value::ValueType;

/// Everything that can go wrong while reading a GGUF header.
///
/// Every variant that comes from the file's bytes names the byte offset or the
/// tensor involved, so a message alone is enough to find the problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum GgufError {
    /// The operating system failed to read the file (not an early end of file:
    /// that is [`GgufError::Truncated`]).
    Io(std::io::Error),
    /// The first four bytes are not `GGUF`.
    BadMagic { found: [u8; 4] },
    /// The version is not 2 or 3 (version 1 used 32-bit lengths and is not read).
    UnsupportedVersion(u32),
    /// The file ends before `what` is complete; `offset` is where `what` starts.
    Truncated { what: String, offset: u64 },
    /// A declared length or count is above a [`crate::Limits`] bound.
    TooLarge {
        what: String,
        value: u64,
        limit: u64,
    },
    /// A metadata value (or array element) has a type id outside 0..=12.
    UnknownValueType { type_id: u32, offset: u64 },
    /// A string is not valid UTF-8.
    InvalidUtf8 { what: String, offset: u64 },
    /// A bool byte is neither 0 nor 1.
    InvalidBool {
        what: String,
        value: u8,
        offset: u64,
    },
    /// The same metadata key appears twice.
    DuplicateKey { key: String, offset: u64 },
    /// Two tensors share a name.
    DuplicateTensor { name: String, offset: u64 },
    /// A well-known key holds a value of the wrong type.
    WrongType {
        key: String,
        expected: ValueType,
        found: ValueType,
    },
    /// `general.alignment` is zero or not a power of two.
    BadAlignment(u64),
    /// A tensor declares more than four dimensions.
    TensorDims { name: String, n_dims: u32 },
    /// A tensor's first dimension is not a whole number of its type's blocks.
    PartialBlock {
        name: String,
        ggml_type: GgmlType,
        row_len: u64,
        block_size: u64,
    },
    /// A tensor's offset is not a multiple of the file's alignment.
    TensorMisaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    /// A tensor's type id is not a known ggml type, so its size is unknown.
    UnknownGgmlType { name: String, type_id: u32 },
    /// A tensor's data would end past the end of the file.
    TensorOutOfBounds {
        name: String,
        end: u64,
        file_size: u64,
    },
    /// A size computed from the header does not fit in 64 bits.
    Overflow { what: String },
}

/// A coarse classification of [`GgufError`], for callers that map errors to
/// exit codes or HTTP statuses without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufErrorKind {
    /// The operating system could not read the file.
    Io,
    /// The file is not GGUF, or is a GGUF variant this crate does not read.
    Unsupported,
    /// The file ends early: an interrupted download or copy.
    Truncated,
    /// A declared size is above a configured limit.
    LimitExceeded,
    /// The bytes contradict the format.
    Malformed,
}

impl GgufError {
    /// The coarse class of this error.
    pub fn kind(&self) -> GgufErrorKind {
        match self {
            GgufError::Io(_) => GgufErrorKind::Io,
            GgufError::BadMagic { .. } | GgufError::UnsupportedVersion(_) => {
                GgufErrorKind::Unsupported
            }
            GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. } => {
                GgufErrorKind::Truncated
            }
            GgufError::TooLarge { .. } => GgufErrorKind::LimitExceeded,
            _ => GgufErrorKind::Malformed,
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::Io(err) => write!(f, "cannot read GGUF file: {err}"),
            GgufError::BadMagic { found } => write!(
                f,
                "not a GGUF file: it starts with {} instead of \"GGUF\"",
                escape_bytes(found)
            ),
            GgufError::UnsupportedVersion(version) => write_version(f, *version),
            GgufError::Truncated { what, offset } => write!(
                f,
                "truncated GGUF: file ends inside {what}, which starts at byte {offset} \
                 (an interrupted download or copy?)"
            ),
            GgufError::TooLarge { what, value, limit } => write!(
                f,
                "GGUF {what} is {value}, above the limit of {limit}; \
                 the file is corrupt or hostile, or the limit needs raising"
            ),
            GgufError::UnknownValueType { type_id, offset } => write!(
                f,
                "invalid GGUF: unknown metadata value type {type_id} at byte {offset} \
                 (known types are 0 to 12)"
            ),
            GgufError::InvalidUtf8 { what, offset } => write!(
                f,
                "invalid GGUF: {what} at byte {offset} is not valid UTF-8"
            ),
            GgufError::InvalidBool {
                what,
                value,
                offset,
            } => write!(
                f,
                "invalid GGUF: {what} at byte {offset} is a bool with byte value {value} \
                 (only 0 and 1 are allowed)"
            ),
            GgufError::DuplicateKey { key, offset } => write!(
                f,
                "invalid GGUF: metadata key '{key}' appears twice (second time at byte {offset})"
            ),
            GgufError::DuplicateTensor { name, offset } => write!(
                f,
                "invalid GGUF: tensor name '{name}' appears twice (second time at byte {offset})"
            ),
            GgufError::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "invalid GGUF: metadata key '{key}' must be of type {expected}, found {found}"
            ),
            GgufError::BadAlignment(value) => write!(
                f,
                "invalid GGUF: general.alignment is {value}; it must be a nonzero power of two"
            ),
            GgufError::TensorDims { name, n_dims } => write!(
                f,
                "invalid GGUF: tensor '{name}' has {n_dims} dimensions; at most 4 are allowed"
            ),
            GgufError::PartialBlock {
                name,
                ggml_type,
                row_len,
                block_size,
            } => write!(
                f,
                "invalid GGUF: tensor '{name}' of type {ggml_type} has rows of {row_len} elements, \
                 not a multiple of the block size {block_size}"
            ),
            GgufError::TensorMisaligned {
                name,
                offset,
                alignment,
            } => write!(
                f,
                "invalid GGUF: tensor '{name}' starts at data offset {offset}, \
                 not a multiple of the alignment {alignment}"
            ),
            GgufError::UnknownGgmlType { name, type_id } => write!(
                f,
                "tensor '{name}' has ggml type id {type_id}, which this reader does not know, \
                 so its size cannot be computed"
            ),
            GgufError::TensorOutOfBounds {
                name,
                end,
                file_size,
            } => write!(
                f,
                "truncated GGUF: data of tensor '{name}' ends at byte {end}, \
                 but the file has only {file_size} bytes (an interrupted download or copy?)"
            ),
            GgufError::Overflow { what } => {
                write!(f, "invalid GGUF: {what} does not fit in 64 bits")
            }
        }
    }
}

impl std::error::Error for GgufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GgufError::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// Version 3 files written on big-endian machines store the version byte-swapped,
/// which reads here as 0x03000000; saying so is more useful than the raw number.
fn write_version(f: &mut fmt::Formatter<'_>, version: u32) -> fmt::Result {
    let swapped = version.swap_bytes();
    if version == 1 {
        write!(
            f,
            "unsupported GGUF version 1 (an early 2023 format); convert the model again"
        )
    } else if (1..=3).contains(&swapped) {
        write!(
            f,
            "unsupported GGUF: this is a big-endian file (version {swapped}); \
             only little-endian GGUF is read"
        )
    } else {
        write!(
            f,
            "unsupported GGUF version {version}; versions 2 and 3 are read"
        )
    }
}

fn escape_bytes(bytes: &[u8]) -> String {
    let escaped: String = bytes
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("\"{escaped}\"")
}
