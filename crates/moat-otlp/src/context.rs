//! Trace and span ids and the W3C `traceparent` header that carries them between services.
//!
//! Ids are random (16 and 8 bytes from the operating system's generator) and written as
//! lowercase hex. A `traceparent` that does not follow the W3C Trace Context rules exactly is
//! refused quietly (`None`): the caller then starts a new trace, as the recommendation says,
//! instead of failing the request or continuing a trace it cannot trust.

use std::fmt;

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// A new random id.
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    /// The id from its 32 lowercase hex digits; `None` for anything else or all zeros.
    pub fn from_hex(text: &str) -> Option<Self> {
        from_hex(text).map(Self)
    }

    /// The raw bytes.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// A new random id.
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    /// The id from its 16 lowercase hex digits; `None` for anything else or all zeros.
    pub fn from_hex(text: &str) -> Option<Self> {
        from_hex(text).map(Self)
    }

    /// The raw bytes.
    pub fn bytes(&self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Random bytes, never all zero (an all-zero id is invalid in W3C Trace Context and OTLP).
/// Should the system generator fail, which it does not on supported systems, the bytes come
/// from the clock and a counter: ids must still differ, they need not be unpredictable.
fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() || bytes.iter().all(|b| *b == 0) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = crate::span::now_unix_nanos();
        let mixed = (nanos ^ n.rotate_left(32)).to_le_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = mixed[i % 8] ^ (i as u8);
        }
        bytes[0] |= 1;
    }
    bytes
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// Exactly `2 * N` lowercase hex digits, not all zero.
fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
    }
    (bytes.iter().any(|b| *b != 0)).then_some(bytes)
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Where a span sits: its trace, its own id and the trace flags (bit 0: sampled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: u8,
}

/// The `sampled` trace flag.
pub const FLAG_SAMPLED: u8 = 0x01;

/// The longest `traceparent` value read; longer values are refused without being parsed.
const MAX_TRACEPARENT_BYTES: usize = 512;

impl SpanContext {
    /// The root of a new trace (sampled: moat records every request it traces).
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: FLAG_SAMPLED,
        }
    }

    /// A new span in the same trace, with the same flags.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
        }
    }

    /// Parses a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`). Version `00` must
    /// be exactly that; a later version may add fields after a `-`, which are ignored; version
    /// `ff`, uppercase hex, zero ids and anything malformed give `None`.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        if value.len() > MAX_TRACEPARENT_BYTES || !value.is_ascii() {
            return None;
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if value.len() < 55 {
            return None;
        }
        let (head, rest) = value.split_at(55);
        let version = from_hex_byte(&head[0..2])?;
        if version == 0xff || (version == 0 && !rest.is_empty()) {
            return None;
        }
        if !rest.is_empty() && !rest.starts_with('-') {
            return None;
        }
        let bytes = head.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        Some(Self {
            trace_id: TraceId::from_hex(&head[3..35])?,
            span_id: SpanId::from_hex(&head[36..52])?,
            flags: from_hex_byte(&head[53..55])?,
        })
    }

    /// The `traceparent` value naming this span as the parent (version `00`).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// One byte from two lowercase hex digits (`0`-`9`, `a`-`f` only, as W3C requires).
fn from_hex_byte(text: &str) -> Option<u8> {
    let digits = text.as_bytes();
    if digits.len() != 2 {
        return None;
    }
    Some((lower_hex_digit(digits[0])? << 4) | lower_hex_digit(digits[1])?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = SpanContext::parse_traceparent(VALID).unwrap();
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(context.flags, FLAG_SAMPLED);
        assert_eq!(context.traceparent(), VALID);
    }

    #[test]
    fn an_unsampled_flag_is_kept() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let context = SpanContext::parse_traceparent(value).unwrap();
        assert_eq!(context.flags, 0);
        assert_eq!(context.traceparent(), value);
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(SpanContext::parse_traceparent(value).is_some());
        // ...but version 00 may not.
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(SpanContext::parse_traceparent(value), None);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let too_long = format!("01-{}", "a".repeat(600));
        let refused = [
            "",
            "00",
            "garbage",
            // version ff
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // all-zero trace id and span id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // uppercase hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // wrong separators and lengths
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // not hex, not ASCII
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            too_long.as_str(),
        ];
        for value in refused {
            assert_eq!(SpanContext::parse_traceparent(value), None, "{value:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_refused_without_panicking() {
        for end in 0..VALID.len() {
            assert_eq!(SpanContext::parse_traceparent(&VALID[..end]), None);
        }
    }

    #[test]
    fn random_ids_are_hex_of_the_right_length_and_differ() {
        let a = TraceId::random();
        let b = TraceId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(TraceId::from_hex(&a.to_string()), Some(a));
        let s = SpanId::random();
        assert_eq!(s.to_string().len(), 16);
        assert_eq!(SpanId::from_hex(&s.to_string()), Some(s));
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span_id() {
        let root = SpanContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }
}
