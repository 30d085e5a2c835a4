//! `[chaos]` and `[[fault]]` → `ChaosPlan`: action names resolved against the selector's
//! backend, options checked per action, Kubernetes namespaces against the allow-list.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

mod targets;

use self::targets::{action, select};
use super::raw::{RawChaos, RawFault, RawMaxUnavailable, RawMode};
use super::validate::typed;
use crate::plan::chaos::PlatformKind;
use crate::plan::chaos::{Action, ChaosPlan, FaultSpec, Guard, MaxUnavailable, Mode, Selector};
use crate::util::diag::Diagnostics;
use crate::util::units::{parse_duration, parse_percent};

/// A fault's injections after its first at most (each is planned, listed and judged).
const MAX_REPEAT: u32 = 10_000;

pub(super) fn validate_chaos(
    chaos: Option<&Spanned<RawChaos>>,
    faults: &[Spanned<RawFault>],
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> ChaosPlan {
    let default = RawChaos::default();
    let raw = chaos.map_or(&default, |c| c.get_ref());
    let platform = platform(raw, diagnostics);
    check_compose_project(raw, platform, diagnostics);
    let mut plan = ChaosPlan {
        platform,
        compose_project: raw.compose_project.as_ref().map(|p| p.get_ref().clone()),
        stack_state: raw.stack_state.as_ref().map(|s| base_dir.join(s.get_ref())),
        docker_host: raw.docker_host.clone(),
        kube_api: raw.kube_api.clone(),
        kube_namespaces: raw
            .kube_namespaces
            .iter()
            .map(|n| n.get_ref().clone())
            .collect(),
        kube_context: raw
            .kube_context
            .as_ref()
            .map(|c| c.get_ref().trim().to_string()),
        kube_server: raw
            .kube_server
            .as_ref()
            .map(|s| s.get_ref().trim().to_string()),
        policy_targets: Vec::new(),
        policy_dirs: None,
        allow_targets: raw.allow_targets.clone(),
        settle: typed(
            raw.settle.as_ref(),
            Duration::from_secs(10),
            parse_duration,
            diagnostics,
        )
        .unwrap_or_default(),
        backend_timeout: typed(
            raw.backend_timeout.as_ref(),
            crate::plan::chaos::DEFAULT_BACKEND_TIMEOUT,
            parse_duration,
            diagnostics,
        )
        .unwrap_or(crate::plan::chaos::DEFAULT_BACKEND_TIMEOUT),
        faults: Vec::new(),
    };
    if let Some(raw_timeout) = &raw.backend_timeout
        && plan.backend_timeout < Duration::from_millis(100)
    {
        diagnostics.push(
            raw_timeout.span(),
            "backend_timeout must be at least 100ms".to_string(),
        );
    }
    let mut names = std::collections::HashSet::new();
    for fault in faults {
        let raw_fault = fault.get_ref();
        if !names.insert(raw_fault.name.get_ref().clone()) {
            diagnostics.push(
                raw_fault.name.span(),
                format!(
                    "a fault named `{}` already exists",
                    raw_fault.name.get_ref()
                ),
            );
        }
        if let Some(spec) = validate_fault(raw_fault, &plan, base_dir, diagnostics) {
            plan.faults.push(spec);
        }
    }
    plan
}

/// `platform`: local unless named.
fn platform(raw: &RawChaos, diagnostics: &mut Diagnostics) -> PlatformKind {
    match raw
        .platform
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p.span()))
    {
        None | Some(("local", _)) => PlatformKind::Local,
        Some(("compose", _)) => PlatformKind::Compose,
        Some(("kubernetes", _)) => PlatformKind::Kubernetes,
        Some((other, span)) => {
            diagnostics.push(
                span,
                format!(
                    "unknown platform `{other}` (expected \"local\", \"compose\" or \"kubernetes\")"
                ),
            );
            PlatformKind::Local
        }
    }
}

/// `compose_project`: needed by the compose platform, and only by it.
fn check_compose_project(raw: &RawChaos, platform: PlatformKind, diagnostics: &mut Diagnostics) {
    match (&raw.compose_project, platform) {
        (None, PlatformKind::Compose) => diagnostics.push(
            raw.platform.as_ref().map_or(0..0, |p| p.span()),
            "`platform = \"compose\"` needs `compose_project` (the project whose containers faults may touch)",
        ),
        (Some(project), PlatformKind::Local | PlatformKind::Kubernetes) => diagnostics.push(
            project.span(),
            "`compose_project` only applies with `platform = \"compose\"`",
        ),
        _ => {}
    }
}

/// A process named by a PID file is one no platform knows how to start again, so a
/// `restart`, or a kill held for a `duration`, could never be undone: refused here, from
/// the scenario alone, as the run would refuse it.
fn refuse_restart_of_pidfile(
    raw: &RawFault,
    action: &Action,
    path: &Path,
    diagnostics: &mut Diagnostics,
) {
    let shown = path.display();
    match (action, &raw.duration) {
        (Action::Restart, _) => diagnostics.push(
            raw.action.span(),
            format!(
                "a `restart` of the process in {shown} could not be undone: nothing knows how to start a PID file's process again; name a process of the local stack (`process = \"…\"`), or `kill` without a duration to stop it for good on purpose"
            ),
        ),
        (Action::Kill | Action::Terminate, Some(duration)) => diagnostics.push(
            duration.span(),
            format!(
                "a held `{}` of the process in {shown} could not be undone: nothing knows how to start a PID file's process again; drop the duration to stop it for good on purpose, or name a process of the local stack",
                raw.action.get_ref()
            ),
        ),
        _ => {}
    }
}

fn validate_fault(
    raw: &RawFault,
    chaos: &ChaosPlan,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<FaultSpec> {
    let before = diagnostics.len();
    let at = typed(Some(&raw.at), Duration::ZERO, parse_duration, diagnostics);
    let duration = raw
        .duration
        .as_ref()
        .and_then(|d| typed(Some(d), Duration::ZERO, parse_duration, diagnostics));
    let every = raw
        .every
        .as_ref()
        .and_then(|e| typed(Some(e), Duration::ZERO, parse_duration, diagnostics));
    let effect = effect(raw, diagnostics);
    let repeat = raw.repeat.as_ref().map_or(0, |r| *r.get_ref());
    check_schedule(raw, repeat, every, duration, diagnostics);
    let selector = select(&raw.target, chaos, base_dir, diagnostics);
    let among = raw
        .among
        .as_ref()
        .and_then(|a| select(a, chaos, base_dir, diagnostics));
    if let (Some(among), Some(target)) = (&among, &selector)
        && std::mem::discriminant(among) != std::mem::discriminant(target)
    {
        diagnostics.push(
            raw.among.as_ref().map_or(raw.target.span(), |a| a.span()),
            "`among` must name the same kind of target as `target` (the replica set it belongs to)",
        );
    }
    let action = selector.as_ref().and_then(|s| action(raw, s, diagnostics));
    if let Some(action) = &action {
        let instantaneous = action.is_instantaneous();
        if instantaneous && let Some(d) = &raw.duration {
            diagnostics.push(
                d.span(),
                format!(
                    "`{}` happens at once and cannot have a duration",
                    raw.action.get_ref()
                ),
            );
        }
    }
    if let (Some(action), Some(Selector::PidFile { path })) = (&action, &selector) {
        refuse_restart_of_pidfile(raw, action, path, diagnostics);
    }
    let mode = mode(raw, diagnostics);
    let max_unavailable = max_unavailable(raw, diagnostics);
    if diagnostics.len() > before {
        return None;
    }
    Some(FaultSpec {
        name: raw.name.get_ref().clone(),
        at: at?,
        duration,
        repeat,
        every,
        action: action?,
        selector: selector?,
        mode: mode?,
        guard: Guard {
            max_unavailable: max_unavailable?,
            allow_last: raw.allow_last.unwrap_or(false),
        },
        among,
        effect,
        required: raw.required.unwrap_or(true),
    })
}

/// `effect`: how long a target may take to be healthy again, above zero.
fn effect(raw: &RawFault, diagnostics: &mut Diagnostics) -> Option<Duration> {
    raw.effect.as_ref().and_then(|e| {
        let parsed = typed(Some(e), Duration::ZERO, parse_duration, diagnostics)?;
        if parsed.is_zero() {
            diagnostics.push(
                e.span(),
                "`effect` must be above zero (how long a target may take to be healthy again)",
            );
            return None;
        }
        Some(parsed)
    })
}

/// `repeat` (at most `MAX_REPEAT`, and only with `every`), and `every` longer than
/// `duration`.
fn check_schedule(
    raw: &RawFault,
    repeat: u32,
    every: Option<Duration>,
    duration: Option<Duration>,
    diagnostics: &mut Diagnostics,
) {
    if let Some(r) = raw.repeat.as_ref().filter(|r| *r.get_ref() > MAX_REPEAT) {
        diagnostics.push(
            r.span(),
            format!(
                "a fault's `repeat` is at most {MAX_REPEAT}, not {}",
                r.get_ref()
            ),
        );
    }
    if repeat > 0 && raw.every.is_none() {
        diagnostics.push(
            raw.action.span(),
            "`repeat` needs `every` (the time between injections)",
        );
    }
    if let (Some(every), Some(duration)) = (every, duration)
        && duration >= every
    {
        diagnostics.push(
            raw.every.as_ref().map_or(raw.at.span(), |e| e.span()),
            "`every` must be longer than `duration`: a fault is recovered before it is injected again",
        );
    }
}

/// `mode`: how many of the selected targets the fault takes (one unless named).
fn mode(raw: &RawFault, diagnostics: &mut Diagnostics) -> Option<Mode> {
    match &raw.mode {
        None => Some(Mode::One),
        Some(mode) => match mode.get_ref() {
            RawMode::Text(t) if t == "one" => Some(Mode::One),
            RawMode::Text(t) if t == "all" => Some(Mode::All),
            RawMode::Text(t) if t == "random" => Some(Mode::Random),
            RawMode::Count { count } => Some(Mode::Count(*count)),
            RawMode::Percent { percent } => match parse_percent(percent) {
                Ok(p) => Some(Mode::Percent(p)),
                Err(message) => {
                    diagnostics.push(mode.span(), message);
                    None
                }
            },
            RawMode::Text(other) => {
                diagnostics.push(
                    mode.span(),
                    format!("unknown mode `{other}` (expected \"one\", \"all\", \"random\", {{ count = N }} or {{ percent = \"P%\" }})"),
                );
                None
            }
        },
    }
}

/// `max_unavailable`: the guard's count or share of targets that may be down at once.
fn max_unavailable(raw: &RawFault, diagnostics: &mut Diagnostics) -> Option<MaxUnavailable> {
    match &raw.max_unavailable {
        None => Some(Guard::default().max_unavailable),
        Some(value) => match value.get_ref() {
            RawMaxUnavailable::Count(n) => Some(MaxUnavailable::Count(*n)),
            RawMaxUnavailable::Percent(text) => match parse_percent(text) {
                Ok(p) if p > 0.0 => Some(MaxUnavailable::Percent(p)),
                Ok(_) => {
                    diagnostics.push(
                        value.span(),
                        "`max_unavailable` of 0% allows nothing down: no fault could run",
                    );
                    None
                }
                Err(message) => {
                    diagnostics.push(
                        value.span(),
                        format!("`max_unavailable`: {message} (or a count, e.g. 1)"),
                    );
                    None
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const SCENARIO: &str = r#"[target]
base_url = "http://127.0.0.1:9"
[load]
model = "open"
[[load.stage]]
duration = "10s"
rate = "5/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/"
[[fault]]
name = "kill"
action = "kill"
target = { pidfile = "x.pid" }
at = "1s"
"#;

    fn plan(fault_lines: &str) -> Result<crate::plan::Plan, Vec<String>> {
        let source = format!("{SCENARIO}{fault_lines}");
        crate::scenario::from_source(&source, Path::new("f.toml"), Path::new("."))
            .map_err(|d| d.headlines())
    }

    #[test]
    fn effect_and_required_are_typed_and_default_to_the_runs_end_and_true() {
        let defaults = plan("").unwrap();
        let fault = &defaults.chaos.faults[0];
        assert_eq!((fault.effect, fault.required), (None, true));
        let set = plan("effect = \"30s\"\nrequired = false\n").unwrap();
        let fault = &set.chaos.faults[0];
        assert_eq!(fault.effect, Some(std::time::Duration::from_secs(30)));
        assert!(!fault.required);
    }

    #[test]
    fn a_bad_effect_points_at_its_value() {
        let errors = plan("effect = \"30\"\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("f.toml:18:10: `30` has no unit"),
            "{errors:?}"
        );
        let errors = plan("effect = \"0s\"\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("f.toml:18:10: `effect` must be above zero"),
            "{errors:?}"
        );
        let errors = plan("required = \"no\"\n").unwrap_err();
        assert!(errors[0].starts_with("f.toml:18:12:"), "{errors:?}");
    }

    #[test]
    fn max_unavailable_takes_a_count_or_a_percentage() {
        use crate::plan::chaos::MaxUnavailable;
        let count = plan("max_unavailable = 2\n").unwrap();
        assert_eq!(
            count.chaos.faults[0].guard.max_unavailable,
            MaxUnavailable::Count(2)
        );
        let share = plan("max_unavailable = \"50%\"\n").unwrap();
        assert_eq!(
            share.chaos.faults[0].guard.max_unavailable,
            MaxUnavailable::Percent(50.0)
        );
        let errors = plan("max_unavailable = \"half\"\n").unwrap_err();
        assert!(
            errors[0].starts_with("f.toml:18:19: `max_unavailable`:"),
            "{errors:?}"
        );
        assert!(plan("max_unavailable = \"0%\"\n").is_err());
    }

    #[test]
    fn a_compose_platform_names_its_project_and_scopes_container_ports() {
        let source = SCENARIO
            .replace(
                "[[fault]]",
                "[chaos]\nplatform = \"compose\"\ncompose_project = \"drill\"\n[[fault]]",
            )
            .replace(
                "action = \"kill\"\ntarget = { pidfile = \"x.pid\" }",
                "action = \"reject\"\ntarget = { container = \"*nginx*\", port = 8080 }",
            );
        let plan = crate::scenario::from_source(&source, Path::new("f.toml"), Path::new("."))
            .unwrap_or_else(|d| panic!("{:?}", d.headlines()));
        assert_eq!(
            plan.chaos.platform,
            crate::plan::chaos::PlatformKind::Compose
        );
        assert_eq!(
            crate::platform::container_scope(&plan.chaos).as_deref(),
            Some("com.docker.compose.project=drill")
        );
        assert_eq!(
            plan.chaos.faults[0].selector,
            crate::plan::chaos::Selector::ContainerPort {
                container: "*nginx*".into(),
                port: 8080
            }
        );
        let missing = SCENARIO.replace("[[fault]]", "[chaos]\nplatform = \"compose\"\n[[fault]]");
        let errors = crate::scenario::from_source(&missing, Path::new("f.toml"), Path::new("."))
            .unwrap_err()
            .headlines();
        assert!(errors[0].contains("needs `compose_project`"), "{errors:?}");
    }

    #[test]
    fn selectors_that_could_match_anything_are_errors() {
        for target in [
            "{ container = \"\" }",
            "{ container = \"a\" }",
            "{ process = \"\" }",
            "{ label = \"\" }",
        ] {
            let fault = format!(
                "[[fault]]\nname = \"x\"\naction = \"kill\"\ntarget = {target}\nat = \"1s\"\n"
            );
            let errors = plan(&fault).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with("f.toml:21:10:")
                    && (e.contains("is empty") || e.contains("neither a name"))),
                "{target}: {errors:?}"
            );
        }
    }
}
