//! Pieces shared by the gateway benchmark's programs (`fast_upstream`, `gateway_node`,
//! `gateway_load`; see bench/gateway/README.md): command-line flags, the one-thread runtime,
//! the OpenAI wire shapes they send and check, and percentiles.
//!
//! Each program includes this file with `#[path]`, and uses only part of it.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// `--name value` flags, each given at most once; anything else is an error naming it.
pub struct Flags {
    values: BTreeMap<String, String>,
    switches: Vec<String>,
}

impl Flags {
    /// Parses `args` (without the program name). `switches` are the flags that take no value.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut seen_switches = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            if switches.contains(&name) {
                seen_switches.push(name.to_owned());
                continue;
            }
            if !valued.contains(&name) {
                return Err(format!("unknown flag --{name}"));
            }
            let Some(value) = args.next() else {
                return Err(format!("--{name} needs a value"));
            };
            if values.insert(name.to_owned(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Self {
            values,
            switches: seen_switches,
        })
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// The text of `--name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `--name` parsed as a number in `min..=max`, or `default` when absent.
    pub fn number<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        let value: T = text
            .parse()
            .map_err(|_| format!("--{name} {text:?} is not a number"))?;
        if value < min || value > max {
            return Err(format!("--{name} {value} is outside {min}..={max}"));
        }
        Ok(value)
    }
}

/// A tokio runtime with `threads` worker threads, for a program that must use no more.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|err| format!("starting the runtime: {err}"))
}

/// Serves `app` on 127.0.0.1:`port` (0: the OS picks). With `nodelay`, every accepted
/// connection gets `TCP_NODELAY`, so small SSE events are not held back by Nagle's algorithm
/// (axum's `serve` leaves it off). Prints `listening on ADDR` as the first line of stdout,
/// which is how bench/gateway/run.sh learns the port.
pub async fn serve(port: u16, app: axum::Router, nodelay: bool) -> Result<(), String> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|err| format!("binding 127.0.0.1:{port}: {err}"))?;
    let addr = listener
        .local_addr()
        .map_err(|err| format!("reading the bound address: {err}"))?;
    println!("listening on {addr}");
    let listener = listener.tap_io(move |tcp| {
        if let Err(err) = tcp.set_nodelay(nodelay) {
            eprintln!("setting TCP_NODELAY: {err}");
        }
    });
    axum::serve(listener, app)
        .await
        .map_err(|err| format!("serving: {err}"))
}

/// The request every client of the benchmark sends: a short chat, not deterministic (no
/// temperature), so a response cache, if one were configured, would not answer it.
pub fn chat_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in five words."}
        ],
        "max_tokens": 16,
        "stream": stream
    })
}

/// The words of the fast upstream's fixed completion; a streamed answer sends one per chunk.
pub const COMPLETION_WORDS: [&str; 5] = ["Hello", " there,", " nice", " to", " meet."];

/// Whether a whole chat answer has the shape of one: `choices[0].message.content` is text.
pub fn is_chat_completion(body: &Value) -> bool {
    body["choices"][0]["message"]["content"].is_string()
}

/// The value at quantile `q` (0..=1) of sorted samples, by the nearest-rank method; `None` for
/// no samples.
pub fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}
