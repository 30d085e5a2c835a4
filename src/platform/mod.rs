//! Platform adapters: what the chaos core needs to know of the platform under test, for
//! each kind of platform, kept out of `chaos/`. Each adapter says where its fault proxies'
//! control APIs are and which containers belong to it:
//!
//! - `local`: the local stack (`docker/local/stack.sh`), from its state file — also its
//!   instances, their ports, and how one is started again.
//! - `compose`: a Docker Compose project, from the Docker Engine: its containers carry
//!   the project's label; a proxy is a container labelled `loadgen.proxy = NAME` whose
//!   control API (container port `loadgen.proxy.control`) is published on loopback.
//! - `kubernetes`: pods and deployments, found by the Kubernetes backend itself.

pub mod compose;
pub mod local;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::chaos::spec::ChaosPlan;
use crate::chaos::undo::Restart;

/// `[chaos] platform`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    #[default]
    Local,
    Compose,
    Kubernetes,
}

/// A link a platform routes through a loadgen fault proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProxyLink {
    /// What a scenario's `{ proxy = "…" }` matches.
    pub name: String,
    /// The proxy's control API, `http://127.0.0.1:PORT`.
    pub control: String,
}

/// Where a platform's proxies are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource {
    /// The local stack's state file, read at every use (a restarted stack has new ports).
    StackState(PathBuf),
    /// The containers of a Compose project on a Docker Engine.
    Compose {
        docker_host: Option<String>,
        project: String,
    },
    /// A platform without loadgen proxies.
    None(PlatformKind),
}

impl ProxySource {
    /// The platform's proxy links now.
    pub async fn links(&self) -> Result<Vec<ProxyLink>, String> {
        match self {
            ProxySource::StackState(path) => Ok(local::StackState::load(path)?.proxies),
            ProxySource::Compose {
                docker_host,
                project,
            } => compose::proxies(docker_host.as_deref(), project).await,
            ProxySource::None(kind) => Err(format!(
                "the {kind:?} platform has no loadgen fault proxies to set faults on"
            )),
        }
    }
}

/// Where the plan's platform lists its proxies.
pub fn proxy_source(plan: &ChaosPlan) -> ProxySource {
    match plan.platform {
        PlatformKind::Local => {
            ProxySource::StackState(local::state_path(plan.stack_state.as_deref()))
        }
        PlatformKind::Compose => ProxySource::Compose {
            docker_host: plan.docker_host.clone(),
            project: plan.compose_project.clone().unwrap_or_default(),
        },
        PlatformKind::Kubernetes => ProxySource::None(PlatformKind::Kubernetes),
    }
}

/// The Docker label every container target must carry on the plan's platform (a
/// Compose project's own), if any: container selectors never reach outside it.
pub fn container_scope(plan: &ChaosPlan) -> Option<String> {
    match plan.platform {
        PlatformKind::Compose => plan.compose_project.as_deref().map(compose::project_filter),
        PlatformKind::Local | PlatformKind::Kubernetes => None,
    }
}

/// The platform's processes, as the process backend asks for them: each instance by name
/// with its PID and port, and how one is started again. Only the local stack runs its
/// instances as processes; on another platform the list is its error.
pub struct ProcessInstances {
    kind: PlatformKind,
    state_file: PathBuf,
    current: Result<local::StackState, String>,
}

impl ProcessInstances {
    pub fn new(plan: &ChaosPlan) -> ProcessInstances {
        ProcessInstances {
            kind: plan.platform,
            state_file: local::state_path(plan.stack_state.as_deref()),
            current: Err("not read yet".into()),
        }
    }

    /// Reads the instances again.
    pub fn reload(&mut self) {
        self.current = match self.kind {
            PlatformKind::Local => local::StackState::load(&self.state_file),
            other => Err(format!(
                "the {other:?} platform runs no local processes: target its containers or pods"
            )),
        };
    }

    /// Every instance: (name, PID).
    pub fn list(&self) -> Result<Vec<(String, i32)>, String> {
        self.current
            .as_ref()
            .map(|s| s.instances())
            .map_err(Clone::clone)
    }

    /// The PID and port of instance `name` now.
    pub fn get(&self, name: &str) -> Option<(i32, Option<u16>)> {
        self.current.as_ref().ok()?.instance(name)
    }

    /// How instance `name` is started again, if the platform can.
    pub fn restart_for(&self, name: &str) -> Option<Restart> {
        local::restart_for(self.current.as_ref().ok()?, name)
    }
}

/// Starts an instance again from its undo record alone (also from `loadgen recover`).
pub async fn start_again(restart: &Restart) -> Result<(), String> {
    match restart {
        Restart::Stack {
            script,
            state_dir,
            instance,
        } => local::start_backend(script, state_dir, instance).await,
        Restart::LegacyCommand { command } => Err(format!(
            "this ledger's restart is a command line ({}), a shape this loadgen never runs; \
             start the instance by hand (docker/local/stack.sh start-backend NAME)",
            command.join(" ")
        )),
    }
}
