//! The time slice the kernel gives the thread that decodes, and the pool threads it starts.
//!
//! At one stream a decode keeps every core busy, and whatever wakes up meanwhile waits for a
//! core: the thread that writes a finished token, and a client on the same machine that reads
//! it. Linux (6.12 and later) schedules normal threads by their virtual deadline, a thread's
//! position plus the slice it asked for (by default 0.7 ms × (1 + log2 of the cores); 1.4 ms on
//! two). A decode thread that asks for a longer slice gets a later deadline, so a thread that
//! wakes up preempts it instead of waiting for its turn, and its share of the CPU stays what its
//! niceness says. Unlike a higher niceness (`--compute-nice`) it does not starve the decode
//! beside other busy processes (docs/PERFORMANCE.md, "A longer time slice for the decode").
//!
//! This is the one place in the crate, and the workspace, that calls the OS itself, through
//! `sched_setattr(2)`, which neither the standard library nor rustix wraps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest slice Linux grants a normal thread (it clamps what it is asked for to 0.1-100 ms).
pub const MAX_COMPUTE_SLICE: Duration = Duration::from_millis(100);

/// 30 ms: at one stream on 2 cores it brought the gaps between tokens level with llama-server's
/// at p95 (the kernel's 1.4 ms: 12 % behind; 10 ms: 3 %), without the loss beside other busy
/// processes that a higher niceness costs (docs/PERFORMANCE.md, "A longer time slice for the
/// decode").
pub const DEFAULT_COMPUTE_SLICE: Duration = Duration::from_millis(30);

/// The slice the compute executor's thread asks for, in nanoseconds ([`set_compute_slice`]).
static COMPUTE_SLICE: AtomicU64 = AtomicU64::new(DEFAULT_COMPUTE_SLICE.as_nanos() as u64);

/// Sets the time slice that the thread running the process's compute (moat-engine's executor:
/// the first model's own thread, or a compute thread) asks the kernel for when it takes that
/// role, before its first job, so that ggml's pool threads, which its first decode starts,
/// inherit it. Zero keeps the kernel's default; more than [`MAX_COMPUTE_SLICE`] is clamped.
/// Call it at startup: a thread that already holds the role keeps its slice. Without a call,
/// the process's first llama.cpp model or embedder ([`crate::backend`]) sets
/// [`DEFAULT_COMPUTE_SLICE`] up, unless the process has set another executor setup.
pub fn set_compute_slice(slice: Duration) {
    let nanos = u64::try_from(slice.min(MAX_COMPUTE_SLICE).as_nanos()).unwrap_or(u64::MAX);
    COMPUTE_SLICE.store(nanos, Ordering::Relaxed);
    install();
}

/// The slice set for the compute executor's thread ([`set_compute_slice`]).
pub fn compute_slice() -> Duration {
    Duration::from_nanos(COMPUTE_SLICE.load(Ordering::Relaxed))
}

/// Makes every thread that takes the compute executor's role ask for [`compute_slice`].
fn install() {
    moat_engine::compute::set_executor_setup(Arc::new(|| {
        if let Err(error) = request_slice(compute_slice()) {
            eprintln!(
                "moat: the kernel refused the compute thread's time slice ({error}); it keeps the default"
            );
        }
    }));
}

/// Sets [`DEFAULT_COMPUTE_SLICE`] (or what [`set_compute_slice`] chose) up for the compute
/// executor, unless the process has set an executor setup of its own.
pub(crate) fn install_default() {
    if !moat_engine::compute::has_executor_setup() {
        install();
    }
}

/// What [`request_slice`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SliceOutcome {
    /// The calling thread now has this slice, and the threads it starts inherit it.
    Set(Duration),
    /// Nothing to do: asked for the kernel's default (zero), or the thread runs under a
    /// real-time or deadline policy, whose slices this does not touch.
    Unchanged,
    /// The kernel took the call but keeps no custom slice (Linux before 6.12), or the platform
    /// is not Linux.
    Unsupported,
}

/// Asks the kernel for `slice` for the calling thread, keeping its policy and niceness (which
/// `sched_setattr` would otherwise reset). Zero asks for nothing. An error only when the kernel
/// refused the call (a seccomp filter, say); the thread then runs as before.
pub fn request_slice(slice: Duration) -> std::io::Result<SliceOutcome> {
    if slice.is_zero() {
        return Ok(SliceOutcome::Unchanged);
    }
    os::request_slice(slice.min(MAX_COMPUTE_SLICE))
}

#[cfg(target_os = "linux")]
mod os {
    use super::SliceOutcome;
    use std::io;
    use std::time::Duration;

    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    /// The one flag that `sched_getattr` reports and `sched_setattr` must be given back.
    const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

    /// The kernel's `struct sched_attr` (include/uapi/linux/sched/types.h), its first version
    /// with the utilization clamps: 56 bytes.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
        sched_util_min: u32,
        sched_util_max: u32,
    }

    const ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

    #[allow(unsafe_code)]
    fn get() -> io::Result<SchedAttr> {
        let mut attr = SchedAttr::default();
        // SAFETY: `attr` is a live, writable `struct sched_attr` of `ATTR_SIZE` bytes, laid out
        // as the kernel's (`repr(C)`, every field of the kernel's width), which is all the
        // kernel writes to; pid 0 is the calling thread; flags must be 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                ATTR_SIZE,
                0,
            )
        };
        if rc == 0 {
            Ok(attr)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[allow(unsafe_code)]
    fn set(attr: &SchedAttr) -> io::Result<()> {
        // SAFETY: `attr` is a live `struct sched_attr` whose `size` field says how many bytes
        // of it the kernel may read; it is only read; pid 0 is the calling thread.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn request_slice(slice: Duration) -> io::Result<SliceOutcome> {
        let mut attr = get()?;
        if attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH {
            return Ok(SliceOutcome::Unchanged);
        }
        let wanted = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        attr.size = ATTR_SIZE;
        attr.sched_flags &= SCHED_FLAG_RESET_ON_FORK;
        attr.sched_runtime = wanted;
        set(&attr)?;
        // Kernels before 6.12 accept the call and drop the runtime of a normal thread; they
        // report 0 for it, newer ones the slice in force (after clamping).
        let now = get()?.sched_runtime;
        Ok(if now == 0 {
            SliceOutcome::Unsupported
        } else {
            SliceOutcome::Set(Duration::from_nanos(now))
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::SliceOutcome;
    use std::time::Duration;

    pub(super) fn request_slice(_slice: Duration) -> std::io::Result<SliceOutcome> {
        Ok(SliceOutcome::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of the calling thread's /proc/thread-self/sched (kernels with scheduler debugging).
    #[cfg(target_os = "linux")]
    fn shown_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|line| line.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// The calling thread's niceness, field 19 of /proc/thread-self/stat.
    #[cfg(target_os = "linux")]
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The name, field 2, is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn the_executors_slice_is_clamped_to_what_the_kernel_grants() {
        // The only test here that sets it: the setting is the process's.
        set_compute_slice(Duration::from_millis(250));
        assert_eq!(compute_slice(), MAX_COMPUTE_SLICE);
        assert!(moat_engine::compute::has_executor_setup());
        set_compute_slice(DEFAULT_COMPUTE_SLICE);
        assert_eq!(compute_slice(), DEFAULT_COMPUTE_SLICE);
    }

    #[test]
    fn zero_asks_for_nothing() {
        assert_eq!(
            request_slice(Duration::ZERO).unwrap(),
            SliceOutcome::Unchanged
        );
    }

    /// On a kernel with custom slices (6.12 and later) the thread gets its slice and keeps its
    /// niceness, and the threads it starts inherit the slice, as ggml's pool threads must.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_gets_its_slice_keeps_its_niceness_and_passes_the_slice_on() {
        std::thread::spawn(|| {
            let link = std::fs::read_link("/proc/thread-self").unwrap();
            let me = link.file_name().unwrap().to_string_lossy().into_owned();
            let renice = std::process::Command::new("renice")
                .args(["-n", "3", "-p", &me])
                .output()
                .unwrap();
            assert!(renice.status.success(), "renice: {renice:?}");
            assert_eq!(niceness(), 3);
            match request_slice(Duration::from_millis(7)).unwrap() {
                SliceOutcome::Set(got) => {
                    assert_eq!(got, Duration::from_millis(7));
                    assert_eq!(niceness(), 3, "sched_setattr reset the niceness");
                    if let Some(shown) = shown_slice() {
                        assert_eq!(shown, 7_000_000);
                    }
                    let child = std::thread::spawn(|| (shown_slice(), niceness()));
                    let (child_slice, child_nice) = child.join().unwrap();
                    assert_eq!(child_nice, 3);
                    if let Some(child_slice) = child_slice {
                        assert_eq!(
                            child_slice, 7_000_000,
                            "a started thread inherits the slice"
                        );
                    }
                }
                SliceOutcome::Unsupported => assert_eq!(niceness(), 3),
                SliceOutcome::Unchanged => panic!("a normal thread was left as it was"),
            }
        })
        .join()
        .unwrap();
    }

    /// More than 100 ms is clamped to what the kernel grants.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_slice_past_the_kernels_limit_is_clamped() {
        std::thread::spawn(|| {
            if let SliceOutcome::Set(got) = request_slice(Duration::from_secs(5)).unwrap() {
                assert_eq!(got, MAX_COMPUTE_SLICE);
            }
        })
        .join()
        .unwrap();
    }
}
