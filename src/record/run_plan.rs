//! `plan.json`: what the run set out to do, written into the run directory before the
//! first arrival is due — the objectives, the load plan, the fault timeline as planned,
//! the journeys' and steps' names. It is everything `summary.json` takes from the
//! scenario, so a run killed before it wrote its summary can still be judged from its
//! files (`loadgen report`), and the summary of a finished run is built from the same
//! record.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::summary::SCHEMA_VERSION;
use crate::plan::Plan;
use crate::plan::slo::SloSpec;
use crate::plan::verify::VerifySpecs;
use crate::plan::{Feeder, FeederOrder, HttpVersion, JourneyPlan, LoadModel};

pub(crate) const PLAN_FILE: &str = "plan.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// The summary schema this loadgen writes (plan.json follows it).
    pub schema_version: u32,
    pub loadgen_version: String,
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    pub seed: u64,
    pub target: String,
    /// The HTTP version the pre-flight settled.
    pub protocol: HttpVersion,
    /// Over https, whether the server's certificate is verified (`false`: `tls_verify =
    /// false`); absent over http and in plans before schema 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verified: Option<bool>,
    pub workers: usize,
    /// Wall-clock time of the run's second 0 (the engine's start).
    pub started_at: String,
    pub load: LoadRecord,
    pub journeys: Vec<JourneyRecord>,
    /// Every feeder, in plan order: its rows, its order, and (`unique`) what an iteration
    /// does when none is left.
    pub feeders: Vec<FeederRecord>,
    pub faults: Vec<PlannedFault>,
    pub settle_ms: u64,
    pub slo_specs: Vec<SloSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_specs: Option<VerifySpecs>,
}

/// The load plan as the scenario (and `--duration`) set it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRecord {
    /// `open` or `closed`.
    pub model: String,
    /// Open: arrivals per second at the start; closed: users at the start.
    pub start: f64,
    /// Each stage ramps linearly to `to` (arrivals per second, or users) over its length.
    pub stages: Vec<StageRecord>,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub duration_s: f64,
    pub to: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyRecord {
    pub name: String,
    pub weight: u32,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    /// The step's index in the whole plan (`step:N` in series.csv and the histograms).
    pub index: usize,
    /// Its response checks' labels, in order (`check_failed` counts name them).
    pub checks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeederRecord {
    pub name: String,
    pub rows: u64,
    /// `sequential`, `random` or `unique`.
    pub order: String,
    pub on_exhausted: String,
}

/// One planned fault occurrence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedFault {
    pub fault: String,
    /// From 0.
    pub occurrence: u32,
    pub at_ms: u64,
    /// How long it is held (`None`: an instantaneous or permanent fault).
    pub duration_ms: Option<u64>,
    pub required: bool,
}

impl RunPlan {
    pub fn of(
        plan: &Plan,
        seed: u64,
        workers: usize,
        protocol: HttpVersion,
        started_at: String,
    ) -> RunPlan {
        RunPlan {
            schema_version: SCHEMA_VERSION,
            loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
            name: plan.name.clone(),
            file: plan.source.display().to_string(),
            description: plan.description.clone(),
            seed,
            target: plan.target.base.to_string(),
            protocol,
            tls_verified: plan.target.base.tls.then_some(plan.target.tls_verify),
            workers,
            started_at,
            load: LoadRecord::of(&plan.load.model),
            journeys: plan.journeys.iter().map(JourneyRecord::of).collect(),
            feeders: plan.feeders.iter().map(FeederRecord::of).collect(),
            faults: planned_faults(plan),
            settle_ms: plan.chaos.settle.as_millis() as u64,
            slo_specs: plan.slos.clone(),
            verify_specs: (!plan.verify.is_empty()).then(|| plan.verify.specs()),
        }
    }

    /// Steps in plan order: (journey name, step name), by global index.
    pub fn step_names(&self) -> Vec<(String, String)> {
        self.journeys
            .iter()
            .flat_map(|j| j.steps.iter().map(|s| (j.name.clone(), s.name.clone())))
            .collect()
    }

    pub fn step_count(&self) -> usize {
        self.journeys.iter().map(|j| j.steps.len()).sum()
    }

    /// Written atomically: a reader sees the whole record or none.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a run plan always serializes");
        crate::util::atomic::write_atomic(&run_dir.join(PLAN_FILE), &json)
    }

    pub fn read(run_dir: &Path) -> Result<RunPlan, String> {
        let path = run_dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a run plan: {e}", path.display()))
    }
}

impl LoadRecord {
    fn of(model: &LoadModel) -> LoadRecord {
        let (start, stages) = match model {
            LoadModel::Open { start_rate, stages } => (
                *start_rate,
                stages
                    .iter()
                    .map(|s| StageRecord {
                        duration_s: s.duration.as_secs_f64(),
                        to: s.rate,
                    })
                    .collect(),
            ),
            LoadModel::Closed { start_vus, stages } => (
                *start_vus as f64,
                stages
                    .iter()
                    .map(|s| StageRecord {
                        duration_s: s.duration.as_secs_f64(),
                        to: s.vus as f64,
                    })
                    .collect(),
            ),
        };
        LoadRecord {
            model: model.name().to_string(),
            start,
            stages,
            duration_s: model.total_duration().as_secs_f64(),
        }
    }
}

impl JourneyRecord {
    fn of(j: &JourneyPlan) -> JourneyRecord {
        JourneyRecord {
            name: j.name.clone(),
            weight: j.weight,
            steps: j
                .steps
                .iter()
                .map(|s| StepRecord {
                    name: s.name.clone(),
                    index: s.global_index,
                    checks: s.checks.iter().map(|c| c.label.clone()).collect(),
                })
                .collect(),
        }
    }
}

impl FeederRecord {
    fn of(f: &Feeder) -> FeederRecord {
        FeederRecord {
            name: f.name.clone(),
            rows: f.rows.len() as u64,
            order: match f.order {
                FeederOrder::Sequential => "sequential",
                FeederOrder::Random => "random",
                FeederOrder::Unique => "unique",
            }
            .to_string(),
            on_exhausted: f.on_exhausted.name().to_string(),
        }
    }
}

/// Every fault's planned occurrences, in plan order.
fn planned_faults(plan: &Plan) -> Vec<PlannedFault> {
    plan.chaos
        .faults
        .iter()
        .flat_map(|fault| {
            fault
                .occurrences()
                .into_iter()
                .enumerate()
                .map(|(occurrence, (at, held))| PlannedFault {
                    fault: fault.name.clone(),
                    occurrence: occurrence as u32,
                    at_ms: at.as_millis() as u64,
                    duration_ms: held.map(|d| d.as_millis() as u64),
                    required: fault.required,
                })
        })
        .collect()
}
