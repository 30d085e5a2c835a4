//! Secrets in scenarios: read by reference, never written out.
//!
//! - **References.** Every string value may read `${NAME}` from the environment (`$${` is a
//!   literal `${`). The plan sees the value; an unset variable is a positioned error.
//! - **Redaction.** The scenario as a run directory keeps it (and so report.html shows it)
//!   is the file as written — references stay `${NAME}` — with every sensitive value
//!   replaced by `"[redacted]"`: every header value, and every value under a key matching
//!   `SENSITIVE_KEYS` or the scenario's own `redact = [...]` (case-insensitive) at any depth
//!   — a JSON body's `password` included —, unless it is purely a reference (`${NAME}` or
//!   a `{{ template }}`), which holds no secret.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::util::diag::Diagnostics;

/// Keys whose values are secrets wherever they appear (compared case-insensitively).
pub(crate) const SENSITIVE_KEYS: [&str; 5] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "x-api-key",
];

/// Parts of a key that make it a secret's (`api_token`, `client_secret`, `db_password`).
pub(crate) const SENSITIVE_PARTS: [&str; 3] = ["token", "secret", "password"];

/// What replaces a redacted value.
pub(crate) const REDACTED: &str = "\"[redacted]\"";

/// Whether a key's value is a secret: the documented list, or one of `extra`.
pub(crate) fn is_sensitive_key(key: &str, extra: &[String]) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEYS.contains(&key.as_str())
        || SENSITIVE_PARTS.iter().any(|part| key.contains(part))
        || extra.iter().any(|e| e.eq_ignore_ascii_case(&key))
}

/// Expands `${NAME}` in every string value of the document, in place.
pub(crate) fn expand(
    document: &mut Spanned<DeTable<'_>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    diagnostics: &mut Diagnostics,
) {
    for (_, value) in document.get_mut().iter_mut() {
        expand_value(value, lookup, diagnostics);
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    diagnostics: &mut Diagnostics,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) => match expand_str(text, lookup) {
            Ok(Some(expanded)) => *text = Cow::Owned(expanded),
            Ok(None) => {}
            Err(message) => diagnostics.push(span, message),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                expand_value(item, lookup, diagnostics);
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                expand_value(item, lookup, diagnostics);
            }
        }
        _ => {}
    }
}

/// `text` with its references replaced; `None` when it has none.
pub(crate) fn expand_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                "`${` without its closing `}` (write `$${` for a literal)".to_string()
            })?;
            let name = &after[..end];
            if !is_variable_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not an environment variable reference (NAME: letters, digits, _)"
                ));
            }
            let value = lookup(name).ok_or_else(|| {
                format!(
                    "environment variable `{name}` is not set (write `$${{` for a literal `${{`)"
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a header value as written is only a reference, with no secret of its own.
fn is_pure_reference(text: &str) -> bool {
    let text = text.trim();
    let env = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .is_some_and(is_variable_name);
    let template =
        text.starts_with("{{") && text.ends_with("}}") && text.matches("{{").count() == 1;
    env || template
}

/// Where the secret values of a document are (see the module comment), in order.
/// `document` is the parse of the source before expansion.
pub(crate) fn secret_spans(document: &DeTable<'_>, extra: &[String]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for (key, value) in document.iter() {
        collect(key.get_ref(), value, false, extra, &mut spans);
    }
    spans.sort_by_key(|s| s.start);
    spans
}

/// Shorter values are not taken for secrets when redacting text: they would blank out
/// ordinary words.
const SHORTEST_SECRET: usize = 4;

/// The secret values of a scenario: those written at `spans` (unquoted; not the ones that
/// are only a reference) and those read from the environment, longest first (so a
/// secret that contains another is redacted whole).
pub(crate) fn secret_values(
    source: &str,
    spans: &[Range<usize>],
    read: Vec<String>,
) -> Vec<String> {
    let written = spans.iter().filter_map(|span| {
        let text = source.get(span.clone())?.trim();
        let inner = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))?;
        (!inner.contains("${") && !inner.contains("{{")).then(|| inner.to_string())
    });
    let mut values: Vec<String> = written
        .chain(read)
        .filter(|v| v.len() >= SHORTEST_SECRET)
        .collect();
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// `source` with each of `spans` (in order) replaced by `REDACTED`.
pub(crate) fn redact_spans(source: &str, spans: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for span in spans {
        if span.start < at || span.end > source.len() {
            continue;
        }
        out.push_str(&source[at..span.start]);
        out.push_str(REDACTED);
        at = span.end;
    }
    out.push_str(&source[at..]);
    out
}

/// Adds the spans of `value`'s secret strings. `under_headers`: `value` is a header's.
fn collect(
    key: &str,
    value: &Spanned<DeValue<'_>>,
    under_headers: bool,
    extra: &[String],
    spans: &mut Vec<Range<usize>>,
) {
    if is_sensitive_key(key, extra) {
        all_strings(value, spans);
        return;
    }
    match value.get_ref() {
        DeValue::String(text) if under_headers && !is_pure_reference(text) => {
            spans.push(value.span());
        }
        DeValue::Table(table) => {
            let headers = key.eq_ignore_ascii_case("headers");
            for (k, v) in table.iter() {
                collect(k.get_ref(), v, headers, extra, spans);
            }
        }
        DeValue::Array(items) => {
            for item in items {
                collect(key, item, under_headers, extra, spans);
            }
        }
        _ => {}
    }
}

/// Every string under a sensitive key, but pure references (they hold no secret).
fn all_strings(value: &Spanned<DeValue<'_>>, spans: &mut Vec<Range<usize>>) {
    match value.get_ref() {
        DeValue::String(text) if !is_pure_reference(text) => spans.push(value.span()),
        DeValue::Table(table) => table.iter().for_each(|(_, v)| all_strings(v, spans)),
        DeValue::Array(items) => items.iter().for_each(|v| all_strings(v, spans)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn references_expand_and_literals_escape() {
        assert_eq!(expand_str("plain", &env).unwrap(), None);
        assert_eq!(
            expand_str("Bearer ${TOKEN}!", &env).unwrap().as_deref(),
            Some("Bearer s3cr3t!")
        );
        assert_eq!(
            expand_str("cost $5, $${TOKEN}", &env).unwrap().as_deref(),
            Some("cost $5, ${TOKEN}")
        );
        assert!(
            expand_str("${MISSING}", &env)
                .unwrap_err()
                .contains("`MISSING` is not set")
        );
        assert!(expand_str("${TOKEN", &env).unwrap_err().contains("closing"));
        assert!(
            expand_str("${1X}", &env)
                .unwrap_err()
                .contains("not an environment")
        );
    }

    #[test]
    fn header_values_and_sensitive_keys_are_redacted_references_kept() {
        let source = r#"name = "s"
redact = ["card"]
[target]
base_url = "http://127.0.0.1:1"
headers = { Authorization = "Bearer abc", X-Trace = "literal", X-Ref = "${TOKEN}", X-Tpl = "{{ token }}" }
[[journey]]
name = "j"
[[journey.step]]
name = "pay"
url = "/pay"
json = { user = "u1", password = "hunter2", nested = { api_token = ["t1", "t2"] }, Card = "4111" }
"#;
        let document = DeTable::parse(source).unwrap();
        let extra = vec!["card".to_string()];
        let out = redact_spans(source, &secret_spans(document.get_ref(), &extra));
        for secret in ["Bearer abc", "literal", "hunter2", "t1", "t2", "4111"] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        for kept in ["${TOKEN}", "{{ token }}", "u1", "http://127.0.0.1:1"] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        // The result is still a scenario TOML parses.
        assert!(DeTable::parse(&out).is_ok(), "{out}");
    }
}
