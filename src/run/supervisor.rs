//! The run supervisor: takes a prepared plan through its phases, in this order —
//!
//! 1. **pre-flight**: the target accepts connections, every fault's guardrails allow it;
//! 2. **run**: the engine drives the load, the fault timeline plays, seconds are aggregated
//!    as they become final;
//! 3. **stop**: at the plan's end, an interrupt, a hang-up or an abort objective — from that
//!    instant nothing more is injected;
//! 4. **recover**: everything still applied is put back at once, while in-flight journeys
//!    drain (not after them); signals stay handled until it ends;
//! 5. **verify**: once every fault has ended and `[chaos] settle` has passed, every write the
//!    platform acknowledged (acks.jsonl) is read back and its counts and invariants asked
//!    again (`verify/`); a signal stops it;
//! 6. **judge**: summary.json is first written `"judged": false` with the objectives, then
//!    the analysis judges it;
//! 7. **write**: summary.json whole again, junit.xml, report.html.
//!
//! Pre-flight happens before the supervisor exists (nothing can need recovering yet); from
//! the run on, `Phase` is its state. `measure` takes a plan through steps 1–5 and the
//! first write of 6 (summary.json `"judged": false`); `Measured::judge` does the rest. A
//! run is both, in turn; a caller that stops after `measure` leaves a run directory that
//! `loadgen report` judges, as it does a run killed while it is judged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

use super::signals::{Asked, Signal, Signals};
use super::{Prepared, RunError, RunOptions, RunOutcome, checks};
use crate::chaos::ledger::Ledger;
use crate::chaos::outcome::EventKind;
use crate::chaos::registry::Registry;
use crate::chaos::runner::{ChaosReport, Controls, FaultEvent, Timeline};
use crate::engine::Engine;
use crate::engine::mix::JourneyMix;
use crate::engine::planned::PlannedArrivals;
use crate::judge::slo::live::AbortWatch;
use crate::metrics::Aggregator;
use crate::output::progress::Progress;
use crate::plan::schedule::ArrivalSchedule;
use crate::record::create_run_dir;
use crate::record::run_plan::RunPlan;
use crate::record::series::{PlannedTotals, SeriesWriter, write_totals};
use crate::record::summary::{self, EndReason, RunFacts, Summary};
use crate::util::atomic::write_atomic;
use crate::verify::acks::AckLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The load plan plays; the plan's end stops it.
    Run,
    /// The load has ended; in-flight journeys drain while faults are recovered.
    Stop,
    /// The engine has drained; the last recoveries finish. (Judging follows in `judge`,
    /// which answers signals itself: one ends judging, not the run.)
    Recover,
    /// Every fault has ended: acknowledged writes are read back.
    Verify,
}

/// Why the load ended before its plan did.
#[derive(Debug, Clone, PartialEq)]
enum Stopped {
    Signal(Signal),
    Abort(String),
}

/// A run measured and not judged yet: recovery and verification have ended, the figures
/// are on disk and summary.json says `"judged": false` with the objectives.
pub struct Measured {
    supervisor: Supervisor,
    summary: Summary,
}

impl Measured {
    pub fn run_dir(&self) -> &Path {
        &self.supervisor.run_dir
    }

    /// Judge and write (steps 6 and 7).
    pub async fn judge(self) -> Result<RunOutcome, RunError> {
        self.supervisor.judge(self.summary).await
    }
}

/// Steps 1 to 5 and the unjudged summary.json.
pub async fn measure(prepared: Prepared, options: &RunOptions) -> Result<Measured, RunError> {
    let plan = prepared.plan.clone();
    let preflight = async {
        let mut client = checks::client(&plan, options).await?;
        checks::target(&mut client, &plan).await?;
        checks::faults(&plan).await?;
        // The counts and invariants before the load: one that cannot be read stops the run
        // here.
        let baseline = crate::verify::run::baseline(&client, &plan, prepared.seed)
            .await
            .map_err(|e| RunError::CouldNotRun(format!("verification's pre-flight: {e}")))?;
        Ok::<_, RunError>((client, baseline))
    };
    let (client, baseline) = match preflight.await {
        Ok(ready) => ready,
        // Nothing was sent: a record a CI job can publish says why (exit 3 still).
        Err(RunError::CouldNotRun(reason)) => {
            return Err(
                match crate::report::not_started::write(
                    &options.out,
                    &plan.name,
                    &plan.redacted_source,
                    &reason,
                ) {
                    Some(run_dir) => RunError::NotStarted { reason, run_dir },
                    None => RunError::CouldNotRun(reason),
                },
            );
        }
        Err(other) => return Err(other),
    };

    // From here until the last recovery, a signal is the supervisor's to handle (installed
    // before the run directory exists, so a signal after it appears is never fatal).
    let signals = Signals::install();
    let started_wall = jiff::Timestamp::now();
    let run_dir = create_run_dir(&options.out, &plan.name, started_wall).map_err(|e| {
        RunError::CouldNotRun(format!(
            "cannot create the run directory under {}: {e}",
            options.out.display()
        ))
    })?;
    // The scenario as run, so the report can show it and be re-rendered later.
    // As written, references kept and secrets redacted: the run directory holds none.
    let _ = std::fs::write(run_dir.join("scenario.toml"), &plan.redacted_source);
    let planned_arrivals = match &plan.load.model {
        crate::plan::LoadModel::Open { start_rate, stages } => Some(PlannedArrivals::new(
            ArrivalSchedule::new(*start_rate, stages),
            JourneyMix::of(&plan.journeys),
            prepared.seed,
            prepared.workers,
        )),
        crate::plan::LoadModel::Closed { .. } => None,
    };
    let series = SeriesWriter::create(
        &run_dir,
        SystemTime::now(),
        planned_arrivals,
        plan.journeys.len(),
    )
    .map_err(|e| RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display())))?;
    let ledger = match plan.chaos.faults.is_empty() {
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
    let acks = match plan.verify.kinds.is_empty() {
        true => None,
        false => {
            let kinds: Vec<String> = plan.verify.kinds.iter().map(|k| k.name.clone()).collect();
            Some(AckLog::create(&run_dir, &kinds).map_err(|e| {
                RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display()))
            })?)
        }
    };
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let protocol = client.spoken();
    let verify_client = client.clone();
    // The host's CPU and loadgen's own over the load: when arrivals leave late, which of
    // the two took the cores.
    let cpu = crate::metrics::host::CpuClock::now();
    let engine = Engine::start(
        plan.clone(),
        client,
        prepared.workers,
        prepared.seed,
        reports_tx,
    )
    .map_err(|e| RunError::CouldNotRun(format!("cannot start worker threads: {e}")))?;
    // What the run sets out to do, on disk before the first arrival is due (the engine's
    // clock starts a few milliseconds from now): a run killed at any moment can be judged.
    let engine_wall = jiff::Timestamp::now()
        .checked_add(
            jiff::SignedDuration::try_from(
                engine
                    .start
                    .saturating_duration_since(tokio::time::Instant::now()),
            )
            .unwrap_or_default(),
        )
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let run_plan = RunPlan::of(
        &plan,
        prepared.seed,
        prepared.workers,
        protocol,
        engine_wall.to_string(),
    );
    run_plan.write(&run_dir).map_err(|e| {
        engine.stop.cancel();
        RunError::CouldNotRun(format!("cannot write to {}: {e}", run_dir.display()))
    })?;
    let controls = Controls::default();
    let (live_tx, live_events) = mpsc::unbounded_channel::<FaultEvent>();
    let chaos = ledger.map(|ledger| {
        let timeline = Timeline::new(
            Arc::new(plan.chaos.clone()),
            super::fault_backends(&plan.chaos),
            ledger,
            engine.start,
            prepared.seed,
        )
        .with_live_events(live_tx);
        tokio::spawn(timeline.run(controls.clone()))
    });
    let planned = plan.load.model.total_duration();
    let mut supervisor = Supervisor {
        phase: Phase::Run,
        signals,
        progress: Progress::new(options.quiet, planned),
        planned,
        aggregator: Aggregator::new(prepared.workers, plan.step_count(), plan.journeys.len()),
        abort_watch: AbortWatch::new(&plan.slos, &plan.step_names()),
        series: Some(series),
        acks,
        write_error: None,
        stopped: None,
        abandoned: false,
        controls,
        live_events,
        engine_stop: engine.stop.clone(),
        engine_kill: engine.kill.clone(),
        run_dir,
        verify_cancel: tokio_util::sync::CancellationToken::new(),
        verify_inputs: Some((verify_client, baseline)),
        plan: plan.clone(),
        feeders_noted: Vec::new(),
    };

    supervisor.run(reports, engine.start + planned).await;
    let elapsed = engine.start.elapsed();
    let host = cpu.and_then(|clock| clock.load_since());
    let engine_start = engine.start;
    let workers_ok = tokio::task::spawn_blocking(move || engine.join())
        .await
        .unwrap_or(false);
    let faults = supervisor.recover(chaos).await;
    supervisor
        .verify(&plan, prepared.seed, engine_start, &faults, workers_ok)
        .await;
    let summary = supervisor.write_unjudged(&run_plan, elapsed, workers_ok, faults, host);
    Ok(Measured {
        supervisor,
        summary,
    })
}

struct Supervisor {
    phase: Phase,
    signals: Signals,
    progress: Progress,
    planned: Duration,
    aggregator: Aggregator,
    abort_watch: AbortWatch,
    /// Taken when the series is finished.
    series: Option<SeriesWriter>,
    /// acks.jsonl, while the load runs (when a step records what it wrote).
    acks: Option<AckLog>,
    /// Stops verification (a signal).
    verify_cancel: tokio_util::sync::CancellationToken,
    /// What verification starts from: the run's client and the pre-flight readings.
    verify_inputs: Option<(crate::engine::ClientConfig, crate::verify::run::Baseline)>,
    write_error: Option<std::io::Error>,
    stopped: Option<Stopped>,
    /// A second interrupt skipped the recoveries not begun.
    abandoned: bool,
    controls: Controls,
    live_events: mpsc::UnboundedReceiver<FaultEvent>,
    engine_stop: tokio_util::sync::CancellationToken,
    engine_kill: tokio_util::sync::CancellationToken,
    run_dir: PathBuf,
    plan: Arc<crate::plan::Plan>,
    /// Feeders whose running out has been said.
    feeders_noted: Vec<usize>,
}

impl Supervisor {
    /// Run and stop: aggregates every second until every worker has drained; stops the
    /// timeline at the plan's end, a signal or an abort, whichever comes first.
    async fn run(
        &mut self,
        mut reports: mpsc::UnboundedReceiver<crate::metrics::WorkerReport>,
        plan_end: tokio::time::Instant,
    ) {
        loop {
            tokio::select! {
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    self.accept(report);
                }
                Some(event) = self.live_events.recv() => self.progress.note(&describe_event(&event)),
                _ = sleep_until(plan_end), if self.phase == Phase::Run => self.stop_injecting(),
                asked = self.signals.next() => self.on_signal(asked),
            }
        }
        // Every worker has drained (the plan's end may not have been seen first: the last
        // worker can finish at that very instant): nothing more is injected, and effect
        // watches end now.
        self.stop_injecting();
        self.controls.drained.cancel();
    }

    fn accept(&mut self, mut report: crate::metrics::WorkerReport) {
        if let Some(log) = self.acks.as_mut()
            && let Err(e) = log.append(&std::mem::take(&mut report.acks))
        {
            self.write_error.get_or_insert(e);
        }
        for second in self.aggregator.accept(report) {
            self.note_feeders(&second);
            self.progress.second(&second, self.planned);
            if self.stopped.is_none()
                && let Some(reason) = self.abort_watch.second(&second)
            {
                self.progress
                    .note(&format!("aborting: {reason}; recovering faults"));
                self.stop(Stopped::Abort(reason));
            }
            let stopped_from = self.aggregator.arrivals_stopped_from();
            if let Some(Err(e)) = self
                .series
                .as_mut()
                .map(|s| s.write_second(&second, stopped_from))
            {
                self.write_error.get_or_insert(e);
            }
        }
    }

    /// Says once per feeder, as soon as its second is final, that a `unique` feeder ran
    /// out: its iterations no longer start, or it wraps around.
    fn note_feeders(&mut self, second: &crate::metrics::Second) {
        for (feeder, counts) in &second.snapshot.feeders {
            let index = usize::from(*feeder);
            if self.feeders_noted.contains(&index) {
                continue;
            }
            self.feeders_noted.push(index);
            let Some(feeder) = self.plan.feeders.get(index) else {
                continue;
            };
            let what = if counts.wrapped > 0 {
                "wraps around: its rows are used again from the first (on_exhausted = \"wrap\")"
            } else {
                match feeder.on_exhausted {
                    crate::plan::OnExhausted::StopJourney => {
                        "is used up: its journeys' later iterations do not start (on_exhausted = \"stop_journey\")"
                    }
                    _ => {
                        "is exhausted: later iterations that need a row do not start, and that is load not delivered (on_exhausted = \"fail\")"
                    }
                }
            };
            let text = format!(
                "feeder `{}` ({}) {what}",
                feeder.name,
                crate::record::summary::rows(feeder.rows.len() as u64)
            );
            // A warning, so said under --quiet too (on stderr, as prepare's warnings are).
            self.progress.warn(&text);
        }
    }

    /// The load is over (or asked to end): no injection from this instant; recovery starts.
    fn stop_injecting(&mut self) {
        self.controls.stop.cancel();
        if self.phase == Phase::Run {
            self.phase = Phase::Stop;
        }
    }

    fn stop(&mut self, why: Stopped) {
        self.stopped.get_or_insert(why);
        self.engine_stop.cancel();
        self.verify_cancel.cancel();
        self.stop_injecting();
    }

    fn on_signal(&mut self, asked: Asked) {
        match asked {
            Asked::Stop(signal) => {
                self.progress.note(&format!(
                    "{}: stopping — no more faults; recovering what is applied while in-flight journeys finish (INT or TERM again, a second from now, to skip recovery)",
                    signal.name()
                ));
                self.stop(Stopped::Signal(signal));
            }
            Asked::Abandon(signal) => {
                // Once the engine has drained there are no requests left to abandon.
                let requests = match self.phase {
                    Phase::Recover | Phase::Verify => "",
                    Phase::Run | Phase::Stop => "abandoning requests in flight and ",
                };
                self.progress.note(&format!(
                    "{} again: {requests}skipping the recoveries not begun; what stays applied is listed (then run `loadgen recover {}`)",
                    signal.name(),
                    self.run_dir.display()
                ));
                self.abandoned = true;
                self.engine_kill.cancel();
                self.controls.abandon.cancel();
            }
            Asked::Nothing(Signal::Hangup) => self
                .progress
                .note("SIGHUP again: recovery goes on (a hang-up never skips it)"),
            Asked::Nothing(signal) => self.progress.note(&format!(
                "{} again within a second: ignored (again later to skip recovery)",
                signal.name()
            )),
        }
    }

    /// Recover: waits for the timeline's last recoveries (begun at the stop), still
    /// answering signals and showing fault events.
    async fn recover(&mut self, chaos: Option<JoinHandle<ChaosReport>>) -> ChaosReport {
        self.phase = Phase::Recover;
        let Some(mut task) = chaos else {
            return ChaosReport::default();
        };
        let report = loop {
            tokio::select! {
                done = &mut task => break done,
                Some(event) = self.live_events.recv() => self.progress.note(&describe_event(&event)),
                asked = self.signals.next() => self.on_signal(asked),
            }
        };
        while let Ok(event) = self.live_events.try_recv() {
            self.progress.note(&describe_event(&event));
        }
        report.unwrap_or_else(|e| ChaosReport {
            unrecovered: vec![format!(
                "the fault timeline failed ({e}); run `loadgen recover {}`",
                self.run_dir.display()
            )],
            ..ChaosReport::default()
        })
    }

    /// Verify: acknowledged writes read back once every fault has ended and the platform
    /// has settled, still answering signals (one stops it: the run is then interrupted).
    /// A run stopped before it (a signal, a harness failure) does not verify; verify.json
    /// says so.
    async fn verify(
        &mut self,
        plan: &crate::plan::Plan,
        seed: u64,
        start: tokio::time::Instant,
        faults: &ChaosReport,
        workers_ok: bool,
    ) {
        if let Some(log) = self.acks.take()
            && let Err(e) = log.finish()
        {
            self.write_error.get_or_insert(e);
        }
        let Some((config, baseline)) = self.verify_inputs.take() else {
            return;
        };
        if plan.verify.is_empty() {
            return;
        }
        self.phase = Phase::Verify;
        let skip = match (&self.stopped, workers_ok) {
            (_, false) => Some("a worker thread failed".to_string()),
            (Some(Stopped::Signal(signal)), true) => {
                Some(format!("the run was stopped by {}", signal.name()))
            }
            _ if self.abandoned => Some("recovery was skipped".to_string()),
            _ => None,
        };
        if let Some(reason) = skip {
            if let Err(e) = crate::verify::run::skipped(&self.run_dir, &reason) {
                self.write_error.get_or_insert(std::io::Error::other(e));
            }
            return;
        }
        // The platform gets `settle` after the last fault's effect ended.
        let last_end = faults
            .occurrences
            .iter()
            .filter_map(|o| o.ended_ms.or(o.started_ms))
            .max();
        let not_before = last_end.map_or_else(tokio::time::Instant::now, |ms| {
            start + Duration::from_millis(ms) + plan.chaos.settle
        });
        self.progress.note(&format!(
            "verifying what the platform acknowledged (at most {}/s){}",
            plan.verify.rate,
            match not_before.checked_duration_since(tokio::time::Instant::now()) {
                Some(wait) if !wait.is_zero() =>
                    format!(", after {:.1} s of settle", wait.as_secs_f64()),
                _ => String::new(),
            }
        ));
        let run_dir = self.run_dir.clone();
        let verification = crate::verify::run::run(crate::verify::run::Setup {
            plan,
            config,
            run_dir: &run_dir,
            seed,
            start,
            not_before,
            baseline,
            cancel: self.verify_cancel.clone(),
        });
        tokio::pin!(verification);
        let facts = loop {
            tokio::select! {
                done = &mut verification => break done,
                asked = self.signals.next() => self.on_signal(asked),
            }
        };
        match facts {
            Ok(facts) => self.progress.note(&format!(
                "verification {}: {} request(s)",
                match facts.status {
                    crate::verify::run::Status::Complete => "done",
                    _ => "stopped",
                },
                facts.requests
            )),
            Err(e) => {
                self.write_error.get_or_insert(std::io::Error::other(e));
            }
        }
    }

    /// The figures as they stand, written `"judged": false` with the objectives, so a run
    /// killed while it is judged leaves what to judge (`loadgen report` finishes the job).
    fn write_unjudged(
        &mut self,
        run_plan: &RunPlan,
        elapsed: Duration,
        workers_ok: bool,
        faults: ChaosReport,
        host: Option<crate::metrics::host::HostLoad>,
    ) -> Summary {
        for second in self.aggregator.flush() {
            let stopped_from = self.aggregator.arrivals_stopped_from();
            if let Some(Err(e)) = self
                .series
                .as_mut()
                .map(|s| s.write_second(&second, stopped_from))
            {
                self.write_error.get_or_insert(e);
            }
        }
        std::mem::replace(&mut self.progress, Progress::Quiet).finish();
        let series = self.series.take().expect("the series is finished once");
        let planned = match series
            .finish(self.aggregator.arrivals_stopped_from())
            .and_then(|planned| {
                write_totals(&self.run_dir, self.aggregator.totals(), elapsed).map(|_| planned)
            }) {
            Ok(planned) => planned,
            Err(e) => {
                self.write_error.get_or_insert(e);
                PlannedTotals::default()
            }
        };
        let ended_by = match (&self.stopped, workers_ok && self.aggregator.all_finished()) {
            (_, false) => EndReason::HarnessFailure,
            (Some(Stopped::Abort(_)), true) => EndReason::Aborted,
            (Some(Stopped::Signal(_)), true) => EndReason::Interrupted,
            (None, true) => EndReason::Plan,
        };
        let aborted_because = match &self.stopped {
            Some(Stopped::Abort(reason)) => Some(reason.clone()),
            _ => None,
        };
        let summary = summary::build(
            RunFacts {
                plan: run_plan,
                duration_s: elapsed.as_secs_f64(),
                ended_by,
                faults,
                aborted_because,
                planned,
                host,
            },
            self.aggregator.totals(),
        );
        let json = serde_json::to_vec_pretty(&summary).expect("a summary always serializes");
        if let Err(e) = write_atomic(&self.run_dir.join("summary.json"), &json) {
            self.write_error.get_or_insert(e);
        }
        summary
    }

    /// Judge and write: the analysis on a blocking thread, so a signal still ends it (the
    /// summary then stays `"judged": false`, which `loadgen report` finishes).
    async fn judge(mut self, summary: Summary) -> Result<RunOutcome, RunError> {
        if let Some(e) = self.write_error.take() {
            return Err(RunError::CouldNotRun(format!(
                "writing the run's results in {} failed: {e}",
                self.run_dir.display()
            )));
        }
        let harness_failed = summary.ended_by == EndReason::HarnessFailure;
        // After a skipped recovery the user wants out: the figures are written, judging can
        // wait for `loadgen report` (exit 4 names what is still applied either way).
        let summary = if self.abandoned {
            summary
        } else {
            self.judged(summary).await?
        };
        if harness_failed {
            return Err(RunError::CouldNotRun(format!(
                "a worker thread failed; partial results (marked incomplete) are in {}",
                self.run_dir.display()
            )));
        }
        Ok(RunOutcome {
            run_dir: self.run_dir,
            summary,
        })
    }

    async fn judged(&mut self, summary: Summary) -> Result<Summary, RunError> {
        let unjudged = summary.clone();
        let run_dir = self.run_dir.clone();
        let mut judging = tokio::task::spawn_blocking(move || {
            let mut summary = summary;
            super::finalize(&run_dir, &mut summary).map(|_| summary)
        });
        tokio::select! {
            done = &mut judging => match done {
                Ok(Ok(summary)) => Ok(summary),
                Ok(Err(e)) => Err(RunError::CouldNotRun(format!(
                    "writing the run's results in {} failed: {e}",
                    self.run_dir.display()
                ))),
                Err(e) => Err(RunError::CouldNotRun(format!("judging failed: {e}"))),
            },
            asked = self.signals.next() => {
                let signal = match asked {
                    Asked::Stop(s) | Asked::Abandon(s) | Asked::Nothing(s) => s,
                };
                crate::util::text::warn(&format!(
                    "{}: judging stopped; summary.json says \"judged\": false (`loadgen report {}` judges it)\n",
                    signal.name(),
                    self.run_dir.display()
                ));
                Ok(unjudged)
            }
        }
    }
}

/// One live line per fault event. `recovered` (the undo ran) comes before `ended` (the
/// target was seen healthy again, which ends the fault's window): said in words, so the
/// order reads as what happened.
fn describe_event(event: &FaultEvent) -> String {
    let meaning = match event.kind {
        EventKind::Recovered => " (undone)",
        EventKind::Ended => " (healthy again: its window ends)",
        _ => "",
    };
    format!(
        "fault {:>7.1}s {:<8} {} {}{meaning}{}",
        event.offset_ms as f64 / 1000.0,
        event.kind,
        event.fault,
        event.target.as_deref().unwrap_or(""),
        event
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )
}
