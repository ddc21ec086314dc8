//! `ModelContext`: a llama.cpp context together with the model it borrows, in one value that
//! owns both. llama-cpp-2's `LlamaContext<'m>` borrows its `LlamaModel`; holding both in one
//! struct (`self_cell`, sound and miri-tested) lets the pair move between threads as a unit,
//! which is what sends every decode to the one compute thread (`executor.rs`).

use std::sync::Arc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;

self_cell::self_cell!(
    /// A context and its model; the model lives as long as the context needs it.
    pub(crate) struct ModelContext {
        owner: Arc<LlamaModel>,
        #[covariant]
        dependent: LlamaContext,
    }
);
