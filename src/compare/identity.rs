//! Whether two runs may be compared, and what to say first: a summary of this schema, the
//! same scenario (unless told otherwise), and the notes a reader needs before the rows — a
//! different planned length, version or core count, a generator that was the bottleneck.

use std::path::Path;

use super::figures::Figures;
use crate::record::summary::{SCHEMA_VERSION, Summary, arrivals_late};

/// Reads a run directory's summary.json; a summary of another schema version is refused
/// with what to do about it (its figures mean something else: a comparison would lie).
pub(crate) fn read_summary(run_dir: &Path) -> Result<Summary, String> {
    let path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("schema_version").and_then(|v| v.as_u64()));
    match version {
        // Versions 4 to 8 only added to 3 (4: redirect counts, HTTP/2 and redirect error
        // classes; 5: abandoned requests, verification of acknowledged writes; 6: the
        // iteration accounting and the run's verdict; 7: whether the certificate was
        // verified; 8: failure samples, the host's CPU): an older summary reads as a run
        // with none of them.
        Some(v) if (3..=u64::from(SCHEMA_VERSION)).contains(&v) => {}
        Some(v) => {
            return Err(format!(
                "{} has summary schema version {v}, this loadgen writes and reads version {SCHEMA_VERSION}: \
                 its figures are not comparable (since version 3 requests are judged by intended start \
                 and latency is of successful responses only). Re-baseline: run the baseline scenario \
                 again with this loadgen and compare against that run.",
                path.display()
            ));
        }
        None => {}
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a loadgen summary of this version: {e}",
            path.display()
        )
    })
}

/// Whether `base` (read from `dir`) may be a baseline for a run of `scenario`: a run of
/// another scenario measures another load (unless `any_scenario`).
pub(crate) fn check_baseline(
    base: &Summary,
    dir: &Path,
    scenario: &str,
    any_scenario: bool,
) -> Result<(), String> {
    if base.scenario.name != scenario && !any_scenario {
        return Err(format!(
            "{} is a run of scenario `{}`, not `{scenario}`: its figures measure another \
             load (--baseline-any-scenario compares them anyway)",
            dir.display(),
            base.scenario.name
        ));
    }
    Ok(())
}

/// Why a run's latency is not a valid baseline: its generator was the bottleneck, judged by
/// today's rule from its figures (older loadgens called 40 late arrivals one) — arrivals
/// dropped at the cap, or enough of them late beyond the limit. Its latency includes
/// loadgen's own lateness; its other figures still compare.
pub(crate) fn generator_bottleneck(summary: &Summary) -> Option<String> {
    let generator = &summary.generator;
    // Summaries before schema 9 have no lower bound: their p99 is judged as it is.
    let lateness = generator.lag_p99_low_us.unwrap_or(generator.lag_us.p99);
    let late = arrivals_late(generator.launched, lateness, summary.totals.latency_us.p50);
    (generator.dropped > 0 || late).then(|| {
        generator
            .warning
            .clone()
            .unwrap_or_else(|| "its arrivals left late".to_string())
    })
}

/// What differs between the runs besides their figures, said before the rows: planned
/// length, loadgen version, cores, a generator warning on the current side, and the
/// scopes one side has and the other does not.
pub(crate) fn notes(
    bases: &[Summary],
    base_figures: &[Vec<Figures>],
    current: &Summary,
    current_figures: &[Figures],
) -> Vec<String> {
    let mut notes = Vec::new();
    for base in bases {
        if let Some(why) = generator_bottleneck(base) {
            notes.push(format!(
                "the baseline run of {} is not a valid latency baseline: its generator was \
                 the bottleneck, so its latency includes loadgen's own lateness ({why}); its \
                 percentiles are left out",
                base.started_at
            ));
        }
        if (base.planned_duration_s - current.planned_duration_s).abs() > 0.5 {
            notes.push(format!(
                "planned length differs: {:.0} s in the baseline, {:.0} s now (delivered \
                 shares compare fairly; totals would not)",
                base.planned_duration_s, current.planned_duration_s
            ));
        }
        if base.loadgen_version != current.loadgen_version {
            notes.push(format!(
                "loadgen {} made the baseline, {} this run",
                base.loadgen_version, current.loadgen_version
            ));
        }
        let cores = |s: &Summary| s.generator.host_cpu.map(|h| h.cores);
        if let (Some(then), Some(now)) = (cores(base), cores(current))
            && then != now
        {
            notes.push(format!(
                "the generator's host had {then} cores for the baseline, {now} now"
            ));
        }
    }
    if let Some(warning) = &current.generator.warning {
        notes.push(format!(
            "this run's generator warned, so its latency may include loadgen's own \
             lateness: {warning}"
        ));
    }
    let scopes = |figures: &[Figures]| -> std::collections::BTreeSet<String> {
        figures.iter().map(|f| f.scope.clone()).collect()
    };
    let now = scopes(current_figures);
    let then: std::collections::BTreeSet<String> =
        base_figures.iter().flat_map(|f| scopes(f)).collect();
    let only_then: Vec<&String> = then.difference(&now).collect();
    let only_now: Vec<&String> = now.difference(&then).collect();
    let list = |scopes: &[&String]| {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !only_then.is_empty() {
        notes.push(format!(
            "only in the baseline, not compared: {}",
            list(&only_then)
        ));
    }
    if !only_now.is_empty() {
        notes.push(format!(
            "only in this run, not compared: {}",
            list(&only_now)
        ));
    }
    notes.dedup();
    notes
}
