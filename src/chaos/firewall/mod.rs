//! The firewall backend: packet faults through iptables and ip6tables.
//!
//! - `{ port = N }`: TCP traffic to port N on the host's loopback. One rule per family at
//!   the top of INPUT (loopback traffic crosses OUTPUT, then INPUT on `lo`), matching only
//!   `-i lo -d 127.0.0.0/8` (ip6tables: `-d ::1/128`) `-p tcp --dport N`.
//! - `{ container = "glob", port = N }`: TCP traffic to port N inside each matched
//!   container's own network namespace, entered with `nsenter -t PID -n` (the PID Docker
//!   reports for it, read again at every use): every interface of that namespace, since
//!   whatever arrives there — from its published port, from another container — is that
//!   container's traffic. Nothing runs inside the container; the host's iptables does.
//!
//! Every rule matches the connection's original (client → server) direction only
//! (`-m conntrack --ctdir ORIGINAL`) and carries a `loadgen:<id>` comment, so its undo —
//! the same arguments after `-D INPUT` — deletes exactly that rule and nothing else. A rule
//! that is gone already (or whose container, and so namespace, is gone) counts as
//! recovered. After insertion the rules must show they matched traffic (`confirm`): none
//! within `CONFIRM_WITHIN` and nothing listening on the port is *ineffective*; none with a
//! listener is *unverified*.
//!
//! Needs root, iptables and ip6tables (and nsenter for containers); checked when targets
//! are resolved (`--dry-run` and the check before any traffic), not at injection time.

mod iptables;
mod rules;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use iptables::{check_available, delete_everywhere, netfilter, nsenter_available};
pub(crate) use rules::{CHAIN, COMMENT_PREFIX, Family, Scope, check_loss, rule_for};
use rules::{comment_of, is_ours, listens, packets, unique_id};

use super::lifecycle::{
    Candidate, Confirmation, Confirming, FaultBackend, Occasion, Planned, confirmed,
};
use super::ports::{ContainerRef, Containers};
use super::{ChaosError, Target};
use crate::chaos::TargetId;
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Selector};

/// `iptables -w`: wait this many seconds for the xtables lock instead of failing.
const LOCK_WAIT: &str = "5";

/// How long after insertion a rule has to show a matched packet.
pub(crate) const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// What deletes a fault's rules, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallUndo {
    /// The IPv4 rule's exact iptables arguments after `-I INPUT` (and so after
    /// `-D INPUT`); its `loadgen:<id>` comment makes it unique.
    pub rule: Vec<String>,
    /// The same rule for IPv6 (ip6tables). Older ledgers have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule6: Option<Vec<String>>,
    /// Where the rules live: the host (none) or a container's network namespace,
    /// entered by the PID its engine gives that container at recovery time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

/// The two programs, one per family.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub v4: String,
    pub v6: String,
}

impl Default for Programs {
    fn default() -> Self {
        Programs {
            v4: "iptables".into(),
            v6: "ip6tables".into(),
        }
    }
}

impl Programs {
    fn of(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

pub(crate) struct FirewallBackend {
    programs: Programs,
    /// Whether root and both programs were found, checked once per backend.
    checked: Option<Result<(), String>>,
    /// How `{ container, port }` targets are found (within the platform's scope) and
    /// their namespaces entered: a port, so this backend knows no container engine.
    containers: Arc<dyn Containers>,
}

/// Where a packet target's rules go, decoded from its id: `tcp/PORT` on the host's
/// loopback, `CONTAINER-ID/tcp/PORT` in a container's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortTarget {
    container: Option<String>,
    port: u16,
}

impl PortTarget {
    fn scope(&self) -> Scope {
        match self.container {
            Some(_) => Scope::Namespace,
            None => Scope::Loopback,
        }
    }
}

impl FirewallBackend {
    pub(crate) fn new(programs: Programs, containers: Arc<dyn Containers>) -> FirewallBackend {
        FirewallBackend {
            programs,
            checked: None,
            containers,
        }
    }

    async fn available(&mut self) -> Result<(), ChaosError> {
        if self.checked.is_none() {
            self.checked = Some(check_available(&self.programs).await);
        }
        match &self.checked {
            Some(Err(message)) => Err(ChaosError::backend(BackendKind::Firewall, message.clone())),
            _ => Ok(()),
        }
    }

    /// The targets of a port selector. Checks first that packet faults can be made here.
    async fn find(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        let port = match selector {
            Selector::Port { port } | Selector::ContainerPort { port, .. } => *port,
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Firewall,
                    format!("{other} is not a port selector"),
                ));
            }
        };
        if port == 0 {
            return Err(ChaosError::Refused(
                "port 0 is not a port traffic can go to".into(),
            ));
        }
        self.available().await?;
        let Selector::ContainerPort { container, .. } = selector else {
            return Ok(vec![(
                Target {
                    backend: BackendKind::Firewall,
                    id: TargetId::Port {
                        container: None,
                        port,
                    },
                    name: format!("port {port}"),
                    labels: Default::default(),
                },
                true,
            )]);
        };
        nsenter_available()
            .await
            .map_err(|e| ChaosError::backend(BackendKind::Firewall, e))?;
        let containers = self.containers.find(container).await?;
        Ok(containers
            .into_iter()
            .map(|(c, up)| {
                let target = Target {
                    backend: BackendKind::Firewall,
                    id: TargetId::Port {
                        container: Some(c.id.to_string()),
                        port,
                    },
                    name: format!("{}:{port}", c.name),
                    labels: c.labels,
                };
                (target, up)
            })
            .collect())
    }

    /// The rules this fault inserts, with a fresh unique comment; nothing changes yet.
    fn undo_for(&self, target: &Target, action: &Action) -> Result<FirewallUndo, ChaosError> {
        let place = port_target(target)?;
        let id = unique_id(place.port);
        let rule = |family| {
            rule_for(place.scope(), family, place.port, action, &id)
                .map_err(|e| ChaosError::backend(BackendKind::Firewall, e))
        };
        Ok(FirewallUndo {
            rule: rule(Family::V4)?,
            rule6: Some(rule(Family::V6)?),
            container: place.container.map(|id| ContainerRef {
                host: self.containers.host(),
                id,
            }),
        })
    }

    /// The namespace a target's rules live in: `None` for the host, else the container's
    /// PID now; an error when the container is not running.
    async fn namespace_of(&mut self, place: &PortTarget) -> Result<Option<i32>, ChaosError> {
        let Some(id) = &place.container else {
            return Ok(None);
        };
        let container = ContainerRef {
            host: self.containers.host(),
            id: id.clone(),
        };
        match self.containers.netns_pid(&container).await? {
            Some(pid) => Ok(Some(pid)),
            None => Err(ChaosError::NoTarget(format!(
                "container {id} (not running)"
            ))),
        }
    }

    /// Inserts the rules recorded in `undo` at the top of INPUT; both or neither.
    async fn insert(
        &mut self,
        target: &Target,
        action: &Action,
        undo: &FirewallUndo,
    ) -> Result<(), ChaosError> {
        let FirewallUndo {
            rule,
            rule6,
            container,
        } = undo;
        // The rules about to go in are exactly the ones this target and action call for.
        let place = port_target(target)?;
        let comment = comment_of(rule).ok_or_else(|| {
            ChaosError::backend(BackendKind::Firewall, "the rule has no loadgen comment")
        })?;
        let id = comment.trim_start_matches(COMMENT_PREFIX);
        let expected = |family| rule_for(place.scope(), family, place.port, action, id);
        let same_place = container.as_ref().map(|c| &c.id) == place.container.as_ref();
        if expected(Family::V4).ok().as_ref() != Some(rule)
            || rule6
                .as_ref()
                .is_some_and(|r6| expected(Family::V6).ok().as_ref() != Some(r6))
            || !same_place
        {
            return Err(ChaosError::Refused(format!(
                "refusing to insert {rule:?}: it is not the rule for {action:?} on {}",
                target.name
            )));
        }
        let netns = self.namespace_of(&place).await?;
        let insert = |family: Family, rule: Vec<String>| {
            let program = self.programs.of(family).to_string();
            async move {
                let args: Vec<String> = ["-I", CHAIN]
                    .map(String::from)
                    .into_iter()
                    .chain(rule)
                    .collect();
                netfilter(&program, netns, &args).await
            }
        };
        insert(Family::V4, rule.clone()).await.map_err(|e| {
            ChaosError::backend(BackendKind::Firewall, format!("{}: {e}", target.name))
        })?;
        if let Some(rule6) = rule6
            && let Err(e) = insert(Family::V6, rule6.clone()).await
        {
            // Both or neither: take the IPv4 rule out again.
            let _ = delete_everywhere(&self.programs.v4, netns, rule).await;
            return Err(ChaosError::backend(
                BackendKind::Firewall,
                format!("{}: {e}", target.name),
            ));
        }
        Ok(())
    }

    /// Whether the inserted rules match traffic within `CONFIRM_WITHIN`: the container's
    /// namespace is looked up now, the counters are watched by the returned future.
    async fn check_effect(&mut self, target: &Target, undo: &FirewallUndo) -> Confirming {
        let (Ok(place), Some(comment)) = (port_target(target), comment_of(&undo.rule)) else {
            return confirmed(Confirmation::Effective);
        };
        let netns = match self.namespace_of(&place).await {
            Ok(netns) => netns,
            Err(e) => {
                return confirmed(Confirmation::Unverified(format!(
                    "cannot read its counters: {e}"
                )));
            }
        };
        let (programs, comment, name) = (
            self.programs.clone(),
            comment.to_string(),
            target.name.clone(),
        );
        Box::pin(watch_counters(programs, netns, place, comment, name))
    }
}

/// Polls the rule's packet counters until one matched, or `CONFIRM_WITHIN` passed; then
/// tells an idle port (unverified) from one nothing listens on (ineffective).
async fn watch_counters(
    programs: Programs,
    netns: Option<i32>,
    place: PortTarget,
    comment: String,
    name: String,
) -> Confirmation {
    let until = tokio::time::Instant::now() + CONFIRM_WITHIN;
    loop {
        let mut matched = 0;
        for family in Family::BOTH {
            let args = ["-v", "-S", CHAIN].map(String::from);
            if let Ok(listing) = netfilter(programs.of(family), netns, &args).await {
                matched += packets(&listing, &comment);
            }
        }
        if matched > 0 {
            return Confirmation::Effective;
        }
        if tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let proc_dir = netns.map_or("/proc/self".to_string(), |pid| format!("/proc/{pid}"));
    let listener = ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("{proc_dir}/net/{table}"))
            .is_ok_and(|text| listens(&text, place.port))
    });
    let there = match &place.container {
        Some(_) => format!("port {} in {name}", place.port),
        None => format!("port {} on loopback", place.port),
    };
    if listener {
        Confirmation::Unverified(format!(
            "no packet to {there} reached the rule within {CONFIRM_WITHIN:?} (nothing sent there yet)"
        ))
    } else {
        Confirmation::Ineffective(format!(
            "nothing listens on {there} and no packet reached the rule within \
             {CONFIRM_WITHIN:?}: it cannot match the platform's traffic (wrong port?)"
        ))
    }
}

impl FaultBackend for FirewallBackend {
    type Undo = FirewallUndo;
    /// A port is healthy as soon as its rules are deleted: nothing to check.
    type Check = Infallible;
    /// No root or no iptables here: no packet fault can be made, so the run is refused
    /// before any traffic.
    const UNRESOLVED_REFUSES: bool = true;

    /// A loss must be a share iptables can express.
    fn validate(action: &Action, _selector: &Selector) -> Result<(), String> {
        match *action {
            Action::Loss { percent } => check_loss(percent).map(drop),
            Action::Partition | Action::Reject => Ok(()),
            ref other => Err(format!("{other:?} is not a packet action")),
        }
    }

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        self.find(selector).await
    }

    /// Held until the rules are deleted; the fault is gone with them.
    async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        _occasion: Occasion,
    ) -> Result<Planned<Option<FirewallUndo>, Infallible>, ChaosError> {
        Ok(Planned::held(self.undo_for(target, &fault.action)?))
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Option<FirewallUndo>, Infallible>,
    ) -> Result<(), ChaosError> {
        match &planned.undo {
            Some(undo) => self.insert(target, action, undo).await,
            None => Err(ChaosError::backend(
                BackendKind::Firewall,
                "a packet fault needs its rules planned",
            )),
        }
    }

    async fn confirm(
        &mut self,
        target: &Target,
        planned: &Planned<Option<FirewallUndo>, Infallible>,
    ) -> Confirming {
        match &planned.undo {
            Some(undo) => self.check_effect(target, undo).await,
            None => confirmed(Confirmation::Effective),
        }
    }

    async fn healthy(&mut self, check: &Infallible) -> Result<bool, ChaosError> {
        match *check {}
    }
}

/// Where a firewall target's rules go; anything that is not a packet target is refused.
fn port_target(target: &Target) -> Result<PortTarget, ChaosError> {
    match &target.id {
        TargetId::Port { container, port } if target.backend == BackendKind::Firewall => {
            Ok(PortTarget {
                container: container.clone(),
                port: *port,
            })
        }
        _ => Err(ChaosError::Refused(format!(
            "{} ({}) is not a TCP port on loopback or in a container",
            target.name, target.id
        ))),
    }
}

/// Deletes the rules. Idempotent: a rule that is no longer there, or whose container is
/// gone or stopped (its namespace went with it), counts as recovered.
/// `containers`: how a container's namespace is entered (its engine is the undo's own).
pub(crate) async fn recover(
    undo: &FirewallUndo,
    containers: &dyn Containers,
) -> Result<(), ChaosError> {
    recover_with(&Programs::default(), undo, containers).await
}

pub(crate) async fn recover_with(
    programs: &Programs,
    undo: &FirewallUndo,
    containers: &dyn Containers,
) -> Result<(), ChaosError> {
    let FirewallUndo {
        rule,
        rule6,
        container,
    } = undo;
    let scope = match container {
        Some(_) => Scope::Namespace,
        None => Scope::Loopback,
    };
    let rules: Vec<(Family, &Vec<String>)> = std::iter::once((Family::V4, rule))
        .chain(rule6.iter().map(|r| (Family::V6, r)))
        .collect();
    for (family, rule) in &rules {
        if !is_ours(rule, scope, *family) {
            return Err(ChaosError::Refused(format!(
                "the ledger's rule {rule:?} is not a loadgen packet rule; not touching it"
            )));
        }
    }
    let netns = match container {
        None => None,
        Some(container) => match containers.netns_pid(container).await? {
            Some(pid) => Some(pid),
            None => return Ok(()),
        },
    };
    let mut problems = Vec::new();
    for (family, rule) in rules {
        if let Err(e) = delete_everywhere(programs.of(family), netns, rule).await {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ChaosError::backend(
            BackendKind::Firewall,
            problems.join("; "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::docker::DockerFaults;

    fn docker() -> Arc<DockerFaults> {
        Arc::new(DockerFaults::new(None, None))
    }

    fn target(id: &str) -> Target {
        Target {
            backend: BackendKind::Firewall,
            id: TargetId::parse(BackendKind::Firewall, id).unwrap(),
            name: "port x".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn targets_decode_to_loopback_or_a_container_and_nothing_else() {
        assert_eq!(
            port_target(&target("tcp/8080")).unwrap(),
            PortTarget {
                container: None,
                port: 8080
            }
        );
        assert_eq!(
            port_target(&target("abc123/tcp/5432")).unwrap(),
            PortTarget {
                container: Some("abc123".into()),
                port: 5432
            }
        );
        // Ids of another form are refused where they are read (`TargetId::parse`); a
        // target of another backend is refused here.
        let process = Target {
            backend: BackendKind::Process,
            id: TargetId::Pid(80),
            name: "backend-1".into(),
            labels: Default::default(),
        };
        assert!(matches!(port_target(&process), Err(ChaosError::Refused(_))));
    }

    #[test]
    fn an_undo_holds_both_families_with_one_fresh_comment() {
        let backend = FirewallBackend::new(Programs::default(), docker());
        let undo = backend
            .undo_for(&target("tcp/8080"), &Action::Partition)
            .unwrap();
        let FirewallUndo {
            rule,
            rule6: Some(rule6),
            container: None,
        } = &undo
        else {
            panic!("{undo:?}");
        };
        assert!(
            rule.join(" ")
                .contains("-d 127.0.0.0/8 -p tcp --dport 8080")
        );
        assert!(rule6.join(" ").contains("-d ::1/128 -p tcp --dport 8080"));
        assert_eq!(comment_of(rule), comment_of(rule6));
        // Two undos never share a comment.
        let other = backend
            .undo_for(&target("tcp/8080"), &Action::Partition)
            .unwrap();
        assert_ne!(undo, other);
        let inside = backend
            .undo_for(&target("c0ffee/tcp/5432"), &Action::Reject)
            .unwrap();
        let FirewallUndo {
            rule,
            container: Some(container),
            ..
        } = inside
        else {
            panic!("not in a container");
        };
        assert_eq!(container.id, "c0ffee");
        assert!(!rule.contains(&"lo".to_string()), "{rule:?}");
    }

    #[test]
    fn an_older_ledgers_rule_reads_as_ipv4_on_loopback() {
        let undo: crate::chaos::backends::Undo = serde_json::from_str(
            r#"{"backend":"firewall","rule":["-i","lo","-d","127.0.0.0/8","-p","tcp","--dport","80","-m","comment","--comment","loadgen:x","-j","DROP"]}"#,
        )
        .unwrap();
        assert!(matches!(
            undo,
            crate::chaos::backends::Undo::Firewall(FirewallUndo {
                rule6: None,
                container: None,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_missing_iptables_is_a_clear_error_and_a_foreign_rule_is_never_deleted() {
        let missing = Programs {
            v4: "/nonexistent/iptables".into(),
            v6: "/nonexistent/ip6tables".into(),
        };
        let mut backend = FirewallBackend::new(missing.clone(), docker());
        let message = backend
            .find(&Selector::Port { port: 5432 })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("packet faults need root, iptables and ip6tables"),
            "{message}"
        );
        let foreign = FirewallUndo {
            rule: vec!["-p".into(), "tcp".into(), "-j".into(), "DROP".into()],
            rule6: None,
            container: None,
        };
        assert!(matches!(
            recover_with(&missing, &foreign, &*docker()).await,
            Err(ChaosError::Refused(_))
        ));
        // A namespace rule is refused on the host, where it would match every interface.
        let rule = rule_for(Scope::Namespace, Family::V4, 80, &Action::Partition, "x").unwrap();
        let misplaced = FirewallUndo {
            rule,
            rule6: None,
            container: None,
        };
        assert!(matches!(
            recover_with(&missing, &misplaced, &*docker()).await,
            Err(ChaosError::Refused(_))
        ));
    }
}
