//! Docker containers through the Engine API (bollard, version negotiated: the daemon here
//! speaks API ≤ 1.41): kill with a signal, stop, pause/unpause, restart, disconnect from a
//! network. Recovery treats "already in that state" and "no such container" as done.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, StopContainerOptions,
};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::lifecycle::{Candidate, Effect, FaultBackend, Occasion, Planned};
use super::ports::{ChaosFuture, ContainerRef, Containers};
use super::{ChaosError, Target};
use crate::chaos::TargetId;
use crate::plan::chaos::is_container_id;
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Selector};
use crate::util::glob::glob_match;

/// What puts a container back, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerUndo {
    pub host: Option<String>,
    pub container: String,
    pub step: DockerStep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum DockerStep {
    Start,
    Unpause,
    Connect { network: String },
}

/// A container is healthy again when it runs (and, with a healthcheck, is healthy).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerHealth {
    pub id: String,
}

/// The Docker backend as the timeline drives it: connected to the Engine on first use.
/// Clones share the one connection (the effect watches probe through it).
#[derive(Clone)]
pub(crate) struct DockerFaults {
    host: Option<String>,
    /// A `key=value` label every container target must carry (the platform's scope).
    scope: Option<String>,
    connected: Arc<OnceCell<DockerBackend>>,
}

impl DockerFaults {
    pub(crate) fn new(host: Option<String>, scope: Option<String>) -> DockerFaults {
        DockerFaults {
            host,
            scope,
            connected: Arc::default(),
        }
    }

    pub(crate) async fn engine(&self) -> Result<&DockerBackend, ChaosError> {
        self.connected
            .get_or_try_init(|| async {
                let mut backend = DockerBackend::connect(self.host.as_deref()).await?;
                backend.scope = self.scope.clone();
                Ok(backend)
            })
            .await
    }
}

/// The packet backend's view of containers (`ports::Containers`), on this connection.
impl Containers for DockerFaults {
    fn host(&self) -> Option<String> {
        self.host.clone()
    }

    fn find<'a>(&'a self, name: &'a str) -> ChaosFuture<'a, Vec<Candidate>> {
        Box::pin(async move {
            let selector = Selector::Container {
                name: name.to_string(),
            };
            self.engine().await?.resolve(&selector).await
        })
    }

    fn netns_pid<'a>(&'a self, container: &'a ContainerRef) -> ChaosFuture<'a, Option<i32>> {
        Box::pin(async move {
            if container.host == self.host {
                self.engine().await?.pid_of(&container.id).await
            } else {
                let engine = DockerBackend::connect(container.host.as_deref()).await?;
                engine.pid_of(&container.id).await
            }
        })
    }
}

impl FaultBackend for DockerFaults {
    type Undo = DockerUndo;
    type Check = ContainerHealth;

    fn validate(action: &Action, _selector: &Selector) -> Result<(), String> {
        match action.backend() {
            BackendKind::Docker => Ok(()),
            other => Err(format!(
                "{action:?} is a {other} action, not a container one"
            )),
        }
    }

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        self.engine().await?.resolve(selector).await
    }

    /// A restart is instantaneous (nothing to put back); kill, stop, pause and disconnect
    /// are held until started, unpaused, connected again.
    async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        _occasion: Occasion,
    ) -> Result<Planned<Option<DockerUndo>, ContainerHealth>, ChaosError> {
        let undo = self.engine().await?.undo_for(target, &fault.action)?;
        let effect = match fault.action {
            Action::ContainerRestart => Effect::Instantaneous,
            _ => Effect::Held,
        };
        Ok(Planned {
            undo,
            effect,
            check: Some(ContainerHealth {
                id: target.id.to_string(),
            }),
            holds_down: None,
        })
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        _planned: &Planned<Option<DockerUndo>, ContainerHealth>,
    ) -> Result<(), ChaosError> {
        self.engine().await?.apply(target, action).await
    }

    async fn healthy(&mut self, check: &ContainerHealth) -> Result<bool, ChaosError> {
        self.engine().await?.healthy(&check.id).await
    }
}

pub(crate) struct DockerBackend {
    docker: Docker,
    host: Option<String>,
    /// A `key=value` label every container it resolves must carry.
    scope: Option<String>,
}

impl DockerBackend {
    pub(crate) async fn connect(host: Option<&str>) -> Result<DockerBackend, ChaosError> {
        let docker = match host {
            Some(h) if h.starts_with("unix://") => {
                Docker::connect_with_unix(h, 30, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Docker::connect_with_http(h, 30, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| ChaosError::backend(BackendKind::Docker, e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| ChaosError::backend(BackendKind::Docker, e))?;
        Ok(DockerBackend {
            docker,
            host: host.map(str::to_string),
            scope: None,
        })
    }

    /// The Engine API client itself (platform adapters list containers with it).
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    /// Containers the selector names, sorted by name, each with whether it is up
    /// (running, not paused).
    pub(crate) async fn resolve(
        &self,
        selector: &Selector,
    ) -> Result<Vec<(Target, bool)>, ChaosError> {
        let mut labels: Vec<String> = self.scope.iter().cloned().collect();
        if let Selector::ContainerLabel { label } = selector {
            labels.push(label.clone());
        }
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if !labels.is_empty() {
            filters.insert("label".into(), labels);
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| ChaosError::backend(BackendKind::Docker, e))?;
        let mut found = Vec::new();
        for container in containers {
            let id = container.id.clone().unwrap_or_default();
            let name = container
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.clone());
            let wanted = match selector {
                Selector::Container { name: pattern } => {
                    glob_match(pattern, &name)
                        || (is_container_id(pattern) && id.starts_with(pattern.as_str()))
                }
                Selector::ContainerLabel { .. } => true,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let state = container.state.map(|s| s.to_string()).unwrap_or_default();
            let target = Target {
                backend: BackendKind::Docker,
                id: TargetId::Container(id),
                name,
                labels: container.labels.unwrap_or_default().into_iter().collect(),
            };
            found.push((target, state == "running"));
        }
        found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(found)
    }

    /// `None`: nothing to put back (a restart).
    fn undo_for(&self, target: &Target, action: &Action) -> Result<Option<DockerUndo>, ChaosError> {
        let step = match action {
            Action::ContainerKill { .. } | Action::ContainerStop => DockerStep::Start,
            Action::ContainerPause => DockerStep::Unpause,
            Action::ContainerDisconnect { network } => DockerStep::Connect {
                network: network.clone(),
            },
            Action::ContainerRestart => return Ok(None),
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Docker,
                    format!("{other:?} is not a container action"),
                ));
            }
        };
        Ok(Some(DockerUndo {
            host: self.host.clone(),
            container: target.id.to_string(),
            step,
        }))
    }

    pub(crate) async fn apply(&self, target: &Target, action: &Action) -> Result<(), ChaosError> {
        let TargetId::Container(id) = &target.id else {
            return Err(ChaosError::backend(
                BackendKind::Docker,
                format!("{} is not a container", target.id),
            ));
        };
        let result = match action {
            Action::ContainerKill { signal } => {
                self.docker
                    .kill_container(
                        id,
                        Some(KillContainerOptions {
                            signal: signal.clone(),
                        }),
                    )
                    .await
            }
            Action::ContainerStop => {
                self.docker
                    .stop_container(
                        id,
                        Some(StopContainerOptions {
                            t: Some(5),
                            signal: None,
                        }),
                    )
                    .await
            }
            Action::ContainerPause => self.docker.pause_container(id).await,
            Action::ContainerRestart => {
                self.docker
                    .restart_container(
                        id,
                        None::<bollard::query_parameters::RestartContainerOptions>,
                    )
                    .await
            }
            Action::ContainerDisconnect { network } => {
                self.docker
                    .disconnect_network(
                        network,
                        NetworkDisconnectRequest {
                            container: Some(id.to_string()),
                            force: Some(true),
                        },
                    )
                    .await
            }
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Docker,
                    format!("{other:?} is not a container action"),
                ));
            }
        };
        result.map_err(|e| ChaosError::backend(BackendKind::Docker, e))
    }

    /// The PID of the container's first process while it runs (its network namespace is
    /// `/proc/PID/ns/net`); `None` when it is not running or gone.
    pub(crate) async fn pid_of(&self, id: &str) -> Result<Option<i32>, ChaosError> {
        match self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(inspect) => Ok(inspect
                .state
                .filter(|s| s.running == Some(true))
                .and_then(|s| s.pid)
                .filter(|pid| *pid > 0)
                .and_then(|pid| i32::try_from(pid).ok())),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(ChaosError::backend(BackendKind::Docker, e)),
        }
    }

    /// Healthy again: the container is running (not paused, not restarting) and, where it
    /// has a healthcheck, `healthy`. A container that is gone is not healthy.
    pub(crate) async fn healthy(&self, id: &str) -> Result<bool, ChaosError> {
        use bollard::models::HealthStatusEnum;
        let inspect = match self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if status_of(&e) == Some(404) => return Ok(false),
            Err(e) => return Err(ChaosError::backend(BackendKind::Docker, e)),
        };
        let Some(state) = inspect.state else {
            return Ok(false);
        };
        let running = state.running == Some(true)
            && state.paused != Some(true)
            && state.restarting != Some(true);
        let health = state.health.and_then(|h| h.status);
        let checked_healthy = match health {
            None | Some(HealthStatusEnum::EMPTY | HealthStatusEnum::NONE) => true,
            Some(status) => status == HealthStatusEnum::HEALTHY,
        };
        Ok(running && checked_healthy)
    }
}

/// Puts a container back; idempotent, and a container that is gone counts as recovered.
pub(crate) async fn recover(undo: &DockerUndo) -> Result<(), ChaosError> {
    let DockerUndo {
        host,
        container,
        step,
    } = undo;
    let backend = DockerBackend::connect(host.as_deref()).await?;
    let docker = &backend.docker;
    let result = match step {
        DockerStep::Unpause => docker.unpause_container(container).await,
        DockerStep::Start => {
            docker
                .start_container(
                    container,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
        }
        DockerStep::Connect { network } => {
            docker
                .connect_network(
                    network,
                    NetworkConnectRequest {
                        container: Some(container.clone()),
                        ..Default::default()
                    },
                )
                .await
        }
    };
    match result {
        Ok(()) => Ok(()),
        // 304: already started; 404: gone; 409: not paused / already connected.
        Err(e) if matches!(status_of(&e), Some(304 | 404 | 409)) => Ok(()),
        // Connecting an already-connected container answers 403 on some versions.
        Err(e) if matches!(step, DockerStep::Connect { .. }) && status_of(&e) == Some(403) => {
            Ok(())
        }
        Err(e) => Err(ChaosError::backend(BackendKind::Docker, e)),
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
