//! What the chaos core needs of the platform under test, as ports: `platform/` implements
//! them for the local stack, Compose and Kubernetes, and the composition root (`run/`, and
//! `loadgen recover` in `cli/`) hands an implementation in. The core names no platform.

use std::future::Future;
use std::pin::Pin;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ChaosError;
use super::lifecycle::Candidate;

/// What a port's asynchronous call returns: its answer, or why it has none, in words.
pub(crate) type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What a backend port's asynchronous call returns: its answer, or the chaos error.
pub(crate) type ChaosFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ChaosError>> + Send + 'a>>;

/// A link a platform routes through a loadgen fault proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProxyLink {
    /// What a scenario's `{ proxy = "…" }` matches.
    pub name: String,
    /// The proxy's control API, `http://127.0.0.1:PORT`.
    pub control: String,
}

/// The platform under test as the chaos core sees it.
pub trait Platform: Send + Sync {
    /// The Docker label every container target must carry (a Compose project's own), if
    /// any: container selectors never reach outside it.
    fn container_scope(&self) -> Option<String>;

    /// The platform's processes, read again at every `reload`.
    fn process_instances(&self) -> Box<dyn ProcessInstances>;

    /// The platform's proxy links now (a restarted stack has new ports).
    fn proxy_links(&self) -> PortFuture<'_, Vec<ProxyLink>>;

    /// Starts an instance again from its undo record alone (also from `loadgen recover`).
    fn start_again<'a>(&'a self, restart: &'a Restart) -> PortFuture<'a, ()>;
}

/// The platform's processes, as the process backend asks for them: each instance by name
/// with its PID and port, and how one is started again.
pub trait ProcessInstances: Send + Sync {
    /// Reads the instances again.
    fn reload(&mut self);

    /// Every instance: (name, PID), or why the platform has none.
    fn list(&self) -> Result<Vec<(String, i32)>, String>;

    /// The PID and port of instance `name` now.
    fn get(&self, name: &str) -> Option<(i32, Option<u16>)>;

    /// How instance `name` is started again, if the platform can.
    fn restart_for(&self, name: &str) -> Option<Restart>;

    /// Why the platform may not start instances again here (the operator policy), if so.
    fn script_refusal(&self) -> Option<String>;
}

/// Containers, as the packet backend reaches them: its `{ container, port }` targets are
/// found by name within the platform's scope, and their rules live in the container's
/// network namespace, entered by the PID of its first process. The Docker backend
/// implements it; the core and the packet backend know only this.
pub(crate) trait Containers: Send + Sync {
    /// The engine's address as an undo records it (`None`: the default engine).
    fn host(&self) -> Option<String>;

    /// The containers whose name matches the glob `name`, sorted by name, each with
    /// whether it is up.
    fn find<'a>(&'a self, name: &'a str) -> ChaosFuture<'a, Vec<Candidate>>;

    /// The PID whose network namespace is the container's, `None` when it is not running
    /// or gone.
    fn netns_pid<'a>(&'a self, container: &'a ContainerRef) -> ChaosFuture<'a, Option<i32>>;
}

/// A container by its engine and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub host: Option<String>,
    pub id: String,
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
