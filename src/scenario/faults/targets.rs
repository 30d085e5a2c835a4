//! A fault's selector and action from their TOML: which backend's target it names, and the
//! action's options checked against that backend.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::plan::chaos::{Action, BackendKind, ChaosPlan, Selector};
use crate::scenario::raw::{RawFault, RawSelector};
use crate::scenario::validate::typed;
use crate::util::diag::Diagnostics;
use crate::util::units::{format_duration, parse_duration, parse_percent, parse_size};

pub(super) fn select(
    target: &Spanned<RawSelector>,
    chaos: &ChaosPlan,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Selector> {
    let raw = target.get_ref();
    // `{ container = "…", port = N }` is one target: a port inside those containers.
    let in_container = raw.container.is_some() && raw.port.is_some();
    if !well_formed(target, in_container, diagnostics) {
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
        return kube_selector(target, chaos, diagnostics);
    }
    local_selector(target, base_dir, diagnostics)
}

/// The selector names exactly one kind of target, with something that cannot match
/// everything.
fn well_formed(
    target: &Spanned<RawSelector>,
    in_container: bool,
    diagnostics: &mut Diagnostics,
) -> bool {
    let raw = target.get_ref();
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
        return false;
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
            return false;
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
        return false;
    }
    true
}

/// A pods or deployment target, in a namespace `[chaos]` lists.
fn kube_selector(
    target: &Spanned<RawSelector>,
    chaos: &ChaosPlan,
    diagnostics: &mut Diagnostics,
) -> Option<Selector> {
    let raw = target.get_ref();
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
    Some(match (&raw.pods, &raw.deployment) {
        (Some(selector), _) => Selector::Pods {
            namespace,
            selector: selector.clone(),
        },
        (_, Some(name)) => Selector::Deployment {
            namespace,
            name: name.clone(),
        },
        _ => unreachable!("checked above"),
    })
}

/// A target of this machine or its containers: a process, a PID file, a container, a
/// label, a port or a proxy.
fn local_selector(
    target: &Spanned<RawSelector>,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Selector> {
    let raw = target.get_ref();
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

#[expect(
    clippy::too_many_lines,
    reason = "one arm per backend and action: the table of what each backend can do reads best whole"
)]
pub(super) fn action<'a>(
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
    within_limits(raw, &action, selector, diagnostics).then_some(action)
}

/// A latency's delay above zero and at least its jitter, and what the backend itself can
/// express.
fn within_limits(
    raw: &RawFault,
    action: &Action,
    selector: &Selector,
    diagnostics: &mut Diagnostics,
) -> bool {
    if let Action::Latency { delay, jitter } = *action {
        let (latency_span, jitter_span) = (
            raw.latency.as_ref().map_or(raw.action.span(), |v| v.span()),
            raw.jitter.as_ref().map_or(raw.action.span(), |v| v.span()),
        );
        if delay.is_zero() {
            diagnostics.push(
                latency_span,
                "`latency` must be above zero (a fault that changes nothing is a typo)",
            );
            return false;
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
            return false;
        }
    }
    // What the backend itself can express (the proxy's limits, a loss iptables can count),
    // checked now so a bad value is a validation error, not a failure mid-run.
    if let Err(message) = crate::chaos::backends::validate(action, selector) {
        let span = match action {
            Action::Loss { .. } => raw
                .probability
                .as_ref()
                .map_or(raw.action.span(), |p| p.span()),
            _ => raw.action.span(),
        };
        diagnostics.push(span, message);
        return false;
    }
    true
}
