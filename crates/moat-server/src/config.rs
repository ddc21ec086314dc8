//! `ServerConfig`: where the server listens and its limits. The defaults live here.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen; loopback unless the operator says otherwise.
    pub bind: SocketAddr,
    /// Larger request bodies get a 413.
    pub body_limit_bytes: usize,
    /// After a shutdown signal, how long requests in flight may take before the server stops.
    pub shutdown_grace: Duration,
    /// How long a connection may take to send a request's head (line and headers), and how
    /// long a keep-alive connection may sit idle; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// How long the request body may go without a byte arriving; past it the request gets
    /// 408.
    pub body_idle_timeout: Duration,
    /// Serve `/metrics` without an API key even once keys exist (by default it needs an
    /// admin key then).
    pub metrics_public: bool,
    /// The origins (`scheme://host[:port]`) whose web pages may call the API from a browser,
    /// or `*` for any; empty (the default) sends no CORS headers, so browsers keep other
    /// sites' pages from reading the answers. [`valid_origin`] says what is accepted.
    pub cors_origins: Vec<String>,
    /// How the one log line per request is written on stderr.
    pub log_format: LogFormat,
    /// Where request traces go (OTLP/HTTP); `None` (the default) builds no spans at all.
    /// The caller starts the exporter and keeps a clone to flush it at shutdown.
    pub otlp: Option<moat_otlp::Exporter>,
    /// Most tokens of thinking for a chat request that sets no budget of its own; `None` (the
    /// default) sets no limit.
    pub thinking_budget: Option<u32>,
}

/// Whether `origin` can be a `cors_origins` entry: `*`, or `http(s)://host[:port]` with no
/// path, as browsers send it in `Origin`; the error says why not.
pub fn valid_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{origin:?}: an origin starts with http:// or https://"))?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if rest.is_empty() || !rest.chars().all(plain) {
        return Err(format!(
            "{origin:?}: an origin is scheme://host[:port], with no path or trailing slash"
        ));
    }
    Ok(())
}

/// The request log's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per request (`ts level id method path status model=…`).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl ServerConfig {
    pub const DEFAULT_PORT: u16 = 8080;
    pub const DEFAULT_BODY_LIMIT_BYTES: usize = 10 * 1024 * 1024;
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, Self::DEFAULT_PORT)),
            body_limit_bytes: Self::DEFAULT_BODY_LIMIT_BYTES,
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_idle_timeout: Self::DEFAULT_BODY_IDLE_TIMEOUT,
            metrics_public: false,
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            otlp: None,
            thinking_budget: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_what_browsers_send() {
        for good in [
            "*",
            "http://localhost:3000",
            "https://chat.example.com",
            "http://[::1]:8080",
        ] {
            assert!(valid_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "localhost:3000",
            "http://",
            "http://a.b/",
            "https://a.b/path",
            "ftp://a.b",
            "http://a b",
        ] {
            assert!(valid_origin(bad).is_err(), "{bad}");
        }
    }
}
