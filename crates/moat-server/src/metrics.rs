//! The server's metrics: a small hand-written registry (counters and histograms keyed by their
//! label values) and its rendering in Prometheus's text format 0.0.4, with `HELP` and `TYPE`
//! lines for every family. A crate would bring a global registry and more than this needs; the
//! format is a few lines of text.
//!
//! Label sets are bounded: a model label is a served model, an embedding model or a configured
//! alias (anything else, such as a misspelt name in a request, becomes `other`); routes are the
//! app's own route templates; statuses are classes (`2xx`); guard labels come from the policy's
//! closed set of detectors, its configured deny-lists and the four actions. So a client cannot
//! grow the registry however it names things.
//!
//! Engine gauges (running sequences, queue depth, KV cells) are not stored: the scrape reads
//! `Engine::stats` of every served model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use moat_engine::EngineStats;
use moat_gateway::GatewayMetrics;

/// The label value for anything outside a bounded set.
pub(crate) const OTHER: &str = "other";

/// Request latency buckets, in seconds: from a cached answer to a long generation.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Time to first token and queue time buckets, in seconds.
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Inter-token latency buckets, in seconds.
const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A counter family: one `u64` per label-value tuple.
pub(crate) struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterFamily {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `n` to the series of `values` (one per label, in order).
    pub(crate) fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len());
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let value = series.entry(key).or_insert(0);
        *value = value.saturating_add(n);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        for (values, value) in series.iter() {
            sample(out, self.name, &pairs(self.labels, values), *value as f64);
        }
    }
}

#[derive(Clone, Debug)]
struct Histogram {
    /// Observations at or under each bucket's bound (not cumulative; summed when rendered).
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram family with fixed buckets.
pub(crate) struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Histogram>>,
}

impl HistogramFamily {
    const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation of `duration` in the series of `values`.
    pub(crate) fn observe(&self, values: &[&str], duration: Duration) {
        debug_assert_eq!(values.len(), self.labels.len());
        let seconds = duration.as_secs_f64();
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let histogram = series.entry(key).or_insert_with(|| Histogram {
            buckets: vec![0; self.bounds.len()],
            sum: 0.0,
            count: 0,
        });
        if let Some(index) = self.bounds.iter().position(|&bound| seconds <= bound) {
            histogram.buckets[index] += 1;
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket_name = format!("{}_bucket", self.name);
        for (values, histogram) in series.iter() {
            let labels = pairs(self.labels, values);
            let mut cumulative = 0;
            for (bound, n) in self.bounds.iter().zip(&histogram.buckets) {
                cumulative += n;
                let mut with_le = labels.clone();
                with_le.push(("le", format_float(*bound)));
                sample(out, &bucket_name, &with_le, cumulative as f64);
            }
            let mut with_le = labels.clone();
            with_le.push(("le", "+Inf".to_owned()));
            sample(out, &bucket_name, &with_le, histogram.count as f64);
            sample(out, &format!("{}_sum", self.name), &labels, histogram.sum);
            sample(
                out,
                &format!("{}_count", self.name),
                &labels,
                histogram.count as f64,
            );
        }
    }
}

/// Every metric the server keeps between scrapes.
pub(crate) struct Metrics {
    pub requests: CounterFamily,
    pub request_duration: HistogramFamily,
    pub time_to_first_token: HistogramFamily,
    pub inter_token_latency: HistogramFamily,
    pub queue_time: HistogramFamily,
    pub prompt_tokens: CounterFamily,
    pub completion_tokens: CounterFamily,
    pub cached_prompt_tokens: CounterFamily,
    pub guard_hits: CounterFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: CounterFamily::new(
                "moat_http_requests_total",
                "HTTP requests answered, by route template, model (or alias) and status class.",
                &["route", "model", "status"],
            ),
            request_duration: HistogramFamily::new(
                "moat_http_request_duration_seconds",
                "Time from a request's arrival to the end of its answer (a stream's last byte).",
                &["route", "model"],
                LATENCY_BUCKETS,
            ),
            time_to_first_token: HistogramFamily::new(
                "moat_time_to_first_token_seconds",
                "Time from a request's arrival to each choice's first generated token.",
                &["model"],
                FIRST_TOKEN_BUCKETS,
            ),
            inter_token_latency: HistogramFamily::new(
                "moat_inter_token_latency_seconds",
                "Time between two consecutive generated tokens of one choice.",
                &["model"],
                INTER_TOKEN_BUCKETS,
            ),
            queue_time: HistogramFamily::new(
                "moat_queue_time_seconds",
                "Time from a request's arrival to the engine taking its prompt (its Started event).",
                &["model"],
                FIRST_TOKEN_BUCKETS,
            ),
            prompt_tokens: CounterFamily::new(
                "moat_prompt_tokens_total",
                "Prompt tokens of finished generations (each prompt counted once, whatever n).",
                &["model"],
            ),
            completion_tokens: CounterFamily::new(
                "moat_completion_tokens_total",
                "Tokens generated.",
                &["model"],
            ),
            cached_prompt_tokens: CounterFamily::new(
                "moat_cached_prompt_tokens_total",
                "Prompt tokens whose KV entries were reused instead of computed.",
                &["model"],
            ),
            guard_hits: CounterFamily::new(
                "moat_guard_hits_total",
                "Guardrail findings, by rail (input, output), detector (group.class, or classifier) and action.",
                &["rail", "detector", "action"],
            ),
        }
    }
}

/// One served model's engine load, read at scrape time.
pub(crate) struct EngineGauges {
    pub model: String,
    pub stats: EngineStats,
}

impl Metrics {
    /// The whole exposition: stored families, the engines' gauges, and the gateway's counters
    /// when the server runs one.
    pub(crate) fn render(
        &self,
        engines: &[EngineGauges],
        gateway: Option<&GatewayMetrics>,
    ) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.request_duration.render(&mut out);
        self.time_to_first_token.render(&mut out);
        self.inter_token_latency.render(&mut out);
        self.queue_time.render(&mut out);
        self.prompt_tokens.render(&mut out);
        self.completion_tokens.render(&mut out);
        self.cached_prompt_tokens.render(&mut out);
        self.guard_hits.render(&mut out);
        render_engines(engines, &mut out);
        if let Some(gateway) = gateway {
            render_gateway(gateway, &mut out);
        }
        out
    }
}

/// The gauges of `Engine::stats`, one series per served model that reports them.
fn render_engines(engines: &[EngineGauges], out: &mut String) {
    type Read = fn(&EngineStats) -> f64;
    let families: [(&str, &str, Read); 6] = [
        (
            "moat_engine_running_sequences",
            "Sequences with a request (prefilling or generating).",
            |s| s.running as f64,
        ),
        (
            "moat_engine_prefilling_sequences",
            "Sequences still taking their prompt.",
            |s| s.prefilling as f64,
        ),
        (
            "moat_engine_queue_depth",
            "Requests admitted and waiting for a free sequence.",
            |s| s.queued as f64,
        ),
        (
            "moat_engine_kv_cells_used",
            "KV-cache cells in use (a prefix shared by sequences counts once).",
            |s| s.kv_cells_used as f64,
        ),
        (
            "moat_engine_kv_cells_capacity",
            "KV-cache cells in the context, over every sequence.",
            |s| s.kv_cells_total as f64,
        ),
        (
            "moat_engine_kv_cache_usage_ratio",
            "KV-cache cells in use over cells in total (0 to 1).",
            |s| {
                if s.kv_cells_total == 0 {
                    0.0
                } else {
                    s.kv_cells_used as f64 / s.kv_cells_total as f64
                }
            },
        ),
    ];
    for (name, help, read) in families {
        header(out, name, help, "gauge");
        for engine in engines {
            sample(
                out,
                name,
                &[("model", engine.model.clone())],
                read(&engine.stats),
            );
        }
    }
    let name = "moat_engine_decode_steps_total";
    header(
        out,
        name,
        "Batches decoded since the model was loaded.",
        "counter",
    );
    for engine in engines {
        sample(
            out,
            name,
            &[("model", engine.model.clone())],
            engine.stats.steps as f64,
        );
    }
}

/// The gateway's counters: per alias (requests, errors, fallbacks, cache hits), per alias and
/// target (attempts, errors, upstream latency as a summary's sum and count), and the response
/// cache's hits, misses and size. Labels are the configured aliases and target labels only.
pub(crate) fn render_gateway(metrics: &GatewayMetrics, out: &mut String) {
    type AliasRead = fn(&moat_gateway::AliasMetrics) -> u64;
    let alias_families: [(&str, &str, AliasRead); 4] = [
        (
            "moat_gateway_requests_total",
            "Requests for a gateway alias, cache hits included.",
            |a| a.requests,
        ),
        (
            "moat_gateway_errors_total",
            "Alias requests that failed after every target was tried.",
            |a| a.errors,
        ),
        (
            "moat_gateway_fallbacks_total",
            "Attempts made after an earlier target or replica failed.",
            |a| a.fallbacks,
        ),
        (
            "moat_gateway_alias_cache_hits_total",
            "Alias requests answered from the response cache.",
            |a| a.cache_hits,
        ),
    ];
    for (name, help, read) in alias_families {
        header(out, name, help, "counter");
        for alias in &metrics.aliases {
            sample(
                out,
                name,
                &[("alias", alias.alias.clone())],
                read(alias) as f64,
            );
        }
    }
    type TargetRead = fn(&moat_gateway::TargetMetrics) -> f64;
    let target_families: [(&str, &str, TargetRead); 2] = [
        (
            "moat_gateway_upstream_requests_total",
            "Attempts sent to a target (all its replicas).",
            |t| t.requests as f64,
        ),
        (
            "moat_gateway_upstream_errors_total",
            "Attempts to a target that failed.",
            |t| t.errors as f64,
        ),
    ];
    for (name, help, read) in target_families {
        header(out, name, help, "counter");
        for (alias, target) in targets(metrics) {
            sample(out, name, &target_labels(alias, target), read(target));
        }
    }
    let latency = "moat_gateway_upstream_latency_seconds";
    header(
        out,
        latency,
        "Attempt latency to a target: to the whole answer, or to a stream's first chunk.",
        "summary",
    );
    for (alias, target) in targets(metrics) {
        let labels = target_labels(alias, target);
        sample(
            out,
            &format!("{latency}_sum"),
            &labels,
            target.latency_seconds_total,
        );
        sample(
            out,
            &format!("{latency}_count"),
            &labels,
            target.latency_count as f64,
        );
    }
    let cache: [(&str, &str, &str, u64); 3] = [
        (
            "moat_gateway_cache_hits_total",
            "Response-cache lookups that found an answer.",
            "counter",
            metrics.cache_hits,
        ),
        (
            "moat_gateway_cache_misses_total",
            "Response-cache lookups of cacheable requests that found nothing.",
            "counter",
            metrics.cache_misses,
        ),
        (
            "moat_gateway_cache_bytes",
            "Bytes the response cache holds.",
            "gauge",
            metrics.cache_bytes,
        ),
    ];
    for (name, help, kind, value) in cache {
        header(out, name, help, kind);
        sample(out, name, &[], value as f64);
    }
}

/// The trace exporter's counters, when the server exports traces.
pub(crate) fn render_otlp(exporter: &moat_otlp::Exporter, out: &mut String) {
    let families = [
        (
            "moat_otlp_spans_exported_total",
            "Trace spans the OTLP collector accepted.",
            exporter.exported(),
        ),
        (
            "moat_otlp_spans_dropped_total",
            "Trace spans dropped: the export queue was full, or the collector failed their batch.",
            exporter.dropped(),
        ),
    ];
    for (name, help, value) in families {
        header(out, name, help, "counter");
        sample(out, name, &[], value as f64);
    }
}

fn targets(metrics: &GatewayMetrics) -> impl Iterator<Item = (&str, &moat_gateway::TargetMetrics)> {
    metrics.aliases.iter().flat_map(|alias| {
        alias
            .targets
            .iter()
            .map(move |target| (alias.alias.as_str(), target))
    })
}

fn target_labels(alias: &str, target: &moat_gateway::TargetMetrics) -> Vec<(&'static str, String)> {
    vec![
        ("alias", alias.to_owned()),
        ("target", target.target.clone()),
    ]
}

fn pairs(names: &'static [&'static str], values: &[String]) -> Vec<(&'static str, String)> {
    names.iter().copied().zip(values.iter().cloned()).collect()
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    out.push('\n');
}

/// A sample value or bucket bound as the format wants it (`+Inf`, `NaN`, or a plain number).
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        (if value > 0.0 { "+Inf" } else { "-Inf" }).to_owned()
    } else {
        format!("{value}")
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The status class of an HTTP status: `2xx`, `4xx`, `5xx`.
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The metric name of a guard action.
pub(crate) fn action_label(action: moat_guard::Action) -> &'static str {
    match action {
        moat_guard::Action::Allow => "allow",
        moat_guard::Action::Flag => "flag",
        moat_guard::Action::Redact => "redact",
        moat_guard::Action::Block => "block",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let family = HistogramFamily::new("t_seconds", "help", &["model"], &[0.1, 1.0]);
        // Binary fractions, so the sum prints exactly.
        family.observe(&["m"], Duration::from_micros(62_500));
        family.observe(&["m"], Duration::from_millis(500));
        family.observe(&["m"], Duration::from_secs(4));
        let mut out = String::new();
        family.render(&mut out);
        let expected = "# HELP t_seconds help\n# TYPE t_seconds histogram\n\
            t_seconds_bucket{model=\"m\",le=\"0.1\"} 1\n\
            t_seconds_bucket{model=\"m\",le=\"1\"} 2\n\
            t_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\n\
            t_seconds_sum{model=\"m\"} 4.5625\n\
            t_seconds_count{model=\"m\"} 3\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let family = CounterFamily::new("c_total", "a \\ help\nline", &["alias"]);
        family.add(&["a\"b\\c\nd"], 2);
        let mut out = String::new();
        family.render(&mut out);
        assert_eq!(
            out,
            "# HELP c_total a \\\\ help\\nline\n# TYPE c_total counter\n\
             c_total{alias=\"a\\\"b\\\\c\\nd\"} 2\n"
        );
    }

    /// Every family, the gateway's included, with samples, through Prometheus's own parser and
    /// linter. A missing promtool (Debian's `prometheus` package) fails the test.
    #[test]
    fn promtool_accepts_every_family() {
        let metrics = Metrics::default();
        let model = ["m"];
        metrics
            .requests
            .add(&["/v1/chat/completions", "m", "2xx"], 3);
        metrics
            .request_duration
            .observe(&["/v1/chat/completions", "m"], Duration::from_millis(120));
        metrics
            .time_to_first_token
            .observe(&model, Duration::from_millis(30));
        metrics
            .inter_token_latency
            .observe(&model, Duration::from_millis(8));
        metrics.queue_time.observe(&model, Duration::from_millis(2));
        metrics.prompt_tokens.add(&model, 12);
        metrics.completion_tokens.add(&model, 40);
        metrics.cached_prompt_tokens.add(&model, 4);
        metrics.guard_hits.add(&["input", "pii.email", "redact"], 1);
        let engines = [EngineGauges {
            model: "m".into(),
            stats: EngineStats {
                running: 1,
                prefilling: 0,
                queued: 2,
                idle_cached: 1,
                kv_cells_used: 100,
                kv_cells_total: 4096,
                steps: 37,
            },
        }];
        let target = moat_gateway::TargetMetrics {
            target: "local:m".into(),
            requests: 5,
            errors: 1,
            latency_seconds_total: 0.75,
            latency_count: 4,
        };
        let gateway = GatewayMetrics {
            aliases: vec![moat_gateway::AliasMetrics {
                alias: "fast".into(),
                requests: 5,
                errors: 0,
                fallbacks: 1,
                cache_hits: 2,
                targets: vec![target],
            }],
            cache_hits: 2,
            cache_misses: 3,
            cache_bytes: 1024,
        };
        let text = metrics.render(&engines, Some(&gateway));
        for family in [
            "moat_gateway_requests_total{alias=\"fast\"} 5",
            "moat_gateway_upstream_latency_seconds_sum{alias=\"fast\",target=\"local:m\"} 0.75",
            "moat_gateway_cache_bytes 1024",
            "moat_engine_queue_depth{model=\"m\"} 2",
            "# TYPE moat_engine_decode_steps_total counter",
            "moat_engine_decode_steps_total{model=\"m\"} 37",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        promtool_check(&text);
    }

    fn promtool_check(text: &str) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("promtool is needed (apt-get install prometheus): {error}")
            });
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .expect("promtool reads the exposition");
        }
        let output = child.wait_with_output().expect("promtool runs");
        assert!(
            output.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
