//! `[[slo]]` → `SloSpec`: objectives parsed with positions, windows and scopes checked
//! against the scenario's faults and journeys.

use toml::Spanned;

use super::raw::RawSlo;
use super::validate::{Known, allows};
use crate::plan::slo::{OnNoData, Recovery, Scope, SloSpec, Window, parse_objective};
use crate::util::diag::Diagnostics;
use crate::util::units::parse_duration;

/// `scopes` holds each journey's name and each step's `journey/step`; `faults` each
/// fault's name — as declared, mistakes and all, so an objective is not blamed for a
/// fault or step whose own mistake is reported where it is written.
pub(super) fn validate_slos(
    slos: &[Spanned<RawSlo>],
    scopes: &Known,
    faults: &Known,
    prometheus: bool,
    diagnostics: &mut Diagnostics,
) -> Vec<SloSpec> {
    let mut out = Vec::new();
    for slo in slos {
        let raw = slo.get_ref();
        if raw.query.is_some() || raw.unit.is_some() {
            out.extend(query_slo(slo, faults, prometheus, diagnostics));
            continue;
        }
        let before = diagnostics.len();
        let conditions = match parse_objective(raw.objective.get_ref()) {
            Ok(c) => c,
            Err((range, message)) => {
                diagnostics.push(inner(&raw.objective, range), message);
                Vec::new()
            }
        };
        let window = window(slo, faults, diagnostics);
        let scope = raw
            .scope
            .as_ref()
            .map_or(Scope::All, |s| Scope::parse(s.get_ref()));
        if scope != Scope::All && !scopes.knows(&scope.to_string()) {
            diagnostics.push(
                raw.scope.as_ref().map_or(slo.span(), |s| s.span()),
                format!("scope `{scope}` names no journey (\"name\") or step (\"journey/step\") of this scenario"),
            );
        }
        let recovery = recovery(raw, diagnostics);
        if recovery.is_some() && faults.is_empty() {
            diagnostics.push(
                slo.span(),
                "a recovery objective needs at least one [[fault]]",
            );
        }
        let abort_after = abort_after(raw, diagnostics);
        if conditions.iter().any(|c| c.drift) && (abort_after.is_some() || recovery.is_some()) {
            diagnostics.push(
                raw.objective.span(),
                "a drift compares a window's first third with its last: it takes no `abort` and no `recovery`",
            );
        }
        if abort_after.is_some() && (recovery.is_some() || slo_window_is_not_run(&window)) {
            diagnostics.push(
                slo.span(),
                "`abort` applies to whole-run objectives (no `window`, no `recovery`)",
            );
        }
        let on_no_data = match allows(raw.on_no_data.as_ref(), "on_no_data", diagnostics) {
            true => OnNoData::Allow,
            false => OnNoData::Fail,
        };
        if diagnostics.len() == before {
            out.push(SloSpec {
                name: raw
                    .name
                    .clone()
                    .unwrap_or_else(|| raw.objective.get_ref().clone()),
                objective: raw.objective.get_ref().clone(),
                conditions,
                window,
                scope,
                recovery,
                abort_after,
                on_no_data,
                server: None,
            });
        }
    }
    out
}

/// A query objective (`query`, `unit`, `objective = "max < 250ms"`): judged on the
/// platform's own metrics, so it takes no client `scope`, no `recovery` and no `abort`.
fn query_slo(
    slo: &Spanned<RawSlo>,
    faults: &Known,
    prometheus: bool,
    diagnostics: &mut Diagnostics,
) -> Option<SloSpec> {
    let raw = slo.get_ref();
    let before = diagnostics.len();
    if !prometheus {
        diagnostics.push(
            slo.span(),
            "a query objective needs a [prometheus] section with the server's `url`",
        );
    }
    for (present, key) in [
        (raw.scope.is_some(), "scope"),
        (raw.recovery.is_some(), "recovery"),
        (raw.abort.is_some() || raw.grace.is_some(), "abort"),
    ] {
        if present {
            diagnostics.push(
                slo.span(),
                format!("a query objective takes no `{key}`: it is judged on the platform's metrics, not loadgen's requests"),
            );
        }
    }
    let Some(unit) = &raw.unit else {
        diagnostics.push(
            slo.span(),
            "a query objective needs its `unit` (s, ratio, count, bytes or /s)",
        );
        return None;
    };
    let unit = super::prometheus::unit(unit, diagnostics);
    let Some(query) = &raw.query else {
        diagnostics.push(
            slo.span(),
            "`unit` belongs to a query objective: add its `query`",
        );
        return None;
    };
    if query.get_ref().contains("$__window") || query.get_ref().contains("$__end") {
        diagnostics.push(
            query.span(),
            "`$__window` and `$__end` are not supported yet: write a range the query reads (rate(x[5s])) and aggregate its points with max, min, mean, last or increase",
        );
    }
    let selectors = crate::plan::slo::server::selectors(query.get_ref())
        .map_err(|e| diagnostics.push(query.span(), e))
        .ok();
    let parsed = unit.and_then(|unit| {
        crate::plan::slo::server::parse_server_objective(raw.objective.get_ref(), unit)
            .map_err(|e| diagnostics.push(raw.objective.span(), e))
            .ok()
            .map(|p| (unit, p))
    });
    let window = window(slo, faults, diagnostics);
    let on_no_data = match allows(raw.on_no_data.as_ref(), "on_no_data", diagnostics) {
        true => OnNoData::Allow,
        false => OnNoData::Fail,
    };
    let (unit, (aggregate, op, threshold)) = parsed?;
    (diagnostics.len() == before).then(|| SloSpec {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| raw.objective.get_ref().clone()),
        objective: raw.objective.get_ref().clone(),
        conditions: Vec::new(),
        window,
        scope: Scope::All,
        recovery: None,
        abort_after: None,
        on_no_data,
        server: Some(crate::plan::slo::server::ServerObjective {
            query: query.get_ref().trim().to_string(),
            unit,
            aggregate,
            op,
            threshold,
            selectors: selectors.unwrap_or_default(),
        }),
    })
}

/// An objective's `window`: the whole run unless named (an unknown one is reported).
fn window(slo: &Spanned<RawSlo>, faults: &Known, diagnostics: &mut Diagnostics) -> Window {
    let raw = slo.get_ref();
    match raw.window.as_ref().map(|w| w.get_ref().as_str()) {
        None | Some("run") => Window::Run,
        Some("steady") => Window::Steady,
        Some("faults") => Window::Faults,
        Some("after") => Window::After,
        Some(text) => match text.strip_prefix("fault:") {
            Some(name) if faults.knows(name) => Window::Fault(name.to_string()),
            _ => {
                let span = raw.window.as_ref().map_or(slo.span(), |w| w.span());
                diagnostics.push(
                    span,
                    format!("unknown window `{text}` (expected run, steady, faults, after, or fault:<name of a [[fault]]>)"),
                );
                Window::Run
            }
        },
    }
}

/// A recovery objective's `recovery` time and whether it counts `from` the fault's end.
fn recovery(raw: &RawSlo, diagnostics: &mut Diagnostics) -> Option<Recovery> {
    raw.recovery
        .as_ref()
        .and_then(|r| match parse_duration(r.get_ref()) {
            Ok(within) => Some(Recovery {
                within,
                from_end: match raw.from.as_ref().map(|f| f.get_ref().as_str()) {
                    None | Some("start") => false,
                    Some("end") => true,
                    Some(other) => {
                        diagnostics.push(
                            raw.from.as_ref().unwrap().span(),
                            format!("`from` is \"start\" or \"end\", not `{other}`"),
                        );
                        false
                    }
                },
            }),
            Err(message) => {
                diagnostics.push(r.span(), message);
                None
            }
        })
}

/// `abort = true` and its `grace` (10 s unless given); `None` when the objective does not
/// abort the run.
fn abort_after(raw: &RawSlo, diagnostics: &mut Diagnostics) -> Option<std::time::Duration> {
    match (raw.abort.unwrap_or(false), &raw.grace) {
        (false, Some(grace)) => {
            diagnostics.push(grace.span(), "`grace` only applies with `abort = true`");
            None
        }
        (false, None) => None,
        (true, None) => Some(std::time::Duration::from_secs(10)),
        (true, Some(grace)) => match parse_duration(grace.get_ref()) {
            Ok(d) => Some(d),
            Err(message) => {
                diagnostics.push(grace.span(), message);
                None
            }
        },
    }
}

fn slo_window_is_not_run(window: &Window) -> bool {
    *window != Window::Run
}

fn inner(text: &Spanned<String>, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let span = text.span();
    if span.end - span.start == text.get_ref().len() + 2 {
        span.start + 1 + range.start..span.start + 1 + range.end
    } else {
        span
    }
}
