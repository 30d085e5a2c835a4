//! What analysis reads back from a run directory, streamed a row at a time: per-second counts
//! from `series.csv` and per-second histograms from `histograms/intervals.hlog`. Nothing
//! here holds the run in memory; what a consumer keeps is its own (and bounded).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use std::io::BufRead;

use super::tag::Tag;
use crate::metrics::stats::check_config;
use crate::metrics::{ErrorClass, NotStarted, NotStartedCounts};

/// One scope's counts in one second (of intended start).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    /// Requests sent.
    pub requests: u64,
    pub errors: u64,
    /// Arrivals dropped at the in-flight cap: failed attempts never sent.
    pub dropped: u64,
    pub by_class: [u64; ErrorClass::COUNT],
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    /// The `all` row's extras (0 elsewhere and in older files).
    pub max_us: u64,
    pub failed_p99_us: u64,
    pub in_flight: u64,
    pub scheduled: u64,
    pub lag_p99_us: u64,
    /// Requests sent once more because the server did not process them (schema 6).
    pub retried_unprocessed: u64,
    /// The iteration accounting of `all` and `journey:N` rows (schema 6): iterations
    /// planned (open: the schedule's; closed: begun), started, not started by reason,
    /// interrupted. `None` in older files and in other rows.
    pub iterations: Option<IterationCounts>,
}

/// One row's iterations meant to start in its second (and interrupted in it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IterationCounts {
    pub planned: u64,
    pub started: u64,
    pub not_started: NotStartedCounts,
    pub interrupted: u64,
}

impl IterationCounts {
    pub(crate) fn add(&mut self, other: &IterationCounts) {
        self.planned += other.planned;
        self.started += other.started;
        for (a, b) in self.not_started.iter_mut().zip(other.not_started.iter()) {
            *a += b;
        }
        self.interrupted += other.interrupted;
    }

    /// What does not add up in `planned = started + dropped + not_started`, if anything.
    pub(crate) fn imbalance(&self, dropped: u64) -> Option<String> {
        let not_started: u64 = self.not_started.iter().sum();
        (self.planned != self.started + dropped + not_started).then(|| {
            format!(
                "planned {} ≠ started {} + dropped {dropped} + not started {not_started}",
                self.planned, self.started
            )
        })
    }
}

impl Counts {
    pub(crate) fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.dropped += other.dropped;
        for (a, b) in self.by_class.iter_mut().zip(other.by_class.iter()) {
            *a += b;
        }
        self.p99_us = self.p99_us.max(other.p99_us);
        if let Some(theirs) = &other.iterations {
            self.iterations.get_or_insert_default().add(theirs);
        }
    }
}

/// Streams every row of `series.csv` to `visit` as (second, scope tag, counts), in file
/// order (seconds ascending). A row whose numbers do not parse is an error naming its line.
pub(crate) fn for_each_row(
    run_dir: &Path,
    mut visit: impl FnMut(u64, &Tag, &Counts),
) -> Result<(), String> {
    let path = run_dir.join("series.csv");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let columns = Columns::of(&headers, &path)?;
    // A last line cut short (loadgen killed mid-write: the file does not end its line) is
    // skipped: the rows before it are whole, since each second is flushed after its rows.
    let torn_tail = !ends_with_newline(&path)?;
    let mut records = reader.records().peekable();
    while let Some(record) = records.next() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        if torn_tail && records.peek().is_none() {
            return Ok(());
        }
        if record.len() != headers.len() {
            return Err(format!(
                "{}:{}: a row of {} fields, the header has {}",
                path.display(),
                record.position().map_or(0, |p| p.line()),
                record.len(),
                headers.len()
            ));
        }
        let line = record.position().map_or(0, |p| p.line());
        let number = |i: usize| -> Result<u64, String> {
            let text = record.get(i).unwrap_or_default();
            if text.is_empty() {
                return Ok(0);
            }
            text.parse::<u64>().map_err(|_| {
                format!(
                    "{}:{line}: `{text}` in column `{}` is not a count",
                    path.display(),
                    &headers[i]
                )
            })
        };
        let counts = columns.counts(&record, number)?;
        let text = record.get(columns.scope).unwrap_or_default();
        let tag = Tag::parse(text).ok_or_else(|| {
            format!(
                "{}:{line}: `{text}` in column `scope` is no scope loadgen writes",
                path.display()
            )
        })?;
        visit(number(columns.second)?, &tag, &counts);
    }
    Ok(())
}

/// Where each column of `series.csv` is: those every file has, and those a later version
/// added (`None` in an older file).
struct Columns {
    second: usize,
    scope: usize,
    requests: usize,
    errors: usize,
    p99: usize,
    p50: Option<usize>,
    p95: Option<usize>,
    dropped: Option<usize>,
    max: Option<usize>,
    failed_p99: Option<usize>,
    in_flight: Option<usize>,
    scheduled: Option<usize>,
    lag_p99: Option<usize>,
    classes: Vec<Option<usize>>,
    retried: Option<usize>,
    planned: Option<usize>,
    started: Option<usize>,
    interrupted: Option<usize>,
    reasons: Vec<Option<usize>>,
}

impl Columns {
    /// The columns of `headers`; a missing required one is an error naming it.
    fn of(headers: &csv::StringRecord, path: &Path) -> Result<Columns, String> {
        let column = |name: &str| headers.iter().position(|h| h == name);
        let required = |name: &str| {
            column(name).ok_or_else(|| format!("{} has no `{name}` column", path.display()))
        };
        Ok(Columns {
            second: required("second")?,
            scope: required("scope")?,
            requests: required("requests")?,
            errors: required("errors")?,
            p99: required("p99_us")?,
            p50: column("p50_us"),
            p95: column("p95_us"),
            dropped: column("dropped"),
            max: column("max_us"),
            failed_p99: column("failed_p99_us"),
            in_flight: column("in_flight"),
            scheduled: column("scheduled"),
            lag_p99: column("lag_p99_us"),
            classes: ErrorClass::ALL.iter().map(|c| column(c.name())).collect(),
            retried: column("retried_unprocessed"),
            planned: column("planned"),
            started: column("started"),
            interrupted: column("interrupted"),
            reasons: NotStarted::ALL.iter().map(|r| column(r.column())).collect(),
        })
    }

    /// One row's counts, each cell read by `number` (an empty cell is 0).
    fn counts(
        &self,
        record: &csv::StringRecord,
        number: impl Fn(usize) -> Result<u64, String>,
    ) -> Result<Counts, String> {
        let optional = |i: Option<usize>| i.map_or(Ok(0), &number);
        let mut counts = Counts {
            requests: number(self.requests)?,
            errors: number(self.errors)?,
            dropped: optional(self.dropped)?,
            p50_us: optional(self.p50)?,
            p95_us: optional(self.p95)?,
            p99_us: number(self.p99)?,
            max_us: optional(self.max)?,
            failed_p99_us: optional(self.failed_p99)?,
            in_flight: optional(self.in_flight)?,
            scheduled: optional(self.scheduled)?,
            lag_p99_us: optional(self.lag_p99)?,
            retried_unprocessed: optional(self.retried)?,
            ..Counts::default()
        };
        for (index, col) in self.classes.iter().enumerate() {
            counts.by_class[index] = optional(*col)?;
        }
        // Only rows that fill the iteration columns carry them (step and instance rows
        // leave them empty).
        if let Some(planned) = self
            .planned
            .filter(|i| !record.get(*i).unwrap_or_default().is_empty())
        {
            let mut iterations = IterationCounts {
                planned: number(planned)?,
                started: optional(self.started)?,
                interrupted: optional(self.interrupted)?,
                ..IterationCounts::default()
            };
            for (index, col) in self.reasons.iter().enumerate() {
                iterations.not_started[index] = optional(*col)?;
            }
            counts.iterations = Some(iterations);
        }
        Ok(counts)
    }
}

/// Whether a file's last byte ends a line (an empty file does).
fn ends_with_newline(path: &Path) -> Result<bool, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let length = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if length == 0 {
        return Ok(true);
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(length - 1))
        .and_then(|_| file.read_exact(&mut last))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(last[0] == b'\n')
}

/// The last second `series.csv` has a row for, read from the file's tail (rows are written
/// in second order), so analysis can lay out its windows before its one pass.
pub(crate) fn last_second(run_dir: &Path) -> Result<Option<u64>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let path = run_dir.join("series.csv");
    let mut file =
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let length = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    // A row is well under a kilobyte; 64 KiB always holds the last whole one.
    let from = length.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(64 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Lossy: the window may begin inside a multi-byte character of a scope name.
    let tail = String::from_utf8_lossy(&bytes);
    // Skip a partial first line (when the tail starts mid-file) and the header.
    let whole = if from > 0 {
        tail.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &tail
    };
    let last = whole
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("second,"));
    Ok(last.and_then(|line| line.split(',').next()?.parse().ok()))
}

/// The run's "all" scope for the report's charts, downsampled as it streams past so a day
/// of seconds is at most `MAX_POINTS` points: each point covers `width` seconds, with
/// counts as the bucket's mean per second and latencies as its worst second.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChartSeries {
    /// Seconds per point.
    pub width: u64,
    run_seconds: u64,
    /// Until `finish`, counts are the bucket's sums.
    points: Vec<ChartPoint>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ChartPoint {
    /// The bucket's first second.
    pub second: u64,
    pub requests: f64,
    pub errors: f64,
    pub dropped: f64,
    /// Arrivals the open model scheduled (per second, like the counts).
    pub scheduled: f64,
    /// Iterations planned (open: the schedule's arrivals; closed: begun), and of those
    /// the ones that never started, per second of intended start (schema 6 files).
    pub planned: f64,
    pub not_started: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// p99 of the failed requests' latency.
    pub failed_p99_us: u64,
    /// Requests in flight at the second's end (the bucket's highest).
    pub in_flight: u64,
    /// p99 of how late arrivals left after their intended time.
    pub lag_p99_us: u64,
    /// Responses per second by the instance that served them (`[target] instance_header`).
    pub instances: std::collections::BTreeMap<String, f64>,
    /// Per step (by its index in the plan, `step:N`): requests per second and the
    /// bucket's worst p50 / p99 of successes.
    pub steps: std::collections::BTreeMap<usize, StepPoint>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct StepPoint {
    pub requests: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl ChartSeries {
    pub(crate) const MAX_POINTS: u64 = 1200;

    pub(crate) fn new(run_seconds: u64) -> ChartSeries {
        ChartSeries {
            width: run_seconds.div_ceil(Self::MAX_POINTS).max(1),
            run_seconds,
            points: Vec::new(),
        }
    }

    /// The points, counts now per second: a bucket's sums over the seconds it spans (the
    /// last may be short; a second without a row counts as zero).
    pub(crate) fn finish(mut self) -> Vec<ChartPoint> {
        for point in &mut self.points {
            let end = (point.second + self.width).min(self.run_seconds.max(point.second + 1));
            let seconds = (end - point.second) as f64;
            point.requests /= seconds;
            point.errors /= seconds;
            point.dropped /= seconds;
            point.scheduled /= seconds;
            point.planned /= seconds;
            point.not_started /= seconds;
            for served in point.instances.values_mut() {
                *served /= seconds;
            }
            for step in point.steps.values_mut() {
                step.requests /= seconds;
            }
        }
        self.points
    }

    /// The point `second` belongs to; seconds arrive in ascending order.
    fn point(&mut self, second: u64) -> &mut ChartPoint {
        let bucket = second / self.width * self.width;
        if self.points.last().is_none_or(|p| p.second != bucket) {
            self.points.push(ChartPoint {
                second: bucket,
                ..ChartPoint::default()
            });
        }
        self.points.last_mut().expect("pushed above")
    }

    /// One second of the "all" scope.
    pub(crate) fn add(&mut self, second: u64, counts: &Counts) {
        let point = self.point(second);
        point.requests += counts.requests as f64;
        point.errors += counts.errors as f64;
        point.dropped += counts.dropped as f64;
        point.scheduled += counts.scheduled as f64;
        if let Some(iterations) = &counts.iterations {
            point.planned += iterations.planned as f64;
            point.not_started += iterations.not_started.iter().sum::<u64>() as f64;
        }
        point.p50_us = point.p50_us.max(counts.p50_us);
        point.p95_us = point.p95_us.max(counts.p95_us);
        point.p99_us = point.p99_us.max(counts.p99_us);
        point.max_us = point.max_us.max(counts.max_us);
        point.failed_p99_us = point.failed_p99_us.max(counts.failed_p99_us);
        point.in_flight = point.in_flight.max(counts.in_flight);
        point.lag_p99_us = point.lag_p99_us.max(counts.lag_p99_us);
    }

    /// One second of a `step:N` scope.
    pub(crate) fn add_step(&mut self, second: u64, index: usize, counts: &Counts) {
        let step = self.point(second).steps.entry(index).or_default();
        step.requests += counts.requests as f64;
        step.p50_us = step.p50_us.max(counts.p50_us);
        step.p99_us = step.p99_us.max(counts.p99_us);
    }

    /// One second of an `instance:NAME` scope: the responses that instance served.
    pub(crate) fn add_instance(&mut self, second: u64, instance: &str, served: u64) {
        *self
            .point(second)
            .instances
            .entry(instance.to_string())
            .or_default() += served as f64;
    }
}

impl Counts {
    /// Attempts: requests sent plus arrivals dropped.
    pub(crate) fn attempts(&self) -> u64 {
        self.requests + self.dropped
    }

    /// Failed attempts: failed requests plus arrivals dropped.
    pub(crate) fn failed(&self) -> u64 {
        self.errors + self.dropped
    }
}

/// Streams every (second, tag, histogram) of the interval log to `visit`, a line at a
/// time. A line that does not decode, or a histogram of another configuration than the
/// run's (`metrics::stats::check_config`), is an error naming the line.
pub(crate) fn for_each_interval(
    run_dir: &Path,
    visit: impl FnMut(u64, &Tag, &Histogram<u64>),
) -> Result<(), String> {
    for_each_histogram(&run_dir.join("histograms/intervals.hlog"), visit)
}

/// Every (start second, tag, histogram) of an interval-log file (`intervals.hlog`, or the
/// whole-run `totals.hlog`), checked as `for_each_interval` checks them.
pub(crate) fn for_each_histogram(
    path: &Path,
    mut visit: impl FnMut(u64, &Tag, &Histogram<u64>),
) -> Result<(), String> {
    let path = path.to_path_buf();
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut deserializer = Deserializer::new();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(file);
    let mut number = 0usize;
    let mut torn: Option<String> = None;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let at = |why: String| format!("{}:{number}: {why}", path.display());
        if line.starts_with('#') || line.starts_with('"') || line.trim().is_empty() {
            continue;
        }
        // A last line cut short (loadgen killed mid-write) is skipped; one followed by
        // another entry is an error.
        if let Some(earlier) = torn.take() {
            return Err(earlier);
        }
        if !line.ends_with('\n') {
            torn = Some(at("a line cut short".into()));
            continue;
        }
        let Some(entry) = IntervalLogIterator::new(line.as_bytes()).next() else {
            continue;
        };
        let interval = match entry {
            Ok(LogEntry::Interval(interval)) => interval,
            Ok(_) => continue,
            Err(e) => return Err(at(format!("not an interval-log entry ({e:?})"))),
        };
        let Some(tag) = interval.tag() else { continue };
        let tag = Tag::parse(tag.as_str())
            .ok_or_else(|| at(format!("`{}` is no tag loadgen writes", tag.as_str())))?;
        let decoded = STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| at(format!("bad base64 in the histogram: {e}")))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut decoded.as_slice())
            .map_err(|e| at(format!("bad histogram: {e:?}")))?;
        check_config(&histogram).map_err(at)?;
        visit(interval.start_timestamp().as_secs(), &tag, &histogram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir_with(csv: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("series.csv"), csv).unwrap();
        dir
    }

    #[test]
    fn the_last_second_is_read_from_the_tail_of_a_long_series() {
        let mut csv = String::from("second,scope,requests,errors,p99_us\n");
        for second in 0..5_000 {
            csv += &format!("{second},all,10,0,900\n{second},step:0,10,0,900\n");
        }
        assert!(csv.len() > 64 * 1024, "the tail window starts mid-file");
        let dir = run_dir_with(&csv);
        assert_eq!(last_second(dir.path()).unwrap(), Some(4_999));
        let empty = run_dir_with("second,scope,requests,errors,p99_us\n");
        assert_eq!(last_second(empty.path()).unwrap(), None);
    }

    #[test]
    fn a_bad_count_names_its_line_and_column() {
        let dir =
            run_dir_with("second,scope,requests,errors,p99_us\n0,all,5,0,10\n1,all,x5,0,10\n");
        let mut seen = 0;
        let error = for_each_row(dir.path(), |_, _, _| seen += 1).unwrap_err();
        assert_eq!(seen, 1, "the good row before it was visited");
        assert!(
            error.ends_with(":3: `x5` in column `requests` is not a count"),
            "{error}"
        );
    }

    #[test]
    fn charts_downsample_a_day_to_at_most_max_points() {
        let day = 86_400;
        let mut chart = ChartSeries::new(day);
        assert_eq!(chart.width, 72);
        for second in 0..day {
            // 100 requests a second, one 1 s spike of 500 ms at second 1000.
            let p99_us = if second == 1_000 { 500_000 } else { 2_000 };
            chart.add(
                second,
                &Counts {
                    requests: 100,
                    p99_us,
                    ..Counts::default()
                },
            );
        }
        let points = chart.finish();
        assert_eq!(points.len() as u64, ChartSeries::MAX_POINTS);
        assert!(points.iter().all(|p| (p.requests - 100.0).abs() < 1e-9));
        let spike = &points[(1_000 / 72) as usize];
        assert_eq!(spike.p99_us, 500_000, "a bucket keeps its worst second");
        assert_eq!(points[0].p99_us, 2_000);
    }

    #[test]
    fn a_short_last_bucket_is_a_mean_over_the_seconds_it_spans() {
        let mut chart = ChartSeries::new(2_401); // width 3: the last bucket is second 2400 alone
        assert_eq!(chart.width, 3);
        let ten = Counts {
            requests: 10,
            ..Counts::default()
        };
        chart.add(0, &ten); // seconds 1 and 2 have no row: zero
        chart.add(2_400, &ten);
        let points = chart.finish();
        assert!((points[0].requests - 10.0 / 3.0).abs() < 1e-9);
        assert!((points[1].requests - 10.0).abs() < 1e-9);
    }
}
