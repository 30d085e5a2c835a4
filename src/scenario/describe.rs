//! `loadgen plan`: the resolved plan as text — target, load over time, journey mix, steps.
//! Pure formatting of a `Plan`; sends nothing.

use std::fmt::Write;
use std::time::Duration;

use crate::plan::schedule::{ArrivalSchedule, vu_changes};
use crate::plan::{BodyPlan, LoadModel, Plan, StepPlan};
use crate::util::units::format_duration;

pub fn describe(plan: &Plan, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario  {}", plan.name);
    if let Some(description) = &plan.description {
        let _ = writeln!(out, "          {description}");
    }
    let _ = writeln!(out, "target    {}", plan.target.base);
    let _ = writeln!(
        out,
        "timeouts  connect {}, request {}; max body {} bytes",
        format_duration(plan.target.connect_timeout),
        format_duration(plan.target.request_timeout),
        plan.target.max_body
    );
    let target = &plan.target;
    let _ = writeln!(
        out,
        "client    protocol {}; cookies {}; redirects {}; compression {}{}{}",
        target.protocol.name(),
        if target.cookies { "on" } else { "off" },
        target.redirects,
        target
            .compression
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("off"),
        match target.source_addrs.as_slice() {
            [] => String::new(),
            [one] => format!("; from {one}"),
            [first, .., last] => format!(
                "; from {} addresses {first}…{last}",
                target.source_addrs.len()
            ),
        },
        match (target.base.tls, target.tls_verify) {
            (true, false) => "; certificate NOT verified (tls_verify = false)",
            _ => "",
        }
    );
    let _ = writeln!(out, "seed      {seed}");
    let _ = writeln!(out);
    describe_load(plan, &mut out);
    let _ = writeln!(out);
    describe_journeys(plan, &mut out);
    describe_data(plan, &mut out);
    describe_faults(plan, &mut out);
    describe_slos(plan, &mut out);
    describe_verify(plan, &mut out);
    describe_prometheus(plan, &mut out);
    out
}

/// Prometheus out (served, pushed) and in (the server read, the queries kept).
fn describe_prometheus(plan: &Plan, out: &mut String) {
    let served = &plan.output.prometheus;
    if served.listen.is_none() && served.remote_write.is_none() && plan.prometheus.is_none() {
        return;
    }
    let _ = writeln!(out);
    if let Some(listen) = served.listen {
        let _ = writeln!(
            out,
            "metrics   served on http://{listen}/metrics until judged"
        );
    }
    if let Some(remote) = &served.remote_write {
        let _ = writeln!(
            out,
            "metrics   pushed to {} every {}",
            remote.url,
            format_duration(remote.interval)
        );
    }
    if let Some(prometheus) = &plan.prometheus {
        let _ = writeln!(
            out,
            "server    Prometheus {} read after the load (scrape interval {})",
            prometheus
                .url
                .as_ref()
                .map_or("of the local stack".to_string(), ToString::to_string),
            prometheus
                .scrape_interval
                .map_or("asked from the server".to_string(), format_duration)
        );
        for observe in &plan.observe {
            let _ = writeln!(
                out,
                "  observe {} ({}): {}",
                observe.name,
                observe.unit.name(),
                observe.query
            );
        }
    }
}

/// What is read back after the run, and compared before and after it.
fn describe_verify(plan: &Plan, out: &mut String) {
    let verify = &plan.verify;
    if verify.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "verify    after the load, every fault's end and the settle time; at most {}/s",
        verify.rate
    );
    let steps = plan.step_names();
    for kind in &verify.kinds {
        let by: Vec<String> = kind
            .recorded_by
            .iter()
            .map(|i| format!("{}/{}", steps[*i].0, steps[*i].1))
            .collect();
        let _ = writeln!(
            out,
            "  {}: recorded by {}; read back with {} {} (present {}, absent {}){}{}",
            kind.name,
            by.join(", "),
            kind.check.method,
            kind.check.path.source,
            kind.check.expect,
            kind.check.absent,
            if kind.check.checks.is_empty() {
                String::new()
            } else {
                let labels: Vec<&str> =
                    kind.check.checks.iter().map(|c| c.label.as_str()).collect();
                format!("; checks {}", labels.join(", "))
            },
            if kind.on_unverifiable == crate::plan::verify::OnUnverifiable::Allow {
                "; unverifiable allowed"
            } else {
                ""
            }
        );
    }
    for count in &verify.counts {
        let _ = writeln!(
            out,
            "  count `{}`: {} — its change over the run within the acknowledged {} (+ unanswered requests)",
            count.name,
            count.probe.describe(),
            verify.kinds[count.kind].name
        );
    }
    for invariant in &verify.invariants {
        let _ = writeln!(
            out,
            "  invariant `{}`: {} — the same before the load and after verification",
            invariant.name,
            invariant.probe.describe()
        );
    }
}

/// The objectives the run will be judged on, each with its scope and window.
fn describe_slos(plan: &Plan, out: &mut String) {
    let _ = writeln!(out);
    if plan.slos.is_empty() {
        let _ = writeln!(
            out,
            "slos      none: the run is judged on its outcome alone"
        );
        return;
    }
    let _ = writeln!(out, "slos      (judged on the saved data after the run)");
    for slo in &plan.slos {
        let mut extra = Vec::new();
        if let Some(after) = slo.abort_after {
            extra.push(format!(
                "aborts the run after {} failing",
                format_duration(after)
            ));
        }
        if slo.on_no_data == crate::plan::slo::OnNoData::Allow {
            extra.push("no data allowed".to_string());
        }
        let _ = writeln!(
            out,
            "  {}: {}  [{} · {}]{}",
            slo.name,
            slo.objective,
            slo.scope,
            slo.window,
            if extra.is_empty() {
                String::new()
            } else {
                format!("  ({})", extra.join(", "))
            }
        );
    }
}

fn describe_load(plan: &Plan, out: &mut String) {
    let total = plan.load.model.total_duration();
    match &plan.load.model {
        LoadModel::Open { start_rate, stages } => {
            let schedule = ArrivalSchedule::new(*start_rate, stages);
            let _ = writeln!(
                out,
                "load      open model: {} arrivals over {} (cap {} in flight, ramp-down {})",
                schedule.total(),
                format_duration(total),
                plan.load.max_in_flight,
                format_duration(plan.load.ramp_down)
            );
            let mut at = Duration::ZERO;
            let mut from = *start_rate;
            for (stage, arrivals) in stages.iter().zip(schedule.per_stage()) {
                let _ = writeln!(
                    out,
                    "  {:>8} → {:<8} {:>11} → {:<11}  {arrivals} arrivals",
                    format_duration(at),
                    format_duration(at + stage.duration),
                    per_second(from),
                    per_second(stage.rate)
                );
                at += stage.duration;
                from = stage.rate;
            }
        }
        LoadModel::Closed { start_vus, stages } => {
            let _ = writeln!(
                out,
                "load      closed model: virtual users over {} (ramp-down {})",
                format_duration(total),
                format_duration(plan.load.ramp_down)
            );
            let mut at = Duration::ZERO;
            let mut from = *start_vus;
            for stage in stages {
                let _ = writeln!(
                    out,
                    "  {:>8} → {:<8} {:>5} → {:<5} users",
                    format_duration(at),
                    format_duration(at + stage.duration),
                    from,
                    stage.vus
                );
                at += stage.duration;
                from = stage.vus;
            }
            let peak = vu_changes(*start_vus, stages)
                .iter()
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            let _ = writeln!(out, "  peak {peak} users");
        }
    }
}

/// A rate as a scenario writes it: `8/s`, `0.5/s` (no padding inside the unit).
fn per_second(rate: f64) -> String {
    let text = format!("{rate:.2}");
    format!("{}/s", text.trim_end_matches('0').trim_end_matches('.'))
}

fn describe_journeys(plan: &Plan, out: &mut String) {
    // u64, as the engine's mix sums them: u32 weights may add up past u32::MAX.
    let total_weight: u64 = plan.journeys.iter().map(|j| u64::from(j.weight)).sum();
    let _ = writeln!(out, "journeys  (share of iterations)");
    for journey in &plan.journeys {
        let share = 100.0 * f64::from(journey.weight) / total_weight.max(1) as f64;
        let mut connection = match journey.connection {
            crate::plan::ConnectionMode::Keep => String::new(),
            other => format!("  (connection {})", other.name()),
        };
        if let Some(pacing) = journey.pacing {
            connection.push_str(&format!(
                "  (pacing: each user starts an iteration at most every {})",
                format_duration(pacing)
            ));
        }
        let _ = writeln!(out, "  {:>5.1}%  {}{connection}", share, journey.name);
        for step in &journey.steps {
            describe_step(plan, step, out);
        }
    }
}

/// One step of a journey: method, path, body size, repeat, expected status, what it
/// extracts and records, think time, and its checks.
fn describe_step(plan: &Plan, step: &StepPlan, out: &mut String) {
    let body = match &step.body {
        BodyPlan::None => String::new(),
        // Sizes, not contents: a body may carry secrets (`secrets.rs`).
        BodyPlan::Json(t) => format!(" json ({} bytes)", t.source.len()),
        BodyPlan::Form(t) => format!(" form ({} bytes)", t.source.len()),
        BodyPlan::Raw(t) => format!(" body ({} bytes)", t.source.len()),
    };
    let extracts: Vec<&str> = step.extract.iter().map(|e| e.variable.as_str()).collect();
    let _ = writeln!(
        out,
        "          {} {}{}{}  expect {}{}{}",
        step.method,
        step.path.source,
        body,
        if step.repeat > 1 {
            format!("  ×{}", step.repeat)
        } else {
            String::new()
        },
        step.expect,
        match (extracts.is_empty(), &step.record) {
            (true, None) => String::new(),
            (false, None) => format!("  extract {}", extracts.join(", ")),
            (true, Some(r)) => format!("  record {}", plan.verify.kinds[r.kind].name),
            (false, Some(r)) => format!(
                "  extract {}  record {}",
                extracts.join(", "),
                plan.verify.kinds[r.kind].name
            ),
        },
        step.think.map_or(String::new(), |t| if t.min == t.max {
            format!("  think {}", format_duration(t.min))
        } else {
            format!(
                "  think {}..{}",
                format_duration(t.min),
                format_duration(t.max)
            )
        })
    );
    if !step.checks.is_empty() {
        let labels: Vec<&str> = step.checks.iter().map(|c| c.label.as_str()).collect();
        let _ = writeln!(out, "            checks {}", labels.join(", "));
    }
}

/// The feeders and generators.
fn describe_data(plan: &Plan, out: &mut String) {
    for feeder in &plan.feeders {
        let _ = writeln!(
            out,
            "feeder    {}: {} rows ({}), columns {}",
            feeder.name,
            feeder.rows.len(),
            feeder.order,
            feeder.columns.join(", ")
        );
    }
    for generator in &plan.generators {
        let _ = writeln!(out, "generator {}: {}", generator.name, generator.kind);
    }
}

/// The faults, each occurrence with its times.
fn describe_faults(plan: &Plan, out: &mut String) {
    if !plan.chaos.faults.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "faults    (resolved against the live environment only by `loadgen run --dry-run`)"
        );
        for fault in &plan.chaos.faults {
            for (start, end) in fault.occurrences() {
                let _ = writeln!(
                    out,
                    "  {:>8} → {:<8} {} on {} ({}, max_unavailable {}{})  `{}`",
                    format_duration(start),
                    end.map_or_else(
                        || if fault.action.is_instantaneous() {
                            "once".to_string()
                        } else {
                            "run end".to_string()
                        },
                        format_duration
                    ),
                    fault.action,
                    fault.selector,
                    fault.mode,
                    fault.guard.max_unavailable,
                    if fault.guard.allow_last {
                        ", may take the last"
                    } else {
                        ""
                    },
                    fault.name
                );
            }
        }
    }
}
