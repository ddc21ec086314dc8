//! The inference engine's seam: the [`Engine`] trait every backend implements, the validated
//! request that crosses it ([`ValidGenerate`]), the events that come back ([`GenerationEvent`]),
//! and the backend-independent logic: the scheduler state (admission, continuous batching,
//! chunked prefill), the prefix index, stop-string matching, chat templates and a
//! [`fake::FakeEngine`] for logic tests. It knows nothing of llama.cpp or HTTP.

mod engine;
mod error;
mod event;
mod request;

pub use engine::{Engine, EngineInfo, Health, TokenStream};
pub use error::EngineError;
pub use event::{FinishReason, GeneratedToken, GenerationEvent, TokenLogprob, TopLogprob, Usage};
pub use request::{Prompt, SamplingParams, StopConditions, TokenId, ValidGenerate};
