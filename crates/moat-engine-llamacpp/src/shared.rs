//! What the engine handle and its worker thread share: the load state (with a condition variable
//! to wait on), the loaded model for tokenizing on callers' threads, and the admission-queue
//! count, and the scheduler's counts as of the worker's last step. Nothing here blocks for long:
//! the worker holds each mutex only to change state or copy its counts in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use llama_cpp_2::model::LlamaModel;
use moat_engine::{EngineError, EngineInfo, EngineStats, Health, SchedulerStats};

/// The model once loaded: the vocabulary is read from callers' threads, compute stays on the
/// worker.
pub(crate) struct Loaded {
    pub(crate) model: Arc<LlamaModel>,
    pub(crate) info: EngineInfo,
    /// The most bytes of text one token stands for (special tokens as their text): no text
    /// longer than this many bytes per context position can fit the context.
    pub(crate) max_token_bytes: usize,
}

#[derive(Clone, Debug)]
enum LoadState {
    Loading,
    Ready,
    Failed(String),
}

pub(crate) struct Shared {
    state: Mutex<LoadState>,
    state_changed: Condvar,
    loaded: OnceLock<Loaded>,
    /// Requests accepted by `generate` that the scheduler has not let go of (queued or running).
    in_flight: AtomicUsize,
    /// What the worker published after its last step (`None` until it first does).
    stats: Mutex<Option<EngineStats>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(LoadState::Loading),
            state_changed: Condvar::new(),
            loaded: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            stats: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LoadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_ready(&self, loaded: Loaded) {
        // A second call cannot happen (one worker loads once); keep the first if it did.
        let _ = self.loaded.set(loaded);
        *self.lock() = LoadState::Ready;
        self.state_changed.notify_all();
    }

    pub(crate) fn set_failed(&self, message: String) {
        *self.lock() = LoadState::Failed(message);
        self.state_changed.notify_all();
    }

    pub(crate) fn health(&self) -> Health {
        match *self.lock() {
            LoadState::Loading => Health::Loading,
            LoadState::Ready => Health::Ready,
            LoadState::Failed(_) => Health::Failed,
        }
    }

    /// Blocks until the model is loaded or failed to load.
    pub(crate) fn wait_until_loaded(&self) -> Result<(), EngineError> {
        let mut state = self.lock();
        while matches!(*state, LoadState::Loading) {
            state = self
                .state_changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Self::usable(&state)
    }

    /// The loaded model, or why there is none.
    pub(crate) fn loaded(&self) -> Result<&Loaded, EngineError> {
        Self::usable(&self.lock())?;
        self.loaded
            .get()
            .ok_or_else(|| EngineError::Internal("the model is ready but not stored".to_owned()))
    }

    pub(crate) fn loaded_info(&self) -> Option<&EngineInfo> {
        self.loaded.get().map(|loaded| &loaded.info)
    }

    fn usable(state: &LoadState) -> Result<(), EngineError> {
        match state {
            LoadState::Loading => Err(EngineError::Loading),
            LoadState::Ready => Ok(()),
            LoadState::Failed(message) => Err(EngineError::ModelLoad(message.clone())),
        }
    }

    /// Takes a place for one more request, or says the engine is full: `limit` is the
    /// sequences plus the admission queue, the scheduler's own bound, so `generate` can answer
    /// `Overloaded` at once instead of after a trip to the worker.
    pub(crate) fn try_admit(&self, limit: usize) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// The worker's copy of its scheduler's counts, made after each step.
    pub(crate) fn publish_stats(&self, stats: SchedulerStats) {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats.into());
    }

    /// The counts as of the worker's last step; never waits for a step.
    pub(crate) fn stats(&self) -> Option<EngineStats> {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The scheduler let go of `n` requests (finished, cancelled, failed or refused).
    pub(crate) fn release(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}
