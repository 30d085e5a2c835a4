//! One entry point over the backends: resolve a selector, compute the undo, apply, recover.
//! Backends that need a connection (Docker) are connected on first use.

use super::docker::DockerBackend;
use super::process::ProcessBackend;
use super::spec::{Action, ChaosPlan, Selector};
use super::stack::{StackState, state_path};
use super::undo::Undo;
use super::{ChaosError, Target};

pub struct Backends {
    process: ProcessBackend,
    docker: Option<DockerBackend>,
    docker_host: Option<String>,
}

impl Backends {
    pub fn new(plan: &ChaosPlan) -> Backends {
        let state = StackState::load(&state_path(plan.stack_state.as_deref()));
        Backends {
            process: ProcessBackend::new(state),
            docker: None,
            docker_host: plan.docker_host.clone(),
        }
    }

    async fn docker(&mut self) -> Result<&DockerBackend, ChaosError> {
        if self.docker.is_none() {
            self.docker = Some(DockerBackend::connect(self.docker_host.as_deref()).await?);
        }
        Ok(self.docker.as_ref().expect("connected above"))
    }

    /// The selector's targets, sorted by name, each with whether it is up.
    pub async fn resolve(
        &mut self,
        selector: &Selector,
    ) -> Result<Vec<(Target, bool)>, ChaosError> {
        match selector {
            Selector::Process { .. } | Selector::PidFile { .. } => self.process.resolve(selector),
            Selector::Container { .. } | Selector::ContainerLabel { .. } => {
                self.docker().await?.resolve(selector).await
            }
            Selector::Pods { .. } | Selector::Deployment { .. } | Selector::Proxy { .. } => {
                Err(ChaosError::Backend {
                    backend: "chaos",
                    message: format!("{selector}: this backend is not wired into the timeline yet"),
                })
            }
        }
    }

    pub async fn undo_for(&mut self, target: &Target, action: &Action) -> Result<Undo, ChaosError> {
        match action.backend() {
            "process" => self.process.undo_for(target, action),
            "docker" => self.docker().await?.undo_for(target, action),
            other => Err(ChaosError::Backend {
                backend: "chaos",
                message: format!("{other} faults are not wired into the timeline yet"),
            }),
        }
    }

    pub async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        undo: &Undo,
    ) -> Result<(), ChaosError> {
        match action.backend() {
            "process" => self.process.apply(target, action, undo).await,
            "docker" => self.docker().await?.apply(target, action).await,
            other => Err(ChaosError::Backend {
                backend: "chaos",
                message: format!("{other} faults are not wired into the timeline yet"),
            }),
        }
    }
}

/// Puts a target back from its undo record alone (also used by `loadgen recover`).
pub async fn recover(undo: &Undo) -> Result<(), ChaosError> {
    match undo {
        Undo::Nothing => Ok(()),
        Undo::Process { .. } => super::process::recover(undo).await,
        Undo::Docker { .. } => super::docker::recover(undo).await,
        Undo::Kube { .. } | Undo::Proxy { .. } => Err(ChaosError::Backend {
            backend: "chaos",
            message: "recovery for this backend is not wired yet".into(),
        }),
    }
}
