//! Step 1, before the supervisor exists: the target answers, every fault's guardrails
//! allow it, and verification's counts and invariants can be read. Nothing can need
//! recovering yet; a refusal here still leaves a run directory saying why.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::chaos::ledger::Ledger;
use crate::chaos::registry::Registry;
use crate::engine::http::ClientConfig;
use crate::engine::mix::JourneyMix;
use crate::engine::planned::PlannedArrivals;
use crate::plan::schedule::ArrivalSchedule;
use crate::record::create_run_dir;
use crate::record::series::SeriesWriter;
use crate::run::{Prepared, RunError, RunOptions, checks};
use crate::verify::acks::AckLog;
use crate::verify::run::Baseline;

/// The run's client and verification's baseline, or why the run cannot start.
pub(super) async fn preflight(
    prepared: &Prepared,
    options: &RunOptions,
) -> Result<(ClientConfig, Baseline), RunError> {
    let plan = &prepared.plan;
    let preflight = async {
        let mut client = checks::client(plan, options).await?;
        checks::target(&mut client, plan).await?;
        checks::faults(plan).await?;
        // The counts and invariants before the load: one that cannot be read stops the run
        // here.
        let baseline = crate::verify::run::baseline(&client, plan, prepared.seed)
            .await
            .map_err(|e| RunError::CouldNotRun(format!("verification's pre-flight: {e}")))?;
        Ok::<_, RunError>((client, baseline))
    };
    match preflight.await {
        Ok(ready) => Ok(ready),
        // Nothing was sent: a record a CI job can publish says why (exit 3 still).
        Err(RunError::CouldNotRun(reason)) => Err(
            match crate::report::not_started::write(
                &options.out,
                &plan.name,
                &plan.redacted_source,
                &reason,
            ) {
                Some(run_dir) => RunError::NotStarted { reason, run_dir },
                None => RunError::CouldNotRun(reason),
            },
        ),
        Err(other) => Err(other),
    }
}

/// The run directory and the files the run appends to as it goes.
pub(super) struct RunFiles {
    pub(super) run_dir: PathBuf,
    pub(super) series: SeriesWriter,
    /// The fault ledger, when the plan has faults.
    pub(super) ledger: Option<Ledger>,
    /// The acknowledged writes, when the plan verifies any.
    pub(super) acks: Option<AckLog>,
}

/// Creates the run directory with the scenario as run, the series writer, the fault ledger
/// and the acknowledgement log.
pub(super) fn open_record(prepared: &Prepared, options: &RunOptions) -> Result<RunFiles, RunError> {
    let started_wall = jiff::Timestamp::now();
    let run_dir = create_run_dir(&options.out, &prepared.plan.name, started_wall).map_err(|e| {
        RunError::CouldNotRun(format!(
            "cannot create the run directory under {}: {e}",
            options.out.display()
        ))
    })?;
    // The scenario as run, so the report can show it and be re-rendered later.
    // As written, references kept and secrets redacted: the run directory holds none.
    let _ = std::fs::write(
        run_dir.join("scenario.toml"),
        &prepared.plan.redacted_source,
    );
    let planned_arrivals = match &prepared.plan.load.model {
        crate::plan::LoadModel::Open { start_rate, stages } => Some(PlannedArrivals::new(
            ArrivalSchedule::new(*start_rate, stages),
            JourneyMix::of(&prepared.plan.journeys),
            prepared.seed,
            prepared.workers,
        )),
        crate::plan::LoadModel::Closed { .. } => None,
    };
    let series = SeriesWriter::create(
        &run_dir,
        SystemTime::now(),
        planned_arrivals,
        prepared.plan.journeys.len(),
    )
    .map_err(|e| RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display())))?;
    let ledger = match prepared.plan.chaos.faults.is_empty() {
        true => None,
        false => Some(
            Ledger::create(&run_dir, Registry::at(options.state_dir.as_deref())).map_err(|e| {
                RunError::CouldNotRun(format!(
                    "cannot create the fault ledger in {}: {e}",
                    run_dir.display()
                ))
            })?,
        ),
    };
    let acks = match prepared.plan.verify.kinds.is_empty() {
        true => None,
        false => {
            let kinds: Vec<String> = prepared
                .plan
                .verify
                .kinds
                .iter()
                .map(|k| k.name.clone())
                .collect();
            Some(AckLog::create(&run_dir, &kinds).map_err(|e| {
                RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display()))
            })?)
        }
    };
    Ok(RunFiles {
        run_dir,
        series,
        ledger,
        acks,
    })
}

/// The metrics listener, when the plan serves `/metrics`: bound before anything is sent,
/// so an address that cannot be had refuses the run with nothing done.
pub(super) async fn bind_metrics(
    plan: &crate::plan::Plan,
) -> Result<Option<tokio::net::TcpListener>, RunError> {
    let Some(address) = plan.output.prometheus.listen else {
        return Ok(None);
    };
    crate::exporter::Exporter::bind(address)
        .await
        .map(Some)
        .map_err(|e| RunError::BadInput(format!("--metrics-listen {address}: cannot listen: {e}")))
}

/// The exporter, when the plan serves or pushes its metrics; the address it serves on is
/// said (on stderr, so `--quiet` keeps stdout to the run directory) and in metrics.addr.
pub(super) fn exporter(
    plan: &crate::plan::Plan,
    run_dir: &std::path::Path,
    listener: Option<tokio::net::TcpListener>,
) -> Result<Option<crate::exporter::Exporter>, RunError> {
    let prometheus = &plan.output.prometheus;
    if listener.is_none() && prometheus.remote_write.is_none() {
        return Ok(None);
    }
    let exporter = crate::exporter::Exporter::start(plan, run_dir, listener).map_err(|e| {
        RunError::CouldNotRun(format!(
            "cannot start the metrics exporter in {}: {e}",
            run_dir.display()
        ))
    })?;
    if let Some(address) = exporter.address() {
        crate::util::text::warn(&format!("metrics: http://{address}/metrics\n"));
    }
    Ok(Some(exporter))
}

/// On the local stack, the metrics listener is announced to its Prometheus (a file_sd file
/// removed when the run ends), which then scrapes it every second.
pub(super) fn announce(
    plan: &crate::plan::Plan,
    run_dir: &std::path::Path,
    exporter: Option<&crate::exporter::Exporter>,
) -> Option<crate::platform::local::ScrapeAnnouncement> {
    let address = exporter?.address()?;
    if plan.chaos.platform != crate::plan::chaos::PlatformKind::Local {
        return None;
    }
    let run_id = run_dir.file_name()?.to_string_lossy().into_owned();
    match crate::platform::local::announce_scrape(
        plan.chaos.stack_state.as_deref(),
        &run_id,
        address,
    ) {
        Ok(Some(announced)) => {
            crate::util::text::warn(&format!(
                "metrics: the local stack's Prometheus scrapes them ({})\n",
                announced.path.display()
            ));
            Some(announced)
        }
        Ok(None) => None,
        Err(e) => {
            crate::util::text::warn(&format!(
                "warning: metrics not announced to the local stack: {e}\n"
            ));
            None
        }
    }
}
