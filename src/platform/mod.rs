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
