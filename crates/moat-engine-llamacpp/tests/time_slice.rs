//! The compute executor's time slice (`set_compute_slice`, slice.rs) with a real model: the
//! first engine takes the executor's role and asks the kernel for its slice before its first
//! decode, so that ggml's pool threads, which that decode starts, inherit it; when that engine
//! goes, the compute thread that takes the role over for a second engine asks for it too. A
//! test binary of its own, because the role and the setting are the process's: an engine
//! loaded by another test could take the role first.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{generate, request, smollm2, CHAT_PROMPT};
use moat_engine_llamacpp::{request_slice, set_compute_slice, SliceOutcome};

/// The slice the kernel shows for each of this process's threads named `name`, where it shows
/// one (/proc/PID/task/TID/sched, on kernels with scheduler debugging).
fn slices_of(name: &str) -> Vec<u64> {
    let mut slices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let sched = std::fs::read_to_string(path.join("sched")).unwrap_or_default();
        let shown = sched
            .lines()
            .find(|line| line.starts_with("se.slice"))
            .and_then(|line| line.split(':').nth(1))
            .and_then(|value| value.trim().parse::<u64>().ok());
        slices.extend(shown);
    }
    slices
}

#[tokio::test]
async fn the_threads_that_decode_run_with_the_slice_asked_for() {
    // Whether this kernel keeps custom slices (Linux 6.12 and later), asked on a scratch thread.
    let supported = std::thread::spawn(|| request_slice(Duration::from_millis(1)).unwrap())
        .join()
        .unwrap();
    set_compute_slice(Duration::from_millis(7));
    let Some(first) = smollm2(|options| options.n_threads = 2) else {
        return;
    };
    let output = generate(&first, request(CHAT_PROMPT, 8)).await;
    assert_eq!(output.usage.completion_tokens, 8);
    // Only the first engine's thread and the pool it started exist yet under this name.
    let decoding = slices_of("moat-llamacpp");

    // A second engine hands its steps to the first one's thread; when that one goes, a compute
    // thread takes the role and runs them, with the same slice.
    let second = smollm2(|options| options.n_threads = 2).unwrap();
    drop(first);
    let output = generate(&second, request(CHAT_PROMPT, 8)).await;
    assert_eq!(output.usage.completion_tokens, 8);
    let taken_over = slices_of("moat-compute");

    if !matches!(supported, SliceOutcome::Set(_)) || !cfg!(target_os = "linux") {
        return;
    }
    if std::path::Path::new("/proc/thread-self/sched").exists() {
        for (who, slices) in [("moat-llamacpp", decoding), ("moat-compute", taken_over)] {
            // The thread that decodes, and ggml's one pool thread for 2 threads.
            assert!(slices.len() >= 2, "threads named {who}: {slices:?}");
            assert!(
                slices.iter().all(|&slice| slice == 7_000_000),
                "slices of {who}: {slices:?}"
            );
        }
    }
}
