//! A step's `record = {…}` → `RecordPlan`: the kind it names against the `[[verify]]`
//! tables, its id and fields compiled with the step's own names.

use toml::Spanned;

use super::raw::RawRecord;
use super::validate::Declared;
use super::verify::push_errors;
use crate::plan::template::{Source, Template};
use crate::plan::verify::RecordPlan;
use crate::util::diag::Diagnostics;

/// A step's `record`: compiled with the step's own names (what it extracts included) into
/// the `{"fields": {…}, "id": …}` object an acknowledged response writes to acks.jsonl.
pub(super) fn validate_record(
    raw: &Spanned<RawRecord>,
    declared: &Declared<'_>,
    resolve: &mut dyn FnMut(&str) -> Result<Source, String>,
    diagnostics: &mut Diagnostics,
) -> Option<RecordPlan> {
    let record = raw.get_ref();
    let before = diagnostics.len();
    let kind = declared
        .kinds
        .iter()
        .position(|k| k == record.kind.get_ref());
    if kind.is_none() && !declared.kinds_doubtful {
        diagnostics.push(
            record.kind.span(),
            format!(
                "no [[verify]] reads back kind `{}`: add one with kind = \"{}\" and the url that reads a write by its id",
                record.kind.get_ref(),
                record.kind.get_ref()
            ),
        );
    }
    let id = toml::Value::String(record.id.get_ref().clone());
    match Template::json(&id, resolve) {
        Ok(template) if template.is_static() => diagnostics.push(
            record.id.span(),
            "`id` is the same for every write: reference what the response said, e.g. \"{{enrolment_id}}\"",
        ),
        Ok(_) => {}
        Err(errors) => push_errors(diagnostics, &record.id, errors),
    }
    let mut fields = toml::Table::new();
    for (name, value) in &record.fields {
        if !is_field_name(name) {
            diagnostics.push(
                value.span(),
                format!("`{name}` is not a field name (letters, digits, `_` and `-`)"),
            );
        }
        if let Err(errors) = Template::json(value.get_ref(), resolve) {
            for error in errors {
                diagnostics.push(value.span(), error.message);
            }
        }
        fields.insert(name.clone(), value.get_ref().clone());
    }
    if diagnostics.len() > before {
        return None;
    }
    let mut object = toml::Table::new();
    object.insert("id".into(), id);
    object.insert("fields".into(), toml::Value::Table(fields));
    let body = Template::json(&toml::Value::Table(object), resolve).ok()?;
    Some(RecordPlan {
        kind: kind?,
        body,
        fields: record.fields.keys().cloned().collect(),
    })
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
