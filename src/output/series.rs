//! Streaming outputs written once per final second, so memory stays flat however long the
//! run: `series.csv` (one row per scope per second) and `histograms/intervals.hlog` (the
//! same seconds as HdrHistogram interval-log entries, V2 deflate-compressed).
//!
//! A row's second is the requests' *intended start* (see `metrics::recorder`): its counts,
//! errors, dropped arrivals and latencies are of the requests meant to start in it. Only
//! `completed` (requests that completed in that second) and the journey rows (iterations
//! that ended in it) are keyed by the moment they happened. Latency columns are of
//! successful responses; `failed_*` of failed requests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::metrics::stats::RequestStats;
use crate::metrics::{ErrorClass, Percentiles, Second, Snapshot};

/// The columns after `second, scope, requests, errors` and one per error class.
const COLUMNS_AFTER_CLASSES: [&str; 13] = [
    "p50_us",
    "p95_us",
    "p99_us",
    "max_us",
    "dropped",
    "completed",
    "failed_p50_us",
    "failed_p99_us",
    "saturated",
    "in_flight",
    "scheduled",
    "lag_p99_us",
    "lag_p50_us",
];
/// Of those, the ones only the `all` row fills.
const ALL_ONLY_COLUMNS: usize = 4;

/// Interval-log tag of a scope's failed requests (`failed:all`, `failed:step:N`).
pub fn failed_tag(scope: &str) -> String {
    format!("failed:{scope}")
}

pub struct SeriesWriter {
    csv: csv::Writer<BufWriter<File>>,
    hlog: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl SeriesWriter {
    pub fn create(run_dir: &Path, started: SystemTime) -> std::io::Result<SeriesWriter> {
        std::fs::create_dir_all(run_dir.join("histograms"))?;
        let mut csv =
            csv::Writer::from_writer(BufWriter::new(File::create(run_dir.join("series.csv"))?));
        let mut header: Vec<String> = ["second", "scope", "requests", "errors"]
            .map(String::from)
            .to_vec();
        header.extend(ErrorClass::ALL.iter().map(|c| c.name().to_string()));
        header.extend(COLUMNS_AFTER_CLASSES.map(String::from));
        csv.write_record(&header)?;
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
        Ok(SeriesWriter {
            csv,
            hlog,
            serializer,
        })
    }

    pub fn write_second(&mut self, second: &Second) -> std::io::Result<()> {
        let s = &second.snapshot;
        let lag = Percentiles::of(s.generator.lag.as_ref());
        let mut row = scope_row(second.second, "all", &s.overall);
        row.extend([
            second.in_flight.to_string(),
            s.generator.scheduled.to_string(),
            lag.p99.to_string(),
            lag.p50.to_string(),
        ]);
        self.csv.write_record(&row)?;
        for (index, step) in s
            .steps
            .iter()
            .enumerate()
            .filter(|(_, st)| st.attempts() + st.completed > 0)
        {
            let mut row = scope_row(second.second, &format!("step:{index}"), step);
            row.extend(std::iter::repeat_n(String::new(), ALL_ONLY_COLUMNS));
            self.csv.write_record(&row)?;
        }
        for (index, journey) in s
            .journeys
            .iter()
            .enumerate()
            .filter(|(_, j)| j.completed + j.failed + j.dropped > 0)
        {
            let p = Percentiles::of(journey.duration.as_ref());
            let mut row = vec![
                second.second.to_string(),
                format!("journey:{index}"),
                (journey.completed + journey.failed).to_string(),
                journey.failed.to_string(),
            ];
            row.extend(journey.failed_by.iter().map(u64::to_string));
            row.extend([p.p50, p.p95, p.p99, p.max].map(|v| v.to_string()));
            row.push(journey.dropped.to_string());
            row.extend(std::iter::repeat_n(
                String::new(),
                COLUMNS_AFTER_CLASSES.len() - 5,
            ));
            self.csv.write_record(&row)?;
        }
        for (instance, served) in &s.instances {
            let mut row = vec![
                second.second.to_string(),
                format!("instance:{instance}"),
                served.to_string(),
                "0".into(),
            ];
            row.extend(std::iter::repeat_n(
                String::new(),
                ErrorClass::COUNT + COLUMNS_AFTER_CLASSES.len(),
            ));
            self.csv.write_record(&row)?;
        }
        self.write_histograms(second.second, s)
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

    pub fn finish(mut self) -> std::io::Result<()> {
        self.csv.flush()?;
        self.hlog.flush()
    }
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
    entries: &[(String, &Histogram<u64>)],
) -> std::io::Result<()> {
    // A builder with no settings writes no header: it only frames the entries.
    let mut writer = IntervalLogWriterBuilder::new().begin_log_with(out, serializer)?;
    for (tag, histogram) in entries {
        writer
            .write_histogram(*histogram, start, length, Tag::new(tag))
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

/// Every histogram of a snapshot with its tag: successes as `all` / `step:N`, failures as
/// `failed:all` / `failed:step:N`, iteration durations as `journey:N`; with
/// `generator`, the arrivals' lateness as `generator_lag` too.
fn histogram_entries(s: &Snapshot, generator: bool) -> Vec<(String, &Histogram<u64>)> {
    let mut entries: Vec<(String, &Histogram<u64>)> = Vec::new();
    let scopes = std::iter::once(("all".to_string(), &s.overall)).chain(
        s.steps
            .iter()
            .enumerate()
            .map(|(index, step)| (format!("step:{index}"), step)),
    );
    for (tag, stats) in scopes {
        if let Some(h) = &stats.failed_latency {
            entries.push((failed_tag(&tag), h));
        }
        if let Some(h) = &stats.latency {
            entries.push((tag, h));
        }
    }
    for (index, journey) in s.journeys.iter().enumerate() {
        if let Some(h) = &journey.duration {
            entries.push((format!("journey:{index}"), h));
        }
    }
    if generator && let Some(h) = &s.generator.lag {
        entries.push(("generator_lag".into(), h));
    }
    entries
}

fn scope_row(second: u64, scope: &str, stats: &RequestStats) -> Vec<String> {
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
        ]
        .map(|v| v.to_string()),
    );
    row
}
