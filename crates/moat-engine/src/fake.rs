//! `FakeEngine`: an [`Engine`] for logic tests of everything above the engine. A tiny
//! deterministic "model" over a byte vocabulary runs behind the real [`Scheduler`] on its own
//! thread, fed and drained like a real backend: admission and `Overloaded`, chunked prefill,
//! prefix reuse, cancellation when a `TokenStream` is dropped, deadlines, stop strings, UTF-8
//! assembly, logprobs and usage all behave as they do with a model. Events go out with
//! `try_send`; what a full channel refuses waits in the stream's backlog, so one client that
//! stops reading never stalls the others. It also mirrors the KV cache
//! ([`ToyKv`]) and checks every sequence holds exactly its prompt and generated tokens, so a
//! scheduling bug shows up as an `Internal` error. It knows nothing of llama.cpp or HTTP.
//!
//! Vocabulary: tokens `0..=255` are bytes, [`BOS`] is `<s>`, [`EOS`] is `</s>`.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::scheduler::{
    KvOp, LogitsKind, LogitsUse, RequestId, Sampled, SchedulerStats, SeqId, StepPlan, SubmitOptions,
};
use crate::{
    Engine, EngineError, EngineInfo, EngineStats, Event, EventOutbox, FinishReason, GeneratedToken,
    GenerationEvent, Health, Prompt, Scheduler, SchedulerConfig, TextAssembler, TokenId,
    TokenLogprob, TokenStream, TopLogprob, ValidGenerate,
};

pub const BOS: TokenId = 256;
pub const EOS: TokenId = 257;
pub const N_VOCAB: u32 = 258;

/// A ChatML template, so template code has something real to render.
const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// What the fake model answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeReply {
    /// The prompt's text (special tokens left out) with its characters reversed, then EOS.
    ReversePrompt,
    /// This text, then EOS.
    Fixed(String),
    /// This text over and over, never EOS: for length, deadline and cancellation tests.
    Repeat(String),
}

#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub model: String,
    pub scheduler: SchedulerConfig,
    pub reply: FakeReply,
    /// Time one decode step takes (at least; it is charged to the step's requests as busy
    /// time).
    pub step_delay: Duration,
    /// Events a stream's channel holds; beyond it they wait on the engine thread, which never
    /// blocks on a slow client.
    pub stream_capacity: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            model: "fake".into(),
            scheduler: SchedulerConfig {
                parallel: 4,
                n_ctx_per_seq: 1024,
                n_batch: 64,
                prefill_chunk: 32,
                max_queue: 8,
                min_prefix: 4,
                host_cache_tokens: 0,
                ..SchedulerConfig::default()
            },
            reply: FakeReply::ReversePrompt,
            step_delay: Duration::ZERO,
            stream_capacity: 64,
        }
    }
}

/// See the module documentation.
pub struct FakeEngine {
    info: EngineInfo,
    shared: Arc<Shared>,
    stream_capacity: usize,
    thread: JoinHandle<()>,
}

struct Shared {
    state: Mutex<SharedState>,
    wake: Condvar,
}

/// What `generate` and the engine thread share; held only for scheduler calls, never while
/// decoding or sending.
struct SharedState {
    scheduler: Scheduler,
    /// Streams submitted and not yet picked up by the engine thread.
    incoming: Vec<(RequestId, Stream)>,
    next_id: RequestId,
    shutting_down: bool,
}

impl FakeEngine {
    pub fn new(config: FakeConfig) -> Result<Self, EngineError> {
        let scheduler = Scheduler::new(config.scheduler.clone())
            .map_err(|error| EngineError::ModelLoad(error.to_string()))?;
        let info = EngineInfo {
            model: config.model.clone(),
            n_ctx: config.scheduler.n_ctx_per_seq,
            n_ctx_train: config.scheduler.n_ctx_per_seq,
            n_vocab: N_VOCAB,
            parallel: config.scheduler.parallel,
            chat_template: Some(CHAT_TEMPLATE.into()),
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            eog_tokens: vec![EOS],
            placement: "CPU".into(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                scheduler,
                incoming: Vec::new(),
                next_id: 1,
                shutting_down: false,
            }),
            wake: Condvar::new(),
        });
        let stream_capacity = config.stream_capacity.max(1);
        let worker = Worker {
            shared: Arc::clone(&shared),
            reply: config.reply,
            step_delay: config.step_delay,
            streams: HashMap::new(),
            kv: ToyKv::default(),
        };
        let thread = std::thread::Builder::new()
            .name("moat-fake-engine".into())
            .spawn(move || worker.run())
            .map_err(|error| {
                EngineError::ModelLoad(format!("cannot start the engine thread: {error}"))
            })?;
        Ok(Self {
            info,
            shared,
            stream_capacity,
            thread,
        })
    }

    /// The scheduler's counts, for tests of slots, queues and prefix reuse.
    pub fn stats(&self) -> SchedulerStats {
        lock(&self.shared.state).scheduler.stats()
    }
}

impl Drop for FakeEngine {
    /// Stops the engine thread at its next step; open streams get `ShuttingDown`. It is not
    /// joined: it may be waiting for a client that reads slowly.
    fn drop(&mut self) {
        lock(&self.shared.state).shutting_down = true;
        self.shared.wake.notify_all();
    }
}

impl Engine for FakeEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn health(&self) -> Health {
        if self.thread.is_finished() {
            Health::Failed
        } else {
            Health::Ready
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>, EngineError> {
        Ok(tokenize(text, add_special, parse_special))
    }

    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, EngineError> {
        match token {
            BOS => Ok(b"<s>".to_vec()),
            EOS => Ok(b"</s>".to_vec()),
            _ => u8::try_from(token).map(|byte| vec![byte]).map_err(|_| {
                EngineError::InvalidRequest(format!("token {token} is not in the vocabulary"))
            }),
        }
    }

    /// The scheduler's counts; the fake's engine thread holds the lock only for scheduler
    /// calls, so this waits at most for one of those.
    fn stats(&self) -> Option<EngineStats> {
        Some(FakeEngine::stats(self).into())
    }

    fn generate(&self, request: ValidGenerate) -> Result<TokenStream, EngineError> {
        let prompt = match &request.prompt {
            Prompt::Text(text) => tokenize(text, true, true),
            Prompt::Tokens(tokens) => {
                if let Some(bad) = tokens
                    .iter()
                    .find(|&&token| !(0..N_VOCAB as TokenId).contains(&token))
                {
                    return Err(EngineError::InvalidRequest(format!(
                        "token {bad} is not in the vocabulary"
                    )));
                }
                tokens.clone()
            }
        };
        if request.grammar.is_some() {
            // Scripted replies cannot follow a grammar; saying so beats ignoring it.
            return Err(EngineError::InvalidRequest(
                "the fake engine does not constrain output to a grammar".to_owned(),
            ));
        }
        if request
            .thinking
            .as_ref()
            .is_some_and(|thinking| thinking.budget.is_some())
        {
            // Scripted replies cannot be made to end their thinking either.
            return Err(EngineError::InvalidRequest(
                "the fake engine does not bound thinking".to_owned(),
            ));
        }
        let options = SubmitOptions {
            max_tokens: Some(request.stop.max_tokens),
            deadline: request.deadline,
            prompt_logprobs: request.prompt_logprobs,
        };
        let (sender, receiver) = mpsc::channel(self.stream_capacity);
        let stream = Stream::new(sender, &request, prompt.clone());
        let mut state = lock(&self.shared.state);
        if state.shutting_down {
            return Err(EngineError::ShuttingDown);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.scheduler.submit(id, prompt, options)?;
        state.incoming.push((id, stream));
        drop(state);
        self.shared.wake.notify_all();
        Ok(TokenStream::new(receiver))
    }
}

/// Bytes as tokens; `<s>` and `</s>` as special tokens when `parse_special`.
fn tokenize(text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
    let mut tokens = Vec::with_capacity(text.len() + 1);
    if add_special {
        tokens.push(BOS);
    }
    let mut rest = text;
    while !rest.is_empty() {
        if parse_special {
            if let Some(after) = rest.strip_prefix("<s>") {
                tokens.push(BOS);
                rest = after;
                continue;
            }
            if let Some(after) = rest.strip_prefix("</s>") {
                tokens.push(EOS);
                rest = after;
                continue;
            }
        }
        let mut chars = rest.chars();
        let first = chars.next().map_or(0, char::len_utf8);
        tokens.extend(
            rest.as_bytes()[..first]
                .iter()
                .map(|&byte| TokenId::from(byte)),
        );
        rest = chars.as_str();
    }
    tokens
}

/// The text a generated token contributes: its byte, or nothing for special tokens (as
/// llama.cpp renders control tokens in generated text).
fn piece(token: TokenId) -> Vec<u8> {
    u8::try_from(token)
        .map(|byte| vec![byte])
        .unwrap_or_default()
}

fn lock(state: &Mutex<SharedState>) -> MutexGuard<'_, SharedState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request as the engine thread sees it.
struct Stream {
    prompt: Vec<TokenId>,
    generated: Vec<TokenId>,
    reply: Vec<TokenId>,
    text: TextAssembler,
    ignore_eos: bool,
    logprobs: Option<u8>,
    /// Gathered while the prompt is prefilled, when asked for.
    prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    outbox: EventOutbox,
}

impl Stream {
    fn new(sender: mpsc::Sender<Event>, request: &ValidGenerate, prompt: Vec<TokenId>) -> Self {
        Self {
            prompt,
            generated: Vec::new(),
            reply: Vec::new(),
            text: TextAssembler::new(request.stop.stop_strings.iter().cloned()),
            ignore_eos: request.stop.ignore_eos,
            logprobs: request.logprobs,
            prompt_logprobs: request.prompt_logprobs.then(|| vec![None]),
            outbox: EventOutbox::new(sender),
        }
    }
}

/// The fake model's state on the engine thread.
struct Worker {
    shared: Arc<Shared>,
    reply: FakeReply,
    step_delay: Duration,
    streams: HashMap<RequestId, Stream>,
    kv: ToyKv,
}

/// How long an idle engine thread sleeps before it looks again (it is woken on submit).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How soon it retries handing events to a client that had no room for them.
const BACKLOG_WAIT: Duration = Duration::from_millis(2);

impl Worker {
    fn run(mut self) {
        while let Some(plan) = self.next_plan() {
            self.step(plan);
        }
        for stream in self.streams.values_mut() {
            stream.outbox.end_with(Err(EngineError::ShuttingDown));
            stream.outbox.deliver();
        }
    }

    /// Waits for work; `None` on shutdown.
    fn next_plan(&mut self) -> Option<StepPlan> {
        let shared = Arc::clone(&self.shared);
        let mut state = lock(&shared.state);
        loop {
            if state.shutting_down {
                state.scheduler.drain();
                return None;
            }
            self.streams.extend(state.incoming.drain(..));
            for id in self.deliver_all() {
                state.scheduler.cancel(id);
            }
            // A dropped `TokenStream` frees its slot at this step, even if nothing was sent.
            for (&id, stream) in &self.streams {
                if stream.outbox.is_closed() {
                    state.scheduler.cancel(id);
                }
            }
            let plan = state.scheduler.plan(Instant::now());
            if !plan.is_empty() {
                return Some(plan);
            }
            let backlog = self
                .streams
                .values()
                .any(|stream| stream.outbox.has_backlog());
            let most = if backlog { BACKLOG_WAIT } else { IDLE_WAIT };
            let wait = state.scheduler.next_deadline().map_or(most, |deadline| {
                deadline.saturating_duration_since(Instant::now()).min(most)
            });
            state = shared
                .wake
                .wait_timeout(state, wait)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    fn step(&mut self, plan: StepPlan) {
        for id in &plan.cancelled {
            // An ended stream (an error queued) stays until its client has the error.
            if self
                .streams
                .get(id)
                .is_some_and(|stream| !stream.outbox.is_ended())
            {
                self.streams.remove(id);
            }
        }
        for ended in &plan.ended {
            if let Some(stream) = self.streams.get_mut(&ended.request_id) {
                stream
                    .outbox
                    .end_with(Ok(finished(ended.reason, ended.usage)));
            }
        }
        if let Err(problem) = self.kv.apply(&plan) {
            self.fail_everything(&problem);
            return;
        }
        if !plan.batch.is_empty() {
            self.decode(&plan);
        }
        let gone = self.deliver_all();
        if !gone.is_empty() {
            let mut state = lock(&self.shared.state);
            for id in gone {
                state.scheduler.cancel(id);
            }
        }
    }

    /// "Decodes" the batch, samples, and commits.
    /// The step's wall time is charged to its requests as their busy time, as a real backend
    /// does.
    fn decode(&mut self, plan: &StepPlan) {
        let began = Instant::now();
        std::thread::sleep(self.step_delay);
        let sampled: Vec<Sampled> = plan
            .logits
            .iter()
            .filter_map(|logits| self.read_logits(logits))
            .collect();
        let ended = {
            let mut state = lock(&self.shared.state);
            state.scheduler.charge_step(began.elapsed());
            state.scheduler.commit(&sampled)
        };
        for ended in &ended {
            let Some(stream) = self.streams.get_mut(&ended.request_id) else {
                continue;
            };
            stream
                .outbox
                .finish(ended.reason, ended.usage, &mut stream.text);
        }
    }

    /// Hands every stream what its channel has room for; drops streams that are done. Returns
    /// the requests whose clients are gone.
    fn deliver_all(&mut self) -> Vec<RequestId> {
        let mut gone = Vec::new();
        self.streams.retain(|&id, stream| {
            if !stream.outbox.deliver() {
                gone.push(id);
                return false;
            }
            !stream.outbox.is_done()
        });
        gone
    }

    /// What the "model" gives at one batch entry: a prompt logprob, or a sampled token.
    fn read_logits(&mut self, logits: &LogitsUse) -> Option<Sampled> {
        let held = self.kv.tokens(logits.seq_id).to_vec();
        let stream = self.streams.get_mut(&logits.request_id)?;
        if let LogitsKind::PromptToken { next } = logits.kind {
            if let Some(prompt_logprobs) = &mut stream.prompt_logprobs {
                let top = stream.logprobs.unwrap_or(0);
                prompt_logprobs.push(Some(token_logprob(next, -1.0, top)));
            }
            return None;
        }
        let expected: Vec<TokenId> = stream
            .prompt
            .iter()
            .chain(&stream.generated)
            .copied()
            .collect();
        if held != expected {
            // No sample: the scheduler cancels the request.
            let problem = format!(
                "sequence {} holds {} tokens that are not its prompt and output",
                logits.seq_id,
                held.len()
            );
            stream.outbox.end_with(Err(EngineError::Internal(problem)));
            return None;
        }
        if let LogitsKind::FirstToken {
            prompt_tokens,
            cached_tokens,
        }
        | LogitsKind::PromptDone {
            prompt_tokens,
            cached_tokens,
        } = logits.kind
        {
            stream.reply = script(&self.reply, &held);
            let prompt_logprobs = stream.prompt_logprobs.take();
            stream.outbox.push(GenerationEvent::Started {
                prompt_tokens,
                cached_tokens,
                prompt_logprobs,
            });
            if matches!(logits.kind, LogitsKind::PromptDone { .. }) {
                return None;
            }
        }
        let token = next_token(&self.reply, &stream.reply, stream.generated.len());
        stream.generated.push(token);
        let (text, stop) = if token == EOS && !stream.ignore_eos {
            (stream.text.flush(), true)
        } else {
            let output = stream.text.push(&piece(token));
            (output.text, output.stopped)
        };
        // An end-of-generation token is counted but not shown, unless it carries held text.
        if !(token == EOS && stop && text.is_empty()) {
            let logprob = stream.logprobs.map(|top| token_logprob(token, -0.25, top));
            stream.outbox.push(GenerationEvent::Token(GeneratedToken {
                id: token,
                text,
                logprob,
            }));
        }
        Some(Sampled {
            request_id: logits.request_id,
            token,
            stop,
        })
    }

    /// The mirror disagrees with the plan: a scheduler bug. Every request fails and the engine
    /// stops (its health turns `Failed`), so a test cannot miss it.
    fn fail_everything(&mut self, problem: &str) {
        let mut state = lock(&self.shared.state);
        state.shutting_down = true;
        state.scheduler.fail_step();
        state.scheduler.drain();
        drop(state);
        for stream in self.streams.values_mut() {
            stream
                .outbox
                .end_with(Err(EngineError::Internal(problem.to_string())));
        }
        self.deliver_all();
    }
}

fn finished(reason: FinishReason, usage: crate::Usage) -> GenerationEvent {
    GenerationEvent::Finished { reason, usage }
}

/// The reply for a prompt.
fn script(reply: &FakeReply, prompt: &[TokenId]) -> Vec<TokenId> {
    let text = match reply {
        FakeReply::ReversePrompt => {
            let bytes: Vec<u8> = prompt.iter().flat_map(|&token| piece(token)).collect();
            String::from_utf8_lossy(&bytes).chars().rev().collect()
        }
        FakeReply::Fixed(text) | FakeReply::Repeat(text) => text.clone(),
    };
    tokenize(&text, false, false)
}

fn next_token(reply: &FakeReply, script: &[TokenId], index: usize) -> TokenId {
    match reply {
        FakeReply::Repeat(_) if !script.is_empty() => script[index % script.len()],
        _ => script.get(index).copied().unwrap_or(EOS),
    }
}

/// A made-up but deterministic logprob, with `top` alternatives (the token itself first).
fn token_logprob(token: TokenId, logprob: f32, top: u8) -> TokenLogprob {
    let entry = |token: TokenId, logprob: f32| {
        let bytes = piece(token);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes, logprob)
    };
    let (text, bytes, logprob) = entry(token, logprob);
    let top = (0..TokenId::from(top))
        .map(|rank| {
            let alternative = if rank == 0 {
                token
            } else {
                (token + rank) % 256
            };
            let (token, bytes, logprob) = entry(alternative, logprob - rank as f32);
            TopLogprob {
                token,
                bytes,
                logprob,
            }
        })
        .collect();
    TokenLogprob {
        token: text,
        bytes,
        logprob,
        top,
    }
}

/// A mirror of the KV cache that checks every plan a backend would apply: copies into empty
/// sequences from long enough sources, truncations inside a sequence, and batch positions that
/// continue each sequence without gaps.
#[derive(Debug, Default)]
pub(crate) struct ToyKv {
    sequences: HashMap<SeqId, Vec<TokenId>>,
    /// The host prompt cache's entries (`KvOp::Save`).
    saved: HashMap<u64, Vec<TokenId>>,
}

impl ToyKv {
    pub(crate) fn tokens(&self, seq: SeqId) -> &[TokenId] {
        self.sequences.get(&seq).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn apply(&mut self, plan: &StepPlan) -> Result<(), String> {
        for op in &plan.kv_ops {
            self.apply_op(*op)?;
        }
        for entry in &plan.batch {
            let held = self.sequences.entry(entry.seq_id).or_default();
            if entry.pos as usize != held.len() {
                return Err(format!(
                    "sequence {} holds {} positions but the batch puts a token at {}",
                    entry.seq_id,
                    held.len(),
                    entry.pos
                ));
            }
            held.push(entry.token);
        }
        Ok(())
    }

    fn apply_op(&mut self, op: KvOp) -> Result<(), String> {
        match op {
            KvOp::Clear { seq } => {
                self.sequences.remove(&seq);
            }
            KvOp::Truncate { seq, from } => {
                let held = self.sequences.entry(seq).or_default();
                if from as usize > held.len() {
                    return Err(format!(
                        "truncating sequence {seq} at {from} past its {} positions",
                        held.len()
                    ));
                }
                held.truncate(from as usize);
            }
            KvOp::Copy {
                src_seq,
                dst_seq,
                len,
            } => {
                if !self.tokens(dst_seq).is_empty() {
                    return Err(format!(
                        "copying into sequence {dst_seq}, which is not empty"
                    ));
                }
                let source = self.tokens(src_seq);
                let prefix = source
                    .get(..len as usize)
                    .ok_or_else(|| {
                        format!(
                            "copying {len} positions of sequence {src_seq}, which holds {}",
                            source.len()
                        )
                    })?
                    .to_vec();
                self.sequences.insert(dst_seq, prefix);
            }
            KvOp::Save { seq, entry } => {
                if self.saved.contains_key(&entry) {
                    return Err(format!("saving entry {entry} twice"));
                }
                self.saved.insert(entry, self.tokens(seq).to_vec());
            }
            KvOp::Restore { entry, seq } => {
                if !self.tokens(seq).is_empty() {
                    return Err(format!("restoring into sequence {seq}, which is not empty"));
                }
                let tokens = self
                    .saved
                    .get(&entry)
                    .ok_or_else(|| format!("restoring entry {entry}, which is not saved"))?
                    .clone();
                self.sequences.insert(seq, tokens);
            }
            KvOp::Forget { entry } => {
                self.saved
                    .remove(&entry)
                    .ok_or_else(|| format!("forgetting entry {entry}, which is not saved"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
