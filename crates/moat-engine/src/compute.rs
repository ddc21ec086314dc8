//! The process-wide compute executor: the one OS thread on which every heavy compute step in the
//! process runs (a llama.cpp decode, a candle forward pass), one at a time, in the order
//! submitted.
//!
//! Why one thread, not just one step at a time: llama.cpp collapses when two thread pools run on
//! the same cores (measured 115 -> 2-5 tok/s on these 2-core machines). ggml's OpenMP pool
//! belongs to the thread that calls `llama_decode`, and after a step its workers keep spinning
//! for milliseconds, so two models decoding from two threads, even strictly in turn, fight over
//! the cores (measured: 104 tok/s for one engine, 45 tok/s for two in turn from two threads).
//! Submitting every decode from this one thread keeps one pool for the whole process.
//!
//! Each loaded model still has its own thread for scheduling, sampling and streaming; it hands
//! each batch to [`run_on_executor`] and gets the result back.
//!
//! Rules for code added later (an embedding model, a candle embedder, a reranker): run every
//! forward pass (`decode`, `encode`, a candle `forward`) through [`run_on_executor`], and size
//! its threads with [`free_cores`].
//!
//! It knows nothing of requests, sequences or backends.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, SyncSender};
use std::sync::OnceLock;

use crate::EngineError;

/// The cores this process may really use: `available_parallelism` follows the CPU affinity mask
/// and cgroup quotas, unlike the machine's core count. llama.cpp collapses when its threads
/// outnumber the free cores, so this is the default, never more.
pub fn free_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for the compute thread. Every submitter waits for its own job, so this holds
/// at most one job per submitting thread; the bound only keeps the rule "every queue is
/// bounded" (a submitter beyond it waits to enqueue).
const QUEUE: usize = 64;

/// Runs `job` on the compute thread after the jobs submitted before it and returns its result.
/// A call made on the compute thread itself runs at once. Fails if the job panicked (the
/// compute thread survives) or the thread could not be started.
pub fn run_on_executor<R, F>(job: F) -> Result<R, EngineError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if ON_EXECUTOR.with(Cell::get) {
        return Ok(job());
    }
    let (reply, result) = mpsc::sync_channel(1);
    let boxed: Job = Box::new(move || {
        // The submitter may have given up; then nobody needs the result.
        let _ = reply.send(job());
    });
    executor()?
        .send(boxed)
        .map_err(|_| EngineError::Internal("the compute thread is gone".to_owned()))?;
    result
        .recv()
        .map_err(|_| EngineError::Internal("a compute step panicked".to_owned()))
}

thread_local! {
    static ON_EXECUTOR: Cell<bool> = const { Cell::new(false) };
}

fn executor() -> Result<&'static SyncSender<Job>, EngineError> {
    static EXECUTOR: OnceLock<Result<SyncSender<Job>, String>> = OnceLock::new();
    EXECUTOR
        .get_or_init(|| {
            let (sender, jobs) = mpsc::sync_channel::<Job>(QUEUE);
            std::thread::Builder::new()
                .name("moat-compute".to_owned())
                .spawn(move || {
                    ON_EXECUTOR.with(|flag| flag.set(true));
                    for job in jobs {
                        // A panicking job drops its reply sender, which tells its submitter.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .map(|_| sender)
                .map_err(|error| format!("could not start the compute thread: {error}"))
        })
        .as_ref()
        .map_err(|message| EngineError::Internal(message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn every_job_runs_on_the_one_compute_thread_in_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..4)
            .map(|submitter| {
                let order = Arc::clone(&order);
                std::thread::spawn(move || {
                    for step in 0..25 {
                        let order = Arc::clone(&order);
                        let name = run_on_executor(move || {
                            order.lock().expect("order").push((submitter, step));
                            std::thread::current().name().map(str::to_owned)
                        })
                        .expect("job ran");
                        assert_eq!(name.as_deref(), Some("moat-compute"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("submitter");
        }
        let order = order.lock().expect("order");
        assert_eq!(order.len(), 100);
        // Each submitter's steps ran in the order it submitted them.
        for submitter in 0..4 {
            let steps: Vec<_> = order
                .iter()
                .filter(|(s, _)| *s == submitter)
                .map(|(_, step)| *step)
                .collect();
            assert_eq!(steps, (0..25).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_nested_call_runs_at_once() {
        let result = run_on_executor(|| run_on_executor(|| 7).expect("inner"));
        assert_eq!(result.expect("outer"), 7);
    }

    #[test]
    fn a_panicking_job_fails_alone() {
        let failed = run_on_executor(|| -> u8 { panic!("boom") });
        assert!(matches!(failed, Err(EngineError::Internal(_))));
        assert_eq!(run_on_executor(|| 1).expect("the thread survives"), 1);
    }
}
