//! Streaming outputs written once per completed second, so memory stays flat however long
//! the run: `series.csv` (one row per scope per second) and `histograms/intervals.hlog`
//! (the same seconds as HdrHistogram interval-log entries, V2 deflate-compressed).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::metrics::{ErrorClass, Percentiles, Second, Snapshot};

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
        header.extend(
            [
                "p50_us",
                "p95_us",
                "p99_us",
                "max_us",
                "in_flight",
                "scheduled",
                "dropped",
                "lag_p99_us",
            ]
            .map(String::from),
        );
        csv.write_record(&header)?;
        let mut hlog = BufWriter::new(File::create(run_dir.join("histograms/intervals.hlog"))?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("loadgen per-second latency histograms, values in microseconds")
            .add_comment("tags: all | journey:N | step:N (names in summary.json \"scopes\")")
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
        let generator = Percentiles::of(s.generator.lag.as_ref());
        let mut row = scope_row(
            second.second,
            "all",
            s.overall.requests,
            s.overall.error_total(),
            &s.overall.errors,
            s.overall.latency.as_ref(),
        );
        row.extend([
            second.in_flight.to_string(),
            s.generator.scheduled.to_string(),
            s.generator.dropped.to_string(),
            generator.p99.to_string(),
        ]);
        self.csv.write_record(&row)?;
        for (index, step) in s.steps.iter().enumerate().filter(|(_, st)| st.requests > 0) {
            let mut row = scope_row(
                second.second,
                &format!("step:{index}"),
                step.requests,
                step.error_total(),
                &step.errors,
                step.latency.as_ref(),
            );
            row.extend(std::iter::repeat_n(String::new(), 4));
            self.csv.write_record(&row)?;
        }
        for (index, journey) in s
            .journeys
            .iter()
            .enumerate()
            .filter(|(_, j)| j.completed + j.failed > 0)
        {
            let mut row = scope_row(
                second.second,
                &format!("journey:{index}"),
                journey.completed + journey.failed,
                journey.failed,
                &journey.failed_by,
                journey.duration.as_ref(),
            );
            row.extend(std::iter::repeat_n(String::new(), 4));
            self.csv.write_record(&row)?;
        }
        for (instance, served) in &s.instances {
            let mut row = vec![
                second.second.to_string(),
                format!("instance:{instance}"),
                served.to_string(),
                "0".into(),
            ];
            row.extend(std::iter::repeat_n(String::new(), ErrorClass::COUNT + 8));
            self.csv.write_record(&row)?;
        }
        self.write_histograms(second.second, s)
    }

    fn write_histograms(&mut self, second: u64, s: &Snapshot) -> std::io::Result<()> {
        let start = Duration::from_secs(second);
        let mut entries: Vec<(String, &Histogram<u64>)> = Vec::new();
        if let Some(h) = &s.overall.latency {
            entries.push(("all".into(), h));
        }
        for (index, step) in s.steps.iter().enumerate() {
            if let Some(h) = &step.latency {
                entries.push((format!("step:{index}"), h));
            }
        }
        for (index, journey) in s.journeys.iter().enumerate() {
            if let Some(h) = &journey.duration {
                entries.push((format!("journey:{index}"), h));
            }
        }
        write_entries(
            &mut self.hlog,
            &mut self.serializer,
            start,
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
    let mut entries: Vec<(String, &Histogram<u64>)> = Vec::new();
    if let Some(h) = &totals.overall.latency {
        entries.push(("all".into(), h));
    }
    for (index, step) in totals.steps.iter().enumerate() {
        if let Some(h) = &step.latency {
            entries.push((format!("step:{index}"), h));
        }
    }
    for (index, journey) in totals.journeys.iter().enumerate() {
        if let Some(h) = &journey.duration {
            entries.push((format!("journey:{index}"), h));
        }
    }
    if let Some(h) = &totals.generator.lag {
        entries.push(("generator_lag".into(), h));
    }
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

fn scope_row(
    second: u64,
    scope: &str,
    requests: u64,
    errors: u64,
    by_class: &[u64],
    latency: Option<&Histogram<u64>>,
) -> Vec<String> {
    let p = Percentiles::of(latency);
    let mut row = vec![
        second.to_string(),
        scope.to_string(),
        requests.to_string(),
        errors.to_string(),
    ];
    row.extend(by_class.iter().map(u64::to_string));
    row.extend([p.p50, p.p95, p.p99, p.max].map(|v| v.to_string()));
    row
}
