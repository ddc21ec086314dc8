//! The engine thread: it loads the model, owns the llama.cpp context and drives moat-engine's
//! `Scheduler` for continuous batching. Commands arrive on a bounded `std::sync::mpsc` channel;
//! events leave through each request's bounded tokio channel, with `try_send` and a per-stream
//! backlog (`Stream`), so one client that stops reading never stalls the others.
//!
//! One loop turn: hand out events and cancel requests whose clients left, take new commands
//! (block only when there is nothing to do; after an arrival, wait a moment for the rest of a
//! burst, `moat_engine::arrival`), ask the scheduler for a plan, run its KV operations, decode
//! its batch on the process's one compute thread (the context travels there and back with the
//! batch), sample every sequence that got logits, and commit the samples.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};
use moat_engine::arrival::{ArrivalWindow, Load};
use moat_engine::{
    EngineError, KvOp, LogitsKind, RequestId, Sampled, Scheduler, SchedulerConfig, StepPlan,
    SubmitOptions,
};

use crate::executor::backend;
use crate::header;
use crate::model_context::ModelContext;
use crate::placement;
use crate::shared::{Loaded, Shared};
use crate::stream::{Job, Stream};
use crate::vocab::Vocab;
use crate::{FlashAttention, LoadOptions};
use moat_engine::compute::{adopt, run_on_executor_with, Adopted, Handoff};

/// How soon a worker with nothing to decode retries handing events to a lagging client.
const BACKLOG_WAIT: Duration = Duration::from_millis(2);

pub(crate) enum Command {
    Generate(Box<Job>),
    /// Another thread queued compute jobs for this one, which holds the executor's role
    /// (`moat_engine::compute::adopt`); at most one is in the channel at a time.
    Compute,
    Shutdown,
}

/// The host prompt cache's default budget: like llama-server's `--cache-ram` (8 GiB there),
/// a memory budget rather than a token count, so that a small model keeps many conversations
/// and a large one does not take the machine's memory. Only what is really saved uses memory.
pub(crate) const DEFAULT_HOST_CACHE_BYTES: u64 = 2 << 30;

/// The scheduler settings for these options; moat-engine's defaults for the rest.
/// `kv_bytes_per_token` (known once the model is loaded) sizes the default host cache.
/// `on_gpu` (the model's layers run on a GPU) turns that cache off unless `options` sizes it:
/// saving a sequence copies its KV cells out one contiguous run at a time, in a unified cache
/// (`LoadOptions::kv_unified`) a sequence decoded next to others can be scattered over up to one
/// run per token, and on a GPU each run is a synchronous device-to-host copy per layer, on the
/// admission path (docs/gpu.md has the measurement, made with the unified cache).
pub(crate) fn scheduler_config(
    options: &LoadOptions,
    n_ctx_per_seq: u32,
    kv_bytes_per_token: Option<u64>,
    on_gpu: bool,
) -> SchedulerConfig {
    SchedulerConfig {
        parallel: options.parallel,
        n_ctx_per_seq,
        n_batch: options.n_batch,
        max_queue: usize::try_from(options.max_queue).unwrap_or(usize::MAX),
        prefix_reuse: options.prefix_reuse,
        shared_kv: options.kv_unified,
        host_cache_tokens: options.host_cache_tokens.unwrap_or_else(|| {
            if on_gpu {
                0
            } else {
                default_host_cache_tokens(options.parallel, n_ctx_per_seq, kv_bytes_per_token)
            }
        }),
        ..SchedulerConfig::default()
    }
}

/// As many tokens as [`DEFAULT_HOST_CACHE_BYTES`] holds, and never fewer than the context
/// (`parallel × n_ctx_per_seq`), which is also the size when the bytes per token are unknown.
pub(crate) fn default_host_cache_tokens(
    parallel: u32,
    n_ctx_per_seq: u32,
    kv_bytes_per_token: Option<u64>,
) -> u32 {
    let context = parallel.saturating_mul(n_ctx_per_seq);
    let budget = kv_bytes_per_token
        .filter(|&bytes| bytes > 0)
        .map_or(0, |bytes| DEFAULT_HOST_CACHE_BYTES / bytes);
    context.max(u32::try_from(budget).unwrap_or(u32::MAX))
}

/// The model's sliding attention window from its GGUF (`{arch}.attention.sliding_window`), as
/// llama.cpp reads it; `None` when the model has none.
/// Whether llama.cpp drops the whitespace after special tokens for this model: it does so
/// for Phi-3's vocabulary, which it recognises by the model's name.
fn strips_after_special_tokens(model: &LlamaModel) -> bool {
    model
        .meta_val_str("general.name")
        .map(|name| name.to_lowercase())
        .is_ok_and(|name| name.contains("phi-3") || name.contains("phi3"))
}

fn sliding_window(model: &LlamaModel) -> Option<u32> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    let window = model
        .meta_val_str(&format!("{arch}.attention.sliding_window"))
        .ok()?;
    window.trim().parse().ok().filter(|&window| window > 0)
}

/// The KV cache's bytes per token (keys and values, f16, every layer), from the model's shape.
fn kv_bytes_per_token(model: &LlamaModel) -> u64 {
    let n_head = u64::from(model.n_head().max(1));
    let n_embd = u64::try_from(model.n_embd()).unwrap_or(0);
    let kv_width = n_embd * u64::from(model.n_head_kv()) / n_head;
    2 * 2 * u64::from(model.n_layer()) * kv_width
}

/// The thread's body: load, then serve until shutdown. An error is a load failure. `wake`
/// sends to `commands`: it tells this thread that another queued a compute job, when this one
/// holds the executor's role.
pub(crate) fn run(
    path: &Path,
    options: &LoadOptions,
    shared: &Shared,
    wake: SyncSender<Command>,
    commands: &Receiver<Command>,
) -> Result<(), String> {
    header::check_before_load(path)?;
    let backend = backend().map_err(|error| error.to_string())?;
    let model = LlamaModel::load_from_file(backend, path, &placement::model_params(options))
        .map_err(|error| format!("llama.cpp could not load {}: {error}", path.display()))?;
    let model = Arc::new(model);
    let gpus = placement::gpu_devices();
    let on_gpu = placement::offloads(&gpus, options.gpu_layers);
    let placement = placement::describe(&gpus, options.gpu_layers, model.n_layer());
    let n_ctx_per_seq = options.n_ctx_per_seq.min(model.n_ctx_train().max(2));
    let mut config = scheduler_config(
        options,
        n_ctx_per_seq,
        Some(kv_bytes_per_token(&model)),
        on_gpu,
    );
    // Recurrent state cannot be cut back to a prefix, so there is nothing to reuse.
    config.prefix_reuse &= !(model.is_recurrent() || model.is_hybrid());
    config.swa_window = sliding_window(&model);
    let scheduler = Scheduler::new(config).map_err(|error| error.to_string())?;
    let params = context_params(options, n_ctx_per_seq)?;
    let context = ModelContext::try_new(Arc::clone(&model), |model| {
        model.new_context(backend, params)
    })
    .map_err(|error| format!("llama.cpp could not create a context: {error}"))?;
    let vocab = Vocab::new(&model);
    shared.set_ready(Loaded {
        model: Arc::clone(&model),
        info: vocab.info(options, n_ctx_per_seq, placement),
        max_token_bytes: if strips_after_special_tokens(&model) {
            // No length bound holds for such a model: any run of whitespace after a special
            // token tokenizes to nothing.
            usize::MAX
        } else {
            vocab.max_token_bytes()
        },
    });
    let n_batch = usize::try_from(options.n_batch).unwrap_or(usize::MAX);
    // The first model to get here decodes on its own thread, with no hand-off per step, and
    // runs other threads' compute between its steps; later ones hand their steps to it.
    // Taking the role runs the executor's setup here, before the first decode: the time slice
    // (slice.rs), which ggml's pool threads, started by that decode, inherit.
    let executor = Executor::adopt(wake);
    Worker {
        compute: Some(Compute {
            context,
            batch: LlamaBatch::new(n_batch, 1),
        }),
        vocab,
        shared,
        scheduler,
        streams: HashMap::new(),
        next_id: 0,
        saved: HashMap::new(),
        arrival: ArrivalWindow::new(options.arrival),
        poll: options.compute_poll(),
        last_decode: Duration::ZERO,
        executor,
    }
    .serve(commands)
}

fn context_params(options: &LoadOptions, n_ctx_per_seq: u32) -> Result<LlamaContextParams, String> {
    let n_ctx = n_ctx_per_seq
        .checked_mul(options.parallel)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| "n_ctx_per_seq × parallel does not fit in 32 bits".to_owned())?;
    let n_threads = i32::try_from(options.n_threads).unwrap_or(i32::MAX);
    let flash_attention = match options.flash_attention {
        FlashAttention::Auto => -1,
        FlashAttention::Disabled => 0,
        FlashAttention::Enabled => 1,
    };
    // Either way a sequence holds at most `n_ctx_per_seq` cells: llama.cpp gives each of the
    // `n_seq_max` caches `n_ctx / n_seq_max` of them when they are not unified.
    Ok(LlamaContextParams::default()
        .with_n_ctx(Some(n_ctx))
        .with_n_batch(options.n_batch)
        .with_n_ubatch(options.n_batch.min(512))
        .with_n_seq_max(options.parallel)
        .with_n_threads(n_threads)
        .with_n_threads_batch(n_threads)
        .with_kv_unified(options.kv_unified)
        .with_flash_attention_policy(flash_attention))
}

/// What a decode needs, moved to the compute thread and back as one value.
struct Compute {
    context: ModelContext,
    batch: LlamaBatch<'static>,
}

impl Compute {
    fn decode(&mut self) -> Result<(), String> {
        let batch = &mut self.batch;
        self.context
            .with_dependent_mut(|_, context| context.decode(batch))
            .map_err(|error| format!("llama.cpp decode: {error}"))
    }
}

struct Worker<'m> {
    /// `None` only while a decode runs on the compute thread, or for good if that panicked.
    compute: Option<Compute>,
    vocab: Vocab<'m>,
    shared: &'m Shared,
    scheduler: Scheduler,
    /// Every request the scheduler holds, plus ended ones whose clients have not taken every
    /// event yet.
    streams: HashMap<RequestId, Stream>,
    next_id: RequestId,
    /// The host prompt cache: sequences the scheduler saved (`KvOp::Save`), by entry.
    saved: HashMap<u64, SeqState>,
    /// When to wait for the rest of a burst of requests before planning.
    arrival: ArrivalWindow,
    /// How long this thread and the executor poll for each other's hand-off of a step, when
    /// this thread does not hold the executor's role (then it decodes in place).
    poll: Duration,
    /// The last decode's time: the next one's expected time, which says when to start polling
    /// for it.
    last_decode: Duration,
    /// The executor's role, when this thread holds it.
    executor: Option<Executor>,
}

/// The compute executor's role held by a model's thread, and the flag that keeps at most one
/// `Command::Compute` in its channel.
struct Executor {
    role: Adopted,
    woken: Arc<AtomicBool>,
}

impl Executor {
    fn adopt(wake: SyncSender<Command>) -> Option<Executor> {
        let woken = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&woken);
        let role = adopt(Box::new(move || {
            if !flag.swap(true, Ordering::AcqRel) {
                // Full only when the engine is gone; its thread then ends and lets go.
                let _ = wake.try_send(Command::Compute);
            }
        }))?;
        Some(Executor { role, woken })
    }

    /// Runs the compute jobs other threads queued.
    fn run_pending(&self) {
        // Cleared first: a job queued from here on sends a new wake-up.
        self.woken.store(false, Ordering::Release);
        self.role.run_pending();
    }
}

impl Worker<'_> {
    /// Serves until shutdown; an error when the context was lost (a panic on the compute
    /// thread), after every request got it.
    fn serve(mut self, commands: &Receiver<Command>) -> Result<(), String> {
        loop {
            self.run_compute_jobs();
            if self.deliver_all() && !self.scheduler.is_idle() {
                // The thread that takes these events (a tokio worker, woken by them) needs a
                // core to write them to the client, and the next decode is about to take every
                // core. Let it run first: otherwise it preempts a compute thread somewhere in
                // the decode, the other one waits for it at the next barrier, and the token
                // reaches the client late while the next comes early (docs/PERFORMANCE.md,
                // "Yielding to the delivery"). With nothing else runnable here it returns at
                // once. Mostly the worker has already taken them from the other core (at one
                // stream this ran for 14 of 192 tokens, counted with `perf record -e
                // raw_syscalls:sys_enter`); what still makes a token late then is the client's
                // own read, if it shares these cores ("Where the one-stream tail goes").
                std::thread::yield_now();
            }
            // Published before `receive`, which may block while idle, so a scrape then sees
            // the idle state rather than the last busy step.
            self.shared.publish_stats(self.scheduler.stats());
            if !self.receive(commands) {
                break;
            }
            let plan = self.scheduler.plan(Instant::now());
            self.step(&plan);
            self.shared.publish_stats(self.scheduler.stats());
            if self.compute.is_none() {
                let problem = "the llama.cpp context was lost in a compute step".to_owned();
                self.shut_down(EngineError::Internal(problem.clone()));
                return Err(problem);
            }
        }
        self.shut_down(EngineError::ShuttingDown);
        Ok(())
    }

    /// Takes every waiting command; blocks only when there is nothing else to do. False on
    /// shutdown (or when the handle is gone).
    fn receive(&mut self, commands: &Receiver<Command>) -> bool {
        let first = if !self.scheduler.is_idle() {
            match commands.try_recv() {
                Ok(command) => Some(command),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return false,
            }
        } else if self.streams.values().any(Stream::has_backlog) {
            match commands.recv_timeout(BACKLOG_WAIT) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        } else {
            match commands.recv() {
                Ok(command) => Some(command),
                Err(_) => return false,
            }
        };
        let mut next = first;
        let mut arrived = false;
        while let Some(command) = next {
            match command {
                Command::Generate(job) => {
                    self.submit(*job);
                    arrived = true;
                }
                Command::Compute => self.run_compute_jobs(),
                Command::Shutdown => return false,
            }
            next = commands.try_recv().ok();
        }
        if !arrived {
            return true;
        }
        // Only an arrival raises the count in the engine, so only then can the peak move.
        self.observe_load();
        self.gather(commands)
    }

    /// After an arrival, waits for the rest of a burst while the arrival window says more are
    /// likely and worth a step of their own (`moat_engine::arrival`), so their prompts share
    /// one prefill step. False on shutdown.
    fn gather(&mut self, commands: &Receiver<Command>) -> bool {
        let since = Instant::now();
        loop {
            let load = Load {
                in_engine: self.scheduler.running() + self.scheduler.queued(),
                free_slots: self.scheduler.free_slots(),
            };
            let scheduler = &self.scheduler;
            let wait = self
                .arrival
                .wait(Instant::now(), since, load, || scheduler.prefill_backlog());
            let Some(wait) = wait else {
                return true;
            };
            match commands.recv_timeout(wait) {
                Ok(Command::Generate(job)) => {
                    self.submit(*job);
                    self.observe_load();
                }
                Ok(Command::Compute) => self.run_compute_jobs(),
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => {
                    self.arrival.quiet_passed(load.in_engine, wait);
                    return true;
                }
            }
        }
    }

    /// Runs what other threads queued for the executor, when this thread holds its role.
    fn run_compute_jobs(&self) {
        if let Some(executor) = &self.executor {
            executor.run_pending();
        }
    }

    fn observe_load(&mut self) {
        let in_engine = self.scheduler.running() + self.scheduler.queued();
        self.arrival.observe_load(in_engine);
    }

    fn submit(&mut self, mut job: Job) {
        let id = self.next_id;
        self.next_id += 1;
        let mut stream = Stream::new(&mut job, &self.vocab);
        let options = SubmitOptions {
            max_tokens: Some(job.request.stop.max_tokens),
            deadline: job.request.deadline,
            prompt_logprobs: job.request.prompt_logprobs,
        };
        match self.scheduler.submit(id, job.prompt, options) {
            Ok(()) => {
                self.streams.insert(id, stream);
            }
            Err(rejected) => {
                stream.end_with(Err(rejected.into()));
                stream.deliver();
                self.shared.release(1);
            }
        }
    }

    /// Hands every stream what its channel has room for and forgets finished ones; a request
    /// whose client dropped its stream is cancelled (its slot frees at the next plan). True
    /// when a channel holds events its client's side has not taken yet.
    fn deliver_all(&mut self) -> bool {
        let mut gone = Vec::new();
        let mut waiting = false;
        self.streams.retain(|&id, stream| {
            if !stream.deliver() {
                gone.push(id);
                return false;
            }
            waiting |= stream.in_channel();
            !stream.is_done()
        });
        for id in gone {
            self.scheduler.cancel(id);
        }
        waiting
    }

    fn step(&mut self, plan: &StepPlan) {
        for id in &plan.cancelled {
            self.shared.release(1);
            if let Some(stream) = self.streams.get_mut(id) {
                let lost = EngineError::Internal("the engine lost track of this request".into());
                stream.end_with(Err(lost));
            }
        }
        for ended in &plan.ended {
            self.shared.release(1);
            if let Some(stream) = self.streams.get_mut(&ended.request_id) {
                stream.finish(ended.reason, ended.usage);
            }
        }
        if let Err(problem) = self.apply_kv_ops(&plan.kv_ops) {
            self.fail_step(&problem);
            return;
        }
        if plan.batch.is_empty() {
            return;
        }
        match self.decode(plan) {
            Ok(decoded) => {
                let generating = plan
                    .logits
                    .iter()
                    .filter(|logits| logits.kind == LogitsKind::NextToken)
                    .count();
                let batch = plan.batch.len();
                self.arrival
                    .observe_step(batch.saturating_sub(generating), batch, decoded);
                self.sample_and_commit(plan, decoded);
            }
            Err(problem) => self.fail_step(&problem),
        }
    }

    /// Runs the plan's KV operations. A refused partial removal (some caches cannot cut a
    /// sequence) fails the step (the scheduler then clears its sequences): they would otherwise
    /// hold what the scheduler thinks they do not.
    fn apply_kv_ops(&mut self, ops: &[KvOp]) -> Result<(), String> {
        let Some(compute) = self.compute.as_mut() else {
            return Err("no llama.cpp context".to_owned());
        };
        let saved = &mut self.saved;
        let shared_kv = self.scheduler.config().shared_kv;
        compute.context.with_dependent_mut(|_, context| {
            for op in ops {
                let failed = |error: &dyn std::fmt::Display| {
                    format!("llama.cpp KV operation {op:?}: {error}")
                };
                match *op {
                    KvOp::Clear { seq } => context
                        .kv_cache_seq_rm(seq, None, None)
                        .map_err(|e| failed(&e))?,
                    KvOp::Truncate { seq, from } => context
                        .kv_cache_seq_rm(seq, Some(from), None)
                        .map_err(|e| failed(&e))?,
                    KvOp::Copy {
                        src_seq,
                        dst_seq,
                        len,
                    } if shared_kv => context
                        .kv_cache_seq_cp(src_seq, dst_seq, Some(0), Some(len))
                        .map_err(|e| failed(&e))?,
                    KvOp::Copy {
                        src_seq,
                        dst_seq,
                        len,
                    } => {
                        // Between separate caches llama.cpp copies only whole ones, and only at
                        // the next decode (a partial `kv_cache_seq_cp` aborts on a ggml assert).
                        // A round trip through host memory copies the cells the source holds,
                        // at once; the cut then leaves the prefix.
                        let state = context
                            .state_seq_get(src_seq, LlamaStateSeqFlags::empty())
                            .map_err(|e| failed(&e))?;
                        context
                            .state_seq_set(&state, dst_seq)
                            .map_err(|e| failed(&e))?;
                        context
                            .kv_cache_seq_rm(dst_seq, Some(len), None)
                            .map_err(|e| failed(&e))?;
                    }
                    KvOp::Save { seq, entry } => {
                        let state = context
                            .state_seq_get(seq, LlamaStateSeqFlags::empty())
                            .map_err(|e| failed(&e))?;
                        saved.insert(entry, state);
                    }
                    KvOp::Restore { entry, seq } => {
                        let state = saved.get(&entry).ok_or_else(|| failed(&"not saved"))?;
                        context.state_seq_set(state, seq).map_err(|e| failed(&e))?;
                    }
                    KvOp::Forget { entry } => {
                        saved.remove(&entry);
                    }
                }
            }
            Ok(())
        })
    }

    /// Decodes the plan's batch on the compute thread and returns how long the decode itself
    /// took there (not the wait for the executor, which may be busy with an embedder). If
    /// that thread panics the context is gone with it and `compute` stays `None`.
    fn decode(&mut self, plan: &StepPlan) -> Result<Duration, String> {
        let Some(mut compute) = self.compute.take() else {
            return Err("no llama.cpp context".to_owned());
        };
        compute.batch.clear();
        for entry in &plan.batch {
            let position = i32::try_from(entry.pos).unwrap_or(i32::MAX);
            let added = compute.batch.add(
                LlamaToken(entry.token),
                position,
                &[entry.seq_id],
                entry.logits,
            );
            if let Err(error) = added {
                self.compute = Some(compute);
                return Err(format!("batch: {error}"));
            }
        }
        let handoff = Handoff::polling(self.poll, self.last_decode);
        let (compute, result, decoded) = run_on_executor_with(handoff, move || {
            let began = Instant::now();
            let result = compute.decode();
            (compute, result, began.elapsed())
        })
        .map_err(|error| error.to_string())?;
        self.compute = Some(compute);
        self.last_decode = decoded;
        result.map(|()| decoded)
    }

    /// Samples every sequence that wants a token, charges the step (the decode's time plus
    /// sampling's) to the batch's requests as busy time, and commits.
    fn sample_and_commit(&mut self, plan: &StepPlan, decoded: Duration) {
        let sampling_began = Instant::now();
        let Some(compute) = self.compute.as_ref() else {
            return;
        };
        let context = compute.context.borrow_dependent();
        let mut sampled = Vec::new();
        for logits in &plan.logits {
            let Some(stream) = self.streams.get_mut(&logits.request_id) else {
                continue;
            };
            let at = i32::try_from(logits.batch_index).unwrap_or(i32::MAX);
            match logits.kind {
                LogitsKind::PromptToken { next } => {
                    let row = context.get_logits_ith(at);
                    stream.record_prompt_logprob(next, row, &self.vocab);
                    continue;
                }
                LogitsKind::FirstToken {
                    prompt_tokens,
                    cached_tokens,
                } => stream.start(prompt_tokens, cached_tokens),
                LogitsKind::PromptDone {
                    prompt_tokens,
                    cached_tokens,
                } => {
                    stream.start(prompt_tokens, cached_tokens);
                    continue;
                }
                LogitsKind::NextToken => {}
            }
            let sample = stream.sample(context, at, &self.vocab);
            sampled.push(Sampled {
                request_id: logits.request_id,
                token: sample.token,
                stop: sample.stop,
            });
        }
        self.scheduler
            .charge_step(decoded.saturating_add(sampling_began.elapsed()));
        for ended in self.scheduler.commit(&sampled) {
            self.shared.release(1);
            if let Some(stream) = self.streams.get_mut(&ended.request_id) {
                stream.finish(ended.reason, ended.usage);
            }
        }
    }

    /// The step's batch could not run: its requests fail and their sequences are cleared.
    fn fail_step(&mut self, problem: &str) {
        for id in self.scheduler.fail_step() {
            self.shared.release(1);
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.end_with(Err(EngineError::Internal(problem.to_owned())));
            }
        }
    }

    /// Every request in flight or waiting gets `error`.
    fn shut_down(&mut self, error: EngineError) {
        let drained = self.scheduler.drain();
        self.shared.release(drained.len());
        for stream in self.streams.values_mut() {
            stream.end_with(Err(error.clone()));
            stream.deliver();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_host_cache_is_a_memory_budget_never_below_the_context() {
        // SmolLM2-135M: 30 layers, KV width 192, f16: 23,040 bytes a token.
        let smol = 2 * 2 * 30 * 192;
        assert_eq!(
            default_host_cache_tokens(1, 2048, Some(smol)),
            u32::try_from(DEFAULT_HOST_CACHE_BYTES / smol).unwrap()
        );
        // A model whose tokens are so large that the budget holds less than the context.
        assert_eq!(default_host_cache_tokens(8, 4096, Some(1 << 20)), 8 * 4096);
        // Unknown size (before the model is loaded): the context.
        assert_eq!(default_host_cache_tokens(4, 1024, None), 4096);
        assert_eq!(default_host_cache_tokens(4, 1024, Some(0)), 4096);
    }

    #[test]
    fn an_explicit_host_cache_size_wins() {
        let mut options = LoadOptions::new("m");
        options.host_cache_tokens = Some(0);
        assert_eq!(
            scheduler_config(&options, 2048, Some(1), false).host_cache_tokens,
            0
        );
        options.host_cache_tokens = Some(5000);
        assert_eq!(
            scheduler_config(&options, 2048, Some(1), true).host_cache_tokens,
            5000
        );
        options.host_cache_tokens = None;
        assert_eq!(
            scheduler_config(&options, 2048, Some(1 << 40), false).host_cache_tokens,
            options.parallel * 2048
        );
    }

    #[test]
    fn on_a_gpu_the_host_cache_is_off_unless_sized() {
        let options = LoadOptions::new("m");
        assert_eq!(
            scheduler_config(&options, 2048, Some(1 << 10), true).host_cache_tokens,
            0
        );
        assert!(scheduler_config(&options, 2048, Some(1 << 10), false).host_cache_tokens > 0);
    }
}
