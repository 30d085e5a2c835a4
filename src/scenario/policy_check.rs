//! The operator policy (`crate::policy`) applied to a scenario as written: every value the
//! scenario uses to reach beyond itself — hosts it allows, namespaces, process and
//! container names, labels, files it reads, and turning certificate verification off —
//! must lie within the policy. A refusal names the scenario's position (the diagnostic)
//! and the policy's (in the message).

use std::path::Path;

use super::raw::{RawChaos, RawFault, RawMaxUnavailable, RawScenario, RawSelector, RawTarget};
use crate::policy::{Limit, Policy};
use crate::util::diag::Diagnostics;
use crate::util::glob::glob_match;

/// Records a diagnostic for every part of `raw` outside `policy`.
pub(super) fn check(
    raw: &RawScenario,
    base_dir: &Path,
    policy: &Policy,
    diagnostics: &mut Diagnostics,
) {
    if let Some(target) = &raw.target {
        check_target(target.get_ref(), base_dir, policy, diagnostics);
    }
    for feeder in raw.data.feeder.values() {
        let file = &feeder.get_ref().file;
        check_path(base_dir, file.get_ref(), file.span(), policy, diagnostics);
    }
    if let Some(chaos) = &raw.chaos {
        check_chaos(chaos.span(), chaos.get_ref(), base_dir, policy, diagnostics);
    }
    for fault in &raw.faults {
        let target = &fault.get_ref().target;
        check_selector(
            target.get_ref(),
            target.span(),
            base_dir,
            policy,
            diagnostics,
        );
        check_guard(fault, policy, diagnostics);
    }
}

/// `[target]`: the hosts it allows, the certificates it trusts, and verification turned off.
fn check_target(
    target: &RawTarget,
    base_dir: &Path,
    policy: &Policy,
    diagnostics: &mut Diagnostics,
) {
    for host in target.allow_hosts.iter().flatten() {
        if let Some(limit) = policy.host_outside(host.get_ref()) {
            diagnostics.push(
                host.span(),
                outside("host", host.get_ref(), "allow_hosts", limit),
            );
        }
    }
    if let Some(file) = &target.ca_file {
        check_path(base_dir, file.get_ref(), file.span(), policy, diagnostics);
    }
    if let (Some((true, at)), Some(verify)) = (&policy.tls_verify, &target.tls_verify)
        && !*verify.get_ref()
    {
        diagnostics.push(
            verify.span(),
            format!(
                "tls_verify = false is forbidden by the operator policy ({at}): trust the server's certificate instead (`ca_file`, `--ca-file`)"
            ),
        );
    }
}

/// `[chaos]`: its namespaces, target patterns, stack state file and cluster.
fn check_chaos(
    span: std::ops::Range<usize>,
    chaos: &RawChaos,
    base_dir: &Path,
    policy: &Policy,
    diagnostics: &mut Diagnostics,
) {
    if let Some(limit) = &policy.kube_namespaces {
        for namespace in &chaos.kube_namespaces {
            if !limit
                .entries
                .iter()
                .any(|e| &e.value == namespace.get_ref())
            {
                diagnostics.push(
                    namespace.span(),
                    outside("namespace", namespace.get_ref(), "kube_namespaces", limit),
                );
            }
        }
    }
    if let Some(limit) = &policy.targets {
        for pattern in &chaos.allow_targets {
            if !within_patterns(pattern, limit) {
                diagnostics.push(
                    span.clone(),
                    outside("target pattern", pattern, "targets", limit),
                );
            }
        }
    }
    if let Some(state) = &chaos.stack_state {
        check_path(base_dir, state.get_ref(), state.span(), policy, diagnostics);
    }
    for (mine, theirs, what) in [
        (&chaos.kube_context, &policy.kube_context, "kube_context"),
        (&chaos.kube_server, &policy.kube_server, "kube_server"),
    ] {
        if let (Some(mine), Some(theirs)) = (mine, theirs)
            && mine.get_ref().trim() != theirs.value
        {
            diagnostics.push(
                mine.span(),
                format!(
                    "{what} `{}` differs from the operator policy's `{}` ({})",
                    mine.get_ref(),
                    theirs.value,
                    theirs.at
                ),
            );
        }
    }
}

fn check_selector(
    selector: &RawSelector,
    span: std::ops::Range<usize>,
    base_dir: &Path,
    policy: &Policy,
    diagnostics: &mut Diagnostics,
) {
    if let Some(limit) = &policy.targets {
        for name in [&selector.process, &selector.container]
            .into_iter()
            .flatten()
        {
            if !within_patterns(name, limit) {
                diagnostics.push(span.clone(), outside("target", name, "targets", limit));
            }
        }
    }
    if let (Some(label), Some(limit)) = (&selector.label, &policy.labels)
        && !limit.entries.iter().any(|e| &e.value == label)
    {
        diagnostics.push(span.clone(), outside("label", label, "labels", limit));
    }
    if let Some(pidfile) = &selector.pidfile {
        check_path(base_dir, pidfile, span, policy, diagnostics);
    }
}

/// A fault's guardrails may be no looser than the policy's: `max_unavailable` (a count at
/// most the policy's; a percentage only without a cap) and `allow_last`.
fn check_guard(fault: &toml::Spanned<RawFault>, policy: &Policy, diagnostics: &mut Diagnostics) {
    let raw = fault.get_ref();
    if let (Some((cap, at)), Some(wanted)) = (&policy.max_unavailable, &raw.max_unavailable) {
        let looser = match wanted.get_ref() {
            RawMaxUnavailable::Count(n) => n > cap,
            RawMaxUnavailable::Percent(_) => true,
        };
        if looser {
            diagnostics.push(
                wanted.span(),
                format!(
                    "max_unavailable is looser than the operator policy's {cap} ({at}); a capped policy takes counts only"
                ),
            );
        }
    }
    if let (Some((false, at)), Some(true)) = (&policy.allow_last, raw.allow_last) {
        diagnostics.push(
            fault.span(),
            format!("allow_last = true is forbidden by the operator policy ({at})"),
        );
    }
}

/// Whether a scenario's name or glob lies within one of the policy's globs: its text
/// matches one (`backend-1` and `backend-*` both lie within `backend-*`; `*` does not).
fn within_patterns(pattern: &str, limit: &Limit) -> bool {
    limit.entries.iter().any(|e| glob_match(&e.value, pattern))
}

fn check_path(
    base_dir: &Path,
    written: &str,
    span: std::ops::Range<usize>,
    policy: &Policy,
    diagnostics: &mut Diagnostics,
) {
    let path = base_dir.join(written);
    let absolute = if path.is_absolute() {
        path
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    if let Some(limit) = policy.path_outside(&absolute) {
        diagnostics.push(
            span,
            outside("file", &absolute.display().to_string(), "data dirs", limit),
        );
    }
}

fn outside(what: &str, value: &str, list: &str, limit: &Limit) -> String {
    let allowed: Vec<&str> = limit.entries.iter().map(|e| e.value.as_str()).collect();
    format!(
        "{what} `{value}` is outside the operator policy's {list} ({}: {})",
        limit.at,
        if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        }
    )
}
