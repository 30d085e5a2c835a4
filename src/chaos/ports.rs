//! What the chaos core needs of the platform under test, as ports: `platform/` implements
//! them for the local stack, Compose and Kubernetes, and the composition root (`run/`, and
//! `loadgen recover` in `cli/`) hands an implementation in. The core names no platform.

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;

use super::undo::Restart;

/// What a port's asynchronous call returns: its answer, or why it has none, in words.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

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
