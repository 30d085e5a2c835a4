//! What it takes to put a target back, per backend. Serialized into the ledger before the
//! change, so recovery works from the ledger alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum Undo {
    /// Nothing to put back (an instantaneous action; the platform heals itself).
    Nothing,
    Process {
        pid: i32,
        /// The process's start time (clock ticks after boot), so a reused PID is never
        /// signalled by mistake.
        start_time: u64,
        step: ProcessUndo,
    },
    Docker {
        host: Option<String>,
        container: String,
        step: DockerUndo,
    },
    Kube {
        api: Option<String>,
        namespace: String,
        deployment: String,
        replicas: u32,
    },
    Proxy {
        /// The proxy's control API (`http://127.0.0.1:PORT`).
        control: String,
        /// The run's owner token: only it may change or clear the fault it set. Older
        /// ledgers have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    Firewall {
        /// The IPv4 rule's exact iptables arguments after `-I INPUT` (and so after
        /// `-D INPUT`); its `loadgen:<id>` comment makes it unique.
        rule: Vec<String>,
        /// The same rule for IPv6 (ip6tables). Older ledgers have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule6: Option<Vec<String>>,
        /// Where the rules live: the host (none) or a container's network namespace,
        /// entered by the PID Docker gives that container at recovery time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<ContainerRef>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ProcessUndo {
    /// SIGCONT the stopped process.
    Resume,
    /// Start the instance again through the local stack.
    Restart(Restart),
    /// Nothing can bring it back (a PID-file process, or a stack service the stack script
    /// cannot start on its own).
    None,
}

/// How a stack instance is started again. Recovery builds the command itself from these
/// parts (`bash SCRIPT start-backend INSTANCE --state-dir STATE_DIR`): a ledger is data,
/// never a script to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Restart {
    Stack {
        /// The stack script (`docker/local/stack.sh`), from the stack state file.
        script: PathBuf,
        state_dir: PathBuf,
        instance: BackendName,
    },
    /// The shape older ledgers wrote: a command line that recovery ran verbatim. Read so
    /// it can be refused by name; never executed.
    LegacyCommand { command: Vec<String> },
}

/// A stack backend instance name, `backend-N`: the only instances `stack.sh
/// start-backend` starts, and so the only ones a restart undo may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackendName(String);

impl BackendName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BackendName {
    type Error = String;

    fn try_from(name: String) -> Result<BackendName, String> {
        let valid = name.strip_prefix("backend-").is_some_and(|n| {
            !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit())
        });
        if valid {
            Ok(BackendName(name))
        } else {
            Err(format!(
                "`{name}` is not a stack backend instance (backend-N): the stack cannot start it again"
            ))
        }
    }
}

impl From<BackendName> for String {
    fn from(name: BackendName) -> String {
        name.0
    }
}

/// A container by its Engine and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub host: Option<String>,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum DockerUndo {
    Start,
    Unpause,
    Connect { network: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(json: &str) -> Result<ProcessUndo, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_restart_names_a_backend_and_round_trips() {
        let undo = ProcessUndo::Restart(Restart::Stack {
            script: "/s/stack.sh".into(),
            state_dir: "/s/.stack".into(),
            instance: BackendName::try_from("backend-2".to_string()).unwrap(),
        });
        let text = serde_json::to_string(&undo).unwrap();
        assert_eq!(step(&text).unwrap(), undo, "{text}");
        for bad in [
            "nginx",
            "backend-",
            "backend-1; rm -rf /",
            "backend-x",
            "backend-123",
        ] {
            let json =
                format!(r#"{{"do":"restart","script":"/s","state_dir":"/d","instance":"{bad}"}}"#);
            assert!(step(&json).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_old_command_shape_is_read_as_legacy_not_as_a_restart() {
        let old =
            step(r#"{"do":"restart","command":["bash","x.sh","restart-backend","backend-1"]}"#)
                .unwrap();
        assert!(matches!(
            old,
            ProcessUndo::Restart(Restart::LegacyCommand { .. })
        ));
    }
}
