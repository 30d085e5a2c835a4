//! Platform adapters: the chaos core's ports (`chaos::ports`) implemented for each kind of
//! platform, kept out of `chaos/`; `for_plan` is what the composition root hands the core.
//! Each adapter says where its fault proxies' control APIs are and which containers belong
//! to it:
//!
//! - `local`: the local stack (`docker/local/stack.sh`), from its state file — also its
//!   instances, their ports, and how one is started again.
//! - `compose`: a Docker Compose project, from the Docker Engine: its containers carry
//!   the project's label; a proxy is a container labelled `loadgen.proxy = NAME` whose
//!   control API (container port `loadgen.proxy.control`) is published on loopback.
//! - `kubernetes`: pods and deployments, found by the Kubernetes backend itself.

pub(crate) mod compose;
pub(crate) mod local;

use std::path::PathBuf;
use std::sync::Arc;

use crate::chaos::ports::ProxyLink;
use crate::chaos::ports::Restart;
use crate::chaos::ports::{self, Platform, PortFuture};
use crate::plan::chaos::{ChaosPlan, PlatformKind};

/// The plan's platform, as the chaos core's ports.
pub(crate) fn for_plan(plan: &ChaosPlan) -> Arc<dyn Platform> {
    Arc::new(Adapter { plan: plan.clone() })
}

/// What `loadgen recover` needs: an undo record says all a restart needs; nothing is listed.
pub fn for_recovery() -> Arc<dyn Platform> {
    for_plan(&ChaosPlan::default())
}

struct Adapter {
    plan: ChaosPlan,
}

impl Platform for Adapter {
    fn container_scope(&self) -> Option<String> {
        container_scope(&self.plan)
    }

    fn process_instances(&self) -> Box<dyn ports::ProcessInstances> {
        Box::new(ProcessInstances::new(&self.plan))
    }

    fn proxy_links(&self) -> PortFuture<'_, Vec<ProxyLink>> {
        Box::pin(async move { proxy_source(&self.plan).links().await })
    }

    fn start_again<'a>(&'a self, restart: &'a Restart) -> PortFuture<'a, ()> {
        Box::pin(start_again(restart))
    }
}

/// Where a platform's proxies are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProxySource {
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
    async fn links(&self) -> Result<Vec<ProxyLink>, String> {
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
fn proxy_source(plan: &ChaosPlan) -> ProxySource {
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
pub(crate) fn container_scope(plan: &ChaosPlan) -> Option<String> {
    match plan.platform {
        PlatformKind::Compose => plan.compose_project.as_deref().map(compose::project_filter),
        PlatformKind::Local | PlatformKind::Kubernetes => None,
    }
}

/// The platform's processes, as the process backend asks for them: each instance by name
/// with its PID and port, and how one is started again. Only the local stack runs its
/// instances as processes; on another platform the list is its error.
struct ProcessInstances {
    kind: PlatformKind,
    state_file: PathBuf,
    current: Result<local::StackState, String>,
    /// The policy's data dirs, which bound the stack script a restart may run.
    dirs: Option<crate::util::data_dirs::DataDirs>,
}

impl ProcessInstances {
    fn new(plan: &ChaosPlan) -> ProcessInstances {
        ProcessInstances {
            kind: plan.platform,
            state_file: local::state_path(plan.stack_state.as_deref()),
            current: Err("not read yet".into()),
            dirs: plan.policy_dirs.clone(),
        }
    }
}

impl ports::ProcessInstances for ProcessInstances {
    fn reload(&mut self) {
        self.current = match self.kind {
            PlatformKind::Local => local::StackState::load(&self.state_file),
            other => Err(format!(
                "the {other:?} platform runs no local processes: target its containers or pods"
            )),
        };
    }

    fn list(&self) -> Result<Vec<(String, i32)>, String> {
        self.current
            .as_ref()
            .map(|s| s.instances())
            .map_err(Clone::clone)
    }

    fn get(&self, name: &str) -> Option<(i32, Option<u16>)> {
        self.current.as_ref().ok()?.instance(name)
    }

    /// Not when the policy forbids running the stack script.
    fn restart_for(&self, name: &str) -> Option<Restart> {
        if self.script_refusal().is_some() {
            return None;
        }
        local::restart_for(self.current.as_ref().ok()?, name)
    }

    /// The stack script the state file names lies outside the operator policy's data dirs
    /// (as the state file itself must not).
    fn script_refusal(&self) -> Option<String> {
        let (dirs, state) = (self.dirs.as_ref()?, self.current.as_ref().ok()?);
        dirs.refusal("the stack script", &state.script())
    }
}

/// Starts an instance again from its undo record alone (also from `loadgen recover`).
async fn start_again(restart: &Restart) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::ports::ProcessInstances as _;
    use crate::util::data_dirs::DataDirs;

    /// The state file names the stack script restarts run; the policy's data dirs bound it
    /// as they bound the state file: outside them, no instance can be restarted, and why.
    #[test]
    fn a_stack_script_outside_the_policy_dirs_restarts_nothing() {
        let (stack, drills) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let state = stack.path().join("state.json");
        let script = stack.path().join("stack.sh");
        std::fs::write(
            &state,
            serde_json::json!({
                "state_dir": stack.path(),
                "stack_script": script,
                "backends": [{ "name": "backend-1", "pid": 1 }],
            })
            .to_string(),
        )
        .unwrap();
        let instances = |dirs: &std::path::Path| {
            let plan = ChaosPlan {
                stack_state: Some(state.clone()),
                policy_dirs: Some(DataDirs {
                    dirs: vec![dirs.to_path_buf()],
                    at: "policy.toml:4:8".into(),
                }),
                ..ChaosPlan::default()
            };
            let mut instances = ProcessInstances::new(&plan);
            instances.reload();
            instances
        };
        let outside = instances(drills.path());
        assert!(outside.restart_for("backend-1").is_none());
        let why = outside.script_refusal().unwrap();
        assert!(why.contains(&script.display().to_string()), "{why}");
        assert!(why.contains("policy.toml:4:8"), "{why}");

        let inside = instances(stack.path());
        assert!(inside.script_refusal().is_none());
        assert!(inside.restart_for("backend-1").is_some());
    }
}
