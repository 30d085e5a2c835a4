//! What it takes to put a target back, per backend. Serialized into the ledger before the
//! change, so recovery works from the ledger alone.

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
    },
    Firewall {
        /// The rule's exact iptables arguments after `-I INPUT` (and so after `-D INPUT`);
        /// its `loadgen:<id>` comment makes it unique.
        rule: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ProcessUndo {
    /// SIGCONT the stopped process.
    Resume,
    /// Start the instance again through the local stack.
    Restart { command: Vec<String> },
    /// Nothing can bring it back (a PID-file process without a supervisor we know).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum DockerUndo {
    Start,
    Unpause,
    Connect { network: String },
}
