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
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

mod after;
mod start;

use start::RunFiles;

use super::signals::{Asked, Signal, Signals};
use super::{Prepared, RunError, RunOptions, RunOutcome};
use crate::chaos::outcome::EventKind;
use crate::chaos::runner::{ChaosReport, Controls, FaultEvent, Timeline};
use crate::engine::Engine;
use crate::judge::slo::live::AbortWatch;
use crate::metrics::Aggregator;
use crate::output::progress::Progress;
use crate::record::run_plan::RunPlan;
use crate::record::series::{PlannedTotals, SeriesWriter, write_totals};
use crate::record::summary::{self, EndReason, RunFacts, Summary};
use crate::util::atomic::write_atomic;
use crate::verify::acks::AckLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
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
pub(super) struct Measured {
    supervisor: Supervisor,
    summary: Summary,
}

impl Measured {
    pub(super) fn run_dir(&self) -> &Path {
        &self.supervisor.run_dir
    }

    /// Judge and write (steps 6 and 7).
    pub(super) async fn judge(self) -> Result<RunOutcome, RunError> {
        self.supervisor.judge(self.summary).await
    }
}

/// Steps 1 to 5 and the unjudged summary.json.
#[expect(
    clippy::too_many_lines,
    reason = "the run's steps in their order, each one call; split further, the order would hide"
)]
pub(super) async fn measure(
    prepared: Prepared,
    options: &RunOptions,
) -> Result<Measured, RunError> {
    let plan = prepared.plan.clone();
    // The metrics listener is bound before anything is sent: a taken port refuses the run.
    let listener = start::bind_metrics(&plan).await?;
    let (client, baseline) = start::preflight(&prepared, options).await?;

    // From here until the last recovery, a signal is the supervisor's to handle (installed
    // before the run directory exists, so a signal after it appears is never fatal).
    let signals = Signals::install();
    let RunFiles {
        run_dir,
        series,
        ledger,
        acks,
    } = start::open_record(&prepared, options)?;
    let exporter = start::exporter(&plan, &run_dir, listener)?;
    let announced = start::announce(&plan, &run_dir, exporter.as_ref());
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
        exporter,
        metrics_linger: options.metrics_linger,
        _announced: announced,
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
    let span = super::server::Span {
        start_unix_ms: engine_wall.as_millisecond(),
        start: engine_start,
        load_s: elapsed.as_secs_f64(),
        occurrences: faults.occurrences.clone(),
    };
    supervisor.read_server(&plan, &span).await;
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
    /// Prometheus out, when asked for: fed each final second and the run's events.
    exporter: Option<crate::exporter::Exporter>,
    /// How long the exporter serves the final values after judging.
    metrics_linger: Duration,
    /// The listener as the local stack's Prometheus knows it, withdrawn when the run ends.
    _announced: Option<crate::platform::local::ScrapeAnnouncement>,
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
                Some(event) = self.live_events.recv() => self.fault_event(&event),
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
        if let Some(exporter) = self.exporter.as_ref().filter(|_| !report.acks.is_empty()) {
            exporter.update(|e| {
                for ack in &report.acks {
                    e.acknowledged(usize::from(ack.kind), 1);
                }
            });
        }
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
            self.write_series(&second);
        }
    }

    /// Writes a final second to series.csv and the interval log, and hands it to the
    /// exporter; the first write error is kept for the end of the run.
    pub(super) fn write_series(&mut self, second: &crate::metrics::Second) {
        let stopped_from = self.aggregator.arrivals_stopped_from();
        if let Some(Err(e)) = self
            .series
            .as_mut()
            .map(|s| s.write_second(second, stopped_from))
        {
            self.write_error.get_or_insert(e);
        }
        if let Some(exporter) = &self.exporter {
            let planned = self.series.as_ref().map(SeriesWriter::planned_so_far);
            exporter.update(|e| {
                e.second(second);
                if let Some(planned) = planned {
                    e.planned(planned);
                }
            });
        }
    }

    /// A fault event: said live, and a fault's window opening or closing exported.
    fn fault_event(&mut self, event: &FaultEvent) {
        self.progress.note(&describe_event(event));
        if let Some(exporter) = &self.exporter {
            let open = match event.kind {
                EventKind::Applied => Some(true),
                EventKind::Ended
                | EventKind::NotHealthyAgain
                | EventKind::Failed
                | EventKind::Skipped
                | EventKind::Refused
                | EventKind::NotRun => Some(false),
                _ => None,
            };
            if let Some(open) = open {
                exporter.update(|e| e.fault(&event.fault, open));
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
