//! The exported state as metric families, by Prometheus's conventions: base units
//! (`_seconds`), counters ending in `_total`, every series labelled with the scenario and
//! the run. The one list both outputs read: the `/metrics` page (`openmetrics.rs`) and
//! remote write (`remote/`), so a scrape and a push never disagree.

use super::state::{
    BUCKET_BOUNDS_US, Buckets, CHECK_OUTCOMES, Exported, OUTCOMES, ObjectiveState, outcome_name,
};
use crate::metrics::NotStarted;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Count(u64),
    Gauge(f64),
    Histogram(Buckets),
}

/// Label names and values, in the order written; the run's labels first.
pub(crate) type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// The name without unit or suffix (`loadgen_requests`).
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    /// Whether the family is in seconds (its name then ends in `_seconds`).
    pub(crate) seconds: bool,
    pub(crate) series: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            seconds: false,
            series: Vec::new(),
        }
    }
}

/// The labels every series carries.
#[derive(Debug, Clone)]
pub(crate) struct RunLabels {
    pub(crate) scenario: String,
    pub(crate) run_id: String,
}

/// The upper bound of bucket `index` in seconds (`+Inf` past the last bound).
pub(crate) fn bucket_bound(index: usize) -> f64 {
    BUCKET_BOUNDS_US
        .get(index)
        .map_or(f64::INFINITY, |us| *us as f64 / 1e6)
}

/// Every family, its series in a fixed order.
#[expect(
    clippy::too_many_lines,
    reason = "the exported metric list, one block per family in the documented order"
)]
pub(crate) fn families(state: &Exported, run: &RunLabels) -> Vec<Family> {
    let labels = |extra: &[(&'static str, &str)]| -> Labels {
        let mut labels = vec![
            ("scenario", run.scenario.clone()),
            ("run_id", run.run_id.clone()),
        ];
        labels.extend(extra.iter().map(|(k, v)| (*k, (*v).to_string())));
        labels
    };
    let steps = || state.step_names.iter().zip(&state.steps);
    let journeys = || state.journey_names.iter().zip(&state.journeys);

    let mut requests = Family::new(
        "loadgen_requests",
        Kind::Counter,
        "Requests sent, by the second they were meant to start in: outcome ok, redirect (a hop followed) or the error class.",
    );
    let mut duration = Family::new(
        "loadgen_request_duration",
        Kind::Histogram,
        "Latency from the intended start (no coordinated omission) of requests answered, outcome ok (the step's expectations met) or failed; redirect hops are not timed.",
    );
    duration.seconds = true;
    let mut dropped = Family::new(
        "loadgen_dropped",
        Kind::Counter,
        "Arrivals dropped at the in-flight cap, by the step they would have started with.",
    );
    let mut abandoned = Family::new(
        "loadgen_abandoned",
        Kind::Counter,
        "Requests cut off in flight at the hard stop (not in loadgen_requests).",
    );
    let mut retried = Family::new(
        "loadgen_retried_unprocessed",
        Kind::Counter,
        "Requests sent again because the server provably processed none of the first send.",
    );
    for ((journey, step), counts) in steps() {
        let at = [("journey", journey.as_str()), ("step", step.as_str())];
        for outcome in 0..OUTCOMES {
            let mut extra = at.to_vec();
            extra.push(("outcome", outcome_name(outcome)));
            requests
                .series
                .push((labels(&extra), Value::Count(counts.outcomes[outcome])));
        }
        for (outcome, buckets) in [
            ("ok", &counts.ok_latency),
            ("failed", &counts.failed_latency),
        ] {
            let mut extra = at.to_vec();
            extra.push(("outcome", outcome));
            duration
                .series
                .push((labels(&extra), Value::Histogram(buckets.clone())));
        }
        dropped
            .series
            .push((labels(&at), Value::Count(counts.dropped)));
        abandoned
            .series
            .push((labels(&at), Value::Count(counts.abandoned)));
        retried
            .series
            .push((labels(&at), Value::Count(counts.retried_unprocessed)));
    }

    let mut planned = Family::new(
        "loadgen_iterations_planned",
        Kind::Counter,
        "Iterations the plan asked for so far (open model: the schedule's arrivals; closed: the iterations users began).",
    );
    let mut started = Family::new(
        "loadgen_iterations_started",
        Kind::Counter,
        "Iterations that sent their first request.",
    );
    let mut journey_dropped = Family::new(
        "loadgen_iterations_dropped",
        Kind::Counter,
        "Iterations dropped at the in-flight cap.",
    );
    let mut not_started = Family::new(
        "loadgen_iterations_not_started",
        Kind::Counter,
        "Planned iterations that never started, by reason (planned = started + dropped + not started).",
    );
    let mut ended = Family::new(
        "loadgen_iterations_ended",
        Kind::Counter,
        "Iterations that ended: completed, failed, or interrupted by the stop.",
    );
    for (journey, counts) in journeys() {
        let at = [("journey", journey.as_str())];
        planned
            .series
            .push((labels(&at), Value::Count(counts.planned())));
        started
            .series
            .push((labels(&at), Value::Count(counts.started)));
        journey_dropped
            .series
            .push((labels(&at), Value::Count(counts.dropped)));
        for (reason, count) in NotStarted::ALL.iter().zip(counts.not_started()) {
            let extra = [at[0], ("reason", reason.name())];
            not_started
                .series
                .push((labels(&extra), Value::Count(count)));
        }
        for (outcome, count) in [
            ("completed", counts.completed),
            ("failed", counts.failed),
            ("interrupted", counts.interrupted),
        ] {
            let extra = [at[0], ("outcome", outcome)];
            ended.series.push((labels(&extra), Value::Count(count)));
        }
    }

    let mut scheduled = Family::new(
        "loadgen_arrivals_scheduled",
        Kind::Counter,
        "Open model: arrivals whose instant came (launched or dropped).",
    );
    scheduled
        .series
        .push((labels(&[]), Value::Count(state.scheduled)));
    let mut instances = Family::new(
        "loadgen_instance_responses",
        Kind::Counter,
        "Responses by the instance that served them (the instance header; 64 named, the rest `(other)`).",
    );
    for (instance, count) in &state.instances {
        instances
            .series
            .push((labels(&[("instance", instance)]), Value::Count(*count)));
    }
    let mut in_flight = Family::new(
        "loadgen_in_flight_iterations",
        Kind::Gauge,
        "Iterations in flight at the last final second.",
    );
    in_flight
        .series
        .push((labels(&[]), Value::Gauge(state.in_flight as f64)));
    let mut users = Family::new(
        "loadgen_active_users",
        Kind::Gauge,
        "Users running: the closed model's users by the plan, the open model's iterations in flight.",
    );
    users
        .series
        .push((labels(&[]), Value::Gauge(state.active_users as f64)));
    let mut faults = Family::new(
        "loadgen_fault_active",
        Kind::Gauge,
        "1 while one of the fault's windows is open (applied, not yet seen healthy again).",
    );
    for (fault, open) in &state.faults {
        faults.series.push((
            labels(&[("fault", fault)]),
            Value::Gauge(f64::from(u8::from(*open))),
        ));
    }
    let mut objectives = Family::new(
        "loadgen_objective_state",
        Kind::Gauge,
        "1 for the objective's state: pending until the run is judged, then pass, fail or no_data over its windows.",
    );
    for (objective, current) in &state.objectives {
        for candidate in ObjectiveState::ALL {
            let extra = [
                ("objective", objective.as_str()),
                ("state", candidate.name()),
            ];
            objectives.series.push((
                labels(&extra),
                Value::Gauge(f64::from(u8::from(*current == candidate))),
            ));
        }
    }
    let mut acknowledged = Family::new(
        "loadgen_writes_acknowledged",
        Kind::Counter,
        "Writes the platform acknowledged (steps with `record`), by kind.",
    );
    let mut checked = Family::new(
        "loadgen_writes_checked",
        Kind::Counter,
        "Acknowledged writes read back after the load, by kind and outcome (present once verified).",
    );
    for writes in &state.writes {
        acknowledged.series.push((
            labels(&[("kind", &writes.kind)]),
            Value::Count(writes.acknowledged),
        ));
        for (outcome, count) in CHECK_OUTCOMES
            .iter()
            .zip(writes.checked.unwrap_or_default())
        {
            if writes.checked.is_some() {
                let extra = [("kind", writes.kind.as_str()), ("outcome", *outcome)];
                checked.series.push((labels(&extra), Value::Count(count)));
            }
        }
    }
    let mut judged = Family::new(
        "loadgen_run_judged",
        Kind::Gauge,
        "1 once the run's verdicts are judged (the objectives' states are final).",
    );
    judged
        .series
        .push((labels(&[]), Value::Gauge(f64::from(u8::from(state.judged)))));

    vec![
        requests,
        duration,
        dropped,
        abandoned,
        retried,
        planned,
        started,
        journey_dropped,
        not_started,
        ended,
        scheduled,
        instances,
        in_flight,
        users,
        faults,
        objectives,
        acknowledged,
        checked,
        judged,
    ]
}
