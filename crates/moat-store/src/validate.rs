//! Checks that fetched weights are whole before they enter the store: a GGUF header parses,
//! every tensor lies inside the file and no hyperparameter is one llama.cpp would abort on; a
//! safetensors header covers exactly the data section.
//! This is what turns a corrupt or truncated download into a clear error.

use std::path::Path;

use crate::error::{Result, StoreError};

pub(crate) fn gguf(path: &Path, label: &str) -> Result<()> {
    let file = moat_gguf::GgufFile::open(path).map_err(|e| {
        StoreError::NotAModel(label.into(), format!("corrupt or truncated GGUF: {e}"))
    })?;
    moat_gguf::check_llama_safe(&file)
        .map_err(|e| StoreError::NotAModel(label.into(), e.to_string()))
}

pub(crate) fn safetensors(path: &Path, label: &str) -> Result<()> {
    crate::inspect::safetensors::read_header(path, label).map(drop)
}
