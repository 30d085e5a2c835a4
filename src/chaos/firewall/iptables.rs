//! Running iptables and ip6tables, on the host or in a container's network namespace
//! (`nsenter -t PID -n`): whether they can run here, one call, and deleting a rule by its
//! comment wherever it is.

use tokio::process::Command;

use super::rules::{comment_of, parse_listed};
use super::{CHAIN, Family, LOCK_WAIT, Programs};

/// Whether this process is root and can list INPUT in both families.
pub(super) async fn check_available(programs: &Programs) -> Result<(), String> {
    const NEED: &str = "packet faults need root, iptables and ip6tables";
    if !is_root() {
        return Err(format!("{NEED}: loadgen is not running as root"));
    }
    for family in Family::BOTH {
        netfilter(programs.of(family), None, &["-S", CHAIN].map(String::from))
            .await
            .map_err(|e| format!("{NEED}: {e}"))?;
    }
    Ok(())
}

pub(super) async fn nsenter_available() -> Result<(), String> {
    let ran = Command::new("nsenter").arg("--version").output().await;
    match ran {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("packet faults in a container need nsenter (util-linux)".into()),
    }
}

/// One iptables call, on the host or inside the network namespace of process `netns`.
pub(super) async fn netfilter(
    program: &str,
    netns: Option<i32>,
    args: &[String],
) -> Result<String, String> {
    let mut command = match netns {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", program]);
            c
        }
        None => Command::new(program),
    };
    let described = format!(
        "{}{program} {}",
        netns.map_or(String::new(), |pid| format!("nsenter -t {pid} -n ")),
        args.join(" ")
    );
    let output = command
        .args(["-w", LOCK_WAIT])
        .args(args)
        // Out of the terminal's process group (a second Ctrl-C cannot cut a rule change
        // short); killed if its deadline drops it.
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{described}`: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{described}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The effective user id from /proc (no unsafe call needed).
pub(super) fn is_root() -> bool {
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

/// Deletes `rule` and any other rule with its comment; Ok when none is left.
pub(super) async fn delete_everywhere(
    program: &str,
    netns: Option<i32>,
    rule: &[String],
) -> Result<(), String> {
    let comment = comment_of(rule).unwrap_or_default();
    let listed = || listed_with(program, netns, comment);
    let delete = |args: Vec<String>| async move {
        let args: Vec<String> = ["-D", CHAIN]
            .map(String::from)
            .into_iter()
            .chain(args)
            .collect();
        netfilter(program, netns, &args).await.map(drop)
    };
    let mut deleted = delete(rule.to_vec()).await;
    // Whatever -D said, the rule is recovered when no rule with its comment is left; one
    // that -D did not match (rewritten by hand?) is deleted as `iptables -S` shows it.
    if let Ok(left) = listed().await {
        for args in left {
            if let Err(e) = delete(args).await {
                deleted = Err(e);
            }
        }
    }
    let by_hand = format!(
        "delete it by hand with `{program} -D {CHAIN} {}`",
        rule.join(" ")
    );
    match listed().await {
        Ok(left) if left.is_empty() => Ok(()),
        Ok(left) => Err(format!(
            "{} rule(s) with its comment are still in {CHAIN} ({}); {by_hand}",
            left.len(),
            deleted.err().unwrap_or_else(|| "deleted once".into())
        )),
        Err(e) => Err(format!(
            "{}; {e}; {by_hand}",
            deleted.err().unwrap_or_else(|| "deleted".into())
        )),
    }
}

/// The rules with `comment`, each as its arguments after `-A INPUT`.
pub(super) async fn listed_with(
    program: &str,
    netns: Option<i32>,
    comment: &str,
) -> Result<Vec<Vec<String>>, String> {
    let listing = netfilter(program, netns, &["-S", CHAIN].map(String::from)).await?;
    Ok(listing
        .lines()
        .filter_map(|line| parse_listed(line, comment))
        .collect())
}
