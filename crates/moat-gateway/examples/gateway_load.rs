//! The gateway benchmark's load generator: N concurrent clients send the same short chat
//! request for a bounded number of requests or seconds, and it prints one JSON line with
//! requests/s, latency p50/p95/p99 (and time to the first byte for streams) and every error by
//! kind. Errors are counted and reported, never dropped; a warm-up phase (not counted) opens
//! the connections first.
//!
//! Three ways to send, so the HTTP hop and the library can be told apart:
//!
//! - `--mode http` (default): `POST URL/chat/completions` over keep-alive connections (one per
//!   client at most), to the fast upstream directly or to a gateway node;
//! - `--mode client`: `moat_upstream::UpstreamClient::chat` in this process, against URL;
//! - `--mode gateway`: `moat_gateway::Gateway::chat` in this process, through an alias whose
//!   one target is the upstream at URL (no cache, no health checks).
//!
//! ```sh
//! cargo run --release -p moat-gateway --example gateway_load -- \
//!     --url http://127.0.0.1:PORT/v1 --model fast --concurrency 64 --duration 10
//! ```

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{chat_request, is_chat_completion, quantile, Flags};
use futures_util::stream::StreamExt;
use moat_gateway::{CallContext, Gateway, GatewayConfig, GatewayDeps, ProviderReply, SystemClock};
use moat_upstream::{Reply, UpstreamClient, UpstreamConfig};
use serde_json::{json, Value};

/// The alias the in-process gateway serves.
const ALIAS: &str = "bench";
/// The most of a streamed answer kept for checking; the fast upstream's is under 2 KiB.
const MAX_STREAM_BYTES: usize = 64 * 1024;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gateway_load: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What one run does.
struct Settings {
    mode: Mode,
    url: String,
    model: String,
    concurrency: usize,
    /// Stop after this many requests (counted from the end of the warm-up)...
    requests: Option<u64>,
    /// ...or after this long, whichever comes first.
    duration: Option<Duration>,
    warmup: Duration,
    stream: bool,
    threads: usize,
    timeout: Duration,
    /// Latency samples kept in all (memory bound); requests past it are counted, not sampled.
    max_samples: usize,
    /// Free text copied into the JSON line (run.sh puts the mode of the round there).
    label: String,
    round: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Http,
    Client,
    Gateway,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Client => "client",
            Self::Gateway => "gateway",
        }
    }
}

fn settings() -> Result<Settings, String> {
    let flags = Flags::parse(
        std::env::args().skip(1),
        &[
            "mode",
            "url",
            "model",
            "concurrency",
            "requests",
            "duration",
            "warmup",
            "threads",
            "timeout",
            "max-samples",
            "label",
            "round",
        ],
        &["stream"],
    )?;
    let mode = match flags.text("mode").unwrap_or("http") {
        "http" => Mode::Http,
        "client" => Mode::Client,
        "gateway" => Mode::Gateway,
        other => {
            return Err(format!(
                "--mode {other:?}: expected http, client or gateway"
            ))
        }
    };
    let url = flags
        .text("url")
        .ok_or("--url BASE (up to /v1) is required")?
        .trim_end_matches('/')
        .to_owned();
    let requests = match flags.text("requests") {
        Some(_) => Some(flags.number("requests", 0u64, 1, 100_000_000)?),
        None => None,
    };
    let duration = match flags.text("duration") {
        Some(_) => Some(Duration::from_secs_f64(
            flags.number("duration", 0.0, 0.1, 3600.0)?,
        )),
        None => None,
    };
    if requests.is_none() && duration.is_none() {
        return Err("give --requests N or --duration SECONDS (or both)".to_owned());
    }
    Ok(Settings {
        mode,
        url,
        model: flags.text("model").unwrap_or("fast").to_owned(),
        concurrency: flags.number("concurrency", 64, 1, 10_000)?,
        requests,
        duration,
        warmup: Duration::from_secs_f64(flags.number("warmup", 2.0, 0.0, 600.0)?),
        stream: flags.switch("stream"),
        threads: flags.number("threads", 1, 1, 256)?,
        timeout: Duration::from_secs_f64(flags.number("timeout", 30.0, 0.1, 600.0)?),
        max_samples: flags.number("max-samples", 10_000_000, 1, 100_000_000)?,
        label: flags.text("label").unwrap_or("").to_owned(),
        round: flags.number("round", 0, 0, 1_000_000)?,
    })
}

fn run() -> Result<(), String> {
    let settings = Arc::new(settings()?);
    bench_common::runtime(settings.threads)?.block_on(async move {
        let sender = Arc::new(Sender::new(&settings)?);
        let mut warmup_requests = 0;
        if !settings.warmup.is_zero() {
            let warmup = Phase {
                deadline: Some(Instant::now() + settings.warmup),
                tickets: None,
                samples_per_client: 0,
            };
            let tallies = drive(&settings, &sender, &warmup).await?;
            let errors: u64 = tallies.iter().map(Tally::n_errors).sum();
            if errors > 0 {
                eprintln!("gateway_load: {errors} errors during the warm-up");
            }
            warmup_requests = errors + tallies.iter().map(|t| t.ok).sum::<u64>();
        }
        let measured = Phase {
            deadline: settings.duration.map(|d| Instant::now() + d),
            tickets: settings.requests.map(|n| Arc::new(AtomicU64::new(n))),
            samples_per_client: (settings.max_samples / settings.concurrency).max(1),
        };
        let cpu_before = cpu_ticks();
        let started = Instant::now();
        let tallies = drive(&settings, &sender, &measured).await?;
        let mut report = report(&settings, &tallies, started.elapsed());
        report["warmup_requests"] = json!(warmup_requests);
        report["cpu_ticks"] = match (cpu_before, cpu_ticks()) {
            (Some(before), Some(after)) => json!(after.saturating_sub(before)),
            _ => Value::Null,
        };
        println!("{report}");
        if report["errors"].as_u64() != Some(0) {
            eprintln!("gateway_load: errors: {}", report["error_kinds"]);
        }
        Ok(())
    })
}

/// The CPU time this process has used (user plus system), in clock ticks, from
/// `/proc/self/stat`; `None` where that file is missing or unreadable (not Linux). run.sh turns
/// ticks into seconds with `getconf CLK_TCK`.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; after the name, field 3 is index 0.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// When a phase stops: a deadline, a number of requests (tickets), or both.
struct Phase {
    deadline: Option<Instant>,
    tickets: Option<Arc<AtomicU64>>,
    samples_per_client: usize,
}

impl Phase {
    /// Whether a client may send one more request (and takes its ticket).
    fn next(&self) -> bool {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return false;
        }
        match &self.tickets {
            None => true,
            Some(tickets) => tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// One client's results.
#[derive(Default)]
struct Tally {
    ok: u64,
    latency_us: Vec<u32>,
    ttfb_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn n_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs `concurrency` clients until the phase ends.
async fn drive(
    settings: &Arc<Settings>,
    sender: &Arc<Sender>,
    phase: &Phase,
) -> Result<Vec<Tally>, String> {
    let phase = Arc::new(Phase {
        deadline: phase.deadline,
        tickets: phase.tickets.clone(),
        samples_per_client: phase.samples_per_client,
    });
    let clients: Vec<_> = (0..settings.concurrency)
        .map(|_| {
            let (settings, sender, phase) = (settings.clone(), sender.clone(), phase.clone());
            tokio::spawn(async move { client(&settings, &sender, &phase).await })
        })
        .collect();
    let mut tallies = Vec::with_capacity(clients.len());
    for handle in clients {
        tallies.push(
            handle
                .await
                .map_err(|err| format!("a client task failed: {err}"))?,
        );
    }
    Ok(tallies)
}

async fn client(settings: &Settings, sender: &Sender, phase: &Phase) -> Tally {
    let mut tally = Tally::default();
    while phase.next() {
        let started = Instant::now();
        let result = tokio::time::timeout(settings.timeout, sender.send(started)).await;
        let elapsed = started.elapsed();
        match result {
            Err(_) => *tally.errors.entry("timeout".to_owned()).or_default() += 1,
            Ok(Err(kind)) => *tally.errors.entry(kind).or_default() += 1,
            Ok(Ok(first_byte)) => {
                tally.ok += 1;
                if tally.latency_us.len() < phase.samples_per_client {
                    tally.latency_us.push(micros(elapsed));
                    if let Some(first_byte) = first_byte {
                        tally.ttfb_us.push(micros(first_byte));
                    }
                }
            }
        }
    }
    tally
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// How requests are sent in this run.
enum Sender {
    Http {
        http: reqwest::Client,
        url: String,
        body: Vec<u8>,
        stream: bool,
    },
    Client {
        client: UpstreamClient,
        model: String,
        body: Value,
    },
    Gateway {
        gateway: Arc<Gateway>,
        body: Value,
    },
}

impl Sender {
    fn new(settings: &Settings) -> Result<Self, String> {
        let body = chat_request(&settings.model, settings.stream);
        Ok(match settings.mode {
            Mode::Http => Self::Http {
                http: reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|err| format!("HTTP client: {err}"))?,
                url: format!("{}/chat/completions", settings.url),
                body: serde_json::to_vec(&body).map_err(|err| err.to_string())?,
                stream: settings.stream,
            },
            Mode::Client => Self::Client {
                client: UpstreamClient::new(UpstreamConfig::new(settings.url.clone()))
                    .map_err(|err| err.to_string())?,
                model: settings.model.clone(),
                body,
            },
            Mode::Gateway => {
                let config: GatewayConfig = serde_json::from_value(json!({
                    "aliases": {ALIAS: {"targets": [
                        {"type": "upstream", "url": settings.url, "model": settings.model}
                    ]}},
                    "routing": {"health_interval_secs": 0.0}
                }))
                .map_err(|err| format!("gateway config: {err}"))?;
                let deps = GatewayDeps {
                    local: None,
                    clock: Arc::new(SystemClock),
                };
                let gateway = Gateway::new(&config, deps).map_err(|err| err.to_string())?;
                Self::Gateway {
                    gateway: Arc::new(gateway),
                    body,
                }
            }
        })
    }

    /// Sends one request and checks the answer; `Ok(Some(ttfb))` for a stream. The error is
    /// the kind reported in the JSON line.
    async fn send(&self, started: Instant) -> Result<Option<Duration>, String> {
        match self {
            Self::Http {
                http,
                url,
                body,
                stream,
            } => send_http(http, url, body.clone(), *stream, started).await,
            Self::Client {
                client,
                model,
                body,
            } => match client.chat(body.clone(), model).await {
                Ok(Reply::Full(value)) => check_full(&value).map(|()| None),
                Ok(Reply::Stream(events)) => {
                    let events = events.map(|item| item.map_err(|err| err.to_string()));
                    check_chunks(events.boxed(), started).await.map(Some)
                }
                Err(err) => Err(format!("upstream_{:?}", err.kind()).to_lowercase()),
            },
            Self::Gateway { gateway, body } => {
                match gateway
                    .chat(&CallContext::default(), ALIAS, body.clone())
                    .await
                {
                    Ok(answer) => match answer.reply {
                        ProviderReply::Full(value) => check_full(&value).map(|()| None),
                        ProviderReply::Stream(chunks) => {
                            let chunks = chunks.map(|item| item.map_err(|err| err.to_string()));
                            check_chunks(chunks.boxed(), started).await.map(Some)
                        }
                    },
                    Err(err) => Err(format!("gateway_{:?}", err.kind()).to_lowercase()),
                }
            }
        }
    }
}

fn check_full(value: &Value) -> Result<(), String> {
    if is_chat_completion(value) {
        Ok(())
    } else {
        Err("malformed_answer".to_owned())
    }
}

/// Reads a stream of chunks to its end: at least one `chat.completion.chunk`, no error item.
async fn check_chunks(
    mut chunks: futures_util::stream::BoxStream<'_, Result<Value, String>>,
    started: Instant,
) -> Result<Duration, String> {
    let mut first = None;
    while let Some(item) = chunks.next().await {
        first.get_or_insert_with(|| started.elapsed());
        let chunk = item.map_err(|_| "stream_error".to_owned())?;
        if chunk["object"] != "chat.completion.chunk" {
            return Err("malformed_chunk".to_owned());
        }
    }
    first.ok_or_else(|| "empty_stream".to_owned())
}

async fn send_http(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    stream: bool,
    started: Instant,
) -> Result<Option<Duration>, String> {
    let mut response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|err| transport_kind(&err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("status_{}", status.as_u16()));
    }
    if !stream {
        let bytes = response.bytes().await.map_err(|err| transport_kind(&err))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| "malformed_answer".to_owned())?;
        return check_full(&value).map(|()| None);
    }
    let mut first = None;
    let mut text = Vec::new();
    while let Some(piece) = response.chunk().await.map_err(|err| transport_kind(&err))? {
        first.get_or_insert_with(|| started.elapsed());
        if text.len() + piece.len() > MAX_STREAM_BYTES {
            return Err("oversized_stream".to_owned());
        }
        text.extend_from_slice(&piece);
    }
    check_sse(&text)?;
    first.ok_or_else(|| "empty_stream".to_owned()).map(Some)
}

/// A complete SSE answer: at least one chunk event, no error event, and `[DONE]` last.
fn check_sse(text: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(text).map_err(|_| "malformed_stream".to_owned())?;
    let events: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|event| !event.is_empty())
        .collect();
    if events
        .iter()
        .any(|event| event.starts_with("data: {\"error\""))
    {
        return Err("stream_error".to_owned());
    }
    if events.last() != Some(&"data: [DONE]") {
        return Err("stream_incomplete".to_owned());
    }
    if !events
        .iter()
        .any(|event| event.contains("chat.completion.chunk"))
    {
        return Err("malformed_stream".to_owned());
    }
    Ok(())
}

fn transport_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connect".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// The JSON line: throughput, latency quantiles in milliseconds, errors by kind.
fn report(settings: &Settings, tallies: &[Tally], elapsed: Duration) -> Value {
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for tally in tallies {
        for (kind, n) in &tally.errors {
            *error_kinds.entry(kind.clone()).or_default() += n;
        }
    }
    let errors: u64 = error_kinds.values().sum();
    let mut latency: Vec<u32> = tallies.iter().flat_map(|t| t.latency_us.clone()).collect();
    let mut ttfb: Vec<u32> = tallies.iter().flat_map(|t| t.ttfb_us.clone()).collect();
    latency.sort_unstable();
    ttfb.sort_unstable();
    let secs = elapsed.as_secs_f64();
    json!({
        "bench": "gateway",
        "label": settings.label,
        "round": settings.round,
        "mode": settings.mode.name(),
        "url": settings.url,
        "model": settings.model,
        "stream": settings.stream,
        "concurrency": settings.concurrency,
        "threads": settings.threads,
        "requests_ok": ok,
        "errors": errors,
        "error_kinds": error_kinds,
        "elapsed_s": round3(secs),
        "rps": if secs > 0.0 { round3(ok as f64 / secs) } else { 0.0 },
        "samples": latency.len(),
        "latency_ms": summary(&latency),
        "ttfb_ms": if settings.stream { summary(&ttfb) } else { Value::Null },
    })
}

/// p50, p95, p99, mean and max of sorted microsecond samples, in milliseconds.
fn summary(sorted_us: &[u32]) -> Value {
    if sorted_us.is_empty() {
        return Value::Null;
    }
    let ms = |us: Option<u32>| us.map(|us| round3(f64::from(us) / 1000.0));
    let mean = sorted_us.iter().map(|&us| f64::from(us)).sum::<f64>() / sorted_us.len() as f64;
    json!({
        "p50": ms(quantile(sorted_us, 0.50)),
        "p95": ms(quantile(sorted_us, 0.95)),
        "p99": ms(quantile(sorted_us, 0.99)),
        "mean": round3(mean / 1000.0),
        "max": ms(sorted_us.last().copied()),
    })
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.50), Some(50));
        assert_eq!(quantile(&samples, 0.95), Some(95));
        assert_eq!(quantile(&samples, 0.99), Some(99));
        assert_eq!(quantile(&samples, 1.0), Some(100));
        assert_eq!(quantile(&samples, 0.0), Some(1));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn a_complete_stream_passes_and_broken_ones_are_named() {
        let chunk = r#"data: {"object":"chat.completion.chunk","choices":[]}"#;
        let whole = format!("{chunk}\n\n{chunk}\n\ndata: [DONE]\n\n");
        assert_eq!(check_sse(whole.as_bytes()), Ok(()));
        let cut = format!("{chunk}\n\n");
        assert_eq!(check_sse(cut.as_bytes()), Err("stream_incomplete".into()));
        let failed = format!("{chunk}\n\ndata: {{\"error\":{{\"message\":\"x\"}}}}\n\n");
        assert_eq!(check_sse(failed.as_bytes()), Err("stream_error".into()));
        assert_eq!(
            check_sse(b"data: [DONE]\n\n"),
            Err("malformed_stream".into())
        );
        assert_eq!(check_sse(&[0xff, 0xfe]), Err("malformed_stream".into()));
    }

    #[test]
    fn flags_are_checked() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flags = Flags::parse(
            args(&["--concurrency", "8", "--stream"]),
            &["concurrency"],
            &["stream"],
        )
        .expect("valid flags");
        assert!(flags.switch("stream"));
        assert_eq!(flags.number("concurrency", 64, 1, 100), Ok(8));
        assert!(flags.number("concurrency", 64, 1, 4).is_err());
        assert!(Flags::parse(args(&["--nope", "1"]), &["concurrency"], &[]).is_err());
        assert!(Flags::parse(args(&["--concurrency"]), &["concurrency"], &[]).is_err());
        assert!(Flags::parse(
            args(&["--concurrency", "1", "--concurrency", "2"]),
            &["concurrency"],
            &[]
        )
        .is_err());
        let bad =
            Flags::parse(args(&["--concurrency", "many"]), &["concurrency"], &[]).expect("parses");
        assert!(bad.number("concurrency", 64, 1, 100).is_err());
    }
}
