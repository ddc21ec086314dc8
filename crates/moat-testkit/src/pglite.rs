//! A throwaway PGlite server for tests: a real Postgres (WebAssembly, run by Node) with pgvector,
//! speaking the wire protocol on 127.0.0.1, installed by `scripts/pglite.sh install` into
//! `$MOAT_PGLITE_DIR` (default `~/.cache/moat/pglite`).
//!
//! Each [`PgLite`] is its own server on a port the OS picked, with an in-memory database, so
//! every test starts from nothing and tests can run in parallel. A server takes one connection
//! at a time: a test must close one client before it opens the next. The server is killed (by
//! its PID) when the value is dropped.
//!
//! PGlite missing is a test failure that says how to install it, never a silent skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to say it listens (a cold start compiles the WebAssembly).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running PGlite server; killed on drop.
pub struct PgLite {
    child: Child,
    port: u16,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// Where `scripts/pglite.sh install` puts PGlite.
pub fn install_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOAT_PGLITE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is unset; set MOAT_PGLITE_DIR instead");
    PathBuf::from(home).join(".cache/moat/pglite")
}

/// The `pglite-server` script, after checking that it is installed.
fn server_script() -> PathBuf {
    let script = install_dir().join("node_modules/.bin/pglite-server");
    assert!(
        script.exists(),
        "PGlite is not installed ({} is missing): run scripts/pglite.sh install",
        script.display()
    );
    script
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a port on 127.0.0.1");
    listener.local_addr().expect("no local address").port()
}

impl PgLite {
    /// Starts a server with pgvector loaded and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts a server without pgvector, to test how a store reports the missing extension.
    pub fn start_without_pgvector() -> Self {
        Self::start_with(false)
    }

    fn start_with(pgvector: bool) -> Self {
        let script = server_script();
        let mut last_log = String::new();
        // The port is free when picked but could be taken before the server binds it; a few
        // tries make that race harmless.
        for _ in 0..3 {
            let log_dir = tempfile::Builder::new()
                .prefix("moat-pglite-")
                .tempdir()
                .expect("cannot create a temp folder");
            let log = log_dir.path().join("server.log");
            let port = free_port();
            let mut command = Command::new(&script);
            command
                .arg(format!("--port={port}"))
                .arg("--host=127.0.0.1")
                .arg("--db=memory://");
            if pgvector {
                command.arg("--extensions=@electric-sql/pglite-pgvector:vector");
            }
            let output = std::fs::File::create(&log).expect("cannot create the server log");
            let child = command
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("cannot share the log file"))
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} ({e}); is node installed? run scripts/pglite.sh install",
                        script.display()
                    )
                });
            let mut server = Self {
                child,
                port,
                log,
                _log_dir: log_dir,
            };
            match server.wait_until_listening() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("PGlite did not start; its last log:\n{last_log}");
    }

    /// Waits for the server's "listening" line; `Err(log)` when it exited first.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("listening") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited with {status})\n{log}"));
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "PGlite did not listen within {START_TIMEOUT:?}; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A connection URL for the server's only database.
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's output so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PgLite {
    fn drop(&mut self) {
        // Child::kill signals this child's own PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
