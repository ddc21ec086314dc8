//! The GGUF header check that runs before llama.cpp sees a file. llama.cpp aborts the whole
//! process on some hyperparameter values (`GGML_ASSERT`), and `llama-cpp-2` panics on others;
//! `moat_gguf` reads the header on its own, safely, and refuses such a file with an error, so a
//! corrupt or hostile model fails its load instead of taking the server down.

use std::path::Path;

pub(crate) fn check_before_load(path: &Path) -> Result<(), String> {
    let file = moat_gguf::GgufFile::open(path)
        .map_err(|error| format!("{} is not a loadable GGUF: {error}", path.display()))?;
    moat_gguf::check_llama_safe(&file).map_err(|error| format!("{}: {error}", path.display()))
}
