//! The process's one llama.cpp backend. Compute itself runs on moat-engine's process-wide
//! executor ([`moat_engine::compute::run_on_executor`]), shared with every other model kind.
//!
//! Rule for code added later: take the llama.cpp backend from [`backend`], never
//! `LlamaBackend::init` (it may run once per process, and a second call fails).

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use moat_engine::EngineError;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process's one llama.cpp backend, initialized on first use. llama.cpp's logs go to
/// `tracing` (target `llama_cpp_2`), so they are silent unless the binary installs a subscriber.
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            // Before any llama.cpp compute: the thread that decodes asks for its time slice.
            crate::slice::install_default();
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|error| format!("llama.cpp backend: {error}"))
        })
        .as_ref()
        .map_err(|message| EngineError::ModelLoad(message.clone()))
}
