//! Local processes: kill (SIGKILL), terminate (SIGTERM), pause (SIGSTOP → SIGCONT), restart.
//! Targets come from the platform (its `ProcessInstances` port) or a PID file. A killed
//! instance is brought back by the platform (`Platform::start_again`); a PID is only
//! ever signalled if its start time still matches the one recorded, so a reused PID is
//! never hit.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::lifecycle::{Candidate, Effect, FaultBackend, Occasion, Planned};
use super::ports::{Platform, ProcessInstances, Restart};
use super::{ChaosError, Target};
use crate::chaos::TargetId;
use crate::plan::chaos::{Action, BackendKind, FaultSpec, Selector};
use crate::util::glob::glob_match;

/// What puts a process target back, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUndo {
    pub pid: i32,
    /// The process's start time (clock ticks after boot), so a reused PID is never
    /// signalled by mistake.
    pub start_time: u64,
    pub step: ProcessStep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ProcessStep {
    /// SIGCONT the stopped process.
    Resume,
    /// Start the instance again through the platform.
    Restart(Restart),
    /// Nothing can bring it back (a PID-file process, or a stack service the stack script
    /// cannot start on its own).
    None,
}

pub(crate) struct ProcessBackend {
    /// The platform's instances, read again at every use (a restart changes PIDs).
    instances: Box<dyn ProcessInstances>,
    /// Starts a restarted instance again.
    platform: Arc<dyn Platform>,
}

impl ProcessBackend {
    pub(crate) fn new(platform: Arc<dyn Platform>) -> ProcessBackend {
        let mut backend = ProcessBackend {
            instances: platform.process_instances(),
            platform,
        };
        backend.reload();
        backend
    }

    fn reload(&mut self) {
        self.instances.reload();
    }

    fn find(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        self.reload();
        let found: Vec<(String, i32)> = match selector {
            Selector::Process { name } => self
                .instances
                .list()
                .map_err(|e| ChaosError::backend(BackendKind::Process, e))?
                .into_iter()
                .filter(|(n, _)| glob_match(name, n))
                .collect(),
            Selector::PidFile { path } => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ChaosError::backend(
                        BackendKind::Process,
                        format!("cannot read PID file {}: {e}", path.display()),
                    )
                })?;
                let pid: i32 = text.trim().parse().map_err(|_| {
                    ChaosError::backend(
                        BackendKind::Process,
                        format!("{} does not hold a PID", path.display()),
                    )
                })?;
                vec![(path.display().to_string(), pid)]
            }
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Process,
                    format!("{other} is not a process target"),
                ));
            }
        };
        Ok(found
            .into_iter()
            .map(|(name, pid)| {
                let up = matches!(proc_stat(pid), Some((state, _)) if state != 'T' && state != 'Z');
                let target = Target {
                    backend: BackendKind::Process,
                    id: TargetId::Pid(pid),
                    name,
                    labels: Default::default(),
                };
                (target, up)
            })
            .collect())
    }

    /// What will undo `action` on `target`; reads the process's start time now. A restart
    /// that nothing could bring back is refused here, before anything changes.
    fn undo_for(&self, target: &Target, action: &Action) -> Result<ProcessUndo, ChaosError> {
        let pid = parse_pid(target)?;
        let (_, start_time) = proc_stat(pid).ok_or_else(|| {
            ChaosError::backend(
                BackendKind::Process,
                format!("process {pid} ({}) is gone", target.name),
            )
        })?;
        let step = match action {
            Action::Pause => ProcessStep::Resume,
            Action::Kill | Action::Terminate => self
                .restart_for(&target.name)
                .map_or(ProcessStep::None, ProcessStep::Restart),
            Action::Restart => ProcessStep::Restart(
                self.restart_for(&target.name)
                    .ok_or_else(|| ChaosError::Refused(cannot_start_again(&target.name)))?,
            ),
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Process,
                    format!("{other:?} is not a process action"),
                ));
            }
        };
        Ok(ProcessUndo {
            pid,
            start_time,
            step,
        })
    }

    /// How the platform starts instance `name` again, if it can.
    fn restart_for(&self, name: &str) -> Option<Restart> {
        self.instances.restart_for(name)
    }

    /// Why `action` on `target` cannot be allowed, if it cannot: a `restart`, or a kill
    /// held for a `duration`, of something the stack cannot start again would leave it
    /// down for good while the drill says it was undone. Without a duration a kill is a
    /// deliberate permanent action and allowed.
    fn refusal_for(&mut self, target: &Target, action: &Action, held: bool) -> Option<String> {
        self.reload();
        let needs_restart = match action {
            Action::Restart => true,
            Action::Kill | Action::Terminate => held,
            _ => false,
        };
        if needs_restart && let Some(refusal) = self.instances.script_refusal() {
            return Some(format!(
                "{action:?} of {} needs a restart: {refusal}",
                target.name
            ));
        }
        (needs_restart && self.restart_for(&target.name).is_none()).then(|| {
            let (what, instead) = if *action == Action::Restart {
                (
                    "a restart".to_string(),
                    "`kill` without a duration stops it for good on purpose",
                )
            } else {
                (
                    format!("a held `{action:?}` (with a duration)").to_lowercase(),
                    "drop the duration to stop it for good on purpose",
                )
            };
            format!(
                "{what} cannot be undone here: {}; {instead}",
                cannot_start_again(&target.name)
            )
        })
    }

    async fn signal(
        &self,
        target: &Target,
        action: &Action,
        undo: &ProcessUndo,
    ) -> Result<(), ChaosError> {
        let pid = parse_pid(target)?;
        let start_time = &undo.start_time;
        let signal = match action {
            Action::Kill | Action::Restart => Signal::SIGKILL,
            Action::Terminate => Signal::SIGTERM,
            Action::Pause => Signal::SIGSTOP,
            other => {
                return Err(ChaosError::backend(
                    BackendKind::Process,
                    format!("{other:?} is not a process action"),
                ));
            }
        };
        signal_if_same(pid, *start_time, signal)?;
        if *action == Action::Restart {
            // Restart = kill now and bring back at once: the stack waits for readiness.
            wait_gone(pid, *start_time).await;
            recover(undo, &*self.platform).await?;
        }
        Ok(())
    }
}

/// What "healthy again" means for a process target, read before the fault changes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessHealth {
    /// The stack instance name, or the PID file's path.
    pub name: String,
    pub pid: i32,
    pub start_time: u64,
    /// For a PID-file target: where a new process of the same name writes its PID.
    pub pid_file: Option<std::path::PathBuf>,
    /// The instance's port, from the stack state file.
    pub port: Option<u16>,
}

/// How long a connect may take when probing whether an instance listens again.
const CONNECT_PROBE: std::time::Duration = std::time::Duration::from_millis(500);

impl ProcessBackend {
    /// The health check for `target`: its port when the stack state knows one.
    fn health_check(
        &mut self,
        target: &Target,
        selector: &Selector,
        undo: &ProcessUndo,
    ) -> ProcessHealth {
        self.reload();
        let pid = match target.id {
            TargetId::Pid(pid) => pid,
            _ => 0,
        };
        let start_time = undo.start_time;
        let pid_file = match selector {
            Selector::PidFile { path } => Some(path.clone()),
            _ => None,
        };
        let port = match pid_file {
            Some(_) => None,
            None => self.instances.get(&target.name).and_then(|(_, port)| port),
        };
        ProcessHealth {
            name: target.name.clone(),
            pid,
            start_time,
            pid_file,
            port,
        }
    }

    /// Healthy again: no process of the target is stopped, and the instance accepts TCP
    /// connections on its port again; for a target without a port (a PID file), the process
    /// itself (same start time) or a new one under the same name is alive and not stopped.
    async fn is_healthy(&mut self, check: &ProcessHealth) -> Result<bool, ChaosError> {
        self.reload();
        let original = proc_stat(check.pid)
            .filter(|(_, started)| *started == check.start_time)
            .map(|(state, _)| state);
        let current_pid = match &check.pid_file {
            Some(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok()),
            None => self.instances.get(&check.name).map(|(pid, _)| pid),
        };
        let current = current_pid
            .filter(|pid| *pid != check.pid)
            .and_then(proc_stat)
            .map(|(state, _)| state);
        let stopped = |state: char| matches!(state, 'T' | 't');
        let alive = |state: char| !stopped(state) && !matches!(state, 'Z' | 'X' | 'x');
        if original.is_some_and(stopped) || current.is_some_and(stopped) {
            return Ok(false);
        }
        match check.port {
            // A stopped process's listening socket still completes handshakes in the
            // kernel: the stopped check above comes first.
            Some(port) => Ok(matches!(
                tokio::time::timeout(
                    CONNECT_PROBE,
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                )
                .await,
                Ok(Ok(_))
            )),
            None => Ok(original.is_some_and(alive) || current.is_some_and(alive)),
        }
    }
}

impl FaultBackend for ProcessBackend {
    type Undo = ProcessUndo;
    type Check = ProcessHealth;

    fn validate(action: &Action, _selector: &Selector) -> Result<(), String> {
        match action.backend() {
            BackendKind::Process => Ok(()),
            other => Err(format!("{action:?} is a {other} action, not a process one")),
        }
    }

    async fn resolve(&mut self, selector: &Selector) -> Result<Vec<Candidate>, ChaosError> {
        self.find(selector)
    }

    fn refusal(&mut self, fault: &FaultSpec, candidates: &[Candidate]) -> Option<String> {
        candidates.iter().find_map(|(target, _)| {
            self.refusal_for(target, &fault.action, fault.duration.is_some())
        })
    }

    /// A pause is held until resumed; a kill or terminate is held until the platform
    /// starts the instance again, or permanent when nothing can; a restart is instantaneous
    /// (its own apply brings the instance back).
    async fn plan(
        &mut self,
        target: &Target,
        fault: &FaultSpec,
        _occasion: Occasion,
    ) -> Result<Planned<Option<ProcessUndo>, ProcessHealth>, ChaosError> {
        self.reload();
        let undo = self.undo_for(target, &fault.action)?;
        let effect = match (&fault.action, &undo.step) {
            (Action::Restart, _) => Effect::Instantaneous,
            (_, ProcessStep::None) => Effect::Permanent,
            _ => Effect::Held,
        };
        let check = self.health_check(target, &fault.selector, &undo);
        Ok(Planned {
            undo: Some(undo),
            effect,
            check: Some(check),
            holds_down: None,
        })
    }

    async fn apply(
        &mut self,
        target: &Target,
        action: &Action,
        planned: &Planned<Option<ProcessUndo>, ProcessHealth>,
    ) -> Result<(), ChaosError> {
        let undo = planned.undo.as_ref().ok_or_else(|| {
            ChaosError::backend(
                BackendKind::Process,
                "a process fault needs a process undo record",
            )
        })?;
        self.signal(target, action, undo).await
    }

    async fn healthy(&mut self, check: &ProcessHealth) -> Result<bool, ChaosError> {
        self.is_healthy(check).await
    }
}

/// Puts a process target back. Idempotent: a resumed process is resumed again harmlessly, a
/// stack restart starts only what is down, a gone PID is recovered.
pub(crate) async fn recover(undo: &ProcessUndo, platform: &dyn Platform) -> Result<(), ChaosError> {
    let ProcessUndo {
        pid,
        start_time,
        step,
    } = undo;
    match step {
        ProcessStep::Resume => match signal_if_same(*pid, *start_time, Signal::SIGCONT) {
            Ok(()) => Ok(()),
            Err(ChaosError::NoTarget(_)) => Ok(()),
            Err(e) => Err(e),
        },
        ProcessStep::Restart(restart) => {
            // Make sure the old process is really gone first (SIGTERM may take a moment).
            wait_gone(*pid, *start_time).await;
            platform
                .start_again(restart)
                .await
                .map_err(|e| ChaosError::backend(BackendKind::Process, e))
        }
        ProcessStep::None => Ok(()),
    }
}

async fn wait_gone(pid: i32, start_time: u64) {
    for _ in 0..200 {
        match proc_stat(pid) {
            Some((state, started)) if started == start_time && state != 'Z' => {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await
            }
            _ => return,
        }
    }
}

fn signal_if_same(pid: i32, start_time: u64, signal: Signal) -> Result<(), ChaosError> {
    match proc_stat(pid) {
        Some((_, started)) if started == start_time => {
            kill(Pid::from_raw(pid), signal).map_err(|e| {
                ChaosError::backend(
                    BackendKind::Process,
                    format!("cannot send {signal} to {pid}: {e}"),
                )
            })
        }
        _ => Err(ChaosError::NoTarget(format!(
            "process {pid} (gone or replaced)"
        ))),
    }
}

fn parse_pid(target: &Target) -> Result<i32, ChaosError> {
    match target.id {
        TargetId::Pid(pid) => Ok(pid),
        ref other => Err(ChaosError::backend(
            BackendKind::Process,
            format!("`{other}` is not a PID"),
        )),
    }
}

/// (state letter, start time in clock ticks) from /proc/PID/stat.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

fn cannot_start_again(name: &str) -> String {
    format!(
        "nothing here can start `{name}` again (only the local stack's backend-N instances are \
         restarted, through its stack script)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::ports::{BackendName, Restart};

    fn step(json: &str) -> Result<ProcessStep, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_restart_names_a_backend_and_round_trips() {
        let undo = ProcessStep::Restart(Restart::Stack {
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
            ProcessStep::Restart(Restart::LegacyCommand { .. })
        ));
    }
}
