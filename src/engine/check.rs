//! The one response-check evaluator: a step's `check` during the load and a `[[verify]]`
//! read-back after it are judged by this code, templates rendered the same way for both
//! (rendered, then read as JSON where the check is JSON). Only a failure builds text.

use bytes::Bytes;
use serde_json::Value;

use super::http::Response;
use crate::metrics::samples::{EXCERPT_BYTES, excerpt, prefix};
use crate::plan::template::Values;
use crate::plan::{Check, CheckKind, Expected};
use crate::util::glob::Glob;

/// A response body, read as JSON at most once however many checks and extractions ask.
pub(crate) struct Body<'a> {
    bytes: &'a Bytes,
    json: Option<Option<Value>>,
}

impl<'a> Body<'a> {
    pub(crate) fn new(bytes: &'a Bytes) -> Body<'a> {
        Body { bytes, json: None }
    }

    /// The body as JSON; `None` when it is not JSON.
    pub(crate) fn json(&mut self) -> Option<&Value> {
        self.json
            .get_or_insert_with(|| serde_json::from_slice(self.bytes).ok())
            .as_ref()
    }

    fn text(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.bytes)
    }
}

/// The first check a response fails: which, and what it expected and found, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub index: usize,
    pub expected: String,
    pub found: String,
}

/// Evaluates `checks` in order against `response`; the first that fails, if any.
pub(crate) fn first_mismatch(
    checks: &[Check],
    response: &Response,
    body: &mut Body<'_>,
    values: &dyn Values,
) -> Option<Mismatch> {
    checks.iter().enumerate().find_map(|(index, check)| {
        mismatch(check, response, body, values).map(|(e, f)| Mismatch {
            index,
            expected: excerpt(&e),
            found: excerpt(&f),
        })
    })
}

/// `None` when the check passes, else (expected, found).
fn mismatch(
    check: &Check,
    response: &Response,
    body: &mut Body<'_>,
    values: &dyn Values,
) -> Option<(String, String)> {
    match &check.kind {
        CheckKind::Json { pointer, expected } => {
            let rendered;
            let expected = match expected {
                Expected::Fixed(value) => value,
                Expected::Rendered(template) => {
                    rendered =
                        serde_json::from_slice(&template.render(values)).unwrap_or(Value::Null);
                    &rendered
                }
            };
            let Some(json) = body.json() else {
                return Some((expected.to_string(), "a body that is not JSON".into()));
            };
            match json.pointer(pointer) {
                Some(found) if found == expected => None,
                Some(found) => Some((expected.to_string(), found.to_string())),
                None => Some((expected.to_string(), "nothing there".into())),
            }
        }
        CheckKind::BodyContains(expected) => {
            let rendered;
            let text = match expected {
                Expected::Fixed(text) => text.as_str(),
                Expected::Rendered(template) => {
                    rendered = String::from_utf8_lossy(&template.render(values)).into_owned();
                    rendered.as_str()
                }
            };
            let body_text = body.text();
            (!body_text.contains(text)).then(|| (format!("{text:?}"), found_body(&body_text)))
        }
        CheckKind::Header { name, pattern } => {
            let value = response.headers.get(name).and_then(|v| v.to_str().ok());
            let rendered;
            let glob = match pattern {
                Expected::Fixed(glob) => Some(glob),
                Expected::Rendered(template) => {
                    rendered = Glob::new(&String::from_utf8_lossy(&template.render(values))).ok();
                    rendered.as_ref()
                }
            };
            let passed = value.is_some_and(|v| glob.is_some_and(|g| g.is_match(v)));
            (!passed).then(|| {
                (
                    glob.map_or_else(|| "a valid pattern".into(), |g| g.as_str().to_string()),
                    value.map_or_else(|| "no such header".into(), str::to_string),
                )
            })
        }
    }
}

/// What a body that lacks the text held: its start, or that it was empty.
fn found_body(text: &str) -> String {
    if text.is_empty() {
        "an empty body".into()
    } else {
        format!("a body starting {:?}", prefix(text, EXCERPT_BYTES))
    }
}
