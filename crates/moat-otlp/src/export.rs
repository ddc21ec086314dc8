//! The exporter: a bounded queue that [`Exporter::record`] fills without ever blocking on the
//! network, and one background thread that sends the queued spans in batches as OTLP/HTTP
//! JSON to `{endpoint}/v1/traces`.
//!
//! The queue holds at most `max_queue` spans; a span that finds it full is dropped and
//! counted, so a collector that is slow or down costs the server a counter increment per span,
//! never memory or latency. The thread sends a batch when `max_batch` spans are waiting, when
//! `flush_interval` has passed, on [`Exporter::flush`], and when the last handle is dropped. A
//! batch that fails (connection refused, timeout, a non-2xx answer) is dropped and counted,
//! never retried; failures are reported on stderr at most once a minute.
//!
//! The thread runs its own single-threaded tokio runtime for the HTTP client, so the exporter
//! works the same under any runtime of the caller's, or none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use crate::json::export_request;
use crate::span::Span;

/// Where and how to export. Defaults (those of OpenTelemetry's batch span processor) in
/// [`ExporterConfig::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    /// The collector's base URL (`http://host:4318`); spans go to `{endpoint}/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting to be sent; past it new spans are dropped.
    pub max_queue: usize,
    /// The most spans in one request.
    pub max_batch: usize,
    /// The longest a span waits before its batch is sent.
    pub flush_interval: Duration,
    /// The limit on one export request (connecting included).
    pub timeout: Duration,
    /// Extra request headers (for example a collector's API key).
    pub headers: Vec<(String, String)>,
}

impl ExporterConfig {
    pub const DEFAULT_SERVICE_NAME: &'static str = "moat";
    pub const DEFAULT_MAX_QUEUE: usize = 2048;
    pub const DEFAULT_MAX_BATCH: usize = 512;
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The defaults, sending to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            service_name: Self::DEFAULT_SERVICE_NAME.to_owned(),
            max_queue: Self::DEFAULT_MAX_QUEUE,
            max_batch: Self::DEFAULT_MAX_BATCH,
            flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            headers: Vec::new(),
        }
    }
}

/// What can be wrong with an [`ExporterConfig`].
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is not an http(s) URL.
    #[error("OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// Another setting is out of range or malformed.
    #[error("OTLP exporter: {reason}")]
    Config { reason: String },
    /// The export thread or its HTTP client could not start.
    #[error("OTLP exporter could not start: {reason}")]
    Start { reason: String },
}

/// Checks that `endpoint` is an http or https URL; returns the traces URL
/// (`{endpoint}/v1/traces`).
pub fn traces_url(endpoint: &str) -> Result<String, OtlpError> {
    let invalid = |reason: String| OtlpError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let base = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(base).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "the URL may not have a query or fragment".to_owned(),
        ));
    }
    Ok(format!("{base}/v1/traces"))
}

/// A handle on the export thread; clones share it. When the last clone is dropped, the thread
/// sends what is queued (each request within `timeout`) and ends.
#[derive(Clone)]
pub struct Exporter {
    handle: Arc<Handle>,
}

/// Owned by the handles only: its drop tells the thread to finish.
struct Handle {
    shared: Arc<Shared>,
    max_queue: usize,
    max_batch: usize,
}

struct Shared {
    state: Mutex<Queue>,
    /// Wakes the thread: a batch is full, a flush was asked for, or the handles are gone.
    wake: Condvar,
    /// Wakes flushers when a flush finished.
    flushed: Condvar,
    exported: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    spans: VecDeque<Span>,
    /// Flushes asked for, and the number of the last one done.
    flush_asked: u64,
    flush_done: u64,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("exported", &self.exported())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they share one export thread.
impl PartialEq for Exporter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }
}

impl Eq for Exporter {}

impl Exporter {
    /// Checks `config` and starts the export thread. Nothing is sent until spans are recorded;
    /// an unreachable collector is not an error here (spans to it are dropped and counted).
    pub fn start(config: ExporterConfig) -> Result<Exporter, OtlpError> {
        let url = traces_url(&config.endpoint)?;
        if config.max_queue == 0 || config.max_batch == 0 {
            return Err(OtlpError::Config {
                reason: "max_queue and max_batch must be at least 1".to_owned(),
            });
        }
        if config.flush_interval.is_zero() || config.timeout.is_zero() {
            return Err(OtlpError::Config {
                reason: "flush_interval and timeout must be longer than zero".to_owned(),
            });
        }
        let headers = headers(&config.headers)?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .default_headers(headers)
            .build()
            .map_err(|error| OtlpError::Start {
                reason: error.to_string(),
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| OtlpError::Start {
                reason: error.to_string(),
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let worker = Worker {
            shared: Arc::clone(&shared),
            client,
            runtime,
            url,
            service_name: config.service_name.clone(),
            max_batch: config.max_batch,
            flush_interval: config.flush_interval,
            reports: FailureReports::default(),
        };
        std::thread::Builder::new()
            .name("moat-otlp".to_owned())
            .spawn(move || worker.run())
            .map_err(|error| OtlpError::Start {
                reason: error.to_string(),
            })?;
        Ok(Exporter {
            handle: Arc::new(Handle {
                shared,
                max_queue: config.max_queue,
                max_batch: config.max_batch,
            }),
        })
    }

    /// Queues `span` for export, or drops and counts it when the queue is full. Never waits on
    /// the network; the queue's lock is held only to push or to take a batch.
    pub fn record(&self, span: Span) {
        let handle = &self.handle;
        let mut queue = handle.shared.lock();
        if queue.spans.len() >= handle.max_queue {
            drop(queue);
            handle.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.spans.push_back(span);
        let full_batch = queue.spans.len() >= handle.max_batch;
        drop(queue);
        if full_batch {
            handle.shared.wake.notify_one();
        }
    }

    /// Spans the collector accepted (a 2xx answer to their batch).
    pub fn exported(&self) -> u64 {
        self.handle.shared.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped: the queue was full, or their batch failed.
    pub fn dropped(&self) -> u64 {
        self.handle.shared.dropped.load(Ordering::Relaxed)
    }

    /// Spans waiting to be sent.
    pub fn queued(&self) -> usize {
        self.handle.shared.lock().spans.len()
    }

    /// Sends everything queued now, waiting at most `deadline` (this blocks the calling
    /// thread; from async code call it on a blocking thread). Returns whether the queue was
    /// worked off in time: sent, or dropped because the collector failed.
    pub fn flush(&self, deadline: Duration) -> bool {
        let shared = &self.handle.shared;
        let until = Instant::now() + deadline;
        let mut queue = shared.lock();
        queue.flush_asked += 1;
        let asked = queue.flush_asked;
        shared.wake.notify_one();
        while queue.flush_done < asked {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = shared
                .flushed
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

/// The configured headers, checked.
fn headers(pairs: &[(String, String)]) -> Result<HeaderMap, OtlpError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| OtlpError::Config {
            reason: format!("{name:?} is not a valid header name"),
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| OtlpError::Config {
            reason: format!("the value of header {name:?} is not a valid header value"),
        })?;
        map.insert(header, value);
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(map)
}

/// The export thread's state.
struct Worker {
    shared: Arc<Shared>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    url: String,
    service_name: String,
    max_batch: usize,
    flush_interval: Duration,
    reports: FailureReports,
}

impl Worker {
    fn run(mut self) {
        let mut last_send = Instant::now();
        loop {
            let (batch, flush_target, stopping) = self.next_batch(&mut last_send);
            if !batch.is_empty() {
                self.send(&batch);
                last_send = Instant::now();
            }
            if let Some(target) = flush_target {
                let mut queue = self.shared.lock();
                queue.flush_done = queue.flush_done.max(target);
                drop(queue);
                self.shared.flushed.notify_all();
            }
            if stopping && batch.is_empty() {
                return;
            }
        }
    }

    /// Waits until there is a reason to send, then takes up to one batch. Also returns the
    /// flush this batch completes (when it empties the queue for a flush) and whether the
    /// handles are gone.
    fn next_batch(&self, last_send: &mut Instant) -> (Vec<Span>, Option<u64>, bool) {
        let mut queue = self.shared.lock();
        loop {
            let flushing = queue.flush_asked > queue.flush_done;
            let due = last_send.elapsed() >= self.flush_interval && !queue.spans.is_empty();
            if queue.stop || flushing || due || queue.spans.len() >= self.max_batch {
                break;
            }
            let wait = self
                .flush_interval
                .saturating_sub(last_send.elapsed())
                .max(Duration::from_millis(1));
            let (next, timed_out) = self
                .shared
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(PoisonError::into_inner);
            queue = next;
            if timed_out.timed_out() && queue.spans.is_empty() {
                *last_send = Instant::now();
            }
        }
        let n = queue.spans.len().min(self.max_batch);
        let batch: Vec<Span> = queue.spans.drain(..n).collect();
        let flush_target = (queue.spans.is_empty() && queue.flush_asked > queue.flush_done)
            .then_some(queue.flush_asked);
        (batch, flush_target, queue.stop)
    }

    /// One export request; the batch counts as exported on a 2xx answer, else as dropped.
    fn send(&mut self, batch: &[Span]) {
        let body = export_request(&self.service_name, batch);
        // The request is built inside the runtime: reqwest's timers need its context.
        let outcome = self.runtime.block_on(async {
            let request = self.client.post(&self.url).json(&body).send();
            let response = request.await.map_err(|error| error_chain(&error))?;
            let status = response.status();
            // Read the (small) answer so the connection can be reused.
            let _ = response.bytes().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        });
        let n = batch.len() as u64;
        match outcome {
            Ok(()) => {
                self.shared.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(reason) => {
                self.shared.dropped.fetch_add(n, Ordering::Relaxed);
                if self.reports.should_report(Instant::now()) {
                    eprintln!(
                        "moat: OTLP export to {} failed ({reason}); {n} spans dropped \
                         (further failures are reported at most once a minute)",
                        self.url
                    );
                }
            }
        }
    }
}

/// An error and its sources on one line ("error sending request: ... connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Rate-limits failure reports to one a minute.
#[derive(Default)]
struct FailureReports {
    last: Option<Instant>,
}

impl FailureReports {
    const EVERY: Duration = Duration::from_secs(60);

    fn should_report(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= Self::EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_must_be_http_urls() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/base/").unwrap(),
            "https://otel.example/base/v1/traces"
        );
        for bad in [
            "",
            "collector:4318",
            "ftp://collector",
            "localhost",
            "http://",
            "http://c:4318/?x=1",
        ] {
            assert!(
                matches!(traces_url(bad), Err(OtlpError::Endpoint { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut config = ExporterConfig::new("http://127.0.0.1:9");
        config.max_queue = 0;
        assert!(matches!(
            Exporter::start(config),
            Err(OtlpError::Config { .. })
        ));
        let mut config = ExporterConfig::new("http://127.0.0.1:9");
        config.headers = vec![("bad name".into(), "v".into())];
        assert!(matches!(
            Exporter::start(config),
            Err(OtlpError::Config { .. })
        ));
        let mut config = ExporterConfig::new("http://127.0.0.1:9");
        config.headers = vec![("x-key".into(), "line\nbreak".into())];
        assert!(matches!(
            Exporter::start(config),
            Err(OtlpError::Config { .. })
        ));
    }

    #[test]
    fn failures_are_reported_once_a_minute() {
        let mut reports = FailureReports::default();
        let start = Instant::now();
        assert!(reports.should_report(start));
        assert!(!reports.should_report(start + Duration::from_secs(1)));
        assert!(!reports.should_report(start + Duration::from_secs(59)));
        assert!(reports.should_report(start + Duration::from_secs(60)));
        assert!(!reports.should_report(start + Duration::from_secs(61)));
    }
}
