//! The guardrails, in one place: how many of a replica set a fault may take down, given
//! everything already down — targets that are not up, and what the run's own active faults
//! hold down out of sight (a deployment scaled down has fewer pods to list, not more
//! unready ones). Pure functions over counts, so every refusal is unit-tested without a
//! platform; the timeline (every backend) and the Kubernetes scale check both call `check`.

use super::Target;
use crate::chaos::TargetId;
use crate::plan::chaos::{BackendKind, Guard};
use crate::util::glob::glob_match;

/// A replica set as the guardrails count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fleet {
    /// Up now and not held by another fault of this run.
    pub ready: usize,
    /// Down now: listed but not up, held by another active fault, or taken out of the
    /// listing altogether by one (a scale-down's missing replicas).
    pub down: usize,
}

impl Fleet {
    pub(crate) fn size(&self) -> usize {
        self.ready + self.down
    }
}

/// Whether `wanted` more of `fleet` may go down; the refusal names every number.
/// `noun` is what the set holds ("target", "pod"), for the message.
pub(crate) fn check(guard: &Guard, fleet: Fleet, wanted: usize, noun: &str) -> Result<(), String> {
    if wanted == 0 {
        return Ok(());
    }
    let allowed = guard.max_unavailable.allowed(fleet.size());
    if wanted + fleet.down > allowed {
        return Err(format!(
            "taking {wanted} {noun}(s) down with {} already down exceeds max_unavailable = {} \
             ({allowed} of {} {noun}(s))",
            fleet.down,
            guard.max_unavailable,
            fleet.size()
        ));
    }
    if !guard.allow_last && wanted >= fleet.ready {
        return Err(format!(
            "taking {wanted} of {} ready {noun}(s) down would leave none; \
             set allow_last = true to drill a full outage",
            fleet.ready
        ));
    }
    Ok(())
}

/// Whether `target` is one `[chaos] allow_targets` lets faults touch: with patterns, a
/// process or container (also a port inside a container) must match one by name; proxies,
/// loopback ports and Kubernetes objects are limited elsewhere (their own lists, the
/// namespaces). Without patterns, everything the selector finds.
pub(crate) fn allowed_target(patterns: &[String], target: &Target) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let name = match target.backend {
        BackendKind::Process | BackendKind::Docker => target.name.as_str(),
        BackendKind::Firewall
            if matches!(
                target.id,
                TargetId::Port {
                    container: Some(_),
                    ..
                }
            ) =>
        {
            target
                .name
                .rsplit_once(':')
                .map_or(target.name.as_str(), |(container, _)| container)
        }
        BackendKind::Firewall | BackendKind::Proxy | BackendKind::Kube => return true,
    };
    patterns.iter().any(|p| glob_match(p, name))
}

/// What an active fault holds down beyond what a listing shows: a deployment scaled from
/// `count + replicas` to `replicas` has `count` pods nobody can list any more. They count
/// against every pod set whose members carry all of `labels` (the deployment's selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDown {
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub count: usize,
}

impl HeldDown {
    /// Whether a member with these labels (in `namespace`) belongs to the held-down set.
    pub fn covers(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        !self.labels.is_empty()
            && self.namespace == namespace
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

/// The `key=value` pairs of an equality-based label selector (`app=web,tier=api`); `None`
/// for anything else (set-based expressions), which then links no pod set to it.
pub(crate) fn equality_labels(selector: &str) -> Option<Vec<(String, String)>> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=')?;
            let (key, value) = (key.trim(), value.trim().trim_start_matches('='));
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            };
            (plain(key) && (value.is_empty() || plain(value)) && !key.ends_with('!'))
                .then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chaos::MaxUnavailable;

    fn guard(max: MaxUnavailable, allow_last: bool) -> Guard {
        Guard {
            max_unavailable: max,
            allow_last,
        }
    }

    fn fleet(ready: usize, down: usize) -> Fleet {
        Fleet { ready, down }
    }

    #[test]
    fn counts_refuse_too_many_and_name_the_numbers() {
        let one = Guard::default();
        assert!(check(&one, fleet(3, 0), 1, "target").is_ok());
        let message = check(&one, fleet(2, 1), 1, "target").unwrap_err();
        assert!(
            message.contains("with 1 already down exceeds max_unavailable = 1 (1 of 3 target(s))"),
            "{message}"
        );
        assert!(check(&one, fleet(3, 0), 2, "pod").is_err());
        assert!(check(&one, fleet(3, 5), 0, "pod").is_ok(), "nothing wanted");
    }

    #[test]
    fn percentages_are_of_the_whole_set_rounded_down() {
        assert_eq!(MaxUnavailable::Percent(50.0).allowed(3), 1);
        assert_eq!(MaxUnavailable::Percent(25.0).allowed(3), 0);
        assert_eq!(MaxUnavailable::Percent(100.0).allowed(4), 4);
        assert_eq!(MaxUnavailable::Percent(250.0).allowed(4), 4);
        let half = guard(MaxUnavailable::Percent(50.0), false);
        assert!(check(&half, fleet(4, 0), 2, "pod").is_ok());
        assert!(check(&half, fleet(3, 1), 2, "pod").is_err(), "3 of 4 down");
        // The set's size includes what is down: 50% of (2 up + 2 down) is 2, all used.
        let message = check(&half, fleet(2, 2), 1, "pod").unwrap_err();
        assert!(
            message.contains("max_unavailable = 50% (2 of 4"),
            "{message}"
        );
        let quarter = guard(MaxUnavailable::Percent(25.0), false);
        assert!(check(&quarter, fleet(3, 0), 1, "pod").is_err());
    }

    #[test]
    fn the_last_ready_member_needs_consent() {
        let wide = guard(MaxUnavailable::Count(5), false);
        let message = check(&wide, fleet(1, 0), 1, "pod").unwrap_err();
        assert!(message.contains("1 of 1 ready pod(s)") && message.contains("allow_last"));
        let outage = guard(MaxUnavailable::Count(5), true);
        assert!(check(&outage, fleet(1, 0), 1, "pod").is_ok());
        assert!(check(&outage, fleet(3, 0), 3, "pod").is_ok());
    }

    #[test]
    fn a_scale_and_a_delete_on_one_deployment_share_its_budget() {
        // web: 5 replicas, scaled to 4 by one fault (1 held down, out of the pod list);
        // a pod delete on app=web then sees 4 ready pods and must count the fifth.
        let scaled = HeldDown {
            namespace: "shop".into(),
            labels: equality_labels("app=web").unwrap(),
            count: 1,
        };
        let pod: std::collections::BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("pod-template-hash".into(), "x".into()),
        ]
        .into();
        assert!(scaled.covers("shop", &pod));
        assert!(!scaled.covers("other", &pod));
        let held = if scaled.covers("shop", &pod) {
            scaled.count
        } else {
            0
        };
        let one = Guard::default();
        assert!(check(&one, fleet(4, held), 1, "pod").is_err());
        let two = guard(MaxUnavailable::Count(2), false);
        assert!(check(&two, fleet(4, held), 1, "pod").is_ok());
        assert!(check(&two, fleet(4, held), 2, "pod").is_err());
    }

    #[test]
    fn allow_targets_limit_processes_and_containers_by_name() {
        let target = |backend, id: &str, name: &str| Target {
            backend,
            id: TargetId::parse(backend, id).unwrap(),
            name: name.into(),
            labels: Default::default(),
        };
        let only = ["backend-*".to_string()];
        assert!(allowed_target(&[], &target(BackendKind::Docker, "x", "db")));
        assert!(allowed_target(
            &only,
            &target(BackendKind::Process, "7", "backend-2")
        ));
        assert!(!allowed_target(
            &only,
            &target(BackendKind::Process, "8", "postgres")
        ));
        assert!(!allowed_target(
            &only,
            &target(BackendKind::Docker, "ab", "postgres-1")
        ));
        let inside = target(BackendKind::Firewall, "ab/tcp/80", "backend-1:80");
        assert!(allowed_target(&only, &inside));
        let db = target(BackendKind::Firewall, "cd/tcp/5432", "postgres:5432");
        assert!(!allowed_target(&only, &db));
        assert!(allowed_target(
            &only,
            &target(BackendKind::Firewall, "tcp/80", "port 80")
        ));
    }

    #[test]
    fn only_equality_selectors_link_pod_sets() {
        assert_eq!(
            equality_labels("app=web, tier==api").unwrap(),
            vec![("app".into(), "web".into()), ("tier".into(), "api".into())]
        );
        assert!(equality_labels("app in (web)").is_none());
        assert!(equality_labels("app!=web").is_none());
        let nothing = HeldDown {
            namespace: "shop".into(),
            labels: vec![],
            count: 2,
        };
        assert!(!nothing.covers("shop", &Default::default()));
    }
}
