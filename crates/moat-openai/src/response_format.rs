//! `response_format`: OpenAI's structured output. `text` leaves the model free, `json_object`
//! asks for any JSON object, `json_schema` for a value matching a JSON Schema. The engine
//! enforces the last two while sampling (see `moat_engine::Grammar`), whatever `strict` says.

use moat_engine::Grammar;
use serde_json::{Map, Value};

use crate::WireError;

const PARAM: &str = "response_format";

/// What `response_format` asks for: `None` for free text (absent, null or `text`).
pub(crate) fn parse(value: Option<&Value>) -> Result<Option<Grammar>, WireError> {
    let format = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(format)) => format,
        Some(_) => {
            return Err(WireError::invalid(
                PARAM,
                "expected an object such as {\"type\": \"json_object\"}",
            ))
        }
    };
    let kind = match format.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => {
            return Err(WireError::Missing {
                param: format!("{PARAM}.type"),
            })
        }
        Some(_) => {
            return Err(WireError::invalid(
                format!("{PARAM}.type"),
                "expected a string",
            ))
        }
    };
    let allowed: &[&str] = match kind {
        "text" | "json_object" => &["type"],
        "json_schema" => &["type", "json_schema"],
        other => {
            return Err(WireError::invalid(
                format!("{PARAM}.type"),
                format!("'{other}' is not one of text, json_object, json_schema"),
            ))
        }
    };
    only_known(format, allowed, PARAM)?;
    Ok(match kind {
        "json_object" => Some(Grammar::json_object()),
        "json_schema" => Some(json_schema(format.get("json_schema"))?),
        _ => None,
    })
}

/// `{"name": ..., "description": ..., "schema": {...}, "strict": ...}`; a missing schema allows
/// any JSON value.
fn json_schema(value: Option<&Value>) -> Result<Grammar, WireError> {
    let param = format!("{PARAM}.json_schema");
    let spec = match value {
        Some(Value::Object(spec)) => spec,
        None | Some(Value::Null) => return Err(WireError::Missing { param }),
        Some(_) => return Err(WireError::invalid(param, "expected an object")),
    };
    only_known(spec, &["name", "description", "schema", "strict"], &param)?;
    for (field, is_type) in [
        ("name", Value::is_string as fn(&Value) -> bool),
        ("description", Value::is_string),
        ("strict", Value::is_boolean),
    ] {
        if spec
            .get(field)
            .is_some_and(|value| !value.is_null() && !is_type(value))
        {
            let expected = if field == "strict" {
                "a boolean"
            } else {
                "a string"
            };
            return Err(WireError::invalid(
                format!("{param}.{field}"),
                format!("expected {expected}"),
            ));
        }
    }
    let schema = match spec.get("schema") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(schema @ Value::Object(_)) => schema.to_string(),
        Some(_) => {
            return Err(WireError::invalid(
                format!("{param}.schema"),
                "expected a JSON Schema object",
            ))
        }
    };
    Ok(Grammar::JsonSchema(schema))
}

fn only_known(object: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), WireError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(WireError::UnknownField {
            param: format!("{at}.{key}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(value: Value) -> Result<Option<Grammar>, WireError> {
        parse(Some(&value))
    }

    #[test]
    fn text_and_absence_leave_the_model_free() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parsed(Value::Null), Ok(None));
        assert_eq!(parsed(json!({"type": "text"})), Ok(None));
    }

    #[test]
    fn json_object_and_json_schema_become_grammars() {
        assert_eq!(
            parsed(json!({"type": "json_object"})),
            Ok(Some(Grammar::json_object()))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            parsed(json!({"type": "json_schema", "json_schema": {
                "name": "thing", "strict": true, "schema": schema.clone()
            }})),
            Ok(Some(Grammar::JsonSchema(schema.to_string())))
        );
        assert_eq!(
            parsed(json!({"type": "json_schema", "json_schema": {"name": "any"}})),
            Ok(Some(Grammar::JsonSchema("{}".into())))
        );
    }

    #[test]
    fn malformed_formats_name_the_field() {
        let param = |value: Value| parsed(value).unwrap_err().param().unwrap().to_owned();
        assert_eq!(param(json!("json")), "response_format");
        assert_eq!(param(json!({})), "response_format.type");
        assert_eq!(param(json!({"type": 3})), "response_format.type");
        assert_eq!(param(json!({"type": "yaml"})), "response_format.type");
        assert_eq!(
            param(json!({"type": "json_object", "schema": {}})),
            "response_format.schema"
        );
        assert_eq!(
            param(json!({"type": "json_schema"})),
            "response_format.json_schema"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"schema": []}})),
            "response_format.json_schema.schema"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"strict": "yes"}})),
            "response_format.json_schema.strict"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"name": 1}})),
            "response_format.json_schema.name"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"format": {}}})),
            "response_format.json_schema.format"
        );
    }
}
