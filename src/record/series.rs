//! Streaming outputs written once per final second, so memory stays flat however long the
//! run: `series.csv` (one row per scope per second) and `histograms/intervals.hlog` (the
//! same seconds as HdrHistogram interval-log entries, V2 deflate-compressed).
//!
//! A row's second is the requests' *intended start* (see `metrics::recorder`): its counts,
//! errors, dropped arrivals and latencies are of the requests meant to start in it. Only
//! `completed` (requests that completed in that second) and the journey rows' iteration
//! ends (`requests` = completed + failed, `errors`, `interrupted`, the durations) are
//! keyed by the moment they happened. Latency columns are of successful responses;
//! `failed_*` of failed requests.
//!
//! The `all` and `journey:N` rows also carry the accounting identity of the iterations
//! meant to start in their second: `planned = started + dropped + not_started`. The open
//! model's `planned` is recomputed here from the schedule and the seed
//! (`engine::planned`), never from what the workers counted, and every second that plans
//! an arrival gets rows even when no worker reported it — so an arrival nobody accounted
//! for shows as a row that does not add up. `not_started_stopped` (arrivals due after the
//! run stopped) follows from where each worker stopped launching; the seconds after the
//! run's last one are counted in the totals only (`PlannedTotals`), not as rows of a
//! run that no longer ran. The closed model's `planned` is the iterations users began.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag as LogTag};

use super::tag::Tag;
use crate::engine::planned::{PlannedArrivals, PlannedSecond};
use crate::metrics::stats::{JourneyStats, RequestStats};
use crate::metrics::{ErrorClass, NotStarted, Percentiles, Second, Snapshot};

/// The columns after `second, scope, requests, errors` and one per error class.
const COLUMNS_AFTER_CLASSES: [&str; 14] = [
    "p50_us",
    "p95_us",
    "p99_us",
    "max_us",
    "dropped",
    "completed",
    "failed_p50_us",
    "failed_p99_us",
    "saturated",
    "retried_unprocessed",
    "in_flight",
    "scheduled",
    "lag_p99_us",
    "lag_p50_us",
];
/// Of those, the ones only the `all` row fills.
const ALL_ONLY_COLUMNS: usize = 4;
/// The iteration accounting of the `all` and `journey:N` rows, after those; then one
/// `not_started_<reason>` column per `NotStarted` reason.
const ITERATION_COLUMNS: [&str; 4] = ["planned", "started", "not_started", "interrupted"];

/// What the rows and the tail after the run's last second add up to, per journey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedTotals {
    /// Open model: the schedule's arrivals per journey (empty for the closed model).
    pub planned: Vec<u64>,
    /// Open model: of those, due after the run stopped (`not_started: stopped`).
    pub stopped: Vec<u64>,
}

pub struct SeriesWriter {
    csv: csv::Writer<BufWriter<File>>,
    hlog: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// Open model: the plan's arrivals, walked second by second as rows are written.
    planned: Option<PlannedArrivals>,
    journeys: usize,
    totals: PlannedTotals,
}

impl SeriesWriter {
    /// `planned`: the open model's arrivals (`None` for the closed model).
    pub fn create(
        run_dir: &Path,
        started: SystemTime,
        planned: Option<PlannedArrivals>,
        journeys: usize,
    ) -> std::io::Result<SeriesWriter> {
        std::fs::create_dir_all(run_dir.join("histograms"))?;
        let mut csv =
            csv::Writer::from_writer(BufWriter::new(File::create(run_dir.join("series.csv"))?));
        csv.write_record(header())?;
        let mut hlog = BufWriter::new(File::create(run_dir.join("histograms/intervals.hlog"))?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("loadgen per-second latency histograms, values in microseconds")
            .add_comment("keyed by intended start; 1 us .. 1 h, 3 significant digits")
            .add_comment(
                "tags: all | step:N successes, failed:all | failed:step:N failures, journey:N",
            )
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut hlog, &mut serializer)?;
        let totals = match planned {
            Some(_) => PlannedTotals {
                planned: vec![0; journeys],
                stopped: vec![0; journeys],
            },
            None => PlannedTotals::default(),
        };
        Ok(SeriesWriter {
            csv,
            hlog,
            serializer,
            planned,
            journeys,
            totals,
        })
    }

    /// Writes one final second, after rows for any earlier second that planned arrivals
    /// no worker reported. `stopped_from`: per worker, the first arrival it did not launch
    /// because the run stopped.
    pub fn write_second(
        &mut self,
        second: &Second,
        stopped_from: &[Option<u64>],
    ) -> std::io::Result<()> {
        while let Some(gap) = self.next_planned_second().filter(|g| *g < second.second) {
            let planned = self.count_planned(gap, stopped_from);
            let empty = Snapshot::new(0, self.journeys);
            self.write_iterations(gap, &empty, Some(&planned))?;
        }
        let planned = self
            .planned
            .is_some()
            .then(|| self.count_planned(second.second, stopped_from));
        let s = &second.snapshot;
        let lag = Percentiles::of(s.generator.lag.as_ref());
        let mut row = scope_row(second.second, &Tag::All, &s.overall);
        row.extend([
            second.in_flight.to_string(),
            s.generator.scheduled.to_string(),
            lag.p99.to_string(),
            lag.p50.to_string(),
        ]);
        let mut all = JourneyStats::default();
        for journey in &s.journeys {
            all.merge(journey);
        }
        let sum = |counts: Option<&Vec<u64>>| counts.map(|c| c.iter().sum::<u64>());
        row.extend(iteration_cells(
            &all,
            sum(planned.as_ref().map(|p| &p.planned)),
            sum(planned.as_ref().map(|p| &p.stopped)).unwrap_or(0),
        ));
        self.csv.write_record(&row)?;
        for (index, step) in s
            .steps
            .iter()
            .enumerate()
            .filter(|(_, st)| st.attempts() + st.completed > 0)
        {
            let mut row = scope_row(second.second, &Tag::Step(index), step);
            row.extend(blank(ALL_ONLY_COLUMNS + iteration_width()));
            self.csv.write_record(&row)?;
        }
        self.write_journey_rows(second.second, s, planned.as_ref())?;
        for (instance, served) in &s.instances {
            let mut row = vec![
                second.second.to_string(),
                Tag::Instance(instance.clone()).to_string(),
                served.to_string(),
                "0".into(),
            ];
            row.extend(blank(
                ErrorClass::COUNT + COLUMNS_AFTER_CLASSES.len() + iteration_width(),
            ));
            self.csv.write_record(&row)?;
        }
        self.write_histograms(second.second, s)?;
        // On disk each second, so a run killed at any moment leaves every final second
        // for `loadgen report` to judge (one write of each file a second).
        self.csv.flush()?;
        self.hlog.flush()
    }

    /// The `all` and journey rows of a second no worker reported: its planned arrivals and
    /// nothing else, which the accounting then shows as not adding up.
    fn write_iterations(
        &mut self,
        second: u64,
        s: &Snapshot,
        planned: Option<&PlannedSecond>,
    ) -> std::io::Result<()> {
        let mut row = vec![
            second.to_string(),
            Tag::All.to_string(),
            "0".into(),
            "0".into(),
        ];
        row.extend(std::iter::repeat_n(
            "0".to_string(),
            ErrorClass::COUNT + COLUMNS_AFTER_CLASSES.len(),
        ));
        let planned_sum = planned.map(|p| p.planned.iter().sum::<u64>());
        let stopped_sum = planned.map_or(0, |p| p.stopped.iter().sum::<u64>());
        row.extend(iteration_cells(
            &JourneyStats::default(),
            planned_sum,
            stopped_sum,
        ));
        self.csv.write_record(&row)?;
        self.write_journey_rows(second, s, planned)
    }

    fn write_journey_rows(
        &mut self,
        second: u64,
        s: &Snapshot,
        planned: Option<&PlannedSecond>,
    ) -> std::io::Result<()> {
        for (index, journey) in s.journeys.iter().enumerate() {
            let (planned_here, stopped_here) = match planned {
                Some(p) => (Some(p.planned[index]), p.stopped[index]),
                None => (None, 0),
            };
            let active = journey.completed
                + journey.failed
                + journey.interrupted
                + journey.dropped
                + journey.begun
                + journey.started
                + journey.not_started_total()
                + planned_here.unwrap_or(0)
                > 0;
            if !active {
                continue;
            }
            let p = Percentiles::of(journey.duration.as_ref());
            let mut row = vec![
                second.to_string(),
                Tag::Journey(index).to_string(),
                (journey.completed + journey.failed).to_string(),
                journey.failed.to_string(),
            ];
            row.extend(journey.failed_by.iter().map(u64::to_string));
            row.extend([p.p50, p.p95, p.p99, p.max].map(|v| v.to_string()));
            row.push(journey.dropped.to_string());
            row.extend(blank(COLUMNS_AFTER_CLASSES.len() - 5));
            row.extend(iteration_cells(journey, planned_here, stopped_here));
            self.csv.write_record(&row)?;
        }
        Ok(())
    }

    fn next_planned_second(&self) -> Option<u64> {
        self.planned.as_ref()?.next_second()
    }

    /// The planned arrivals of `second`, added to the totals.
    fn count_planned(&mut self, second: u64, stopped_from: &[Option<u64>]) -> PlannedSecond {
        let counted = self
            .planned
            .as_mut()
            .expect("only the open model counts planned arrivals")
            .second(second, stopped_from);
        for (total, n) in self.totals.planned.iter_mut().zip(&counted.planned) {
            *total += n;
        }
        for (total, n) in self.totals.stopped.iter_mut().zip(&counted.stopped) {
            *total += n;
        }
        counted
    }

    fn write_histograms(&mut self, second: u64, s: &Snapshot) -> std::io::Result<()> {
        let entries = histogram_entries(s, false);
        write_entries(
            &mut self.hlog,
            &mut self.serializer,
            Duration::from_secs(second),
            Duration::from_secs(1),
            &entries,
        )
    }

    /// What the rows written so far add up to (the open model's planned arrivals).
    pub fn planned_so_far(&self) -> &PlannedTotals {
        &self.totals
    }

    /// Ends the series: the plan's arrivals after the last row are counted into the totals
    /// (due after the run stopped: `stopped`); one that no worker launched nor declared
    /// stopped gets its rows, so the accounting shows it.
    pub fn finish(mut self, stopped_from: &[Option<u64>]) -> std::io::Result<PlannedTotals> {
        while let Some(second) = self.next_planned_second() {
            let planned = self.count_planned(second, stopped_from);
            if planned.has_unstopped() {
                let empty = Snapshot::new(0, self.journeys);
                self.write_iterations(second, &empty, Some(&planned))?;
            }
        }
        self.csv.flush()?;
        self.hlog.flush()?;
        Ok(self.totals)
    }
}

fn header() -> Vec<String> {
    let mut header: Vec<String> = ["second", "scope", "requests", "errors"]
        .map(String::from)
        .to_vec();
    header.extend(ErrorClass::ALL.iter().map(|c| c.name().to_string()));
    header.extend(COLUMNS_AFTER_CLASSES.map(String::from));
    header.extend(ITERATION_COLUMNS.map(String::from));
    header.extend(NotStarted::ALL.iter().map(|r| r.column().to_string()));
    header
}

fn iteration_width() -> usize {
    ITERATION_COLUMNS.len() + NotStarted::COUNT
}

fn blank(columns: usize) -> impl Iterator<Item = String> {
    std::iter::repeat_n(String::new(), columns)
}

/// `planned, started, not_started, interrupted` and the count per reason. `planned`: the
/// schedule's (open model) or, without it, the iterations begun (closed model);
/// `stopped`: the open model's arrivals due after the run stopped.
fn iteration_cells(journey: &JourneyStats, planned: Option<u64>, stopped: u64) -> Vec<String> {
    let mut reasons = journey.not_started;
    reasons[NotStarted::Stopped.index()] += stopped;
    let not_started: u64 = reasons.iter().sum();
    let mut cells = vec![
        planned.unwrap_or(journey.begun).to_string(),
        journey.started.to_string(),
        not_started.to_string(),
        journey.interrupted.to_string(),
    ];
    cells.extend(reasons.iter().map(u64::to_string));
    cells
}

/// Writes whole-run histograms (`histograms/totals.hlog`), one entry per scope.
pub fn write_totals(run_dir: &Path, totals: &Snapshot, duration: Duration) -> std::io::Result<()> {
    let mut file = BufWriter::new(File::create(run_dir.join("histograms/totals.hlog"))?);
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment("loadgen whole-run latency histograms, values in microseconds")
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut file, &mut serializer)?;
    let entries = histogram_entries(totals, true);
    write_entries(
        &mut file,
        &mut serializer,
        Duration::ZERO,
        duration,
        &entries,
    )?;
    file.flush()
}

fn write_entries(
    out: &mut BufWriter<File>,
    serializer: &mut V2DeflateSerializer,
    start: Duration,
    length: Duration,
    entries: &[(Tag, &Histogram<u64>)],
) -> std::io::Result<()> {
    // A builder with no settings writes no header: it only frames the entries.
    let mut writer = IntervalLogWriterBuilder::new().begin_log_with(out, serializer)?;
    for (tag, histogram) in entries {
        let tag = tag.to_string();
        writer
            .write_histogram(*histogram, start, length, LogTag::new(&tag))
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

/// Every histogram of a snapshot with its tag: successes as `all` / `step:N`, failures as
/// `failed:all` / `failed:step:N`, iteration durations as `journey:N`; with
/// `generator`, the arrivals' lateness as `generator_lag` too.
fn histogram_entries(s: &Snapshot, generator: bool) -> Vec<(Tag, &Histogram<u64>)> {
    let mut entries: Vec<(Tag, &Histogram<u64>)> = Vec::new();
    let scopes = std::iter::once((Tag::All, &s.overall)).chain(
        s.steps
            .iter()
            .enumerate()
            .map(|(index, step)| (Tag::Step(index), step)),
    );
    for (tag, stats) in scopes {
        if let Some(h) = &stats.failed_latency {
            entries.push((tag.clone().failed(), h));
        }
        if let Some(h) = &stats.latency {
            entries.push((tag, h));
        }
    }
    for (index, journey) in s.journeys.iter().enumerate() {
        if let Some(h) = &journey.duration {
            entries.push((Tag::Journey(index), h));
        }
    }
    if generator && let Some(h) = &s.generator.lag {
        entries.push((Tag::GeneratorLag, h));
    }
    entries
}

fn scope_row(second: u64, scope: &Tag, stats: &RequestStats) -> Vec<String> {
    let ok = Percentiles::of(stats.latency.as_ref());
    let failed = Percentiles::of(stats.failed_latency.as_ref());
    let mut row = vec![
        second.to_string(),
        scope.to_string(),
        stats.requests.to_string(),
        stats.error_total().to_string(),
    ];
    row.extend(stats.errors.iter().map(u64::to_string));
    row.extend(
        [
            ok.p50,
            ok.p95,
            ok.p99,
            ok.max,
            stats.dropped,
            stats.completed,
            failed.p50,
            failed.p99,
            stats.saturated,
            stats.retried_unprocessed,
        ]
        .map(|v| v.to_string()),
    );
    row
}
