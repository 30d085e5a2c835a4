//! The firewall backend: packet faults on loopback through iptables. A `{ port = N }`
//! target is TCP traffic to 127.0.0.1:N; a fault is one rule inserted at the top of the
//! INPUT chain (loopback traffic crosses OUTPUT, then INPUT on `lo`). Every rule matches
//! only `-i lo -d 127.0.0.0/8 -p tcp --dport N`, in the connection's original (client →
//! server) direction (`-m conntrack --ctdir ORIGINAL`), and carries a `loadgen:<id>` comment, so its
//! undo — the same arguments after `-D INPUT` — deletes exactly that rule and nothing else.
//! A rule that is gone already counts as recovered.
//!
//! Needs root and the `iptables` binary; both are checked when the target is resolved
//! (`--dry-run` and the check before any traffic), not at injection time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::process::Command;

use super::spec::{Action, Selector};
use super::undo::Undo;
use super::{ChaosError, Target};

/// The chain every rule goes into.
pub const CHAIN: &str = "INPUT";
/// Every rule's comment starts with this; the rest is unique to the rule.
pub const COMMENT_PREFIX: &str = "loadgen:";
/// The only destination a rule may match.
const LOOPBACK: &str = "127.0.0.0/8";
/// `iptables -w`: wait this many seconds for the xtables lock instead of failing.
const LOCK_WAIT: &str = "5";

pub struct FirewallBackend {
    /// The iptables binary (`iptables`, found on PATH).
    program: String,
    /// Whether root and iptables were found, checked once per backend.
    checked: Option<Result<(), String>>,
}

impl Default for FirewallBackend {
    fn default() -> Self {
        FirewallBackend::new("iptables")
    }
}

impl FirewallBackend {
    pub fn new(program: &str) -> FirewallBackend {
        FirewallBackend {
            program: program.to_string(),
            checked: None,
        }
    }

    /// The one target of a port selector. Checks first that packet faults can be made here.
    pub async fn resolve(
        &mut self,
        selector: &Selector,
    ) -> Result<Vec<(Target, bool)>, ChaosError> {
        let Selector::Port { port } = selector else {
            return Err(error(format!("{selector} is not a port selector")));
        };
        if *port == 0 {
            return Err(ChaosError::Refused(
                "port 0 is not a port traffic can go to".into(),
            ));
        }
        if self.checked.is_none() {
            self.checked = Some(check_available(&self.program).await);
        }
        if let Some(Err(message)) = &self.checked {
            return Err(error(message.clone()));
        }
        Ok(vec![(
            Target {
                backend: "firewall".into(),
                id: format!("tcp/{port}"),
                name: format!("port {port}"),
                labels: Default::default(),
            },
            true,
        )])
    }

    /// The rule this fault inserts, with a fresh unique comment; nothing changes yet.
    pub fn undo_for(&self, target: &Target, action: &Action) -> Result<Undo, ChaosError> {
        let port = port_of(target)?;
        Ok(Undo::Firewall {
            rule: rule_for(port, action, &unique_id(port))?,
        })
    }

    /// Inserts the rule recorded in `undo` at the top of INPUT.
    pub async fn apply(
        &self,
        target: &Target,
        action: &Action,
        undo: &Undo,
    ) -> Result<(), ChaosError> {
        let Undo::Firewall { rule } = undo else {
            return Err(error(format!("{undo:?} is not a firewall undo")));
        };
        // The rule about to go in is exactly the one this target and action call for.
        let port = port_of(target)?;
        let comment =
            comment_of(rule).ok_or_else(|| error("the rule has no loadgen comment".into()))?;
        let expected = rule_for(port, action, comment.trim_start_matches(COMMENT_PREFIX))?;
        if &expected != rule {
            return Err(ChaosError::Refused(format!(
                "refusing to insert {rule:?}: it is not the rule for {action:?} on {}",
                target.name
            )));
        }
        iptables(&self.program, "-I", rule)
            .await
            .map_err(|e| error(format!("{}: {e}", target.name)))
    }
}

/// Whether this process is root and can list the INPUT chain.
async fn check_available(program: &str) -> Result<(), String> {
    const NEED: &str = "packet faults need root and iptables";
    if !is_root() {
        return Err(format!("{NEED}: loadgen is not running as root"));
    }
    list_rules(program)
        .await
        .map(drop)
        .map_err(|e| format!("{NEED}: {e}"))
}

/// `iptables -S INPUT`: the chain's rules, one per line.
async fn list_rules(program: &str) -> Result<String, String> {
    let output = Command::new(program)
        .args(["-w", LOCK_WAIT, "-S", CHAIN])
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{program} -S {CHAIN}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The effective user id from /proc (no unsafe call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The port of a firewall target (`tcp/PORT`); anything else is refused.
fn port_of(target: &Target) -> Result<u16, ChaosError> {
    target
        .id
        .strip_prefix("tcp/")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0 && target.backend == "firewall")
        .ok_or_else(|| {
            ChaosError::Refused(format!(
                "{} ({}) is not a loopback TCP port; packet faults only touch 127.0.0.0/8",
                target.name, target.id
            ))
        })
}

/// A comment no other rule has: the port (for people reading `iptables -S`), then process,
/// time and a counter.
fn unique_id(port: u16) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{port}-{}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The iptables arguments (after `-I INPUT`) of the rule for `action` on loopback `port`.
pub fn rule_for(port: u16, action: &Action, id: &str) -> Result<Vec<String>, ChaosError> {
    let (dport, comment) = (port.to_string(), format!("{COMMENT_PREFIX}{id}"));
    let chance;
    let verdict: Vec<&str> = match *action {
        Action::Loss { percent } => {
            if !(percent > 0.0 && percent <= 100.0) || probability(percent) == "0" {
                return Err(error(format!(
                    "a loss of {percent}% is out of range: at least 0.0000001% (iptables counts in billionths), at most 100%"
                )));
            }
            chance = probability(percent);
            vec![
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &chance,
                "-j",
                "DROP",
            ]
        }
        Action::Partition => vec!["-j", "DROP"],
        Action::Reject => vec!["-j", "REJECT", "--reject-with", "tcp-reset"],
        ref other => return Err(error(format!("{other:?} is not a firewall action"))),
    };
    let matcher = [
        "-i",
        "lo",
        "-d",
        LOOPBACK,
        "-p",
        "tcp",
        "--dport",
        &dport,
        // Client → server packets only: without it, a reply to a client whose ephemeral
        // port happens to be N (from any server) would be dropped too.
        "-m",
        "conntrack",
        "--ctdir",
        "ORIGINAL",
        "-m",
        "comment",
        "--comment",
        &comment,
    ];
    Ok(matcher
        .into_iter()
        .chain(verdict)
        .map(str::to_string)
        .collect())
}

/// A percentage as iptables' probability (0..=1), to a billionth.
fn probability(percent: f64) -> String {
    let text = format!("{:.9}", percent / 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The `loadgen:<id>` comment of a rule, if it has one.
fn comment_of(rule: &[String]) -> Option<&str> {
    rule.windows(2)
        .find(|pair| pair[0] == "--comment")
        .map(|pair| pair[1].as_str())
        .filter(|c| c.starts_with(COMMENT_PREFIX) && c.len() > COMMENT_PREFIX.len())
}

/// Whether a rule from a ledger is one loadgen could have made: loopback only, commented.
fn is_ours(rule: &[String]) -> bool {
    let has = |flag: &str, value: &str| rule.windows(2).any(|p| p[0] == flag && p[1] == value);
    has("-i", "lo") && has("-d", LOOPBACK) && has("-p", "tcp") && comment_of(rule).is_some()
}

async fn iptables(program: &str, op: &str, rule: &[String]) -> Result<(), String> {
    let output = Command::new(program)
        .args(["-w", LOCK_WAIT, op, CHAIN])
        .args(rule)
        // Out of the terminal's process group (a second Ctrl-C cannot cut a rule change
        // short); killed if its deadline drops it.
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {op} {CHAIN} {}` failed: {}",
            rule.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The INPUT rules whose comment is `comment`, each as the arguments after `-A INPUT` of
/// its `iptables -S INPUT` line.
async fn rules_with(program: &str, comment: &str) -> Result<Vec<Vec<String>>, String> {
    Ok(list_rules(program)
        .await?
        .lines()
        .filter_map(|line| parse_listed(line, comment))
        .collect())
}

/// An `iptables -S` line's arguments after `-A INPUT` when its comment is `comment`.
/// iptables quotes comments (`--comment "loadgen:…"`); ours have no spaces or quotes, so
/// splitting on whitespace and dropping the quotes gives back the arguments.
fn parse_listed(line: &str, comment: &str) -> Option<Vec<String>> {
    let args: Vec<String> = line
        .split_whitespace()
        .map(|word| word.trim_matches('"').to_string())
        .collect();
    let rest = args.strip_prefix(&["-A".to_string(), CHAIN.to_string()])?;
    rest.windows(2)
        .any(|pair| pair[0] == "--comment" && pair[1] == comment)
        .then(|| rest.to_vec())
}

/// Deletes the rule. Idempotent: a rule that is no longer there counts as recovered.
pub async fn recover(undo: &Undo) -> Result<(), ChaosError> {
    recover_with("iptables", undo).await
}

pub async fn recover_with(program: &str, undo: &Undo) -> Result<(), ChaosError> {
    let Undo::Firewall { rule } = undo else {
        return Ok(());
    };
    if !is_ours(rule) {
        return Err(ChaosError::Refused(format!(
            "the ledger's rule {rule:?} is not a loadgen loopback rule; not touching it"
        )));
    }
    let comment = comment_of(rule).unwrap_or_default().to_string();
    let by_hand = format!(
        "delete it by hand with `iptables -D {CHAIN} {}`",
        rule.join(" ")
    );
    let mut deleted = iptables(program, "-D", rule).await;
    // Whatever -D said, the rule is recovered when no rule with its comment is left; one
    // that -D did not match (rewritten by hand?) is deleted as `iptables -S` shows it.
    if let Ok(left) = rules_with(program, &comment).await {
        for args in left {
            if let Err(e) = iptables(program, "-D", &args).await {
                deleted = Err(e);
            }
        }
    }
    match rules_with(program, &comment).await {
        Ok(left) if left.is_empty() => Ok(()),
        Ok(left) => Err(error(format!(
            "{} rule(s) with comment {comment} are still in {CHAIN} ({}); {by_hand}",
            left.len(),
            deleted.err().unwrap_or_else(|| "deleted once".into())
        ))),
        Err(e) => Err(error(format!(
            "{}; {e}; {by_hand}",
            deleted.err().unwrap_or_else(|| "deleted".into())
        ))),
    }
}

fn error(message: String) -> ChaosError {
    ChaosError::Backend {
        backend: "firewall",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str) -> Target {
        Target {
            backend: "firewall".into(),
            id: id.into(),
            name: "port x".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn rules_match_only_loopback_tcp_to_the_port_and_carry_the_comment() {
        let rule = rule_for(5432, &Action::Reject, "abc").unwrap();
        assert_eq!(
            rule.join(" "),
            "-i lo -d 127.0.0.0/8 -p tcp --dport 5432 -m conntrack --ctdir ORIGINAL \
             -m comment --comment loadgen:abc -j REJECT --reject-with tcp-reset"
        );
        let loss = rule_for(80, &Action::Loss { percent: 12.5 }, "x").unwrap();
        assert!(
            loss.join(" ")
                .ends_with("-m statistic --mode random --probability 0.125 -j DROP"),
            "{loss:?}"
        );
        assert!(
            rule_for(80, &Action::Partition, "x")
                .unwrap()
                .join(" ")
                .ends_with("loadgen:x -j DROP")
        );
        assert!(is_ours(&rule));
        assert_eq!(comment_of(&rule), Some("loadgen:abc"));
        assert_eq!(probability(100.0), "1");
        assert_eq!(probability(50.0), "0.5");
    }

    #[test]
    fn foreign_actions_bad_loss_and_non_port_targets_are_refused() {
        assert!(rule_for(80, &Action::Kill, "x").is_err());
        assert!(rule_for(80, &Action::Loss { percent: 0.0 }, "x").is_err());
        assert!(rule_for(80, &Action::Loss { percent: 150.0 }, "x").is_err());
        assert!(rule_for(80, &Action::Loss { percent: 1e-9 }, "x").is_err());
        let backend = FirewallBackend::default();
        assert!(matches!(
            backend.undo_for(&target("10.0.0.1/5432"), &Action::Partition),
            Err(ChaosError::Refused(_))
        ));
        assert!(matches!(
            backend.undo_for(&target("tcp/0"), &Action::Partition),
            Err(ChaosError::Refused(_))
        ));
        let Undo::Firewall { rule } = backend
            .undo_for(&target("tcp/8080"), &Action::Partition)
            .unwrap()
        else {
            panic!("not a firewall undo");
        };
        assert!(
            rule.join(" ").contains(
                "--dport 8080 -m conntrack --ctdir ORIGINAL -m comment --comment loadgen:"
            )
        );
        // Two undos never share a comment.
        let other = backend
            .undo_for(&target("tcp/8080"), &Action::Partition)
            .unwrap();
        assert_ne!(Undo::Firewall { rule }, other);
    }

    #[test]
    fn listed_rules_are_found_by_their_exact_quoted_comment() {
        let line = "-A INPUT -d 127.0.0.0/8 -i lo -p tcp -m tcp --dport 80 -m comment \
                    --comment \"loadgen:80-1-a-0\" -j DROP";
        let args = parse_listed(line, "loadgen:80-1-a-0").unwrap();
        assert_eq!(args[0], "-d");
        assert!(
            args.join(" ")
                .contains("--comment loadgen:80-1-a-0 -j DROP")
        );
        assert!(parse_listed(line, "loadgen:80-1-a-").is_none());
        assert!(parse_listed("-P INPUT ACCEPT", "loadgen:80-1-a-0").is_none());
    }

    #[tokio::test]
    async fn a_missing_iptables_is_a_clear_error_and_a_foreign_rule_is_never_deleted() {
        let mut backend = FirewallBackend::new("/nonexistent/iptables");
        let message = backend
            .resolve(&Selector::Port { port: 5432 })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("packet faults need root and iptables"),
            "{message}"
        );
        let foreign = Undo::Firewall {
            rule: vec!["-p".into(), "tcp".into(), "-j".into(), "DROP".into()],
        };
        assert!(matches!(
            recover_with("/nonexistent/iptables", &foreign).await,
            Err(ChaosError::Refused(_))
        ));
    }
}
