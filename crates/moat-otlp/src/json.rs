//! The OTLP/HTTP JSON body of a batch: the protobuf-JSON mapping of
//! `ExportTraceServiceRequest`. Ids are hex strings (OTLP/JSON's rule, not base64), 64-bit
//! integers (times, `intValue`) are decimal strings, enums are numbers.

use serde_json::{json, Map, Value};

use crate::span::{AttributeValue, Span};

/// The instrumentation scope every span is sent under.
pub const SCOPE_NAME: &str = "moat";

/// The request body for `spans`, from the service `service_name`.
pub fn export_request(service_name: &str, spans: &[Span]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [attribute("service.name", &AttributeValue::String(service_name.to_owned()))],
            },
            "scopeSpans": [{
                "scope": {"name": SCOPE_NAME, "version": env!("CARGO_PKG_VERSION")},
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn span(span: &Span) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), span.trace_id.to_string().into());
    out.insert("spanId".into(), span.span_id.to_string().into());
    if let Some(parent) = span.parent_span_id {
        out.insert("parentSpanId".into(), parent.to_string().into());
    }
    out.insert("name".into(), span.name.clone().into());
    out.insert("kind".into(), span.kind.code().into());
    out.insert(
        "startTimeUnixNano".into(),
        span.start_unix_nanos.to_string().into(),
    );
    out.insert(
        "endTimeUnixNano".into(),
        span.end_unix_nanos.to_string().into(),
    );
    out.insert(
        "attributes".into(),
        span.attributes
            .iter()
            .map(|(key, value)| attribute(key, value))
            .collect::<Vec<_>>()
            .into(),
    );
    let mut status = Map::new();
    status.insert("code".into(), span.status.code().into());
    if let crate::Status::Error(message) = &span.status {
        status.insert("message".into(), message.clone().into());
    }
    out.insert("status".into(), status.into());
    Value::Object(out)
}

fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::String(text) => json!({"stringValue": text}),
        AttributeValue::Int(n) => json!({"intValue": n.to_string()}),
        AttributeValue::Bool(b) => json!({"boolValue": b}),
        AttributeValue::Double(x) if x.is_finite() => json!({"doubleValue": x}),
        // Protobuf JSON spells the values JSON numbers cannot hold as strings.
        AttributeValue::Double(x) if x.is_nan() => json!({"doubleValue": "NaN"}),
        AttributeValue::Double(x) if *x > 0.0 => json!({"doubleValue": "Infinity"}),
        AttributeValue::Double(_) => json!({"doubleValue": "-Infinity"}),
    };
    json!({"key": key, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SpanContext, SpanId, SpanKind, Status, TraceId};

    fn ids() -> (SpanContext, SpanId) {
        let context = SpanContext {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")
                .unwrap_or_else(|| unreachable!("valid hex")),
            span_id: SpanId::from_hex("00f067aa0ba902b7")
                .unwrap_or_else(|| unreachable!("valid hex")),
            flags: 1,
        };
        let parent =
            SpanId::from_hex("0102030405060708").unwrap_or_else(|| unreachable!("valid hex"));
        (context, parent)
    }

    #[test]
    fn the_body_has_the_otlp_json_shape() {
        let (context, parent) = ids();
        let mut server = Span::new(
            context,
            Some(parent),
            "POST /v1/chat/completions",
            SpanKind::Server,
            1_700_000_000_000_000_001,
        );
        server
            .set("http.request.method", "POST")
            .set("http.response.status_code", 500i64)
            .set("moat.cached", true)
            .set("moat.ratio", 0.5)
            .set("moat.nan", f64::NAN)
            .end_at(1_700_000_000_500_000_000);
        server.status = Status::error("engine failed");
        let mut root = Span::new(context.child(), None, "queue", SpanKind::Internal, 5);
        root.status = Status::Ok;
        let client = Span::new(context.child(), None, "upstream x", SpanKind::Client, 5);

        let body = export_request("moat-test", &[server, root, client]);
        let expected_resource = json!({"attributes": [
            {"key": "service.name", "value": {"stringValue": "moat-test"}}
        ]});
        assert_eq!(body["resourceSpans"][0]["resource"], expected_resource);
        let scope = &body["resourceSpans"][0]["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "moat");
        let spans = scope["spans"].as_array().unwrap_or_else(|| unreachable!());
        assert_eq!(spans.len(), 3);
        assert_eq!(
            spans[0],
            json!({
                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spanId": "00f067aa0ba902b7",
                "parentSpanId": "0102030405060708",
                "name": "POST /v1/chat/completions",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000001",
                "endTimeUnixNano": "1700000000500000000",
                "attributes": [
                    {"key": "http.request.method", "value": {"stringValue": "POST"}},
                    {"key": "http.response.status_code", "value": {"intValue": "500"}},
                    {"key": "moat.cached", "value": {"boolValue": true}},
                    {"key": "moat.ratio", "value": {"doubleValue": 0.5}},
                    {"key": "moat.nan", "value": {"doubleValue": "NaN"}},
                ],
                "status": {"code": 2, "message": "engine failed"},
            })
        );
        // A root span has no parentSpanId; kinds and status codes are numbers.
        assert!(spans[1].get("parentSpanId").is_none());
        assert_eq!(spans[1]["kind"], 1);
        assert_eq!(spans[1]["status"], json!({"code": 1}));
        assert_eq!(spans[2]["kind"], 3);
        assert_eq!(spans[2]["status"], json!({"code": 0}));
    }
}
