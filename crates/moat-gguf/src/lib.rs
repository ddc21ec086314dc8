//! A dependency-free reader of GGUF model headers that is safe on hostile input.
//!
//! Reads the metadata and tensor infos of a GGUF v2/v3 file (the format of
//! llama.cpp) and checks that the tensor data they describe lies inside the
//! file. It does not read, map or dequantize tensor data or write GGUF.
//! Architecture-specific keys are interpreted in one place only:
//! `llama_safe.rs` checks the values llama.cpp asserts on (it aborts the
//! process on them).
//!
//! Code map:
//! - `file.rs`: `GgufFile`, `TensorInfo`: section order, cross-checks, look-ups.
//! - `reader.rs`: the bounded byte source and metadata value decoding.
//! - `value.rs`: `Value`, `Array`, `ValueType`.
//! - `ggml_type.rs`: `GgmlType` block tables and `file_type_name`.
//! - `limits.rs`: `Limits`; `error.rs`: `GgufError`.
//! - `llama_safe.rs`: `check_llama_safe`, what llama.cpp would abort on.
//!
//! Invariants: no allocation is sized from a declared length or count before
//! that length is checked against the [`Limits`] and against the bytes left in
//! the input (when its length is known); an early end of input is always
//! [`GgufError::Truncated`], never a raw I/O error; a `GgufFile` returned from a
//! known-length input has unique keys and tensor names, aligned tensors of at
//! most four dimensions, and tensor data inside the input.
//!
//! ```no_run
//! # fn main() -> Result<(), moat_gguf::GgufError> {
//! let file = moat_gguf::GgufFile::open(std::path::Path::new("model.gguf"))?;
//! let arch = file.architecture().unwrap_or("unknown");
//! let context = file.arch_u64("context_length");
//! let quant = file.file_type().and_then(moat_gguf::file_type_name);
//! println!("{arch}, context {context:?}, {quant:?}, {} tensors", file.tensors.len());
//! # Ok(())
//! # }
//! ```

mod error;
mod file;
mod ggml_type;
mod limits;
mod llama_safe;
mod reader;
mod value;

#[cfg(test)]
mod tests;

pub use error::{GgufError, GgufErrorKind};
pub use file::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use ggml_type::{file_type_name, GgmlType};
pub use limits::Limits;
pub use llama_safe::{check_llama_safe, UnsafeForLlama, MAX_EXPERTS, MAX_LAYERS};
pub use value::{Array, Value, ValueType};
