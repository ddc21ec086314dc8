//! Small parsing helpers shared by the chat and completions requests: the body as a JSON
//! object, typed fields with the path of a bad one, and OpenAI's "string or list of strings".

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::WireError;

/// The body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| WireError::Malformed {
        message: format!("We could not parse the JSON body of your request: {error}"),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(WireError::Malformed {
            message: "The request body must be a JSON object.".into(),
        }),
    }
}

/// Deserializes `T` from the (screened) body, naming the field of a type error. Fields `T`
/// does not declare are skipped: screening already rejected unknown ones.
pub(crate) fn typed<T: DeserializeOwned>(body: &Map<String, Value>) -> Result<T, WireError> {
    let value = Value::Object(body.clone());
    serde_path_to_error::deserialize(value).map_err(|error| {
        let param = error.path().to_string();
        let message = error.into_inner().to_string();
        if param == "." {
            WireError::Malformed { message }
        } else {
            WireError::InvalidValue { param, message }
        }
    })
}

/// `stop`: a string or a list of strings.
pub(crate) fn string_or_list(param: &str, value: &Value) -> Result<Vec<String>, WireError> {
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    WireError::invalid(param, "expected a string or a list of strings")
                })
            })
            .collect(),
        _ => Err(WireError::invalid(
            param,
            "expected a string or a list of strings",
        )),
    }
}
