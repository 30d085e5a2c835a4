//! The first pass over one table of a scenario: deserialize it, and where serde stops at a
//! mistake, report the mistake in a person's words, set the bad value aside and read on —
//! so every type error of a table is reported together, each at its own position, and a
//! table with a mistake still declares its names (nothing downstream says "unknown …").
//!
//! A bad value is replaced by a placeholder of a shape the field accepts, carrying the bad
//! value's span; that span is then *poisoned* in the diagnostics, so whatever the later
//! checks would say about the placeholder is not said (the mistake was reported once).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeInteger, DeTable, DeValue, ValueDeserializer};

use crate::util::diag::Diagnostics;

/// Rounds of "report, set aside, read again" for one table before giving up on it.
const MAX_ROUNDS: usize = 200;

/// Deserializes `value` as a `T`, reporting every mistake in it; `None` only when the table
/// cannot be read even with its mistakes set aside.
pub(super) fn read<T: for<'de> Deserialize<'de>>(
    key: &str,
    value: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Option<T> {
    let mut value = value.clone();
    // Spans already given a placeholder, with how many shapes were tried there.
    let mut tried: Vec<(Range<usize>, usize)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let error = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let span = error.span().unwrap_or_else(|| value.span());
        let message = error.message().trim().to_string();
        if let Some(field) = quoted_after(&message, "unknown field `") {
            let expected = expected_names(&message);
            if remove_key(&mut value, &span) {
                diagnostics.push(span, unknown_key(&field, &expected));
                continue;
            }
        } else if let Some(field) = quoted_after(&message, "missing field `") {
            // Missing because its bad value was set aside: already reported.
            let placeholder_span = span.start..span.start;
            if !tried.iter().any(|(s, _)| *s == placeholder_span) {
                diagnostics.push(span.clone(), format!("`{field}` is missing here"));
                diagnostics.poison(placeholder_span.clone());
                tried.push((placeholder_span.clone(), 0));
            }
            if insert_placeholder(&mut value, &span, &field, &mut tried) {
                continue;
            }
        } else {
            let shape = match tried.iter_mut().find(|(s, _)| *s == span) {
                None => {
                    let what = find_value(&value, &span).map(|(inner, found)| {
                        (
                            inner.unwrap_or_else(|| key.to_string()),
                            describe(found.get_ref()),
                        )
                    });
                    diagnostics.push(span.clone(), type_error(what, &message));
                    diagnostics.poison(span.clone());
                    tried.push((span.clone(), 0));
                    0
                }
                Some((_, shapes)) => {
                    *shapes += 1;
                    *shapes
                }
            };
            if let Some(placeholder) = PLACEHOLDERS.get(shape)
                && replace_value(&mut value, &span, placeholder())
            {
                continue;
            }
            // No shape fits: drop the key that holds the value.
            if remove_key_of_value(&mut value, &span) {
                continue;
            }
        }
        // Not a mistake this pass can set aside: report it as serde put it.
        if !tried.iter().any(|(s, _)| *s == span) {
            diagnostics.push(span, message);
        }
        return None;
    }
    None
}

/// Shapes tried in turn in place of a bad value, until the field accepts one.
const PLACEHOLDERS: [fn() -> DeValue<'static>; 6] = [
    || DeValue::String("".into()),
    || DeValue::Integer(DeInteger::default()),
    || DeValue::Boolean(false),
    || DeValue::Array(DeArray::new()),
    || DeValue::Table(DeTable::new()),
    || DeValue::String("0s".into()),
];

/// "unknown key `lenght`" with the nearest known names, when some are near.
pub(super) fn unknown_key(field: &str, expected: &[String]) -> String {
    let near = nearest(field, expected);
    match near.as_slice() {
        [one] => format!("unknown key `{field}`: did you mean `{one}`?"),
        [first @ .., last] if !first.is_empty() => format!(
            "unknown key `{field}`: did you mean {} or `{last}`?",
            first
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ if expected.is_empty() => format!("unknown key `{field}`: this table takes no keys"),
        _ => format!(
            "unknown key `{field}` (known here: {})",
            expected.join(", ")
        ),
    }
}

/// The known names a misspelling most likely meant: the closest by edit distance, or
/// those the word is part of (`timeout` for `request_timeout` and `connect_timeout`).
pub(super) fn nearest<'a>(field: &str, expected: &'a [String]) -> Vec<&'a str> {
    let field_lower = field.to_ascii_lowercase();
    let near: Vec<(usize, &'a str)> = expected
        .iter()
        .map(|name| {
            (
                strsim::damerau_levenshtein(&field_lower, name),
                name.as_str(),
            )
        })
        .filter(|(distance, name)| {
            *distance <= (name.len() / 3).max(1)
                || (field_lower.len() >= 4 && name.contains(field_lower.as_str()))
        })
        .collect();
    let Some(best) = near.iter().map(|(d, _)| *d).min() else {
        return Vec::new();
    };
    // A close spelling wins outright; otherwise every name the word is part of.
    let close: Vec<&str> = near
        .iter()
        .filter(|(d, name)| *d == best && *d <= (name.len() / 3).max(1))
        .map(|(_, name)| *name)
        .collect();
    if !close.is_empty() {
        return close.into_iter().take(3).collect();
    }
    near.into_iter().map(|(_, name)| name).take(3).collect()
}

/// What a field takes, in words, by its key (the same key means the same kind of value
/// everywhere in a scenario); `None` for keys whose type says it well enough.
fn takes(key: &str) -> Option<&'static str> {
    Some(match key {
        "connect_timeout" | "request_timeout" | "ramp_down" | "failure_backoff" | "duration"
        | "pacing" | "think" | "at" | "every" | "settle" | "backend_timeout" | "grace"
        | "latency" | "jitter" | "delay" => "a duration such as \"5s\"",
        "rate" | "start_rate" | "verify_rate" => "a rate such as \"50/s\"",
        "weight" | "repeat" | "start_vus" | "vus" | "max_in_flight" | "redirects" | "replicas"
        | "seed" | "min" | "max" => "a whole number such as 3",
        "port" => "a port number such as 8080",
        "max_body" => "a size such as \"4MiB\"",
        "bandwidth" => "a bandwidth such as \"1mbit\"",
        "expect" | "absent" => "a status such as 201, a list such as [200, 201], or \"2xx\"",
        "cookies" | "tls_verify" | "allow_last" | "abort" | "required" => "true or false",
        "compression" => "true, false, or the codings to offer such as \"gzip, br\"",
        "max_unavailable" => "a count such as 1 or a share such as \"50%\"",
        "allow_hosts" | "source_addrs" | "kube_namespaces" | "allow_targets" | "redact" => {
            "a list of text such as [\"127.0.0.1\"]"
        }
        "values" => "a list such as [\"a\", \"b\"]",
        "headers" | "form" => "a table of names to text, such as { Accept = \"text/html\" }",
        "check" => "a table such as { json = { \"/status\" = \"ok\" } }",
        "extract" => "a JSON pointer such as \"/id\", or { header = \"X-Total-Count\" }",
        "target" | "among" => "a table such as { container = \"backend-*\" }",
        _ => return None,
    })
}

/// serde's name for a type, in words.
fn expected_in_words(message: &str) -> String {
    let expected = message
        .rsplit_once(", expected ")
        .map_or("", |(_, e)| e)
        .trim();
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => {
            "a whole number".into()
        }
        "f32" | "f64" => "a number".into(),
        "a string" => "text in quotes".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list such as [\"…\"]".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        "" => "another kind of value".into(),
        other => other.to_string(),
    }
}

/// A type mistake at a key, in words: what the key takes, and what it was given.
fn type_error(at: Option<(String, String)>, message: &str) -> String {
    let Some((key, found)) = at else {
        return message.to_string();
    };
    let takes = takes(&key).map_or_else(|| expected_in_words(message), str::to_string);
    let out_of_range = message.starts_with("invalid value:");
    if out_of_range {
        return format!("`{key}` takes {takes}: {found} is out of range");
    }
    let hint = match (takes.contains('"'), found.starts_with("the text")) {
        // `weight = "3"`: the number, in quotes.
        (false, true) if takes.contains("whole number") || takes.contains("201") => {
            " (write it without quotes)"
        }
        // `request_timeout = 5`: a quantity needs its unit, in quotes.
        (true, false) if found.starts_with("the number") => " (in quotes, with its unit)",
        _ => "",
    };
    let key = if key.is_empty() {
        "this value".to_string()
    } else {
        format!("`{key}`")
    };
    format!("{key} takes {takes}, not {found}{hint}")
}

/// A value as a person would name it in a message.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(text) => {
            let shown: String = text.chars().take(40).collect();
            let more = if text.chars().count() > 40 { "…" } else { "" };
            format!("the text \"{shown}{more}\"")
        }
        DeValue::Integer(number) => format!("the number {number}"),
        DeValue::Float(number) => format!("the number {number}"),
        DeValue::Boolean(flag) => flag.to_string(),
        DeValue::Datetime(date) => format!("the date {date}"),
        DeValue::Array(_) => "a list".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// The text between `prefix` and the next backtick.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_string())
}

/// The names serde lists after "expected one of" (or "expected").
fn expected_names(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Removes the key whose own span is `span`, anywhere in the tree.
fn remove_key(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => {
            let found = table.keys().find(|key| key.span() == *span).cloned();
            match found {
                Some(key) => table.remove(&key).is_some(),
                None => table.iter_mut().any(|(_, v)| remove_key(v, span)),
            }
        }
        DeValue::Array(array) => array.iter_mut().any(|v| remove_key(v, span)),
        _ => false,
    }
}

/// Removes the key whose value (or an element of it) is at `span`.
fn remove_key_of_value(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => {
            let found = table
                .iter()
                .find(|(_, v)| v.span() == *span || is_scalar_holding(v, span))
                .map(|(key, _)| key.clone());
            match found {
                Some(key) => table.remove(&key).is_some(),
                None => table.iter_mut().any(|(_, v)| remove_key_of_value(v, span)),
            }
        }
        DeValue::Array(array) => array.iter_mut().any(|v| remove_key_of_value(v, span)),
        _ => false,
    }
}

/// Whether `value` is a list of plain values one of which is at `span` (an element is
/// removed with its key).
fn is_scalar_holding(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    value.get_ref().as_array().is_some_and(|array| {
        array
            .iter()
            .any(|v| v.span() == *span && !v.get_ref().is_table())
    })
}

/// Puts `placeholder` where the value at `span` is, keeping the span.
fn replace_value(
    value: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    placeholder: DeValue<'static>,
) -> bool {
    if value.span() == *span {
        *value = Spanned::new(span.clone(), placeholder);
        return true;
    }
    match value.get_mut() {
        // Not pruned by span: an array of tables' span need not cover its elements.
        DeValue::Table(table) => table
            .iter_mut()
            .any(|(_, v)| replace_value(v, span, placeholder.clone())),
        DeValue::Array(array) => array
            .iter_mut()
            .any(|v| replace_value(v, span, placeholder.clone())),
        _ => false,
    }
}

/// Adds the missing `field` to the table at `span`, with the next placeholder shape.
fn insert_placeholder(
    value: &mut Spanned<DeValue<'_>>,
    span: &Range<usize>,
    field: &str,
    tried: &mut [(Range<usize>, usize)],
) -> bool {
    let at = span.start..span.start;
    let Some(entry) = tried.iter_mut().find(|(s, _)| *s == at) else {
        return false;
    };
    let Some(table) = table_at(value, span) else {
        return false;
    };
    let Some(placeholder) = PLACEHOLDERS.get(entry.1) else {
        return false;
    };
    entry.1 += 1;
    table.insert(
        Spanned::new(at.clone(), field.to_string().into()),
        Spanned::new(at, placeholder()),
    );
    true
}

/// The table whose span is `span` (the innermost, when a nested one shares it).
fn table_at<'v, 'i>(
    value: &'v mut Spanned<DeValue<'i>>,
    span: &Range<usize>,
) -> Option<&'v mut DeTable<'i>> {
    let here = value.span() == *span;
    match value.get_mut() {
        DeValue::Table(table) => {
            let deeper = table
                .iter()
                .find(|(_, v)| has_table_at(v, span))
                .map(|(k, _)| k.clone());
            match deeper {
                Some(key) => table_at(table.get_mut(&key)?, span),
                None => here.then_some(table),
            }
        }
        DeValue::Array(array) => {
            let index = array.iter().position(|v| has_table_at(v, span))?;
            table_at(&mut array.as_mut()[index], span)
        }
        _ => None,
    }
}

fn has_table_at(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    (value.span() == *span && value.get_ref().is_table())
        || match value.get_ref() {
            DeValue::Table(table) => table.iter().any(|(_, v)| has_table_at(v, span)),
            DeValue::Array(array) => array.iter().any(|v| has_table_at(v, span)),
            _ => false,
        }
}

/// The value at `span` and the key holding it (the array's key for an element).
fn find_value<'v, 'i>(
    value: &'v Spanned<DeValue<'i>>,
    span: &Range<usize>,
) -> Option<(Option<String>, &'v Spanned<DeValue<'i>>)> {
    if value.span() == *span {
        return Some((None, value));
    }
    let children: Vec<(Option<String>, &Spanned<DeValue<'i>>)> = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .map(|(k, v)| (Some(k.get_ref().to_string()), v))
            .collect(),
        DeValue::Array(array) => array.iter().map(|v| (None, v)).collect(),
        _ => return None,
    };
    children.into_iter().find_map(|(key, child)| {
        find_value(child, span).map(|(inner_key, found)| (inner_key.or(key), found))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_named() {
        let known: Vec<String> = ["expect", "extract", "name", "request_timeout"]
            .map(String::from)
            .to_vec();
        assert_eq!(nearest("expcet", &known), ["expect"]);
        assert_eq!(nearest("timeout", &known), ["request_timeout"]);
        assert!(nearest("colour", &known).is_empty());
        let both: Vec<String> = ["connect_timeout", "request_timeout", "max_body"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            unknown_key("timeout", &both),
            "unknown key `timeout`: did you mean `connect_timeout` or `request_timeout`?"
        );
    }

    #[test]
    fn type_errors_speak_of_the_field() {
        let message = type_error(
            Some(("request_timeout".into(), "the number 5".into())),
            "invalid type: integer `5`, expected a string",
        );
        assert_eq!(
            message,
            "`request_timeout` takes a duration such as \"5s\", not the number 5 (in quotes, with its unit)"
        );
        let message = type_error(
            Some(("weight".into(), "the text \"3\"".into())),
            "invalid type: string \"3\", expected u32",
        );
        assert_eq!(
            message,
            "`weight` takes a whole number such as 3, not the text \"3\" (write it without quotes)"
        );
    }
}
