//! The inference engine's seam: the [`Engine`] trait every backend implements, the validated
//! request that crosses it ([`ValidGenerate`]), the events that come back ([`GenerationEvent`]),
//! and the backend-independent logic: the scheduler state (admission, continuous batching,
//! chunked prefill), the arrival window that gathers a burst of requests into one step, the
//! prefix index, stop-string matching, chat templates and a [`fake::FakeEngine`] for logic
//! tests. It knows nothing of llama.cpp or HTTP.

pub mod arrival;
pub mod compute;
mod embed;
mod engine;
mod error;
mod event;
pub mod fake;
mod outbox;
pub mod prefix;
mod request;
pub mod scheduler;
mod stop;
pub mod template;
mod thinking;
mod utf8;

pub use embed::{EmbedInput, Embedder, EmbedderInfo, Embeddings};
pub use engine::{Engine, EngineInfo, EngineStats, Health, TokenStream};
pub use error::EngineError;
pub use event::{FinishReason, GeneratedToken, GenerationEvent, TokenLogprob, TopLogprob, Usage};
pub use fake::{FakeConfig, FakeEngine, FakeReply};
pub use outbox::{Event, EventOutbox, TextAssembler};
pub use request::{
    Grammar, Prompt, SamplingParams, StopConditions, Thinking, TokenId, ValidGenerate,
};
pub use scheduler::{
    BatchEntry, Ended, KvOp, LogitsKind, LogitsUse, Rejected, RequestId, Sampled, Scheduler,
    SchedulerConfig, SchedulerConfigError, SchedulerStats, SeqId, StepPlan, SubmitOptions,
};
pub use stop::{StopMatcher, StopOutput};
pub use template::{
    select_template_source, ChatMessage, ChatTemplate, ContentPart, MessageContent, RenderOptions,
    TemplateError,
};
pub use thinking::BudgetWatch;
pub use utf8::Utf8Decoder;
