//! Faults as validated, pure data: what to do, to which targets, when, with which limits.
//! The scenario validator builds these; the timeline and the backends consume them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[chaos] platform`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    #[default]
    Local,
    Compose,
    Kubernetes,
}

/// How many of a replica set may be down at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum MaxUnavailable {
    Count(u32),
    /// Percent of the whole set (up and down), rounded down as Kubernetes rounds a
    /// deployment's `maxUnavailable`: "25%" of 3 allows none, not one.
    Percent(f64),
}

impl MaxUnavailable {
    /// How many of a set of `size` this limit allows down.
    pub fn allowed(&self, size: usize) -> usize {
        match *self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => {
                let p = p.clamp(0.0, 100.0);
                ((size as f64) * p / 100.0).floor() as usize
            }
        }
    }
}

impl std::fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A fault's limits, checked before anything changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Guard {
    /// At most this many of the replica set down at once (this fault's and others').
    pub max_unavailable: MaxUnavailable,
    /// Whether the last ready target may be taken down (a full-outage drill).
    pub allow_last: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            max_unavailable: MaxUnavailable::Count(1),
            allow_last: false,
        }
    }
}

/// The scenario's `[chaos]` settings and its `[[fault]]` list.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosPlan {
    /// The platform under test: where proxies and containers are found.
    pub platform: PlatformKind,
    /// With `platform = "compose"`: the project whose containers faults may touch.
    pub compose_project: Option<String>,
    /// The local stack's state file (process targets, proxies).
    pub stack_state: Option<PathBuf>,
    /// Docker Engine endpoint (`unix:///var/run/docker.sock` by default).
    pub docker_host: Option<String>,
    /// Kubernetes API URL; default: kubeconfig / in-cluster.
    pub kube_api: Option<String>,
    /// Kubernetes namespaces faults may touch. Empty: none.
    pub kube_namespaces: Vec<String>,
    /// The kubeconfig context the run must be on (the scenario's, else the policy's): a
    /// shell pointed at another cluster is refused before any call.
    pub kube_context: Option<String>,
    /// The API server the run must talk to (scenario's, else the policy's).
    pub kube_server: Option<String>,
    /// The operator policy's process / container name globs: a target must match one (as
    /// well as `allow_targets`). Empty: no policy limit.
    pub policy_targets: Vec<String>,
    /// The operator policy's data directories: a restart runs only a stack script inside
    /// them. None: no policy limit.
    pub policy_dirs: Option<crate::util::data_dirs::DataDirs>,
    /// Glob patterns of process / container names faults may touch (enforced when targets
    /// are chosen: a fault that matches only others is refused). Empty: whatever the
    /// selector finds.
    pub allow_targets: Vec<String>,
    /// After a fault ends, how long the platform gets to settle before "steady state"
    /// resumes for SLO windows (default 10 s).
    pub settle: Duration,
    /// The deadline of every backend call (resolve, apply, recover); a recovery retries
    /// transient failures with back-off until it, then is listed as not recovered.
    pub backend_timeout: Duration,
    pub faults: Vec<FaultSpec>,
}

/// `[chaos] backend_timeout` when the scenario does not say.
pub(crate) const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ChaosPlan {
    fn default() -> Self {
        ChaosPlan {
            platform: Default::default(),
            compose_project: None,
            stack_state: None,
            docker_host: None,
            kube_api: None,
            kube_namespaces: Vec::new(),
            kube_context: None,
            kube_server: None,
            policy_targets: Vec::new(),
            policy_dirs: None,
            allow_targets: Vec::new(),
            settle: Duration::from_secs(10),
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            faults: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultSpec {
    pub name: String,
    /// Offset from the run's start of the first injection.
    pub at: Duration,
    /// How long the fault holds before it is recovered; `None`: an instantaneous action
    /// (restart, delete) or one that holds to the end of the run.
    pub duration: Option<Duration>,
    /// Further injections: `repeat` more times, `every` apart.
    pub repeat: u32,
    pub every: Option<Duration>,
    pub action: Action,
    pub selector: Selector,
    pub mode: Mode,
    pub guard: Guard,
    /// The replica set the guardrails count (e.g. every `backend-*` while one named
    /// backend is the target); `None`: the selector's own matches.
    pub among: Option<Selector>,
    /// How long after its recovery (after its apply, for an instantaneous action) a target
    /// may take to be healthy again before the window closes as "not healthy again";
    /// `None`: until the run's end.
    pub effect: Option<Duration>,
    /// Whether the run fails when an occurrence of this fault did not happen (default true).
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    // Local processes.
    Kill,
    Terminate,
    Pause,
    Restart,
    // Docker containers.
    ContainerKill { signal: String },
    ContainerStop,
    ContainerPause,
    ContainerRestart,
    ContainerDisconnect { network: String },
    // Kubernetes.
    DeletePod { grace: Option<Duration> },
    EvictPod,
    Scale { replicas: u32 },
    RolloutRestart,
    // The TCP fault proxy.
    Latency { delay: Duration, jitter: Duration },
    Bandwidth { bytes_per_second: u64 },
    Reset,
    Blackhole,
    SlowClose { delay: Duration },
    Refuse,
    // Packet rules on loopback (iptables): drop `percent` (0 < p ≤ 100) of the packets to
    // the port, drop all of them, answer them with a TCP reset.
    Loss { percent: f64 },
    Partition,
    Reject,
}

/// The backends that perform faults: each implements `lifecycle::FaultBackend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Local processes (signals; restarts through the platform adapter).
    Process,
    /// Containers through the Docker Engine API.
    Docker,
    /// Pods and deployments through the Kubernetes API.
    Kube,
    /// A `loadgen proxy` on a link, through its control API.
    Proxy,
    /// Packet rules (iptables / ip6tables), on loopback or in a container's namespace.
    Firewall,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Docker => "docker",
            BackendKind::Kube => "kube",
            BackendKind::Proxy => "proxy",
            BackendKind::Firewall => "firewall",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Action {
    /// The backend that performs this action.
    pub fn backend(&self) -> BackendKind {
        match self {
            Action::Kill | Action::Terminate | Action::Pause | Action::Restart => {
                BackendKind::Process
            }
            Action::ContainerKill { .. }
            | Action::ContainerStop
            | Action::ContainerPause
            | Action::ContainerRestart
            | Action::ContainerDisconnect { .. } => BackendKind::Docker,
            Action::DeletePod { .. }
            | Action::EvictPod
            | Action::Scale { .. }
            | Action::RolloutRestart => BackendKind::Kube,
            Action::Latency { .. }
            | Action::Bandwidth { .. }
            | Action::Reset
            | Action::Blackhole
            | Action::SlowClose { .. }
            | Action::Refuse => BackendKind::Proxy,
            Action::Loss { .. } | Action::Partition | Action::Reject => BackendKind::Firewall,
        }
    }

    /// Whether the action happens at once, with nothing to hold or put back.
    pub fn is_instantaneous(&self) -> bool {
        matches!(
            self,
            Action::Restart
                | Action::ContainerRestart
                | Action::DeletePod { .. }
                | Action::EvictPod
                | Action::RolloutRestart
        )
    }

    /// Whether the action takes its targets out of service (counted by the guardrails).
    pub fn takes_down(&self) -> bool {
        !matches!(
            self,
            Action::Latency { .. }
                | Action::Bandwidth { .. }
                | Action::SlowClose { .. }
                | Action::Scale { .. }
                | Action::RolloutRestart
                | Action::Loss { .. }
        )
    }
}

impl std::fmt::Display for Action {
    /// How `loadgen plan` and the reports name an action.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: &Duration| format!("{}ms", d.as_millis());
        match self {
            Action::Kill => write!(f, "kill (SIGKILL)"),
            Action::Terminate => write!(f, "terminate (SIGTERM)"),
            Action::Pause => write!(f, "pause (SIGSTOP, then SIGCONT)"),
            Action::Restart => write!(f, "restart"),
            Action::ContainerKill { signal } => write!(f, "container kill ({signal})"),
            Action::ContainerStop => write!(f, "container stop"),
            Action::ContainerPause => write!(f, "container pause"),
            Action::ContainerRestart => write!(f, "container restart"),
            Action::ContainerDisconnect { network } => write!(f, "disconnect from {network}"),
            Action::DeletePod { grace: None } => write!(f, "delete pod"),
            Action::DeletePod { grace: Some(g) } => write!(f, "delete pod (grace {})", ms(g)),
            Action::EvictPod => write!(f, "evict pod"),
            Action::Scale { replicas } => write!(f, "scale to {replicas}"),
            Action::RolloutRestart => write!(f, "rollout restart"),
            Action::Latency { delay, jitter } if jitter.is_zero() => {
                write!(f, "latency {} each way", ms(delay))
            }
            Action::Latency { delay, jitter } => {
                write!(f, "latency {} ± {} each way", ms(delay), ms(jitter))
            }
            Action::Bandwidth { bytes_per_second } => {
                write!(f, "bandwidth {} KiB/s", bytes_per_second / 1024)
            }
            Action::Reset => write!(f, "reset connections"),
            Action::Blackhole => write!(f, "blackhole"),
            Action::SlowClose { delay } => write!(f, "slow close ({})", ms(delay)),
            Action::Refuse => write!(f, "refuse connections"),
            Action::Loss { percent } => write!(f, "lose {percent}% of packets"),
            Action::Partition => write!(f, "partition (drop every packet)"),
            Action::Reject => write!(f, "reject (TCP reset)"),
        }
    }
}

/// Which targets a fault looks at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selector {
    /// Instances of the local stack by name (glob: `backend-*`).
    Process { name: String },
    /// A process by the PID in a file.
    PidFile { path: PathBuf },
    /// Containers by name glob or id.
    Container { name: String },
    /// Containers by a `key=value` label.
    ContainerLabel { label: String },
    /// Pods by namespace and label selector.
    Pods { namespace: String, selector: String },
    /// A deployment by namespace and name.
    Deployment { namespace: String, name: String },
    /// A link through the fault proxy, by the name the stack gave it.
    Proxy { name: String },
    /// TCP traffic to `port` on loopback, 127.0.0.0/8 and ::1 (packet rules through
    /// iptables and ip6tables).
    Port { port: u16 },
    /// TCP traffic to `port` inside the network namespace of containers by name glob or
    /// id (what reaches a published port, or comes from another container).
    ContainerPort { container: String, port: u16 },
}

impl Selector {
    /// The backend whose targets this selector finds (and so whose actions apply).
    pub fn backend(&self) -> BackendKind {
        match self {
            Selector::Process { .. } | Selector::PidFile { .. } => BackendKind::Process,
            Selector::Container { .. } | Selector::ContainerLabel { .. } => BackendKind::Docker,
            Selector::Pods { .. } | Selector::Deployment { .. } => BackendKind::Kube,
            Selector::Proxy { .. } => BackendKind::Proxy,
            Selector::Port { .. } | Selector::ContainerPort { .. } => BackendKind::Firewall,
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Process { name } => write!(f, "process {name}"),
            Selector::PidFile { path } => write!(f, "pidfile {}", path.display()),
            Selector::Container { name } => write!(f, "container {name}"),
            Selector::ContainerLabel { label } => write!(f, "containers labelled {label}"),
            Selector::Pods {
                namespace,
                selector,
            } => write!(f, "pods {selector} in {namespace}"),
            Selector::Deployment { namespace, name } => write!(f, "deployment {namespace}/{name}"),
            Selector::Proxy { name } => write!(f, "proxy {name}"),
            Selector::Port { port } => write!(f, "port {port}"),
            Selector::ContainerPort { container, port } => {
                write!(f, "port {port} in container {container}")
            }
        }
    }
}

/// How many of the matched targets a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Mode {
    /// The first match (stable order: by name).
    One,
    /// Every match.
    All,
    /// One match picked by the run's seeded RNG.
    Random,
    Count(u32),
    Percent(f64),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::One => write!(f, "the first match"),
            Mode::All => write!(f, "every match"),
            Mode::Random => write!(f, "one match at random"),
            Mode::Count(n) => write!(f, "{n} matches"),
            Mode::Percent(p) => write!(f, "{p}% of the matches"),
        }
    }
}

impl Mode {
    /// How many of `matched` targets this mode selects.
    pub fn count(&self, matched: usize) -> usize {
        match self {
            Mode::One | Mode::Random => matched.min(1),
            Mode::All => matched,
            Mode::Count(n) => matched.min(*n as usize),
            Mode::Percent(p) => ((matched as f64 * p / 100.0).ceil() as usize).min(matched),
        }
    }
}

impl FaultSpec {
    /// Each injection's (start, end) offsets; `end` is `None` for a fault without a duration.
    pub fn occurrences(&self) -> Vec<(Duration, Option<Duration>)> {
        let mut out = Vec::new();
        for i in 0..=self.repeat {
            let start = self.at + self.every.unwrap_or_default() * i;
            out.push((start, self.duration.map(|d| start + d)));
        }
        out
    }
}

/// Whether `text` names a container by id: 12 or more hex digits (a prefix of the 64).
/// Shorter strings are names only, so `a` can never match one container in sixteen.
pub(crate) fn is_container_id(text: &str) -> bool {
    text.len() >= 12 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_count_and_occurrences_repeat() {
        assert_eq!(Mode::Percent(50.0).count(3), 2);
        assert_eq!(Mode::Count(5).count(3), 3);
        assert_eq!(Mode::One.count(0), 0);
        let spec = FaultSpec {
            name: "f".into(),
            at: Duration::from_secs(10),
            duration: Some(Duration::from_secs(5)),
            repeat: 2,
            every: Some(Duration::from_secs(20)),
            action: Action::Pause,
            selector: Selector::Process { name: "b".into() },
            mode: Mode::One,
            guard: Guard::default(),
            among: None,
            effect: None,
            required: true,
        };
        let secs: Vec<(u64, Option<u64>)> = spec
            .occurrences()
            .iter()
            .map(|(s, e)| (s.as_secs(), e.map(|e| e.as_secs())))
            .collect();
        assert_eq!(secs, vec![(10, Some(15)), (30, Some(35)), (50, Some(55))]);
    }
}
