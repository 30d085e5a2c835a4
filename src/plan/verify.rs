//! What a scenario asks of verification, validated (`scenario/verify.rs`): pure data, like
//! the rest of the `Plan`. Which steps record which kind of write, how each kind is read
//! back, and the totals and invariants the platform is asked for before and after the run.

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::plan::slo::OnNoData;
use crate::plan::template::Template;
use crate::plan::{ExtractSource, StatusMatcher};

/// The documented default of `verify_rate`: check requests per second.
pub(crate) const DEFAULT_RATE: f64 = 200.0;
/// Check requests in flight at once, at most.
pub(crate) const CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub struct VerifyPlan {
    pub kinds: Vec<KindPlan>,
    pub counts: Vec<CountPlan>,
    pub invariants: Vec<InvariantPlan>,
    /// Check requests per second, at most (`verify_rate`).
    pub rate: f64,
}

impl Default for VerifyPlan {
    fn default() -> Self {
        VerifyPlan {
            kinds: Vec::new(),
            counts: Vec::new(),
            invariants: Vec::new(),
            rate: DEFAULT_RATE,
        }
    }
}

impl VerifyPlan {
    /// Nothing to record, read back or compare.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.counts.is_empty() && self.invariants.is_empty()
    }

    /// Counts and invariants: the requests made before the load and after verification.
    pub fn probes(&self) -> impl Iterator<Item = (&str, &Probe)> {
        self.counts
            .iter()
            .map(|c| (c.name.as_str(), &c.probe))
            .chain(self.invariants.iter().map(|i| (i.name.as_str(), &i.probe)))
    }

    /// What `loadgen report` needs to judge verification again, without the scenario.
    pub fn specs(&self) -> VerifySpecs {
        VerifySpecs {
            kinds: self
                .kinds
                .iter()
                .map(|k| KindSpec {
                    name: k.name.clone(),
                    recorded_by: k.recorded_by.clone(),
                    check: format!("{} {}", k.check.method, k.check.path.source),
                    on_unverifiable: k.on_unverifiable,
                    on_no_data: k.on_no_data,
                })
                .collect(),
            counts: self
                .counts
                .iter()
                .map(|c| CountSpec {
                    name: c.name.clone(),
                    kind: self.kinds[c.kind].name.clone(),
                    probe: c.probe.describe(),
                })
                .collect(),
            invariants: self
                .invariants
                .iter()
                .map(|i| InvariantSpec {
                    name: i.name.clone(),
                    probe: i.probe.describe(),
                })
                .collect(),
            rate: self.rate,
        }
    }
}

/// A step's `record = { kind, id, fields }`: rendered, on an acknowledged response, into
/// the JSON object `{"fields": {…}, "id": …}` that `acks.jsonl` carries.
#[derive(Debug, Clone)]
pub struct RecordPlan {
    /// Index into `VerifyPlan.kinds`.
    pub kind: usize,
    pub body: Template,
    /// The field names it writes (`fields = { … }`).
    pub fields: Vec<String>,
}

/// One kind of acknowledged write and how to read each one back.
#[derive(Debug, Clone)]
pub struct KindPlan {
    pub name: String,
    /// Global indices of the steps that record it.
    pub recorded_by: Vec<usize>,
    /// The fields every record of this kind carries (`{{ack.fields.NAME}}`), in slot order.
    pub fields: Vec<String>,
    pub check: CheckRequest,
    pub on_unverifiable: OnUnverifiable,
    pub on_no_data: OnNoData,
}

/// Whether a write whose check itself kept failing (timeouts, connection errors, an
/// unexpected status) fails the run (default) or is reported and allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnverifiable {
    #[default]
    Fail,
    Allow,
}

/// The request that reads one acknowledged write back. Its templates read slots: 0 is
/// `ack.id`, 1.. the kind's fields in order, then the generators it uses.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(HeaderName, Template)>,
    /// Statuses that say the write is there.
    pub expect: StatusMatcher,
    /// Statuses that say it is not (default 404, 410).
    pub absent: StatusMatcher,
    /// Checks on a present write: a difference makes it `mismatched`.
    pub checks: Vec<crate::plan::Check>,
    pub slot_count: usize,
    /// Generator index → slot.
    pub generator_slots: Vec<(usize, usize)>,
}

/// A platform total compared with what was acknowledged of a kind.
#[derive(Debug, Clone)]
pub struct CountPlan {
    pub name: String,
    pub kind: usize,
    pub probe: Probe,
}

/// A value that must read the same before the load and after verification.
#[derive(Debug, Clone)]
pub struct InvariantPlan {
    pub name: String,
    pub probe: Probe,
}

/// One request to the target and the value taken from its JSON answer (200 expected).
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub extract: ExtractSource,
    /// The extraction as written (`/enrolments`, `$.ayni.drift`).
    pub extract_text: String,
}

impl Probe {
    pub fn describe(&self) -> String {
        format!("GET {} {}", self.path, self.extract_text)
    }
}

/// Verification as `summary.json` keeps it (`verify_specs`): what judging needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifySpecs {
    pub kinds: Vec<KindSpec>,
    pub counts: Vec<CountSpec>,
    pub invariants: Vec<InvariantSpec>,
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    pub name: String,
    pub recorded_by: Vec<usize>,
    pub check: String,
    pub on_unverifiable: OnUnverifiable,
    pub on_no_data: OnNoData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountSpec {
    pub name: String,
    pub kind: String,
    pub probe: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvariantSpec {
    pub name: String,
    pub probe: String,
}
