//! A thread that adopts the compute executor's role (`moat_engine::compute::adopt`): its own
//! work runs in place, other threads' jobs wait until it runs them, and when it lets go a
//! compute thread takes over the jobs still queued. Each thread that takes the role runs the
//! executor's setup once, before its first job. Its own test binary, since the executor
//! is process-wide and the library's unit tests start the compute thread.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_engine::compute::{adopt, has_executor_setup, run_on_executor, set_executor_setup};

#[test]
fn an_adopting_thread_runs_every_job_and_hands_the_rest_on_when_it_lets_go() {
    // The setup records the threads it ran on.
    let set_up = Arc::new(Mutex::new(Vec::new()));
    assert!(!has_executor_setup());
    set_executor_setup({
        let set_up = Arc::clone(&set_up);
        Arc::new(move || set_up.lock().unwrap().push(std::thread::current().id()))
    });
    assert!(has_executor_setup());
    let woken = Arc::new(AtomicUsize::new(0));
    let (wakes, woke) = mpsc::channel::<()>();
    let (results, collected) = mpsc::channel();
    let (ready, adopted_now) = mpsc::channel();
    let adopter = {
        let woken = Arc::clone(&woken);
        let results = results.clone();
        std::thread::spawn(move || {
            let wake = {
                let woken = Arc::clone(&woken);
                Box::new(move || {
                    woken.fetch_add(1, Ordering::SeqCst);
                    let _ = wakes.send(());
                })
            };
            let adopted = adopt(wake).expect("nobody had the role");
            // Its own work runs here, at once, and nobody else may take the role.
            let me = std::thread::current().id();
            assert_eq!(
                run_on_executor(move || std::thread::current().id()).unwrap(),
                me
            );
            assert!(adopt(Box::new(|| {})).is_none());
            ready.send(()).unwrap();
            // Other threads' jobs run here when woken, on this thread.
            for _ in 0..6 {
                woke.recv_timeout(Duration::from_secs(10))
                    .expect("woken for a job");
                adopted.run_pending();
            }
            results.send(me).unwrap();
            // Two more jobs come in; this thread lets go without running them.
            for _ in 0..2 {
                woke.recv_timeout(Duration::from_secs(10))
                    .expect("woken for a job");
            }
            drop(adopted);
        })
    };
    let submit = |n: usize| {
        let results = results.clone();
        std::thread::spawn(move || {
            let ran_on = run_on_executor(move || (n, std::thread::current().id())).unwrap();
            results.send(ran_on.1).unwrap();
            ran_on.0
        })
    };
    adopted_now
        .recv_timeout(Duration::from_secs(10))
        .expect("the role was adopted");
    let first: Vec<_> = (0..6).map(submit).collect();
    let answers: Vec<_> = first.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(answers, (0..6).collect::<Vec<_>>());
    let mut threads: Vec<_> = collected.iter().take(7).collect();
    let adopter_id = threads.pop().unwrap();
    assert!(
        threads.iter().all(|id| *id == adopter_id),
        "a job ran elsewhere"
    );
    assert_eq!(woken.load(Ordering::SeqCst), 6);
    assert_eq!(
        *set_up.lock().unwrap(),
        [adopter_id],
        "set up once, on the adopter"
    );

    // Queued while the adopter lets go: a compute thread runs them.
    let late: Vec<_> = (6..8).map(submit).collect();
    adopter.join().unwrap();
    let answers: Vec<_> = late.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(answers, [6, 7]);
    let late_threads: Vec<_> = collected.iter().take(2).collect();
    assert!(late_threads.iter().all(|id| *id != adopter_id));
    assert_eq!(late_threads[0], late_threads[1], "one compute thread");
    let named = run_on_executor(|| std::thread::current().name().map(str::to_owned)).unwrap();
    assert_eq!(named.as_deref(), Some("moat-compute"));
    assert_eq!(
        *set_up.lock().unwrap(),
        [adopter_id, late_threads[0]],
        "then once on the compute thread that took over"
    );
    // With the compute thread running, the role is taken.
    assert!(adopt(Box::new(|| {})).is_none());
}
