//! What analysis reads back from a run directory: per-second counts from `series.csv` and,
//! streamed, the per-second histograms of `histograms/intervals.hlog`. Nothing but counts is
//! held per second, so memory stays small for long runs.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use std::io::BufRead;

use crate::metrics::ErrorClass;
use crate::metrics::stats::check_config;

/// One scope's counts in one second (of intended start).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests sent.
    pub requests: u64,
    pub errors: u64,
    /// Arrivals dropped at the in-flight cap: failed attempts never sent.
    pub dropped: u64,
    pub by_class: [u64; ErrorClass::COUNT],
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.dropped += other.dropped;
        for (a, b) in self.by_class.iter_mut().zip(other.by_class.iter()) {
            *a += b;
        }
        self.p99_us = self.p99_us.max(other.p99_us);
    }
}

/// `series.csv`: second → scope tag → counts.
pub type Series = BTreeMap<u64, BTreeMap<String, Counts>>;

pub fn read_series(run_dir: &Path) -> Result<Series, String> {
    let path = run_dir.join("series.csv");
    let mut reader = csv::Reader::from_path(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (second, scope, requests, errors, p99) = (
        column("second").ok_or("series.csv has no `second` column")?,
        column("scope").ok_or("series.csv has no `scope` column")?,
        column("requests").ok_or("series.csv has no `requests` column")?,
        column("errors").ok_or("series.csv has no `errors` column")?,
        column("p99_us").ok_or("series.csv has no `p99_us` column")?,
    );
    let (p50, p95, dropped) = (column("p50_us"), column("p95_us"), column("dropped"));
    let classes: Vec<Option<usize>> = ErrorClass::ALL.iter().map(|c| column(c.name())).collect();
    let mut series = Series::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        let number = |i: usize| {
            record
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut counts = Counts {
            requests: number(requests),
            errors: number(errors),
            dropped: dropped.map_or(0, number),
            p50_us: p50.map_or(0, number),
            p95_us: p95.map_or(0, number),
            p99_us: number(p99),
            ..Counts::default()
        };
        for (index, col) in classes.iter().enumerate() {
            if let Some(col) = col {
                counts.by_class[index] = number(*col);
            }
        }
        series
            .entry(number(second))
            .or_default()
            .insert(record.get(scope).unwrap_or_default().to_string(), counts);
    }
    Ok(series)
}

impl Counts {
    /// Attempts: requests sent plus arrivals dropped.
    pub fn attempts(&self) -> u64 {
        self.requests + self.dropped
    }

    /// Failed attempts: failed requests plus arrivals dropped.
    pub fn failed(&self) -> u64 {
        self.errors + self.dropped
    }
}

/// Streams every (second, tag, histogram) of the interval log to `visit`, a line at a
/// time. A line that does not decode, or a histogram of another configuration than the
/// run's (`metrics::stats::check_config`), is an error naming the line.
pub fn for_each_interval(
    run_dir: &Path,
    mut visit: impl FnMut(u64, &str, &Histogram<u64>),
) -> Result<(), String> {
    let path = run_dir.join("histograms/intervals.hlog");
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut deserializer = Deserializer::new();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(file);
    let mut number = 0usize;
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
        let Some(entry) = IntervalLogIterator::new(line.as_bytes()).next() else {
            continue;
        };
        let interval = match entry {
            Ok(LogEntry::Interval(interval)) => interval,
            Ok(_) => continue,
            Err(e) => return Err(at(format!("not an interval-log entry ({e:?})"))),
        };
        let Some(tag) = interval.tag() else { continue };
        let decoded = decode_base64(interval.encoded_histogram())
            .ok_or_else(|| at("bad base64 in the histogram".into()))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut decoded.as_slice())
            .map_err(|e| at(format!("bad histogram: {e:?}")))?;
        check_config(&histogram).map_err(at)?;
        visit(
            interval.start_timestamp().as_secs(),
            tag.as_str(),
            &histogram,
        );
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}
