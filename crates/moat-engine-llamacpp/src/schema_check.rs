//! Limits on a JSON Schema, checked in Rust before llama.cpp's converter and grammar parser see
//! it. Both recurse on the schema's shape, and some small inputs crash the whole process or
//! keep a thread busy for minutes there:
//!
//! - a `$ref` cycle with no object or array in between (`{"allOf": [{"$ref": "#/allOf/0"}]}`)
//!   recurses until the stack overflows;
//! - a minimum above its maximum (`minLength` 5, `maxLength` 2) becomes the repetition `{5,2}`,
//!   whose count wraps around to 2^64 rules;
//! - a deeply bracketed `pattern` recurses once per bracket, in the converter and the parser;
//! - each optional property costs the converter work that grows with the cube of their number
//!   (200 of them: 22 ms; thousands: minutes);
//! - deep nesting and alternatives within alternatives multiply the grammar's work per token.
//!
//! What passes these limits is far beyond what real structured-output and tool schemas use
//! (OpenAI allows 10 levels of nesting and 5,000 properties in all).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The schema's JSON text.
const MAX_BYTES: usize = 256 * 1024;
/// Schemas inside schemas.
const MAX_DEPTH: usize = 32;
/// Schema objects in all.
const MAX_NODES: usize = 10_000;
/// Properties of one object not listed in its `required`.
const MAX_OPTIONAL_PROPERTIES: usize = 128;
/// `anyOf`/`oneOf` inside `anyOf`/`oneOf`.
const MAX_ALTERNATIVE_DEPTH: usize = 8;
const MAX_PATTERN_CHARS: usize = 1_000;
/// Brackets inside brackets in a `pattern`.
const MAX_PATTERN_DEPTH: usize = 32;
/// `$ref`s and alternatives followed one after another without an object or array between.
const MAX_BARE_CHAIN: usize = 64;
/// Numeric bounds beyond this are not exact in the converter's arithmetic.
const MAX_BOUND: f64 = 9_007_199_254_740_992.0;

/// Keywords whose value is one schema.
const ONE_SCHEMA: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
];
/// Keywords whose value is a list of schemas.
const SCHEMA_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
/// Keywords whose value maps names to schemas.
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "$defs",
    "definitions",
    "patternProperties",
    "dependentSchemas",
];
/// Counts, as llama.cpp reads them (non-negative integers).
const COUNTS: &[&str] = &[
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
];
const RANGES: &[(&str, &str)] = &[
    ("minLength", "maxLength"),
    ("minItems", "maxItems"),
    ("minProperties", "maxProperties"),
];

/// Checks the schema's text; the message says what is wrong and where (a JSON pointer).
pub(crate) fn check(text: &str) -> Result<(), String> {
    if text.len() > MAX_BYTES {
        return Err(format!(
            "the schema is {} bytes; at most {MAX_BYTES} are accepted",
            text.len()
        ));
    }
    let schema: Value =
        serde_json::from_str(text).map_err(|error| format!("the schema is not JSON: {error}"))?;
    let mut walk = Walk { nodes: 0 };
    walk.schema(&schema, "#", 0, 0)?;
    no_bare_cycle(&schema)
}

struct Walk {
    nodes: usize,
}

impl Walk {
    fn schema(
        &mut self,
        node: &Value,
        at: &str,
        depth: usize,
        alternatives: usize,
    ) -> Result<(), String> {
        let Value::Object(object) = node else {
            // `true`, `false` and anything else llama.cpp judges itself.
            return Ok(());
        };
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(format!("the schema has more than {MAX_NODES} subschemas"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("{at}: schemas nest more than {MAX_DEPTH} deep"));
        }
        if alternatives > MAX_ALTERNATIVE_DEPTH {
            return Err(format!(
                "{at}: anyOf/oneOf nest more than {MAX_ALTERNATIVE_DEPTH} deep"
            ));
        }
        bounds(object, at)?;
        if let Some(pattern) = object.get("pattern").and_then(Value::as_str) {
            check_pattern(pattern, at)?;
        }
        optional_properties(object, at)?;
        for (key, value) in object {
            let key = key.as_str();
            let here = format!("{at}/{}", escape(key));
            let inner = if key == "anyOf" || key == "oneOf" {
                alternatives + 1
            } else {
                alternatives
            };
            if SCHEMA_LISTS.contains(&key) {
                if let Value::Array(items) = value {
                    for (index, item) in items.iter().enumerate() {
                        self.schema(item, &format!("{here}/{index}"), depth + 1, inner)?;
                    }
                    continue;
                }
            }
            if ONE_SCHEMA.contains(&key) {
                self.schema(value, &here, depth + 1, inner)?;
            } else if SCHEMA_MAPS.contains(&key) {
                if let Value::Object(map) = value {
                    for (name, item) in map {
                        self.schema(item, &format!("{here}/{}", escape(name)), depth + 1, inner)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Counts are non-negative integers, bounds finite numbers, and no minimum is above its maximum
/// (as llama.cpp reads them: integer bounds rounded inwards, exclusive ones moved by one).
fn bounds(object: &Map<String, Value>, at: &str) -> Result<(), String> {
    for &key in COUNTS {
        if let Some(value) = object.get(key) {
            if value.as_u64().is_none_or(|n| n > i32::MAX as u64) {
                return Err(format!(
                    "{at}: {key} must be a non-negative integer, not {value}"
                ));
            }
        }
    }
    for &(low, high) in RANGES {
        if let (Some(min), Some(max)) = (
            object.get(low).and_then(Value::as_u64),
            object.get(high).and_then(Value::as_u64),
        ) {
            if min > max {
                return Err(format!("{at}: {low} {min} is above {high} {max}"));
            }
        }
    }
    let number = |key: &str| -> Result<Option<f64>, String> {
        match object.get(key) {
            None => Ok(None),
            Some(value) => match value.as_f64() {
                Some(x) if x.is_finite() && x.abs() <= MAX_BOUND => Ok(Some(x)),
                _ => Err(format!(
                    "{at}: {key} must be a number within ±2^53, not {value}"
                )),
            },
        }
    };
    let low = match (number("minimum")?, number("exclusiveMinimum")?) {
        (Some(min), _) => Some(min.ceil()),
        (None, Some(min)) => Some(min.floor() + 1.0),
        (None, None) => None,
    };
    let high = match (number("maximum")?, number("exclusiveMaximum")?) {
        (Some(max), _) => Some(max.floor()),
        (None, Some(max)) => Some(max.ceil() - 1.0),
        (None, None) => None,
    };
    let integer = object.get("type").and_then(Value::as_str) == Some("integer");
    if let (Some(low), Some(high)) = (low, high) {
        if integer && low > high {
            return Err(format!(
                "{at}: no integer lies between its minimum and maximum"
            ));
        }
    }
    Ok(())
}

fn check_pattern(pattern: &str, at: &str) -> Result<(), String> {
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!(
            "{at}: pattern is longer than {MAX_PATTERN_CHARS} characters"
        ));
    }
    let (mut depth, mut deepest, mut escaped) = (0usize, 0usize, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' | '[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_PATTERN_DEPTH {
        return Err(format!(
            "{at}: pattern nests brackets more than {MAX_PATTERN_DEPTH} deep"
        ));
    }
    Ok(())
}

fn optional_properties(object: &Map<String, Value>, at: &str) -> Result<(), String> {
    let Some(Value::Object(properties)) = object.get("properties") else {
        return Ok(());
    };
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let optional = properties
        .keys()
        .filter(|name| !required.contains(&name.as_str()))
        .count();
    if optional > MAX_OPTIONAL_PROPERTIES {
        return Err(format!(
            "{at}: {optional} properties are optional (not in required); at most \
             {MAX_OPTIONAL_PROPERTIES} are accepted"
        ));
    }
    Ok(())
}

/// Refuses a `$ref` that leads back to itself through nothing but `$ref`, `allOf`, `anyOf` and
/// `oneOf` (a schema defined as itself); a cycle through an object's properties or an array's
/// items is a recursive schema, which is fine.
fn no_bare_cycle(root: &Value) -> Result<(), String> {
    // Depth-first over the bare edges from every schema a `$ref` names, and from the root.
    let mut starts = vec!["#".to_owned()];
    collect_refs(root, &mut starts);
    let mut done = HashSet::new();
    for start in starts {
        let mut path = Vec::new();
        visit(root, start, &mut path, &mut done)?;
    }
    Ok(())
}

fn visit(
    root: &Value,
    at: String,
    path: &mut Vec<String>,
    done: &mut HashSet<String>,
) -> Result<(), String> {
    if done.contains(&at) {
        return Ok(());
    }
    if path.contains(&at) {
        return Err(format!(
            "{at}: $ref leads back to itself through only $ref/allOf/anyOf/oneOf ({})",
            path.join(" -> ")
        ));
    }
    if path.len() >= MAX_BARE_CHAIN {
        return Err(format!(
            "{at}: more than {MAX_BARE_CHAIN} $ref/allOf/anyOf/oneOf follow one another"
        ));
    }
    let Some(Value::Object(node)) = resolve(root, &at) else {
        // A $ref llama.cpp cannot resolve is its error to report.
        done.insert(at);
        return Ok(());
    };
    path.push(at.clone());
    if let Some(Value::String(target)) = node.get("$ref") {
        visit(root, target.clone(), path, done)?;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = node.get(key) {
            for index in 0..items.len() {
                visit(root, format!("{at}/{key}/{index}"), path, done)?;
            }
        }
    }
    path.pop();
    done.insert(at);
    Ok(())
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// The value a JSON pointer of the form `#/a/b` names within the document.
fn resolve<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let rest = pointer.strip_prefix('#')?;
    if rest.is_empty() {
        return Some(root);
    }
    root.pointer(rest)
}

/// A name as one JSON-pointer segment.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(schema: Value) -> String {
        check(&schema.to_string()).unwrap_err()
    }

    #[test]
    fn ordinary_schemas_pass() {
        let tree = json!({
            "$defs": {"node": {"type": "object", "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 40},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 5000}
            }, "required": ["name"]}},
            "anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]
        });
        check(&tree.to_string()).unwrap();
        let person = json!({"type": "object", "properties": {
            "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
            "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.(com|org)$"},
            "score": {"type": "number", "minimum": 0.5, "maximum": 0.7}
        }});
        check(&person.to_string()).unwrap();
        check("true").unwrap();
        check("{}").unwrap();
    }

    #[test]
    fn a_ref_that_is_only_itself_is_refused() {
        assert!(problem(json!({"allOf": [{"$ref": "#/allOf/0"}]})).contains("leads back"));
        assert!(problem(json!({"$ref": "#"})).contains("leads back"));
        let pair = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                          "$ref": "#/$defs/a"});
        assert!(problem(pair).contains("leads back"));
        let chain: Map<String, Value> = (0..100)
            .map(|i| {
                (
                    format!("d{i}"),
                    json!({"$ref": format!("#/$defs/d{}", i + 1)}),
                )
            })
            .collect();
        assert!(
            problem(json!({"$defs": chain, "$ref": "#/$defs/d0"})).contains("follow one another")
        );
    }

    #[test]
    fn a_minimum_above_its_maximum_is_refused() {
        assert!(
            problem(json!({"type": "string", "minLength": 5, "maxLength": 2}))
                .contains("minLength 5")
        );
        assert!(
            problem(json!({"type": "array", "minItems": 3, "maxItems": 1})).contains("minItems 3")
        );
        assert!(
            problem(json!({"type": "integer", "minimum": 1.5, "maximum": 1.7}))
                .contains("no integer")
        );
        assert!(
            problem(json!({"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 4}))
                .contains("no integer")
        );
        assert!(problem(json!({"type": "string", "maxLength": -1})).contains("non-negative"));
        assert!(problem(json!({"type": "string", "maxLength": 1.5})).contains("non-negative"));
        assert!(problem(json!({"type": "integer", "minimum": 1e300})).contains("2^53"));
    }

    #[test]
    fn deep_or_wide_schemas_are_refused() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(problem(deep).contains("nest more than"));
        let mut alternatives = json!({"type": "string"});
        for _ in 0..10 {
            alternatives = json!({"anyOf": [alternatives, {"type": "null"}]});
        }
        assert!(problem(alternatives).contains("anyOf/oneOf"));
        let properties: Map<String, Value> = (0..200)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        assert!(
            problem(json!({"type": "object", "properties": properties.clone()}))
                .contains("200 properties are optional")
        );
        let required: Vec<String> = properties.keys().cloned().collect();
        check(
            &json!({"type": "object", "properties": properties, "required": required}).to_string(),
        )
        .unwrap();
        let wide: Vec<Value> = (0..MAX_NODES).map(|_| json!({"type": "string"})).collect();
        assert!(problem(json!({"anyOf": wide})).contains("subschemas"));
        assert!(check(&" ".repeat(MAX_BYTES + 1))
            .unwrap_err()
            .contains("bytes"));
    }

    #[test]
    fn bracket_heavy_patterns_are_refused() {
        let nested = format!("^{}a{}$", "(".repeat(40), ")".repeat(40));
        assert!(problem(json!({"type": "string", "pattern": nested})).contains("brackets"));
        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        assert!(problem(json!({"type": "string", "pattern": long})).contains("longer than"));
        // Escaped brackets do not count.
        let escaped = format!("^{}$", "\\(".repeat(100));
        check(&json!({"type": "string", "pattern": escaped}).to_string()).unwrap();
    }
}
