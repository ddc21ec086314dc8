//! Checks that fetched weights are whole before they enter the store: a GGUF header parses and
//! every tensor lies inside the file; a safetensors header covers exactly the data section.
//! This is what turns a corrupt or truncated download into a clear error.

use std::path::Path;

use crate::error::{Result, StoreError};

pub(crate) fn gguf(path: &Path, label: &str) -> Result<()> {
    moat_gguf::GgufFile::open(path)
        .map(drop)
        .map_err(|e| StoreError::NotAModel(label.into(), format!("corrupt or truncated GGUF: {e}")))
}

pub(crate) fn safetensors(path: &Path, label: &str) -> Result<()> {
    crate::inspect::safetensors::read_header(path, label).map(drop)
}
