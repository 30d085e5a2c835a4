//! `check = { json = { POINTER = value }, body_contains = "text", header = { NAME = glob } }`:
//! the one validation of response checks, for a step's and a `[[verify]]` read-back's alike.
//! Every value may hold `{{name}}` references, resolved by the caller's names (a step's
//! slots, or a read-back's `ack.…` and generators); a value without any is prepared once.

use std::collections::BTreeMap;

use http::HeaderName;
use toml::Spanned;

use super::raw::RawCheck;
use crate::plan::template::{Escape, Source, Template};
use crate::plan::{Check, CheckKind, Expected};
use crate::util::diag::Diagnostics;
use crate::util::glob::Glob;

/// Each check in the order written (json, body_contains, header), every mistake reported
/// at the `check` table.
pub(super) fn validate_checks(
    check: &Spanned<RawCheck>,
    resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    diagnostics: &mut Diagnostics,
) -> Vec<Check> {
    let span = check.span();
    let spec = check.get_ref();
    let mut checks = Vec::new();
    let report = |messages: Vec<String>, diagnostics: &mut Diagnostics| {
        for message in messages {
            diagnostics.push(span.clone(), message);
        }
    };
    for (pointer, expected) in spec.json.iter().flatten() {
        if let Err(message) = check_pointer(pointer) {
            report(vec![message], diagnostics);
            continue;
        }
        match json_check(pointer, expected, resolve) {
            Ok(check) => checks.push(check),
            Err(messages) => report(messages, diagnostics),
        }
    }
    if let Some(text) = &spec.body_contains {
        if text.is_empty() {
            report(
                vec!["check body_contains is empty: it would always pass".into()],
                diagnostics,
            );
        } else {
            match compile(text, resolve) {
                Ok(template) => checks.push(Check {
                    label: format!("body contains {text:?}"),
                    kind: CheckKind::BodyContains(match template.is_static() {
                        true => Expected::Fixed(text.clone()),
                        false => Expected::Rendered(template),
                    }),
                }),
                Err(messages) => report(messages, diagnostics),
            }
        }
    }
    for (name, pattern) in spec.header.iter().flatten() {
        match header_check(name, pattern, resolve) {
            Ok(check) => checks.push(check),
            Err(messages) => report(messages, diagnostics),
        }
    }
    if checks.is_empty()
        && spec.json.is_none()
        && spec.body_contains.is_none()
        && spec.header.is_none()
    {
        diagnostics.push(span, "`check` names no check (json, body_contains, header)");
    }
    checks
}

/// A `json` entry: its value as a JSON template, fixed when it reads nothing.
fn json_check(
    pointer: &str,
    expected: &toml::Value,
    resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
) -> Result<Check, Vec<String>> {
    let template = Template::json(expected, resolve)
        .map_err(|errors| errors.into_iter().map(|e| e.message).collect::<Vec<_>>())?;
    let expected = if template.is_static() {
        let value = serde_json::from_slice(&template.render(&NoValues))
            .map_err(|e| vec![format!("check json `{pointer}`: {e}")])?;
        Expected::Fixed(value)
    } else {
        Expected::Rendered(template.clone())
    };
    let label = match &expected {
        Expected::Fixed(value) => format!("json {pointer} = {value}"),
        Expected::Rendered(_) => format!("json {pointer} = {}", template.source),
    };
    Ok(Check {
        label,
        kind: CheckKind::Json {
            pointer: pointer.to_string(),
            expected,
        },
    })
}

/// A `header` entry: the header's name, and its glob (compiled once when it reads nothing).
fn header_check(
    name: &str,
    pattern: &str,
    resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
) -> Result<Check, Vec<String>> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| vec![format!("check header `{name}` is not a valid header name")])?;
    let template = compile(pattern, resolve)?;
    let pattern_plan = if template.is_static() {
        Expected::Fixed(Glob::new(pattern).map_err(|e| vec![e])?)
    } else {
        Expected::Rendered(template)
    };
    Ok(Check {
        label: format!("header {name} ~ {pattern}"),
        kind: CheckKind::Header {
            name: header,
            pattern: pattern_plan,
        },
    })
}

fn compile(
    text: &str,
    resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
) -> Result<Template, Vec<String>> {
    Template::compile(text, Escape::Text, resolve)
        .map_err(|errors| errors.into_iter().map(|e| e.message).collect())
}

/// A `check = { json = { POINTER = … } }` key: a JSON pointer ("" is the whole body).
pub(super) fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "check json key `{pointer}` is not a JSON pointer (write it \"/a/b\")"
        ))
    }
}

/// What a template without references renders from: nothing.
struct NoValues;

impl crate::plan::template::Values for NoValues {
    fn slot(&self, _: usize) -> Option<&serde_json::Value> {
        None
    }
    fn column(&self, _: usize, _: usize) -> Option<&serde_json::Value> {
        None
    }
    fn vu(&self) -> u64 {
        0
    }
    fn iteration(&self) -> u64 {
        0
    }
    fn repeat(&self) -> u32 {
        0
    }
}

/// A request's own headers, a step's or a read-back's: each name checked, each value a
/// template compiled by the caller's `compile` (its names: a step's slots, or a read-back's
/// `ack.…` and generators). A bad name is an error at its value.
pub(super) fn validate_headers(
    raw: &BTreeMap<String, Spanned<String>>,
    diagnostics: &mut Diagnostics,
    mut compile: impl FnMut(&Spanned<String>, &mut Diagnostics) -> Option<Template>,
) -> Vec<(HeaderName, Template)> {
    let mut headers = Vec::new();
    for (name, value) in raw {
        let header = HeaderName::from_bytes(name.as_bytes());
        if header.is_err() {
            diagnostics.push(value.span(), format!("`{name}` is not a valid header name"));
        }
        let template = compile(value, diagnostics);
        if let (Ok(header), Some(template)) = (header, template) {
            headers.push((header, template));
        }
    }
    headers
}
