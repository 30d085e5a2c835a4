//! Request templates: `{{name}}` references compiled once into literal bytes and slot
//! indices, so rendering on the hot path is a walk over a short `Vec` with no lookups by name.

use std::ops::Range;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

/// What a `{{…}}` reference reads at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A whole value held in an iteration slot (generator value or extracted variable).
    Slot(usize),
    /// One column of the feeder row held in an iteration slot.
    Column { slot: usize, column: usize },
    /// The virtual user (closed model) or worker (open model) number.
    Vu,
    /// The iteration number.
    Iteration,
    /// Which round of a repeated step this request is (0, 1, …; 0 for a step without
    /// `repeat`).
    Repeat,
    /// The value of a cookie in the jar for the target (`{{cookie.NAME}}`), by its index in
    /// the plan's cookie names; empty when the jar has none.
    Cookie(usize),
}

/// How a value is written where a reference stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As text, unchanged (headers, raw bodies).
    Text,
    /// As text, percent-encoded for a URL path or query.
    Url,
    /// As text, percent-encoded for an `application/x-www-form-urlencoded` body.
    Form,
    /// As text inside a JSON string: quotes and control characters escaped.
    JsonString,
    /// As a whole JSON value, keeping its own type (a number stays a number).
    JsonValue,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(Vec<u8>),
    Reference { source: Source, escape: Escape },
}

/// A compiled template. `source` keeps the text as written, for `loadgen plan` and errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub source: String,
    parts: Vec<Part>,
}

/// A reference that could not be resolved, with its byte range inside the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub range: Range<usize>,
    pub message: String,
}

/// Values a rendering reads: the iteration's slots and the feeders' rows.
pub trait Values {
    fn slot(&self, slot: usize) -> Option<&Value>;
    fn column(&self, slot: usize, column: usize) -> Option<&Value>;
    fn vu(&self) -> u64;
    fn iteration(&self) -> u64;
    fn repeat(&self) -> u32;
    /// The jar's value of cookie `index` (of the plan's `cookie_names`) for the target.
    fn cookie(&self, _index: usize) -> Option<&str> {
        None
    }
}

// Characters that would change a URL's structure if inserted as they are. `/` is kept so a
// value can deliberately carry a sub-path.
const URL_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'=');
const FORM_UNSAFE: &AsciiSet = &URL_UNSAFE.add(b'/').add(b';').add(b':').add(b',');

impl Template {
    /// A template with no references.
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_string(),
            parts: vec![Part::Literal(text.as_bytes().to_vec())],
        }
    }

    /// Compiles text with `{{name}}` references; `resolve` maps a name to its source.
    pub fn compile(
        text: &str,
        escape: Escape,
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) -> Result<Template, Vec<TemplateError>> {
        let mut builder = Builder::default();
        builder.text(text, escape, literal_escape(escape), resolve);
        builder.finish(text.to_string())
    }

    /// Compiles a TOML value into a JSON body template. A string that is exactly one
    /// reference becomes a typed JSON value; other strings are JSON strings.
    pub fn json(
        value: &toml::Value,
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) -> Result<Template, Vec<TemplateError>> {
        let mut builder = Builder::default();
        builder.json_value(value, resolve);
        let source = serde_json::to_string(value).unwrap_or_default();
        builder.finish(source)
    }

    /// Compiles form fields into an `application/x-www-form-urlencoded` body template.
    pub fn form(
        fields: &[(String, String)],
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) -> Result<Template, Vec<TemplateError>> {
        let mut builder = Builder::default();
        for (index, (key, value)) in fields.iter().enumerate() {
            if index > 0 {
                builder.literal(b"&");
            }
            builder.literal(utf8_percent_encode(key, FORM_UNSAFE).to_string().as_bytes());
            builder.literal(b"=");
            builder.text(value, Escape::Form, LiteralEscape::Form, resolve);
        }
        let source = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        builder.finish(source)
    }

    /// True when the template has no references (it can be rendered once and reused).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Appends the rendered template to `out`. A reference to a value the iteration does
    /// not hold renders as an empty string (validation makes that impossible for scenarios).
    pub fn render_into(&self, values: &dyn Values, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Reference { source, escape } => write_value(values, *source, *escape, out),
            }
        }
    }

    pub fn render(&self, values: &dyn Values) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.source.len() + 16);
        self.render_into(values, &mut out);
        out
    }

    /// The sources this template reads, for validation and for deciding which feeders and
    /// generators an iteration must fill.
    pub fn sources(&self) -> impl Iterator<Item = Source> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Reference { source, .. } => Some(*source),
            Part::Literal(_) => None,
        })
    }
}

fn write_value(values: &dyn Values, source: Source, escape: Escape, out: &mut Vec<u8>) {
    let value = match source {
        Source::Slot(slot) => values.slot(slot),
        Source::Column { slot, column } => values.column(slot, column),
        Source::Vu => return write_text(&values.vu().to_string(), escape, out),
        Source::Iteration => return write_text(&values.iteration().to_string(), escape, out),
        Source::Repeat => return write_text(&values.repeat().to_string(), escape, out),
        Source::Cookie(index) => {
            return match values.cookie(index) {
                Some(text) => write_text(text, escape, out),
                None if escape == Escape::JsonValue => out.extend_from_slice(b"null"),
                None => {}
            };
        }
    };
    let Some(value) = value else {
        if escape == Escape::JsonValue {
            out.extend_from_slice(b"null");
        }
        return;
    };
    match (escape, value) {
        (Escape::JsonValue, value) => {
            serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail")
        }
        (_, Value::String(text)) => write_text(text, escape, out),
        (_, other) => write_text(&other.to_string(), escape, out),
    }
}

fn write_text(text: &str, escape: Escape, out: &mut Vec<u8>) {
    match escape {
        Escape::Text => out.extend_from_slice(text.as_bytes()),
        Escape::Url => out.extend(utf8_percent_encode(text, URL_UNSAFE).flat_map(str::bytes)),
        Escape::Form => out.extend(utf8_percent_encode(text, FORM_UNSAFE).flat_map(str::bytes)),
        Escape::JsonString => {
            let quoted = serde_json::to_string(text).expect("a string always serializes");
            out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
        }
        Escape::JsonValue => {
            serde_json::to_writer(&mut *out, text).expect("writing JSON to a Vec cannot fail")
        }
    }
}

/// How the literal text between references is written.
#[derive(Clone, Copy)]
enum LiteralEscape {
    AsIs,
    Form,
    JsonString,
}

fn literal_escape(escape: Escape) -> LiteralEscape {
    match escape {
        Escape::Form => LiteralEscape::Form,
        Escape::JsonString => LiteralEscape::JsonString,
        _ => LiteralEscape::AsIs,
    }
}

#[derive(Default)]
struct Builder {
    parts: Vec<Part>,
    errors: Vec<TemplateError>,
}

impl Builder {
    fn literal(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Part::Literal(last)) = self.parts.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.parts.push(Part::Literal(bytes.to_vec()));
        }
    }

    fn text(
        &mut self,
        text: &str,
        escape: Escape,
        literal: LiteralEscape,
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) {
        let mut rest = 0;
        while let Some(open) = text[rest..].find("{{").map(|i| i + rest) {
            self.escaped_literal(&text[rest..open], literal);
            let Some(close) = text[open..].find("}}").map(|i| i + open) else {
                self.errors.push(TemplateError {
                    range: open..text.len(),
                    message: "`{{` is never closed with `}}`".to_string(),
                });
                return;
            };
            let name = text[open + 2..close].trim();
            match resolve(name) {
                Ok(source) => self.parts.push(Part::Reference { source, escape }),
                Err(message) => self.errors.push(TemplateError {
                    range: open..close + 2,
                    message,
                }),
            }
            rest = close + 2;
        }
        self.escaped_literal(&text[rest..], literal);
    }

    fn escaped_literal(&mut self, text: &str, literal: LiteralEscape) {
        match literal {
            LiteralEscape::AsIs => self.literal(text.as_bytes()),
            LiteralEscape::Form => self.literal(
                utf8_percent_encode(text, FORM_UNSAFE)
                    .to_string()
                    .as_bytes(),
            ),
            LiteralEscape::JsonString => {
                let quoted = serde_json::to_string(text).expect("a string always serializes");
                self.literal(&quoted.as_bytes()[1..quoted.len() - 1]);
            }
        }
    }

    fn json_value(
        &mut self,
        value: &toml::Value,
        resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    ) {
        match value {
            toml::Value::String(text) => {
                let trimmed = text.trim();
                let whole_reference = trimmed.starts_with("{{")
                    && trimmed.ends_with("}}")
                    && trimmed.matches("{{").count() == 1;
                if whole_reference {
                    self.text(trimmed, Escape::JsonValue, LiteralEscape::AsIs, resolve);
                } else {
                    self.literal(b"\"");
                    self.text(text, Escape::JsonString, LiteralEscape::JsonString, resolve);
                    self.literal(b"\"");
                }
            }
            toml::Value::Integer(n) => self.literal(n.to_string().as_bytes()),
            toml::Value::Float(n) => self.literal(
                serde_json::to_string(n)
                    .unwrap_or_else(|_| "null".into())
                    .as_bytes(),
            ),
            toml::Value::Boolean(b) => self.literal(b.to_string().as_bytes()),
            toml::Value::Datetime(d) => {
                self.literal(serde_json::to_string(&d.to_string()).unwrap().as_bytes())
            }
            toml::Value::Array(items) => {
                self.literal(b"[");
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.literal(b",");
                    }
                    self.json_value(item, resolve);
                }
                self.literal(b"]");
            }
            toml::Value::Table(table) => {
                self.literal(b"{");
                for (index, (key, item)) in table.iter().enumerate() {
                    if index > 0 {
                        self.literal(b",");
                    }
                    self.literal(serde_json::to_string(key).unwrap().as_bytes());
                    self.literal(b":");
                    self.json_value(item, resolve);
                }
                self.literal(b"}");
            }
        }
    }

    fn finish(self, source: String) -> Result<Template, Vec<TemplateError>> {
        if self.errors.is_empty() {
            Ok(Template {
                source,
                parts: self.parts,
            })
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<Value>);
    impl Values for Fixed {
        fn slot(&self, slot: usize) -> Option<&Value> {
            self.0.get(slot)
        }
        fn column(&self, _: usize, column: usize) -> Option<&Value> {
            self.0.get(column)
        }
        fn vu(&self) -> u64 {
            7
        }
        fn iteration(&self) -> u64 {
            3
        }
        fn repeat(&self) -> u32 {
            2
        }
    }

    fn resolver(name: &str) -> Result<Source, String> {
        match name {
            "id" => Ok(Source::Slot(0)),
            "name" => Ok(Source::Slot(1)),
            "vu" => Ok(Source::Vu),
            other => Err(format!("unknown reference `{other}`")),
        }
    }

    fn values() -> Fixed {
        Fixed(vec![Value::from(42), Value::from("a \"b\"&c")])
    }

    #[test]
    fn url_template_escapes_values_not_literals() {
        let t = Template::compile(
            "/x/{{id}}?q={{ name }}&v={{vu}}",
            Escape::Url,
            &mut resolver,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(t.render(&values())).unwrap(),
            "/x/42?q=a%20%22b%22%26c&v=7"
        );
    }

    #[test]
    fn json_template_keeps_types_and_escapes_strings() {
        let body: toml::Value = toml::from_str(
            r#"id = "{{id}}"
label = "n={{name}}"
n = 1.5
tags = ["{{id}}", true]"#,
        )
        .unwrap();
        let t = Template::json(&body, &mut resolver).unwrap();
        let rendered: Value = serde_json::from_slice(&t.render(&values())).unwrap();
        assert_eq!(
            rendered,
            serde_json::json!({"id": 42, "label": "n=a \"b\"&c", "n": 1.5, "tags": [42, true]})
        );
    }

    #[test]
    fn form_template_percent_encodes() {
        let fields = vec![("who".to_string(), "{{name}}".to_string())];
        let t = Template::form(&fields, &mut resolver).unwrap();
        assert_eq!(
            String::from_utf8(t.render(&values())).unwrap(),
            "who=a%20%22b%22%26c"
        );
    }

    #[test]
    fn every_unknown_reference_is_reported_with_its_range() {
        let errors =
            Template::compile("/{{nope}}/{{id}}/{{also}}", Escape::Url, &mut resolver).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].range, 1..9);
        assert_eq!(errors[1].range, 17..25);
    }
}
