//! `[chaos]` and `[[fault]]` → `ChaosPlan`: action names resolved against the selector's
//! backend, options checked per action, Kubernetes namespaces against the allow-list.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawChaos, RawFault, RawMaxUnavailable, RawMode, RawSelector};
use super::validate::typed;
use crate::plan::chaos::PlatformKind;
use crate::plan::chaos::{
    Action, BackendKind, ChaosPlan, FaultSpec, Guard, MaxUnavailable, Mode, Selector,
};
use crate::util::diag::Diagnostics;
use crate::util::units::{format_duration, parse_duration, parse_percent, parse_size};

/// A fault's injections after its first at most (each is planned, listed and judged).
const MAX_REPEAT: u32 = 10_000;

pub fn validate_chaos(
    chaos: Option<&Spanned<RawChaos>>,
    faults: &[Spanned<RawFault>],
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> ChaosPlan {
    let default = RawChaos::default();
    let raw = chaos.map_or(&default, |c| c.get_ref());
    let platform = match raw
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
    };
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
    let effect = raw.effect.as_ref().and_then(|e| {
        let parsed = typed(Some(e), Duration::ZERO, parse_duration, diagnostics)?;
        if parsed.is_zero() {
            diagnostics.push(
                e.span(),
                "`effect` must be above zero (how long a target may take to be healthy again)",
            );
            return None;
        }
        Some(parsed)
    });
    let repeat = raw.repeat.as_ref().map_or(0, |r| *r.get_ref());
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
    let mode = match &raw.mode {
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
    };
    let max_unavailable = match &raw.max_unavailable {
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
    };
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

fn select(
    target: &Spanned<RawSelector>,
    chaos: &ChaosPlan,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Selector> {
    let raw = target.get_ref();
    // `{ container = "…", port = N }` is one target: a port inside those containers.
    let in_container = raw.container.is_some() && raw.port.is_some();
    let kinds = [
        raw.process.is_some(),
        raw.pidfile.is_some(),
        raw.container.is_some(),
        raw.label.is_some(),
        raw.pods.is_some(),
        raw.deployment.is_some(),
        raw.proxy.is_some(),
        raw.port.is_some() && !in_container,
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        diagnostics.push(
            target.span(),
            "a fault target names exactly one of: process, pidfile, container, label, pods, deployment, proxy, port (or container and port together)",
        );
        return None;
    }
    // A selector that could match anything, or one container in sixteen by accident.
    let named = [
        ("process", &raw.process),
        ("container", &raw.container),
        ("label", &raw.label),
        ("proxy", &raw.proxy),
        ("pods", &raw.pods),
        ("deployment", &raw.deployment),
    ];
    for (what, value) in named {
        if let Some(value) = value
            && value.trim().is_empty()
        {
            diagnostics.push(
                target.span(),
                format!("`{what}` is empty: it would match everything; name what to hit"),
            );
            return None;
        }
    }
    if let Some(container) = &raw.container
        && container.chars().count() < 2
    {
        diagnostics.push(
            target.span(),
            format!(
                "container `{container}` is neither a name (2 or more characters) nor an id (12 or more hex digits)"
            ),
        );
        return None;
    }
    if in_container {
        let (container, port) = (
            raw.container.clone().unwrap_or_default(),
            raw.port.unwrap_or(0),
        );
        if port == 0 {
            diagnostics.push(
                target.span(),
                "`port` must be a TCP port from 1 to 65535 (inside the container)",
            );
            return None;
        }
        return Some(Selector::ContainerPort { container, port });
    }
    let namespaced = raw.pods.is_some() || raw.deployment.is_some();
    if raw.namespace.is_some() && !namespaced {
        diagnostics.push(
            target.span(),
            "`namespace` only applies to pods and deployment targets",
        );
        return None;
    }
    if namespaced {
        let Some(namespace) = raw.namespace.clone() else {
            diagnostics.push(
                target.span(),
                "pods and deployment targets need a `namespace`",
            );
            return None;
        };
        if !chaos.kube_namespaces.contains(&namespace) {
            diagnostics.push(
                target.span(),
                format!(
                    "namespace `{namespace}` is not in [chaos] kube_namespaces ({}); faults may only touch namespaces listed there",
                    if chaos.kube_namespaces.is_empty() { "empty".to_string() } else { chaos.kube_namespaces.join(", ") }
                ),
            );
            return None;
        }
        return Some(match (&raw.pods, &raw.deployment) {
            (Some(selector), _) => Selector::Pods {
                namespace,
                selector: selector.clone(),
            },
            (_, Some(name)) => Selector::Deployment {
                namespace,
                name: name.clone(),
            },
            _ => unreachable!("checked above"),
        });
    }
    Some(if let Some(name) = &raw.process {
        Selector::Process { name: name.clone() }
    } else if let Some(path) = &raw.pidfile {
        Selector::PidFile {
            path: base_dir.join(path),
        }
    } else if let Some(name) = &raw.container {
        Selector::Container { name: name.clone() }
    } else if let Some(label) = &raw.label {
        if !label.contains('=') {
            diagnostics.push(
                target.span(),
                format!("label `{label}` must be written key=value"),
            );
            return None;
        }
        Selector::ContainerLabel {
            label: label.clone(),
        }
    } else if let Some(port) = raw.port {
        if port == 0 {
            diagnostics.push(
                target.span(),
                "`port` must be a TCP port from 1 to 65535 (traffic to it on loopback)",
            );
            return None;
        }
        Selector::Port { port }
    } else {
        Selector::Proxy {
            name: raw.proxy.clone().unwrap_or_default(),
        }
    })
}

fn action<'a>(
    raw: &'a RawFault,
    selector: &Selector,
    diagnostics: &mut Diagnostics,
) -> Option<Action> {
    let name = raw.action.get_ref().as_str();
    let backend = selector.backend();
    // A field the action cannot do without: missing, it is an error at the action.
    let needed = |value: Option<&'a Spanned<String>>,
                  what: &str,
                  hint: &str,
                  diagnostics: &mut Diagnostics|
     -> Option<&'a Spanned<String>> {
        if value.is_none() {
            diagnostics.push(raw.action.span(), format!("`{name}` needs `{what}`{hint}"));
        }
        value
    };
    let duration_of = |value: &'a Option<Spanned<String>>,
                       what: &str,
                       diagnostics: &mut Diagnostics|
     -> Option<Duration> {
        let value = needed(value.as_ref(), what, "", diagnostics)?;
        typed(Some(value), Duration::ZERO, parse_duration, diagnostics)
    };
    let action = match (backend, name) {
        (BackendKind::Process, "kill") => Action::Kill,
        (BackendKind::Process, "terminate") => Action::Terminate,
        (BackendKind::Process, "pause") => Action::Pause,
        (BackendKind::Process, "restart") => Action::Restart,
        (BackendKind::Docker, "kill") => Action::ContainerKill {
            signal: raw
                .signal
                .as_ref()
                .map_or("SIGKILL".to_string(), |s| s.get_ref().clone()),
        },
        (BackendKind::Docker, "stop") => Action::ContainerStop,
        (BackendKind::Docker, "pause") => Action::ContainerPause,
        (BackendKind::Docker, "restart") => Action::ContainerRestart,
        (BackendKind::Docker, "disconnect") => match &raw.network {
            Some(network) => Action::ContainerDisconnect {
                network: network.clone(),
            },
            None => {
                diagnostics.push(
                    raw.action.span(),
                    "`disconnect` needs `network` (the Docker network to cut)",
                );
                return None;
            }
        },
        (BackendKind::Kube, "delete") if matches!(selector, Selector::Pods { .. }) => {
            Action::DeletePod {
                grace: raw
                    .grace
                    .as_ref()
                    .and_then(|g| typed(Some(g), Duration::ZERO, parse_duration, diagnostics)),
            }
        }
        (BackendKind::Kube, "evict") if matches!(selector, Selector::Pods { .. }) => {
            Action::EvictPod
        }
        (BackendKind::Kube, "scale") if matches!(selector, Selector::Deployment { .. }) => {
            match raw.replicas {
                Some(replicas) => Action::Scale { replicas },
                None => {
                    diagnostics.push(
                        raw.action.span(),
                        "`scale` needs `replicas` (the count during the fault)",
                    );
                    return None;
                }
            }
        }
        (BackendKind::Kube, "restart") if matches!(selector, Selector::Deployment { .. }) => {
            Action::RolloutRestart
        }
        (BackendKind::Proxy, "latency") => Action::Latency {
            delay: duration_of(&raw.latency, "latency", diagnostics)?,
            jitter: raw
                .jitter
                .as_ref()
                .and_then(|j| typed(Some(j), Duration::ZERO, parse_duration, diagnostics))
                .unwrap_or_default(),
        },
        (BackendKind::Proxy, "bandwidth") => Action::Bandwidth {
            bytes_per_second: typed(
                Some(needed(
                    raw.bandwidth.as_ref(),
                    "bandwidth",
                    " (e.g. \"64KiB/s\")",
                    diagnostics,
                )?),
                0,
                |t| parse_size(t.trim_end_matches("/s")),
                diagnostics,
            )?,
        },
        (BackendKind::Proxy, "reset") => Action::Reset,
        (BackendKind::Proxy, "blackhole") => Action::Blackhole,
        (BackendKind::Proxy, "refuse") => Action::Refuse,
        (BackendKind::Proxy, "slow_close") => Action::SlowClose {
            delay: duration_of(&raw.delay, "delay", diagnostics)?,
        },
        (BackendKind::Firewall, "loss") => Action::Loss {
            percent: typed(
                Some(needed(
                    raw.probability.as_ref(),
                    "probability",
                    " (the share of packets dropped, e.g. \"10%\")",
                    diagnostics,
                )?),
                0.0,
                |text| match parse_percent(text)? {
                    percent if percent > 0.0 => Ok(percent),
                    _ => Err(
                        "`probability` must be above 0% (a loss that drops nothing is a typo)"
                            .into(),
                    ),
                },
                diagnostics,
            )?,
        },
        (BackendKind::Firewall, "partition") => Action::Partition,
        (BackendKind::Firewall, "reject") => Action::Reject,
        (backend, other) => {
            let valid = match backend {
                BackendKind::Process => "kill, terminate, pause, restart",
                BackendKind::Docker => "kill, stop, pause, restart, disconnect",
                BackendKind::Kube if matches!(selector, Selector::Pods { .. }) => {
                    "delete, evict (pods)"
                }
                BackendKind::Kube => "scale, restart (deployments)",
                BackendKind::Firewall => "loss, partition, reject",
                BackendKind::Proxy => "latency, bandwidth, reset, blackhole, slow_close, refuse",
            };
            diagnostics.push(
                raw.action.span(),
                format!(
                    "`{other}` is not an action for a {selector} target (expected one of: {valid})"
                ),
            );
            return None;
        }
    };
    if let Action::Latency { delay, jitter } = action {
        let (latency_span, jitter_span) = (
            raw.latency.as_ref().map_or(raw.action.span(), |v| v.span()),
            raw.jitter.as_ref().map_or(raw.action.span(), |v| v.span()),
        );
        if delay.is_zero() {
            diagnostics.push(
                latency_span,
                "`latency` must be above zero (a fault that changes nothing is a typo)",
            );
            return None;
        }
        if jitter > delay {
            diagnostics.push(
                jitter_span,
                format!(
                    "`jitter` ({}) must not exceed `latency` ({}): a delay cannot go below zero",
                    format_duration(jitter),
                    format_duration(delay)
                ),
            );
            return None;
        }
    }
    // What the backend itself can express (the proxy's limits, a loss iptables can count),
    // checked now so a bad value is a validation error, not a failure mid-run.
    if let Err(message) = crate::chaos::backends::validate(&action, selector) {
        let span = match action {
            Action::Loss { .. } => raw
                .probability
                .as_ref()
                .map_or(raw.action.span(), |p| p.span()),
            _ => raw.action.span(),
        };
        diagnostics.push(span, message);
        return None;
    }
    Some(action)
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
