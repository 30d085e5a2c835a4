//! The facade: everything outside this crate may use, and nothing else. Every module of the
//! library is private; what the binary (`src/main.rs`), the integration tests (`tests/it`),
//! the reference backend's stack tests (`docker/backend/tests`) and `examples/` need is
//! re-exported here, grouped by the module it lives in. An item added here is a promise to
//! those consumers: add one only when a test or program outside the crate cannot do its work
//! through the command line or the run directory.
//!
//! Types reached through these items (a summary's fields, a plan's parts) are public too, as
//! they must be, but cannot be named from outside unless listed here.

/// The command line, as the binary runs it.
pub mod cli {
    pub use crate::cli::main_with_args;
}

/// Scenario files to plans.
pub mod scenario {
    pub use crate::scenario::describe::describe;
    pub use crate::scenario::{Plan, ScenarioError, from_source, load, load_with};
}

/// The policy file an operator puts beside the scenarios.
pub mod policy {
    pub use crate::policy::{Policy, find, load};
}

/// The plan's load and fault parts, for tests that build a plan in code.
pub mod plan {
    pub use crate::plan::chaos::{
        Action, ChaosPlan, FaultSpec, Guard, MaxUnavailable, Mode, Selector,
    };
    pub use crate::plan::schedule::{ArrivalSchedule, vu_changes};
    pub use crate::plan::{HttpVersion, LoadModel, RateStage, VuStage};
}

/// The drivers of the open and closed load models.
pub mod engine {
    pub use crate::engine::drive::{drive_arrivals, drive_vus};
}

/// What workers record, for programs that write a run directory of their own.
pub mod metrics {
    pub use crate::metrics::stats::Snapshot;
    pub use crate::metrics::{ErrorClass, Second};
}

/// The chaos core and its backends: the fault timeline, the ledger and recovery, the fault
/// proxy, and what the Kubernetes tests drive against a recorded API.
pub mod chaos {
    pub use crate::chaos::backends::{Recovery, Undo};
    pub use crate::chaos::kube::{DeploymentUndo, KubeBackend, PodSelector};
    pub use crate::chaos::ledger::{EntryState, LEDGER_FILE, Ledger, LedgerRecord};
    /// The trait `loadgen recover` is generic over; import it (`as _`) to call its methods
    /// on `Recovery`.
    pub use crate::chaos::lifecycle::Recovery as RecoveryDispatch;
    pub use crate::chaos::proxy::{
        Direction, Fault, Proxy, Resolver, Upstream, remote_clear, remote_set, serve_control,
    };
    pub use crate::chaos::registry::Registry;
    pub use crate::chaos::runner::{
        ChaosReport, Controls, EventKind, FaultEvent, Occurrence, OccurrenceStatus, Timeline,
        Verdict, preflight,
    };
}

/// The platform adapters, as `loadgen recover` finds them.
pub mod platform {
    pub use crate::platform::for_recovery;
}

/// Verification's read-backs.
pub mod verify {
    pub use crate::verify::run::Status;
}

/// The run directory as types: what a run wrote, read back.
pub mod record {
    pub use crate::record::run_plan::RunPlan;
    pub use crate::record::series::{PlannedTotals, SeriesWriter, write_totals};
    pub use crate::record::summary::build as build_summary;
    pub use crate::record::summary::{EndReason, Iterations, RunFacts, Summary};
    pub use crate::record::verdicts::{VerdictReason, VerdictStatus};
    pub use crate::record::writes::{ListedWrite, VerifySummary};
}

/// Judging a run: its exit code and the reasons for it.
pub mod judge {
    pub use crate::judge::exit::{ExitCode, for_run};
}

/// Running a drill as `loadgen run` does, in steps a test can stop between.
pub mod run {
    pub use crate::run::{RunError, RunOptions, execute, fault_backends, measure, prepare};
}

/// Writing a file so that a reader never sees it half-written.
pub mod util {
    pub use crate::util::atomic::write_atomic;
}
