//! The packet rules themselves, as pure data: their shape per family and place, the
//! comment that makes each one unique, and reading them (and their packet counters) back
//! from `iptables -S` listings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::plan::chaos::Action;

/// Every rule's comment starts with this; the rest is unique to the rule.
pub(crate) const COMMENT_PREFIX: &str = "loadgen:";

/// The chain every rule goes into: loopback traffic crosses OUTPUT, then INPUT on `lo`;
/// traffic into a container arrives on INPUT of its own namespace.
pub(crate) const CHAIN: &str = "INPUT";

/// IPv4 (iptables) or IPv6 (ip6tables): a rule exists once per family, since `localhost`
/// is `::1` as often as 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// The only destination a loopback rule may match.
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
}

/// Where a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The host's loopback: `-i lo -d 127.0.0.0/8` (or `::1/128`).
    Loopback,
    /// A container's own network namespace: every interface of it, since what arrives
    /// there (from a published port, from another container) is that container's traffic
    /// and nobody else's.
    Namespace,
}

/// A comment no other rule has: the port (for people reading `iptables -S`), then process,
/// time and a counter.
pub(super) fn unique_id(port: u16) -> String {
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

/// The arguments (after `-I INPUT`) of the rule for `action` on TCP `port`.
pub(crate) fn rule_for(
    scope: Scope,
    family: Family,
    port: u16,
    action: &Action,
    id: &str,
) -> Result<Vec<String>, String> {
    let (dport, comment) = (port.to_string(), format!("{COMMENT_PREFIX}{id}"));
    let chance;
    let verdict: Vec<&str> = match *action {
        Action::Loss { percent } => {
            chance = check_loss(percent)?;
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
        ref other => return Err(format!("{other:?} is not a packet action")),
    };
    let place: Vec<&str> = match scope {
        Scope::Loopback => vec!["-i", "lo", "-d", family.loopback()],
        Scope::Namespace => Vec::new(),
    };
    let matcher = [
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
    Ok(place
        .into_iter()
        .chain(matcher)
        .chain(verdict)
        .map(str::to_string)
        .collect())
}

/// A loss percentage as iptables' probability, or why it cannot be one.
pub(crate) fn check_loss(percent: f64) -> Result<String, String> {
    let chance = probability(percent);
    if !(percent > 0.0 && percent <= 100.0) || chance == "0" {
        return Err(format!(
            "a loss of {percent}% is out of range: at least 0.0000001% (iptables counts in billionths), at most 100%"
        ));
    }
    Ok(chance)
}

/// A percentage as iptables' probability (0..=1), to a billionth.
fn probability(percent: f64) -> String {
    let text = format!("{:.9}", percent / 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The `loadgen:<id>` comment of a rule, if it has one.
pub(super) fn comment_of(rule: &[String]) -> Option<&str> {
    rule.windows(2)
        .find(|pair| pair[0] == "--comment")
        .map(|pair| pair[1].as_str())
        .filter(|c| c.starts_with(COMMENT_PREFIX) && c.len() > COMMENT_PREFIX.len())
}

/// Whether a rule from a ledger is one loadgen could have made for `scope`: TCP,
/// commented, and on loopback only unless it lives in a container's namespace.
pub(super) fn is_ours(rule: &[String], scope: Scope, family: Family) -> bool {
    let has = |flag: &str, value: &str| rule.windows(2).any(|p| p[0] == flag && p[1] == value);
    let placed = match scope {
        Scope::Loopback => has("-i", "lo") && has("-d", family.loopback()),
        Scope::Namespace => true,
    };
    placed && has("-p", "tcp") && comment_of(rule).is_some()
}

/// An `iptables -S` line's arguments after `-A INPUT` when its comment is `comment`
/// (counters, `-c PKTS BYTES` from `-v`, left out). iptables quotes comments
/// (`--comment "loadgen:…"`); ours have no spaces or quotes, so splitting on whitespace and
/// dropping the quotes gives back the arguments.
pub(super) fn parse_listed(line: &str, comment: &str) -> Option<Vec<String>> {
    let args: Vec<String> = line
        .split_whitespace()
        .map(|word| word.trim_matches('"').to_string())
        .collect();
    let rest = args.strip_prefix(&["-A".to_string(), CHAIN.to_string()])?;
    if !rest
        .windows(2)
        .any(|pair| pair[0] == "--comment" && pair[1] == comment)
    {
        return None;
    }
    let mut out = Vec::with_capacity(rest.len());
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        if word == "-c" {
            words.next();
            words.next();
        } else {
            out.push(word.clone());
        }
    }
    Some(out)
}

/// The packets the rules with `comment` have matched, from an `iptables -v -S` listing.
pub(super) fn packets(listing: &str, comment: &str) -> u64 {
    listing
        .lines()
        .filter(|line| parse_listed(line, comment).is_some())
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "-c")?;
            words.get(at + 1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Whether a `/proc/net/tcp` or `tcp6` table has a socket listening on `port`.
pub(super) fn listens(table: &str, port: u16) -> bool {
    const LISTEN: &str = "0A";
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
        local_port == Some(port) && fields.get(3) == Some(&LISTEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rules_match_only_loopback_tcp_to_the_port_in_each_family() {
        let rule = rule_for(Scope::Loopback, Family::V4, 5432, &Action::Reject, "abc").unwrap();
        assert_eq!(
            rule.join(" "),
            "-i lo -d 127.0.0.0/8 -p tcp --dport 5432 -m conntrack --ctdir ORIGINAL \
             -m comment --comment loadgen:abc -j REJECT --reject-with tcp-reset"
        );
        let six = rule_for(Scope::Loopback, Family::V6, 5432, &Action::Partition, "abc").unwrap();
        assert!(
            six.join(" ")
                .starts_with("-i lo -d ::1/128 -p tcp --dport 5432")
        );
        assert!(is_ours(&rule, Scope::Loopback, Family::V4));
        assert!(is_ours(&six, Scope::Loopback, Family::V6));
        assert!(!is_ours(&six, Scope::Loopback, Family::V4), "v6 rule as v4");
        assert_eq!(comment_of(&rule), Some("loadgen:abc"));
    }

    #[test]
    fn namespace_rules_match_every_interface_of_the_namespace() {
        let rule = rule_for(Scope::Namespace, Family::V4, 8080, &Action::Partition, "x").unwrap();
        assert_eq!(
            rule.join(" "),
            "-p tcp --dport 8080 -m conntrack --ctdir ORIGINAL -m comment --comment loadgen:x -j DROP"
        );
        assert!(is_ours(&rule, Scope::Namespace, Family::V4));
        assert!(
            !is_ours(&rule, Scope::Loopback, Family::V4),
            "a namespace rule must never be applied to the host"
        );
    }

    #[test]
    fn losses_are_billionths_and_bad_ones_refused() {
        let loss = rule_for(
            Scope::Loopback,
            Family::V4,
            80,
            &Action::Loss { percent: 12.5 },
            "x",
        )
        .unwrap();
        assert!(
            loss.join(" ")
                .ends_with("-m statistic --mode random --probability 0.125 -j DROP"),
            "{loss:?}"
        );
        assert_eq!(probability(100.0), "1");
        assert_eq!(probability(50.0), "0.5");
        for bad in [0.0, 150.0, 1e-9] {
            assert!(check_loss(bad).is_err(), "{bad}");
        }
        assert!(rule_for(Scope::Loopback, Family::V4, 80, &Action::Kill, "x").is_err());
    }

    #[test]
    fn listed_rules_and_their_counters_are_found_by_their_exact_comment() {
        let line = "-A INPUT -d 127.0.0.0/8 -i lo -p tcp -m tcp --dport 80 -m comment \
                    --comment \"loadgen:80-1-a-0\" -c 17 1020 -j DROP";
        let args = parse_listed(line, "loadgen:80-1-a-0").unwrap();
        assert_eq!(args[0], "-d");
        assert!(
            args.join(" ")
                .contains("--comment loadgen:80-1-a-0 -j DROP"),
            "{args:?}"
        );
        assert!(parse_listed(line, "loadgen:80-1-a-").is_none());
        assert!(parse_listed("-P INPUT ACCEPT -c 0 0", "loadgen:80-1-a-0").is_none());
        let listing = format!(
            "-P INPUT ACCEPT -c 5 5\n{line}\n{}",
            line.replace("17", "3")
        );
        assert_eq!(packets(&listing, "loadgen:80-1-a-0"), 20);
        assert_eq!(packets(&listing, "loadgen:other"), 0);
    }

    #[test]
    fn listening_sockets_are_read_from_proc_tables() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     \x20  0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 1 1\n\
                     \x20  1: 0100007F:D431 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert!(listens(table, 5432));
        assert!(
            !listens(table, 54321),
            "an established socket is not a listener"
        );
        assert!(!listens(table, 80));
    }
}
