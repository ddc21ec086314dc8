//! Python-compatible printing for chat templates: how values print in `{{ }}` and through
//! `|string` (Python's `str()`/`repr()`), and the `tojson` filter with `json.dumps` semantics
//! (no HTML escaping, `ensure_ascii=False`, `indent`, `separators`, `sort_keys`, Python-style
//! floats). It knows nothing of messages or of which template is rendered.

use super::*;

/// Prints `{{ value }}` as Python's `str()` would: `None`, `True`, `['a', 1]`.
pub(super) fn python_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), Error> {
    let text = match value.as_str() {
        Some(text) if value.kind() == ValueKind::String => Cow::Borrowed(text),
        _ => Cow::Owned(python_str(value)),
    };
    out.write_str(&text).map_err(Error::from)
}

/// Python's `str()` of a value.
pub(super) fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        ValueKind::Undefined => String::new(),
        _ => {
            let mut out = String::new();
            python_repr(value, &mut out);
            out
        }
    }
}

/// Python's `repr()` of a value, as `str()` shows the items of a list or dict.
fn python_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&python_number(value, false)),
        ValueKind::String => python_str_repr(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq if value.is_tuple() => {
            let items: Vec<Value> = value.try_iter().map(Iterator::collect).unwrap_or_default();
            python_join(&items, ("(", ")"), out);
            if items.len() == 1 {
                out.insert(out.len() - 1, ',');
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter().map(Iterator::collect).unwrap_or_default();
            python_join(&items, ("[", "]"), out);
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(&key, out);
                out.push_str(": ");
                python_repr(&value.get_item(&key).unwrap_or_default(), out);
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
}

fn python_join(items: &[Value], (open, close): (&str, &str), out: &mut String) {
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        python_repr(item, out);
    }
    out.push_str(close);
}

/// `repr()` of a string: single quotes unless the text has one and no double quote.
fn python_str_repr(text: &str, out: &mut String) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// A number as Python prints it (`repr`), or as `json.dumps` writes it when `json` is set (the
/// same but for `NaN`/`Infinity`).
fn python_number(value: &Value, json: bool) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let Ok(number) = f64::try_from(value.clone()) else {
        return value.to_string();
    };
    python_float(number, json)
}

/// Python's float `repr`: the shortest round-trip digits, positional for exponents from -4 to
/// 15, scientific (`1e+16`, `1.5e-05`) outside.
pub(super) fn python_float(number: f64, json: bool) -> String {
    if number.is_nan() {
        return if json { "NaN" } else { "nan" }.into();
    }
    if number.is_infinite() {
        let sign = if number < 0.0 { "-" } else { "" };
        return format!("{sign}{}", if json { "Infinity" } else { "inf" });
    }
    let scientific = format!("{number:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.abs()
        );
    }
    if exponent < 0 {
        let zeros = "0".repeat(exponent.unsigned_abs() as usize - 1);
        return format!("{sign}0.{zeros}{digits}");
    }
    let integer_len = exponent as usize + 1;
    if digits.len() <= integer_len {
        format!("{sign}{digits}{}.0", "0".repeat(integer_len - digits.len()))
    } else {
        format!(
            "{sign}{}.{}",
            &digits[..integer_len],
            &digits[integer_len..]
        )
    }
}

/// How `json.dumps` lays out its output.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// HF's `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, which is
/// `json.dumps` with those arguments: no HTML escaping, non-ASCII kept, `", "` and `": "`
/// between items unless indenting.
pub(super) fn tojson_filter(
    value: &Value,
    positional: &[Value],
    kwargs: Kwargs,
) -> Result<Value, Error> {
    type Positional = (Option<Value>, Option<Value>, Option<Value>, Option<Value>);
    let (ensure_ascii, indent, separators, sort_keys): Positional = from_args(positional)?;
    let argument = |positional: Option<Value>, name: &str| -> Result<Option<Value>, Error> {
        let keyword: Option<Value> = kwargs.get(name)?;
        Ok(keyword
            .or(positional)
            .filter(|value| !value.is_none() && !value.is_undefined()))
    };
    let ensure_ascii = argument(ensure_ascii, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = argument(indent, "indent")?.map(|indent| match indent.as_str() {
        Some(text) => text.to_owned(),
        None => " ".repeat(indent.as_i64().unwrap_or(0).max(0) as usize),
    });
    let separators = argument(separators, "separators")?;
    let sort_keys = argument(sort_keys, "sort_keys")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    let default_item = if indent.is_some() { "," } else { ", " };
    let (item_separator, key_separator) = match separators {
        Some(pair) => {
            let item = pair.get_item_by_index(0)?;
            let key = pair.get_item_by_index(1)?;
            (python_str(&item), python_str(&key))
        }
        None => (default_item.to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_separator,
        key_separator,
        sort_keys,
    };
    let mut out = String::new();
    dump_json(value, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

fn dump_json(
    value: &Value,
    style: &JsonStyle,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(value, true)),
        ValueKind::String => dump_json_str(value.as_str().unwrap_or_default(), style, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter()?.map(|item| (None, item)).collect();
            dump_json_container(items, ("[", "]"), style, depth, out)?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((Some(json_key(&key)), item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            dump_json_container(entries, ("{", "}"), style, depth, out)?;
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("object of type {kind} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

/// A dict key as `json.dumps` writes it: strings as they are, `True`/`None`/numbers in JSON.
fn json_key(key: &Value) -> String {
    match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => python_number(key, true),
        _ => key.to_string(),
    }
}

type JsonEntry = (Option<String>, Value);

fn dump_json_container(
    entries: Vec<JsonEntry>,
    (open, close): (&str, &str),
    style: &JsonStyle,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    out.push_str(open);
    if entries.is_empty() {
        out.push_str(close);
        return Ok(());
    }
    let newline = |depth: usize| {
        style
            .indent
            .as_ref()
            .map(|unit| format!("\n{}", unit.repeat(depth)))
    };
    let inner_newline = newline(depth + 1);
    out.push_str(inner_newline.as_deref().unwrap_or_default());
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_separator);
            out.push_str(inner_newline.as_deref().unwrap_or_default());
        }
        if let Some(key) = key {
            dump_json_str(&key, style, out);
            out.push_str(&style.key_separator);
        }
        dump_json(&item, style, depth + 1, out)?;
    }
    out.push_str(newline(depth).as_deref().unwrap_or_default());
    out.push_str(close);
    Ok(())
}

/// A JSON string as Python's encoder writes it (lowercase `\u` escapes, surrogate pairs when
/// `ensure_ascii`).
fn dump_json_str(text: &str, style: &JsonStyle, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
