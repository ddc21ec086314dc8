//! One writer thread per database file, committing the small writes that every request makes
//! (an audit entry, usage counters) in groups.
//!
//! A request used to make three write transactions of its own. Each paid for taking the write
//! lock, appending WAL frames and, because three connections took turns, re-reading pages the
//! other connections had changed: under load that was a quarter of a gateway request's CPU.
//! Here the jobs queue on a bounded channel; the writer takes what is queued (at most
//! [`MAX_BATCH`]), runs each job inside a savepoint of one transaction and commits once. A job
//! that fails rolls back alone; the others commit.
//!
//! Durability: [`WriteQueue::run`] returns after its job committed. [`WriteQueue::submit`]
//! returns at once; its job commits with the next batch, normally within a millisecond or two.
//! A process killed in that window loses those queued rows (the answer they describe has
//! already gone out, so it could be lost to a kill just after the answer before too); a normal
//! shutdown drops the queue, which drains it. [`WriteQueue::flush`] waits for everything queued
//! before it, so a reader in the same process sees its own writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::open_shared;

/// Jobs waiting beyond this many make [`WriteQueue::submit`] wait: memory stays bounded when
/// the disk cannot keep up, and the callers slow down instead.
pub const QUEUE_CAPACITY: usize = 8192;
/// The most jobs committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// After a batch of more than one job (the queue is busy) the writer waits this long before
/// it looks again, so that the next batch gathers more jobs and, above all, so that callers
/// queue their jobs without waking a sleeping writer each time: under load, that wake-up cost
/// more than the insert. An idle queue's lone job is written at once.
pub const GATHER: Duration = Duration::from_millis(1);

/// A write: runs on the writer's connection inside a transaction it must not end itself.
type Work = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;
/// Where a caller of [`WriteQueue::run`] waits for its job's outcome.
type Done = SyncSender<Result<(), String>>;

enum Message {
    Job {
        /// Says what the job writes, in the log line should it fail.
        label: String,
        work: Work,
        /// Told the outcome once the job's transaction committed (or failed).
        done: Option<Done>,
    },
    /// Answered once every job sent before it has committed.
    Flush(SyncSender<()>),
}

/// The writer of one database file. Share it behind an `Arc` ([`WriteQueue::shared`]).
pub struct WriteQueue {
    path: PathBuf,
    sender: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    committed: AtomicU64,
    failed: AtomicU64,
    transactions: AtomicU64,
}

impl WriteQueue {
    /// The writer of the database at `path` (opened with [`open_shared`], created if
    /// missing): the same one for every caller in this process while any caller keeps it, so
    /// that all of the process's queued writes to one file share its transactions.
    pub fn shared(path: &Path) -> Result<Arc<WriteQueue>, String> {
        static WRITERS: OnceLock<Mutex<HashMap<PathBuf, Weak<WriteQueue>>>> = OnceLock::new();
        let conn = open_shared(path)?;
        let key = path
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
        let mut writers = WRITERS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        writers.retain(|_, writer| writer.strong_count() > 0);
        if let Some(writer) = writers.get(&key).and_then(Weak::upgrade) {
            return Ok(writer);
        }
        let writer = Arc::new(WriteQueue::start(conn, key.clone())?);
        writers.insert(key, Arc::downgrade(&writer));
        Ok(writer)
    }

    /// A writer of its own on `conn` (which should come from [`open_shared`]).
    pub fn start(conn: Connection, path: PathBuf) -> Result<WriteQueue, String> {
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let stats = Arc::new(Stats::default());
        let thread = std::thread::Builder::new()
            .name("moat-db-writer".into())
            .spawn({
                let stats = Arc::clone(&stats);
                let path = path.clone();
                move || write_loop(&conn, &path, &receiver, &stats)
            })
            .map_err(|e| format!("cannot start the writer of {}: {e}", path.display()))?;
        Ok(WriteQueue {
            path,
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// Queues `work` and returns at once (waiting only while the queue is full). A failure is
    /// logged with `label` and counted in [`WriteQueue::failed`]; nobody else hears of it.
    pub fn submit(
        &self,
        label: impl Into<String>,
        work: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) {
        let label = label.into();
        let message = Message::Job {
            label,
            work: Box::new(work),
            done: None,
        };
        // The writer is gone (only while the queue is being dropped): write it here.
        if let Err(Message::Job { label, work, .. }) = self.send(message) {
            if let Err(error) = run_alone(&self.path, work) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("moat: {}: {label}: {error}", self.path.display());
            }
        }
    }

    /// Runs `work` in the writer's next transaction and returns its result once that
    /// transaction committed.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let slot = Arc::new(Mutex::new(None));
        let job: Work = {
            let slot = Arc::clone(&slot);
            Box::new(move |conn| {
                let value = work(conn)?;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
                Ok(())
            })
        };
        let (done, outcome) = sync_channel(1);
        let message = Message::Job {
            label: String::new(),
            work: job,
            done: Some(done),
        };
        match self.send(message) {
            Ok(()) => outcome
                .recv()
                .map_err(|_| format!("the writer of {} stopped", self.path.display()))??,
            Err(Message::Job { work, .. }) => run_alone(&self.path, work)?,
            Err(Message::Flush(_)) => return Err("a job came back as a flush".into()),
        }
        let value = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        value.ok_or_else(|| format!("a write to {} left no result", self.path.display()))
    }

    /// Waits until every job queued before this call has committed (or failed).
    pub fn flush(&self) {
        let (done, flushed) = sync_channel(1);
        if self.send(Message::Flush(done)).is_ok() {
            // An error means the writer stopped, after draining what it had.
            let _ = flushed.recv();
        }
    }

    /// Jobs committed so far.
    pub fn committed(&self) -> u64 {
        self.stats.committed.load(Ordering::Relaxed)
    }

    /// Jobs that failed (each also logged).
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Transactions committed so far: [`WriteQueue::committed`] over this is the mean batch.
    pub fn transactions(&self) -> u64 {
        self.stats.transactions.load(Ordering::Relaxed)
    }

    fn send(&self, message: Message) -> Result<(), Message> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match sender {
            Some(sender) => sender.send(message).map_err(|e| e.0),
            None => Err(message),
        }
    }
}

impl Drop for WriteQueue {
    /// Drains the queue: every job submitted before the drop commits before it returns.
    fn drop(&mut self) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Runs one job in a transaction of its own on a fresh connection: for the rare job that
/// arrives while the writer is shutting down.
fn run_alone(path: &Path, work: Work) -> Result<(), String> {
    let mut conn = open_shared(path)?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    work(&tx).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

fn write_loop(conn: &Connection, path: &Path, receiver: &Receiver<Message>, stats: &Stats) {
    let mut batch = Vec::with_capacity(64);
    // `recv` fails once every sender is gone and the queue is empty: the drain on drop.
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let busy = batch.len() > 1;
        commit_batch(conn, path, &mut batch, stats);
        if busy {
            std::thread::sleep(GATHER);
        }
    }
}

/// Runs the batch's jobs in one transaction, each in a savepoint, commits, then tells the
/// waiting callers. Empties `batch`.
fn commit_batch(conn: &Connection, path: &Path, batch: &mut Vec<Message>, stats: &Stats) {
    let mut outcomes: Vec<(String, Option<Done>, Result<(), String>)> =
        Vec::with_capacity(batch.len());
    let mut flushes = Vec::new();
    let jobs = batch
        .iter()
        .filter(|m| matches!(m, Message::Job { .. }))
        .count();
    let began = if jobs > 0 {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    for message in batch.drain(..) {
        match message {
            Message::Flush(done) => flushes.push(done),
            Message::Job { label, work, done } => {
                let outcome = match &began {
                    Ok(()) => run_in_savepoint(conn, work),
                    Err(error) => Err(error.clone()),
                };
                outcomes.push((label, done, outcome));
            }
        }
    }
    if jobs > 0 && began.is_ok() {
        if let Err(error) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            let error = format!("commit failed: {error}");
            for (_, _, outcome) in &mut outcomes {
                if outcome.is_ok() {
                    *outcome = Err(error.clone());
                }
            }
        } else {
            stats.transactions.fetch_add(1, Ordering::Relaxed);
        }
    }
    for (label, done, outcome) in outcomes {
        match &outcome {
            Ok(()) => {
                stats.committed.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if done.is_none() {
                    eprintln!("moat: {}: {label}: {error}", path.display());
                }
            }
        }
        if let Some(done) = done {
            let _ = done.send(outcome);
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
}

fn run_in_savepoint(conn: &Connection, work: Work) -> Result<(), String> {
    let savepoint = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
    };
    savepoint("SAVEPOINT job").map_err(|e| e.to_string())?;
    match work(conn) {
        Ok(()) => savepoint("RELEASE job").map_err(|e| e.to_string()),
        Err(error) => {
            let _ = savepoint("ROLLBACK TO job");
            let _ = savepoint("RELEASE job");
            Err(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn table(path: &Path) {
        open_shared(path)
            .unwrap()
            .execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)")
            .unwrap();
    }

    fn rows(path: &Path) -> i64 {
        open_shared(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static {
        move |conn| conn.execute("INSERT INTO t VALUES (?1)", [x]).map(drop)
    }

    #[test]
    fn queued_jobs_commit_together_and_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        table(&path);
        let queue = WriteQueue::shared(&path).unwrap();
        // The first job holds the writer until the other 200 are queued.
        let gate = Arc::new(Barrier::new(2));
        queue.submit("gate", {
            let gate = Arc::clone(&gate);
            move |_| {
                gate.wait();
                Ok(())
            }
        });
        for x in 0..200 {
            queue.submit(format!("row {x}"), insert(x));
        }
        gate.wait();
        queue.flush();
        assert_eq!(rows(&path), 200);
        assert_eq!(queue.committed(), 201);
        // One job per transaction would be 201; the 200 rows come out of the queue together
        // (with the gate too, when the writer woke only after they were all queued).
        let transactions = queue.transactions();
        assert!(
            (1..=2).contains(&transactions),
            "{transactions} transactions"
        );
    }

    #[test]
    fn a_failing_job_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        table(&path);
        let queue = WriteQueue::shared(&path).unwrap();
        queue.submit("one", insert(1));
        // Two statements, the second a duplicate key: the first must not stay behind.
        queue.submit("half", |conn| {
            conn.execute("INSERT INTO t VALUES (2)", [])?;
            conn.execute("INSERT INTO t VALUES (1)", []).map(drop)
        });
        queue.submit("three", insert(3));
        queue.flush();
        assert_eq!(rows(&path), 2);
        assert_eq!(queue.failed(), 1);
        let error = queue.run(insert(3)).unwrap_err();
        assert!(error.contains("UNIQUE"), "{error}");
    }

    #[test]
    fn run_returns_after_the_commit_with_the_job_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        table(&path);
        let queue = WriteQueue::shared(&path).unwrap();
        let id = queue
            .run(|conn| {
                conn.execute("INSERT INTO t VALUES (41)", [])?;
                Ok(conn.last_insert_rowid())
            })
            .unwrap();
        assert_eq!(id, 41);
        // Another connection sees it at once: it committed.
        assert_eq!(rows(&path), 1);
    }

    #[test]
    fn dropping_the_queue_drains_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        table(&path);
        let queue = WriteQueue::shared(&path).unwrap();
        for x in 0..500 {
            queue.submit("row", insert(x));
        }
        drop(queue);
        assert_eq!(rows(&path), 500);
    }

    #[test]
    fn one_writer_per_file_while_it_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        let a = WriteQueue::shared(&path).unwrap();
        let b = WriteQueue::shared(&dir.path().join(".").join("moat.db")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = WriteQueue::shared(&dir.path().join("other.db")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        // A new one starts once nobody holds the old one.
        let c = WriteQueue::shared(&path).unwrap();
        c.flush();
    }

    #[test]
    fn writes_from_many_threads_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.db");
        table(&path);
        let queue = WriteQueue::shared(&path).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let queue = &queue;
                scope.spawn(move || {
                    for i in 0..250 {
                        queue.submit("row", insert(thread * 1000 + i));
                    }
                });
            }
        });
        queue.flush();
        assert_eq!(rows(&path), 2000);
        assert!(queue.transactions() <= 2000);
    }
}
