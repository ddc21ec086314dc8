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
//! The thread can run at a lower priority than the rest of the process ([`set_compute_nice`];
//! [`DEFAULT_COMPUTE_NICE`] is 0, the process's own), and so do the pool threads it starts,
//! which inherit it. A decode keeps every core busy, so at the same priority the thread that
//! writes a finished token to its client waits for a core until the scheduler preempts a
//! decode thread, a few milliseconds later, and tokens arrive in uneven pairs (measured at one
//! stream: gaps from 5 to 12.4 ms around a median of 9, against 8.8 to 10.5 ms with nice 19).
//! A niceness above 0 evens them out, but against other busy processes on the machine it
//! starves the decode far beyond its CPU weight: ggml's threads meet at a barrier after every
//! operation, so each waits for the one the scheduler put behind a neighbour (measured on 2
//! cores beside two busy processes: 1.9 tok/s at nice 5, 11.8-18.3 at nice 0, llama-server
//! 14.6-28.8; docs/PERFORMANCE.md). So the default is 0, and a dedicated machine may choose
//! more.
//!
//! It knows nothing of requests, sequences or backends.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};
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

/// The compute thread's default niceness (0 to 19; higher yields more readily): 0, since a
/// higher one starves the decode beside other busy processes (see the module documentation).
pub const DEFAULT_COMPUTE_NICE: i32 = 0;

/// The niceness the compute thread takes when it starts.
static COMPUTE_NICE: AtomicI32 = AtomicI32::new(DEFAULT_COMPUTE_NICE);

/// Sets the compute thread's niceness, 0 (the process's own priority) to 19. Takes effect only
/// before the first [`run_on_executor`] (the thread starts then), so call it at startup;
/// returns an error for a value out of range or when the thread already runs.
pub fn set_compute_nice(nice: i32) -> Result<(), String> {
    if !(0..=19).contains(&nice) {
        return Err(format!("compute niceness {nice} is not within 0 to 19"));
    }
    if EXECUTOR.get().is_some() {
        return Err("the compute thread already runs; set its niceness at startup".to_owned());
    }
    COMPUTE_NICE.store(nice, Ordering::Relaxed);
    Ok(())
}

/// Lowers the calling thread's priority to `nice`, never raises it (a process started with a
/// higher niceness keeps it). Only on Linux, where the niceness is a thread's own (and
/// inherited by the threads it starts); a failure leaves it as it was, which only costs
/// latency, so it is reported and ignored.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(nice);
        if current >= nice {
            return;
        }
        if let Err(error) = rustix::process::setpriority_process(Some(thread), nice) {
            eprintln!("moat: could not lower the compute thread's priority to {nice}: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

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

static EXECUTOR: OnceLock<Result<SyncSender<Job>, String>> = OnceLock::new();

fn executor() -> Result<&'static SyncSender<Job>, EngineError> {
    EXECUTOR
        .get_or_init(|| {
            let (sender, jobs) = mpsc::sync_channel::<Job>(QUEUE);
            std::thread::Builder::new()
                .name("moat-compute".to_owned())
                .spawn(move || {
                    ON_EXECUTOR.with(|flag| flag.set(true));
                    lower_priority(COMPUTE_NICE.load(Ordering::Relaxed));
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_compute_thread_runs_at_the_lower_priority_and_its_threads_inherit_it() {
        let niceness =
            || rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice");
        // The process may itself run niced; the compute thread never goes above it.
        let process = niceness();
        let expected = process.max(DEFAULT_COMPUTE_NICE);
        let (own, child) = run_on_executor(move || {
            let child = std::thread::spawn(niceness).join().expect("child");
            (niceness(), child)
        })
        .expect("job ran");
        assert_eq!(own, expected);
        assert_eq!(child, expected, "a pool thread it starts inherits it");
        // This thread, like the rest of the process, keeps its own.
        assert_eq!(niceness(), process);
        // Too late, and out of range.
        assert!(set_compute_nice(3).unwrap_err().contains("already runs"));
        assert!(set_compute_nice(20).is_err());
        assert!(set_compute_nice(-1).is_err());
    }
}
