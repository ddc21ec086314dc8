//! Other servers' names for structured output, so their clients work unchanged: vLLM's
//! `guided_json` and `guided_choice`, and llama-server's `json_schema`. Each becomes the same
//! engine [`Grammar`] that `response_format` gives; at most one of them may be sent.

use moat_engine::Grammar;
use serde_json::Value;

use crate::WireError;

/// The fields as sent.
#[derive(Default, Clone, Copy)]
pub(crate) struct Guided<'a> {
    pub guided_json: Option<&'a Value>,
    pub guided_choice: Option<&'a Value>,
    pub json_schema: Option<&'a Value>,
}

/// The grammar of `response_format` (already parsed) or of one of the other fields, with the
/// name of the field it came from (for an error about it later).
pub(crate) fn grammar(
    response_format: Option<Grammar>,
    guided: Guided<'_>,
) -> Result<Option<(Grammar, &'static str)>, WireError> {
    let mut given: Vec<(&'static str, Grammar)> = Vec::new();
    if let Some(grammar) = response_format {
        given.push(("response_format", grammar));
    }
    if let Some(value) = guided.guided_json.filter(|v| !v.is_null()) {
        given.push(("guided_json", schema("guided_json", value, true)?));
    }
    if let Some(value) = guided.json_schema.filter(|v| !v.is_null()) {
        given.push(("json_schema", schema("json_schema", value, false)?));
    }
    if let Some(value) = guided.guided_choice.filter(|v| !v.is_null()) {
        given.push(("guided_choice", choice(value)?));
    }
    match given.len() {
        0 => Ok(None),
        1 => Ok(given.pop().map(|(field, grammar)| (grammar, field))),
        _ => Err(WireError::invalid(
            given[1].0,
            format!(
                "{} and {} both constrain the output; send one of response_format, \
                 guided_json, guided_choice and json_schema",
                given[0].0, given[1].0
            ),
        )),
    }
}

/// A JSON Schema object, or (`as_text`, as vLLM takes it) its JSON text.
fn schema(param: &str, value: &Value, as_text: bool) -> Result<Grammar, WireError> {
    match value {
        Value::Object(_) => Ok(Grammar::JsonSchema(value.to_string())),
        Value::String(text) if as_text => match serde_json::from_str::<Value>(text) {
            Ok(schema @ Value::Object(_)) => Ok(Grammar::JsonSchema(schema.to_string())),
            _ => Err(WireError::invalid(
                param,
                "expected a JSON Schema: an object, or its JSON text",
            )),
        },
        _ => Err(WireError::invalid(
            param,
            if as_text {
                "expected a JSON Schema: an object, or its JSON text"
            } else {
                "expected a JSON Schema object"
            },
        )),
    }
}

/// A list of non-empty strings: the output is exactly one of them.
fn choice(value: &Value) -> Result<Grammar, WireError> {
    const PARAM: &str = "guided_choice";
    let Value::Array(items) = value else {
        return Err(WireError::invalid(PARAM, "expected a list of strings"));
    };
    if items.is_empty() {
        return Err(WireError::invalid(PARAM, "expected at least one string"));
    }
    let texts = items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(text) if !text.is_empty() => Ok(text.clone()),
            _ => Err(WireError::invalid(
                format!("{PARAM}[{index}]"),
                "expected a non-empty string",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Grammar::Choice(texts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guided(
        json: Option<Value>,
        choice: Option<Value>,
        schema: Option<Value>,
    ) -> Result<Option<Grammar>, WireError> {
        grammar(
            None,
            Guided {
                guided_json: json.as_ref(),
                guided_choice: choice.as_ref(),
                json_schema: schema.as_ref(),
            },
        )
        .map(|found| found.map(|(grammar, _)| grammar))
    }

    #[test]
    fn each_field_gives_its_grammar() {
        let object = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let expected = Some(Grammar::JsonSchema(object.to_string()));
        assert_eq!(
            guided(Some(object.clone()), None, None),
            Ok(expected.clone())
        );
        assert_eq!(
            guided(Some(json!(object.to_string())), None, None),
            Ok(expected.clone())
        );
        assert_eq!(guided(None, None, Some(object)), Ok(expected));
        assert_eq!(
            guided(None, Some(json!(["yes", "no"])), None),
            Ok(Some(Grammar::Choice(vec!["yes".into(), "no".into()])))
        );
        assert_eq!(guided(None, None, None), Ok(None));
        assert_eq!(guided(Some(Value::Null), None, None), Ok(None));
    }

    #[test]
    fn bad_values_and_two_constraints_name_their_field() {
        let param =
            |result: Result<Option<_>, WireError>| result.unwrap_err().param().unwrap().to_owned();
        assert_eq!(
            param(guided(Some(json!("not json")), None, None)),
            "guided_json"
        );
        assert_eq!(param(guided(Some(json!([1])), None, None)), "guided_json");
        assert_eq!(param(guided(None, None, Some(json!("{}")))), "json_schema");
        assert_eq!(
            param(guided(None, Some(json!("yes")), None)),
            "guided_choice"
        );
        assert_eq!(param(guided(None, Some(json!([])), None)), "guided_choice");
        assert_eq!(
            param(guided(None, Some(json!(["a", ""])), None)),
            "guided_choice[1]"
        );
        assert_eq!(
            param(guided(None, Some(json!(["a", 2])), None)),
            "guided_choice[1]"
        );
        assert_eq!(
            param(guided(Some(json!({})), Some(json!(["a"])), None)),
            "guided_choice"
        );
        let both = grammar(
            Some(Grammar::json_object()),
            Guided {
                guided_json: Some(&json!({})),
                ..Guided::default()
            },
        );
        assert_eq!(
            param(both.map(|found| found.map(|(g, _)| g))),
            "guided_json"
        );
    }
}
