//! `LlamaEngine`: the handle the server holds. It validates and tokenizes requests on the
//! caller's thread (so `PromptTooLong` and `Overloaded` come back at once), queues them for the
//! worker thread, and hands back a `TokenStream`. Loading happens on the worker, so `load`
//! returns at once and `health()` says `Loading` until the model is in.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use moat_engine::{
    Engine, EngineError, EngineInfo, EngineStats, Health, Prompt, Scheduler, TokenId, TokenStream,
    ValidGenerate,
};
use tokio::sync::mpsc as tokio_mpsc;

use crate::shared::Shared;
use crate::stream::Job;
use crate::vocab::{placeholder_info, Vocab};
use crate::worker::{self, scheduler_config, Command};
use crate::LoadOptions;

/// Events a stream's channel holds; beyond it they wait in the worker's backlog for that stream
/// (the worker never blocks on a client).
const STREAM_CAPACITY: usize = 64;

/// What an overloaded server suggests to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A model served by llama.cpp: one worker thread owns the context and runs continuous batching
/// over `parallel` sequences. Dropping the engine stops the worker (requests in flight get
/// `ShuttingDown`) and waits for it to exit.
pub struct LlamaEngine {
    shared: Arc<Shared>,
    commands: SyncSender<Command>,
    worker: Option<JoinHandle<()>>,
    placeholder_info: EngineInfo,
    /// Requests in flight at most: every sequence busy and the admission queue full.
    max_in_flight: usize,
}

impl LlamaEngine {
    /// Starts loading the GGUF at `path` on a new worker thread and returns at once. Fails only
    /// for settings that can never work or a missing file; a load that fails later shows as
    /// `Health::Failed` (see [`LlamaEngine::wait_until_loaded`] for the message).
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self, EngineError> {
        check_options(&options)?;
        if !path.is_file() {
            return Err(EngineError::ModelLoad(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let shared = Arc::new(Shared::new());
        let max_in_flight = usize::try_from(options.parallel.saturating_add(options.max_queue))
            .unwrap_or(usize::MAX);
        // Room for every request in flight plus a shutdown and the one wake-up for compute jobs
        // (`Command::Compute`): `generate` counts them itself, so a full channel only happens
        // if the worker is gone.
        let (commands, receiver) = mpsc::sync_channel(max_in_flight.saturating_add(8));
        let worker = spawn_worker(
            path.to_path_buf(),
            options.clone(),
            Arc::clone(&shared),
            (commands.clone(), receiver),
        )?;
        Ok(Self {
            shared,
            commands,
            worker: Some(worker),
            placeholder_info: placeholder_info(&options),
            max_in_flight,
        })
    }

    /// Blocks until the model is loaded; the load error if it failed.
    pub fn wait_until_loaded(&self) -> Result<(), EngineError> {
        self.shared.wait_until_loaded()
    }

    fn vocab(&self) -> Result<Vocab<'_>, EngineError> {
        Ok(Vocab::new(&self.shared.loaded()?.model))
    }

    fn prompt_tokens(
        &self,
        vocab: &Vocab<'_>,
        prompt: &Prompt,
    ) -> Result<Vec<TokenId>, EngineError> {
        let tokens = match prompt {
            Prompt::Text(text) => vocab.tokenize(text, true, true),
            Prompt::Tokens(tokens) => {
                tokens.iter().try_for_each(|&token| vocab.check(token))?;
                tokens.clone()
            }
        };
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the prompt is empty".to_owned(),
            ));
        }
        let n_ctx = self.info().n_ctx;
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        // At least one position must stay free for the first generated token.
        if prompt_tokens >= n_ctx {
            return Err(EngineError::PromptTooLong {
                prompt_tokens,
                n_ctx,
            });
        }
        Ok(tokens)
    }
}

impl Engine for LlamaEngine {
    fn info(&self) -> &EngineInfo {
        self.shared.loaded_info().unwrap_or(&self.placeholder_info)
    }

    fn health(&self) -> Health {
        self.shared.health()
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>, EngineError> {
        let loaded = self.shared.loaded()?;
        // A text longer than the context's positions times the longest token cannot fit, so
        // it is refused without tokenizing: llama.cpp's search for special tokens takes time
        // that grows with the square of their count, and a client could send a body full of
        // them (the server checks the count against the context only after tokenizing).
        let n_ctx = usize::try_from(self.info().n_ctx).unwrap_or(usize::MAX);
        let most_bytes = n_ctx.saturating_mul(loaded.max_token_bytes);
        if parse_special && text.len() > most_bytes {
            let at_least = text.len().div_ceil(loaded.max_token_bytes);
            return Err(EngineError::PromptTooLong {
                prompt_tokens: u32::try_from(at_least).unwrap_or(u32::MAX),
                n_ctx: self.info().n_ctx,
            });
        }
        Ok(Vocab::new(&loaded.model).tokenize(text, add_special, parse_special))
    }

    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, EngineError> {
        let vocab = self.vocab()?;
        vocab.check(token)?;
        Ok(vocab.piece(token, true))
    }

    /// The counts the worker thread published after its last step.
    fn stats(&self) -> Option<EngineStats> {
        self.shared.stats()
    }

    fn generate(&self, request: ValidGenerate) -> Result<TokenStream, EngineError> {
        let vocab = self.vocab()?;
        let prompt = self.prompt_tokens(&vocab, &request.prompt)?;
        for &(token, _) in &request.sampling.logit_bias {
            vocab.check(token)?;
        }
        if !self.shared.try_admit(self.max_in_flight) {
            return Err(EngineError::Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        // After admission, so a full server spends nothing on a grammar it refuses, and at
        // most `max_in_flight` grammars compile at once.
        let grammar = request
            .grammar
            .as_ref()
            .map(|grammar| {
                let model = &self.shared.loaded()?.model;
                crate::grammar::compile(model, grammar, request.thinking.as_ref())
            })
            .transpose()
            .inspect_err(|_| self.shared.release(1))?
            .flatten();
        let (sender, receiver) = tokio_mpsc::channel(STREAM_CAPACITY);
        let job = Job {
            prompt,
            request,
            grammar,
            sender,
        };
        match self.commands.try_send(Command::Generate(Box::new(job))) {
            Ok(()) => Ok(TokenStream::new(receiver)),
            Err(TrySendError::Full(_)) => {
                self.shared.release(1);
                Err(EngineError::Overloaded {
                    retry_after: RETRY_AFTER,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.release(1);
                Err(EngineError::ShuttingDown)
            }
        }
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        // The worker may be gone already (a failed load); then there is nobody to tell.
        let _ = self.commands.send(Command::Shutdown);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Settings that can never work fail `load` at once rather than on the worker.
fn check_options(options: &LoadOptions) -> Result<(), EngineError> {
    let problem = if options.parallel > 256 {
        Some(format!(
            "parallel is {}; llama.cpp serves at most 256 sequences",
            options.parallel
        ))
    } else if options.n_threads == 0 {
        Some("n_threads must be at least 1".to_owned())
    } else {
        Scheduler::new(scheduler_config(
            options,
            options.n_ctx_per_seq,
            None,
            false,
        ))
        .err()
        .map(|error| error.to_string())
    };
    match problem {
        Some(message) => Err(EngineError::ModelLoad(message)),
        None => Ok(()),
    }
}

fn spawn_worker(
    path: PathBuf,
    options: LoadOptions,
    shared: Arc<Shared>,
    (wake, commands): (mpsc::SyncSender<Command>, mpsc::Receiver<Command>),
) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name("moat-llamacpp".to_owned())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker::run(&path, &options, &shared, wake, &commands)
            }));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(panic) => Some(format!(
                    "the engine thread panicked: {}",
                    panic_message(&panic)
                )),
            };
            if let Some(message) = failure {
                shared.set_failed(message.clone());
                answer_remaining(&commands, &shared, &message);
            }
        })
        .map_err(|error| {
            EngineError::Internal(format!("could not start the engine thread: {error}"))
        })
}

/// After a failure, requests still in the channel get the error rather than a silent end.
fn answer_remaining(commands: &mpsc::Receiver<Command>, shared: &Shared, message: &str) {
    while let Ok(command) = commands.try_recv() {
        if let Command::Generate(job) = command {
            shared.release(1);
            let _ = job
                .sender
                .try_send(Err(EngineError::Internal(message.to_owned())));
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
