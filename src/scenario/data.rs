//! Feeder files (CSV with a header row, or a JSON array of objects) and generator specs.

use std::path::Path;

use serde_json::Value;

use super::raw::{RawFeeder, RawGenerator};
use crate::plan::{Feeder, FeederOrder, GeneratorKind, OnExhausted};

/// Reads a feeder's rows; `order` and `on_exhausted` were read (and positioned) by the
/// caller. Errors are messages for the `file` key's position.
pub(super) fn load_feeder(
    name: &str,
    raw: &RawFeeder,
    order: FeederOrder,
    on_exhausted: OnExhausted,
    base_dir: &Path,
) -> Result<Feeder, Vec<String>> {
    let mut errors = Vec::new();
    let path = base_dir.join(raw.file.get_ref());
    let loaded = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => read_csv(&path),
        Some("json") => read_json(&path),
        _ => Err(format!(
            "feeder file `{}` must end in .csv or .json",
            raw.file.get_ref()
        )),
    };
    match loaded {
        Ok((_, rows)) if rows.is_empty() => {
            errors.push(format!("feeder file `{}` has no rows", raw.file.get_ref()))
        }
        Ok((columns, rows)) if errors.is_empty() => {
            return Ok(Feeder {
                name: name.to_string(),
                columns,
                rows,
                order,
                on_exhausted,
            });
        }
        Ok(_) => {}
        Err(message) => errors.push(message),
    }
    Err(errors)
}

type Table = (Vec<String>, Vec<Vec<Value>>);

fn read_csv(path: &Path) -> Result<Table, String> {
    let shown = path.display();
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("cannot read feeder `{shown}`: {e}"))?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| format!("feeder `{shown}`: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("feeder `{shown}`: {e}"))?;
        rows.push(
            record
                .iter()
                .map(|cell| Value::String(cell.to_string()))
                .collect(),
        );
    }
    Ok((columns, rows))
}

fn read_json(path: &Path) -> Result<Table, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read feeder `{shown}`: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("feeder `{shown}` is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(format!(
            "feeder `{shown}` must hold a JSON array of objects"
        ));
    };
    let mut columns: Vec<String> = Vec::new();
    for item in &items {
        let Value::Object(object) = item else {
            return Err(format!(
                "feeder `{shown}`: every item must be a JSON object"
            ));
        };
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let rows = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| item.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok((columns, rows))
}

/// Checks a generator spec's fields against its kind; each error at the field it is about.
pub(super) fn generator_kind(
    raw: &RawGenerator,
) -> Result<GeneratorKind, Vec<(std::ops::Range<usize>, String)>> {
    let mut errors = Vec::new();
    let kind = raw.kind.get_ref().as_str();
    let mut refuse = |field: &str, span: Option<std::ops::Range<usize>>| {
        if let Some(span) = span {
            errors.push((
                span,
                format!("`{field}` does not apply to a `{kind}` generator"),
            ));
        }
    };
    let min_span = raw.min.as_ref().map(|m| m.span());
    let max_span = raw.max.as_ref().map(|m| m.span());
    let values_span = raw.values.as_ref().map(|v| v.span());
    let result = match kind {
        "uuid" => {
            refuse("min", min_span);
            refuse("max", max_span);
            refuse("values", values_span);
            GeneratorKind::Uuid
        }
        "int" => {
            refuse("values", values_span);
            let min = raw.min.as_ref().map_or(0, |m| *m.get_ref());
            let max = raw
                .max
                .as_ref()
                .map_or(i64::from(i32::MAX), |m| *m.get_ref());
            if min > max {
                errors.push((
                    max_span.or(min_span).unwrap_or_else(|| raw.kind.span()),
                    format!("int generator: min ({min}) is greater than max ({max})"),
                ));
            }
            GeneratorKind::Int { min, max }
        }
        "pick" => {
            refuse("min", min_span);
            refuse("max", max_span);
            let values: Vec<Value> = raw
                .values
                .iter()
                .flat_map(|v| v.get_ref())
                .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
                .collect();
            if values.is_empty() {
                errors.push((
                    values_span.unwrap_or_else(|| raw.kind.span()),
                    "a `pick` generator needs a non-empty `values` list".to_string(),
                ));
            }
            GeneratorKind::Pick(values)
        }
        other => {
            errors.push((
                raw.kind.span(),
                format!("unknown generator kind `{other}` (expected uuid, int or pick)"),
            ));
            GeneratorKind::Uuid
        }
    };
    if errors.is_empty() {
        Ok(result)
    } else {
        Err(errors)
    }
}
