//! The process-wide compute executor: the one OS thread on which every heavy compute step in the
//! process runs (a llama.cpp decode, a candle forward pass), one at a time, in the order
//! submitted: a model's own thread that adopted the role, or a compute thread.
//!
//! Why one thread, not just one step at a time: llama.cpp collapses when two thread pools run on
//! the same cores (measured 115 -> 2-5 tok/s on these 2-core machines). ggml's OpenMP pool
//! belongs to the thread that calls `llama_decode`, and after a step its workers keep spinning
//! for milliseconds, so two models decoding from two threads, even strictly in turn, fight over
//! the cores (measured: 104 tok/s for one engine, 45 tok/s for two in turn from two threads).
//! Submitting every decode from this one thread keeps one pool for the whole process.
//!
//! Each loaded model has its own thread for scheduling, sampling and streaming. The first one
//! to start takes the executor's role itself ([`adopt`]): it decodes in place and runs what
//! other threads submit between its own steps, so the common case, one model, hands nothing
//! to another thread and back per step (two wake-ups, about 0.1 ms here). Any other model
//! hands each batch to [`run_on_executor`] and gets the result back; so does everything when
//! no model holds the role, through a compute thread started on first use. Either way one
//! thread runs all compute. (ggml's barriers between operations are OpenMP barriers, so the
//! pool's wait policy matters: `OMP_WAIT_POLICY=passive` gave 30 tok/s against 82, measured.)
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
//! more. What evens the gaps by default is a longer time slice for the thread that decodes,
//! which keeps its share of the CPU (`moat-engine-llamacpp`'s `slice.rs`, `--compute-slice`),
//! asked for by the setup that every thread taking the executor's role runs first
//! ([`set_executor_setup`]).
//!
//! It knows nothing of requests, sequences or backends.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvError, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::EngineError;

/// The cores this process may really use: `available_parallelism` follows the CPU affinity mask
/// and cgroup quotas, unlike the machine's core count. llama.cpp collapses when its threads
/// outnumber the free cores, so this is the default, never more.
pub fn free_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// How long a model's thread and the compute thread poll for each other's hand-off by default
/// when a core is free for it ([`default_poll`]).
pub const DEFAULT_POLL: Duration = Duration::from_millis(2);

/// The poll for a model whose decode uses `threads` threads: [`DEFAULT_POLL`] when the process
/// has a core beyond those and one more (for token delivery), else none (a polling thread
/// would take a core from the decode).
pub fn default_poll(threads: u32) -> Duration {
    poll_for(threads, free_cores())
}

fn poll_for(threads: u32, cores: u32) -> Duration {
    if cores >= threads.saturating_add(2) {
        DEFAULT_POLL
    } else {
        Duration::ZERO
    }
}

/// A step for the compute thread, and how long that thread then polls for the next one before
/// it sleeps.
struct Job {
    run: Box<dyn FnOnce() + Send>,
    poll: Duration,
}

/// How a step is handed to the compute thread and its result back ([`run_on_executor_with`]).
///
/// Handing a step to a sleeping thread and back costs two wake-ups, about 40-50 µs each on
/// these virtual machines (`cargo run --release -p moat-engine --example handoff`: 83-112 µs a
/// round trip at p50, 3-4 µs when both sides poll). Next to a 10 ms CPU decode that is 1 %;
/// next to the 1-3 ms decode of a small model on a GPU it is 3-10 %, the size of the gap to
/// llama-server there, whose decoding thread is its scheduling thread. A polling thread holds
/// a core, so poll only with a core to spare, never while the decode's own threads need every
/// core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// How long the caller sleeps before it starts polling for the result: the step's expected
    /// time less a margin, so the poll covers the step's end and not all of it.
    pub sleep: Duration,
    /// How long the caller then polls for the result before it sleeps until it comes.
    pub poll: Duration,
    /// How long the compute thread, after this step, polls for the next one before it sleeps.
    pub next: Duration,
}

impl Handoff {
    /// Both sides sleep at once: no core is held, each hand-off costs a wake-up.
    pub const SLEEP: Self = Self {
        sleep: Duration::ZERO,
        poll: Duration::ZERO,
        next: Duration::ZERO,
    };

    /// Polls for up to `budget` past the expected end of a step expected to take `expected`,
    /// starting a margin before it: a quarter of the step, within 0.5 to 2 ms (a sleeping thread
    /// wakes some 50 µs late, and steps vary). The compute thread polls `budget` for the next.
    pub fn polling(budget: Duration, expected: Duration) -> Self {
        if budget.is_zero() {
            return Self::SLEEP;
        }
        let margin = (expected / 4).clamp(Duration::from_micros(500), Duration::from_millis(2));
        let sleep = expected.saturating_sub(margin);
        Self {
            sleep,
            poll: expected - sleep + budget,
            next: budget,
        }
    }
}

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
    if !matches!(*executor_mode(), Mode::Unset) {
        return Err("the compute thread already runs; set its niceness at startup".to_owned());
    }
    COMPUTE_NICE.store(nice, Ordering::Relaxed);
    Ok(())
}

/// What a thread does once when it becomes the compute executor ([`set_executor_setup`]).
pub type ExecutorSetup = Arc<dyn Fn() + Send + Sync>;

static SETUP: Mutex<Option<ExecutorSetup>> = Mutex::new(None);

/// Sets what every thread that takes the compute executor's role runs once, before its first
/// job: a thread that [`adopt`]s it, and each compute thread, the first one and any started
/// when an adopting thread lets go. Pool threads that its jobs start then inherit what it set.
/// The setting that needs it, the decode's time slice, belongs to a backend crate
/// (`moat-engine-llamacpp`'s `slice.rs`) because it takes a system call that this crate, with
/// no `unsafe`, cannot make. A later call replaces the setup for threads that take the role
/// after it; one that holds the role keeps what it ran.
pub fn set_executor_setup(setup: ExecutorSetup) {
    *SETUP.lock().unwrap_or_else(PoisonError::into_inner) = Some(setup);
}

/// Whether a setup is set ([`set_executor_setup`]).
pub fn has_executor_setup() -> bool {
    SETUP
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

/// Runs the setup, if any, on the calling thread, which has just taken the executor's role.
fn run_setup() {
    let setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(setup) = setup {
        // A setup that panics must not cost the process its executor.
        let _ = catch_unwind(AssertUnwindSafe(|| setup()));
    }
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
    run_on_executor_with(Handoff::SLEEP, job)
}

/// [`run_on_executor`], with the caller and the compute thread waiting for each other as
/// `handoff` says.
pub fn run_on_executor_with<R, F>(handoff: Handoff, job: F) -> Result<R, EngineError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if ON_EXECUTOR.with(Cell::get) {
        return Ok(job());
    }
    let (reply, result) = mpsc::sync_channel(1);
    let run = Box::new(move || {
        // The submitter may have given up; then nobody needs the result.
        let _ = reply.send(job());
    });
    submit(Job {
        run,
        poll: handoff.next,
    })?;
    receive(&result, handoff)
        .map_err(|_| EngineError::Internal("a compute step panicked".to_owned()))
}

/// Hands `job` to the executor: the compute thread, started on first use, or the thread that
/// adopted the role ([`adopt`]), which runs it between its own steps.
fn submit(job: Job) -> Result<(), EngineError> {
    loop {
        let sender = {
            let mut mode = executor_mode();
            match &mut *mode {
                Mode::Adopted { queue, wake } => {
                    // Every submitter waits for its own job, so this holds one job per
                    // submitting thread; the bound only keeps the rule that every queue has one.
                    if queue.len() < QUEUE {
                        queue.push_back(job);
                        wake();
                        return Ok(());
                    }
                    None
                }
                Mode::Thread(sender) => Some(sender.clone()),
                Mode::Unset => {
                    let sender = start_thread()?;
                    *mode = Mode::Thread(sender.clone());
                    Some(sender)
                }
            }
        };
        match sender {
            Some(sender) => {
                return sender
                    .send(job)
                    .map_err(|_| EngineError::Internal("the compute thread is gone".to_owned()))
            }
            None => std::thread::sleep(Duration::from_micros(100)),
        }
    }
}

/// The role of the process's compute executor, taken by the calling thread (a model's own
/// thread, which then decodes without handing each step to another thread and back): every
/// compute job that other threads submit from now on waits in a queue until this thread runs
/// it with [`Adopted::run_pending`], and `wake` is called after each one is queued so that the
/// thread does so soon (between its own steps, as the compute thread would have). `None` when
/// the executor already exists (a compute thread, or another thread's adoption): the caller
/// then submits its work like any other.
///
/// When the returned guard drops (the thread ends, or unwinds), the role passes to a compute
/// thread started then, with the jobs still queued.
pub fn adopt(wake: Box<dyn Fn() + Send>) -> Option<Adopted> {
    let mut mode = executor_mode();
    if !matches!(*mode, Mode::Unset) || ON_EXECUTOR.with(Cell::get) {
        return None;
    }
    *mode = Mode::Adopted {
        queue: VecDeque::new(),
        wake,
    };
    ON_EXECUTOR.with(|flag| flag.set(true));
    drop(mode);
    lower_priority(COMPUTE_NICE.load(Ordering::Relaxed));
    run_setup();
    Some(Adopted {
        _not_send: std::marker::PhantomData,
    })
}

/// The calling thread's role as the compute executor ([`adopt`]).
pub struct Adopted {
    /// The role belongs to the thread that adopted it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Adopted {
    /// Runs the jobs other threads queued, in the order they were queued.
    pub fn run_pending(&self) {
        loop {
            let job = match &mut *executor_mode() {
                Mode::Adopted { queue, .. } => queue.pop_front(),
                _ => None,
            };
            let Some(job) = job else {
                return;
            };
            // A panicking job drops its reply sender, which tells its submitter.
            let _ = catch_unwind(AssertUnwindSafe(job.run));
        }
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        ON_EXECUTOR.with(|flag| flag.set(false));
        let mut mode = executor_mode();
        let Mode::Adopted { queue, .. } = std::mem::replace(&mut *mode, Mode::Unset) else {
            return;
        };
        if queue.is_empty() {
            // The next job starts a compute thread, as the first one did.
            return;
        }
        match start_thread() {
            Ok(sender) => {
                for job in queue {
                    // Its queue has room for every submitter's job.
                    let _ = sender.try_send(job);
                }
                *mode = Mode::Thread(sender);
            }
            // Dropping the jobs tells their submitters (their reply senders go).
            Err(error) => eprintln!("moat: {error}"),
        }
    }
}

/// Receives from `channel`: sleeps up to `handoff.sleep`, then polls up to `handoff.poll`,
/// then sleeps until a message comes.
fn receive<T>(channel: &Receiver<T>, handoff: Handoff) -> Result<T, RecvError> {
    if handoff.poll.is_zero() {
        return channel.recv();
    }
    if !handoff.sleep.is_zero() {
        match channel.recv_timeout(handoff.sleep) {
            Ok(message) => return Ok(message),
            Err(RecvTimeoutError::Disconnected) => return Err(RecvError),
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let began = Instant::now();
    loop {
        // Several tries between looks at the clock, which costs more than a try.
        for _ in 0..64 {
            match channel.try_recv() {
                Ok(message) => return Ok(message),
                Err(TryRecvError::Disconnected) => return Err(RecvError),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if began.elapsed() >= handoff.poll {
            return channel.recv();
        }
    }
}

thread_local! {
    static ON_EXECUTOR: Cell<bool> = const { Cell::new(false) };
}

/// Who runs compute jobs.
enum Mode {
    /// Nobody yet: the first job starts a compute thread, unless a thread adopts the role first.
    Unset,
    /// The compute thread, fed through its channel.
    Thread(SyncSender<Job>),
    /// A thread that took the role ([`adopt`]): jobs wait here until it runs them, and `wake`
    /// tells it one came.
    Adopted {
        queue: VecDeque<Job>,
        wake: Box<dyn Fn() + Send>,
    },
}

static EXECUTOR: Mutex<Mode> = Mutex::new(Mode::Unset);

fn executor_mode() -> MutexGuard<'static, Mode> {
    // A job never runs under this lock, so a poisoned one still holds a consistent mode.
    EXECUTOR.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the compute thread and returns its queue.
fn start_thread() -> Result<SyncSender<Job>, EngineError> {
    let (sender, jobs) = mpsc::sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("moat-compute".to_owned())
        .spawn(move || {
            ON_EXECUTOR.with(|flag| flag.set(true));
            lower_priority(COMPUTE_NICE.load(Ordering::Relaxed));
            run_setup();
            let mut poll = Duration::ZERO;
            let next = |poll| {
                let handoff = Handoff {
                    poll,
                    ..Handoff::SLEEP
                };
                receive(&jobs, handoff)
            };
            while let Ok(job) = next(poll) {
                poll = job.poll;
                // A panicking job drops its reply sender, which tells its submitter.
                let _ = catch_unwind(AssertUnwindSafe(job.run));
            }
        })
        .map(|_| sender)
        .map_err(|error| {
            EngineError::Internal(format!("could not start the compute thread: {error}"))
        })
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
    fn a_polling_handoff_returns_the_result_and_the_thread_sleeps_after_its_poll() {
        let poll = Handoff::polling(Duration::from_millis(1), Duration::from_millis(3));
        assert_eq!(poll.sleep, Duration::from_micros(2_250));
        assert_eq!(poll.poll, Duration::from_micros(1_750));
        assert_eq!(poll.next, Duration::from_millis(1));
        for round in 0..20_u32 {
            let result = run_on_executor_with(poll, move || {
                std::thread::sleep(Duration::from_micros(200));
                round * 2
            });
            assert_eq!(result.expect("job ran"), round * 2);
        }
        // Past its poll the compute thread sleeps on its queue, and a new job still wakes it.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(run_on_executor(|| 5).expect("job ran"), 5);
        let failed = run_on_executor_with(poll, || -> u8 { panic!("boom") });
        assert!(matches!(failed, Err(EngineError::Internal(_))));
    }

    #[test]
    fn polling_starts_near_the_steps_end_and_only_with_a_core_to_spare() {
        assert_eq!(
            Handoff::polling(Duration::ZERO, Duration::from_millis(5)),
            Handoff::SLEEP
        );
        let short = Handoff::polling(DEFAULT_POLL, Duration::from_micros(300));
        assert_eq!(short.sleep, Duration::ZERO, "at least 0.5 ms of margin");
        assert_eq!(short.poll, Duration::from_micros(2_300));
        let long = Handoff::polling(DEFAULT_POLL, Duration::from_millis(8));
        assert_eq!(long.sleep, Duration::from_millis(6));
        assert_eq!(long.poll, Duration::from_millis(4));
        let longer = Handoff::polling(DEFAULT_POLL, Duration::from_millis(40));
        assert_eq!(
            longer.sleep,
            Duration::from_millis(38),
            "at most 2 ms of margin"
        );
        assert_eq!(longer.next, DEFAULT_POLL);
        assert_eq!(poll_for(2, 2), Duration::ZERO);
        assert_eq!(
            poll_for(2, 3),
            Duration::ZERO,
            "token delivery needs a core too"
        );
        assert_eq!(poll_for(2, 4), DEFAULT_POLL);
        assert_eq!(poll_for(8, 16), DEFAULT_POLL);
        assert_eq!(poll_for(u32::MAX, 16), Duration::ZERO);
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
