//! After the load: the last recoveries (step 4), verification (5), the unjudged summary
//! and judging (6, 7).

// The supervisor's own vocabulary (its imports, `Phase`, `describe_event`).
use super::*;

impl Supervisor {
    /// Recover: waits for the timeline's last recoveries (begun at the stop), still
    /// answering signals and showing fault events.
    pub(super) async fn recover(&mut self, chaos: Option<JoinHandle<ChaosReport>>) -> ChaosReport {
        self.phase = Phase::Recover;
        let Some(mut task) = chaos else {
            return ChaosReport::default();
        };
        let report = loop {
            tokio::select! {
                done = &mut task => break done,
                Some(event) = self.live_events.recv() => self.fault_event(&event),
                asked = self.signals.next() => self.on_signal(asked),
            }
        };
        while let Ok(event) = self.live_events.try_recv() {
            self.fault_event(&event);
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
    pub(super) async fn verify(
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

    /// The platform's own metrics (`[[observe]]`), fetched and saved as prometheus.json;
    /// a signal ends the wait for the last scrape.
    pub(super) async fn read_server(
        &mut self,
        plan: &crate::plan::Plan,
        span: &crate::run::server::Span,
    ) {
        if !plan.reads_server() {
            return;
        }
        self.progress
            .note("reading the platform's own metrics from Prometheus");
        let run_dir = self.run_dir.clone();
        let signals = &mut self.signals;
        let data = crate::run::server::fetch(plan, &run_dir, span, async {
            let _ = signals.next().await;
        })
        .await;
        let Some(data) = data else { return };
        let observed = data.observe.iter().filter_map(|o| {
            o.error
                .as_ref()
                .map(|e| format!("[[observe]] `{}`: {e}", o.name))
        });
        let objectives = data.objectives.iter().filter_map(|o| {
            o.error
                .as_ref()
                .map(|e| format!("query objective `{}`: {e}", o.name))
        });
        let failed: Vec<String> = observed.chain(objectives).collect();
        for failure in failed {
            self.progress.warn(&failure);
        }
    }

    /// The figures as they stand, written `"judged": false` with the objectives, so a run
    /// killed while it is judged leaves what to judge (`loadgen report` finishes the job).
    pub(super) fn write_unjudged(
        &mut self,
        run_plan: &RunPlan,
        elapsed: Duration,
        workers_ok: bool,
        faults: ChaosReport,
        host: Option<crate::metrics::host::HostLoad>,
    ) -> Summary {
        for second in self.aggregator.flush() {
            self.write_series(&second);
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
        if let Some(exporter) = &self.exporter {
            exporter.update(|e| {
                e.planned(&planned);
                e.ended();
            });
        }
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
    pub(super) async fn judge(mut self, summary: Summary) -> Result<RunOutcome, RunError> {
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
        if let Some(exporter) = self.exporter.as_mut() {
            exporter.update(|e| e.judged(&summary.slos, summary.verify.as_ref()));
            exporter.finish_push(&self.run_dir).await;
        }
        self.linger().await;
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

    /// The exporter serves the final values `--metrics-linger` more; a signal ends it.
    async fn linger(&mut self) {
        if self.exporter.is_none() || self.metrics_linger.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(self.metrics_linger) => {}
            _ = self.signals.next() => {}
        }
    }

    pub(super) async fn judged(&mut self, summary: Summary) -> Result<Summary, RunError> {
        let unjudged = summary.clone();
        let run_dir = self.run_dir.clone();
        let mut judging = tokio::task::spawn_blocking(move || {
            let mut summary = summary;
            crate::run::finalize(&run_dir, &mut summary).map(|_| summary)
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
