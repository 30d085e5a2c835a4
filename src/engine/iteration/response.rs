//! Judging a step's response: its status, its checks (`engine::check`, as verification
//! judges a read-back), then its extractions into the iteration's slots.

use serde_json::Value;

use super::{IterationValues, Slot};
use crate::engine::check::{Body, Mismatch, first_mismatch};
use crate::engine::http::Response;
use crate::metrics::ErrorClass;
use crate::metrics::samples::EXCERPT_BYTES;
use crate::plan::{ExtractSource, StepPlan};

/// Why a response did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rejected {
    /// A status outside the step's `expect`.
    Status(ErrorClass),
    /// One of the step's checks said no: which, expected and found.
    Check(Mismatch),
    /// The step's extraction of `variable` found nothing (or the body was not JSON).
    Extraction { variable: String, not_json: bool },
}

impl Rejected {
    pub(super) fn class(&self) -> ErrorClass {
        match self {
            Rejected::Status(class) => *class,
            Rejected::Check(_) => ErrorClass::CheckFailed,
            Rejected::Extraction { .. } => ErrorClass::ExtractionFailed,
        }
    }

    /// The failure sample's detail: the check's or extraction's reason, then the start of
    /// the body (a status's whole detail).
    pub(super) fn detail(&self, step: &StepPlan, body: &[u8]) -> String {
        // Room for redaction to shorten it; the sample is cut to its length after.
        let start = || {
            let read = body.len().min(4 * EXCERPT_BYTES);
            let mut start = String::from_utf8_lossy(&body[..read]).into_owned();
            if read < body.len() {
                start.push('…');
            }
            start
        };
        match self {
            Rejected::Status(_) => start(),
            Rejected::Check(mismatch) => format!(
                "{}: expected {}, found {}",
                step.checks
                    .get(mismatch.index)
                    .map_or("check", |c| c.label.as_str()),
                mismatch.expected,
                mismatch.found
            ),
            Rejected::Extraction { variable, not_json } => format!(
                "nothing to extract into `{variable}`{}; the body starts {:?}",
                if *not_json {
                    " (the body is not JSON)"
                } else {
                    ""
                },
                start()
            ),
        }
    }
}

/// Checks the status and the step's checks (`engine::check`, as verification does), then
/// performs its extractions into the iteration's slots.
pub(super) fn check_response(
    step: &StepPlan,
    response: &Response,
    values: &mut IterationValues<'_>,
) -> Result<(), Rejected> {
    let status = response.status.as_u16();
    if !step.expect.matches(status) {
        return Err(Rejected::Status(ErrorClass::for_status(status)));
    }
    let mut body = Body::new(&response.body);
    if let Some(mismatch) = first_mismatch(&step.checks, response, &mut body, &*values) {
        return Err(Rejected::Check(mismatch));
    }
    for extraction in &step.extract {
        let value = match &extraction.source {
            header @ ExtractSource::Header(_) => header
                .in_headers(&response.headers)
                .map(|v| Value::String(v.to_string())),
            json => match body.json() {
                Some(parsed) => json.in_json(parsed).cloned(),
                None => {
                    return Err(Rejected::Extraction {
                        variable: extraction.variable.clone(),
                        not_json: true,
                    });
                }
            },
        };
        match value {
            Some(Value::Null) | None => {
                return Err(Rejected::Extraction {
                    variable: extraction.variable.clone(),
                    not_json: false,
                });
            }
            Some(value) => values.slots[extraction.slot] = Slot::Value(value),
        }
    }
    Ok(())
}
