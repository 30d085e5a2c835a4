//! Remote write (`[output.prometheus] remote_write`), k6's way out for runs that end
//! before a scrape and platforms whose Prometheus cannot reach the generator: every
//! `push_interval` the same families `/metrics` serves, as remote-write 1.0 (protobuf by
//! prost, snappy's raw block format), then once more with the final values after judging.
//!
//! Never blocking the run: batches wait in a bounded queue (the oldest waiting one makes
//! room; counted as dropped) and one task sends them, one at a time and in order, so each
//! series' samples arrive in time order — Prometheus refuses an out-of-order sample. A
//! failure worth retrying (no connection, a timeout, 5xx, 429) retries the same batch with
//! backoff before any later one; any other refusal drops that batch (counted, its reason
//! kept). What happened is written to `remote_write.json` in the run directory and said on
//! stderr when anything was lost.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

mod proto;

use super::families::{Family, Kind, RunLabels, Value, bucket_bound, families};
use super::state::Exported;
use crate::plan::output::RemoteWrite;
use proto::{Label, Sample, TimeSeries, WriteRequest};

/// Batches waiting at most (five minutes at the default interval).
const QUEUE: usize = 300;
/// The longest wait between two tries of one batch.
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);
/// How long the final push may take after judging.
pub(crate) const FINAL_PUSH: Duration = Duration::from_secs(10);

/// What remote write did, as `remote_write.json` keeps it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PushReport {
    pub(crate) url: String,
    /// Batches the receiver accepted, and their samples.
    pub(crate) batches_sent: u64,
    pub(crate) samples_sent: u64,
    /// Tries that failed and were tried again.
    pub(crate) retries: u64,
    /// Batches the receiver refused for good.
    pub(crate) batches_refused: u64,
    /// Batches never sent: pushed out of a full queue, or still waiting at the end.
    pub(crate) batches_dropped: u64,
    /// The last failure, as the receiver or the connection said it.
    pub(crate) last_error: Option<String>,
}

impl PushReport {
    /// Whether every batch made was accepted.
    pub(crate) fn lost_nothing(&self) -> bool {
        self.batches_refused == 0 && self.batches_dropped == 0
    }
}

/// The series of `families` at `at_ms`, as remote write carries them: one per sample
/// (`_total`, `_bucket{le}`, `_sum`, `_count`), labels sorted by name.
pub(crate) fn series(families: &[Family], at_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for family in families {
        let base = match family.seconds {
            true => format!("{}_seconds", family.name),
            false => family.name.to_string(),
        };
        for (labels, value) in &family.series {
            let mut one = |suffix: &str, extra: Option<(&str, String)>, value: f64| {
                let mut labels: Vec<Label> = labels
                    .iter()
                    .map(|(k, v)| Label {
                        name: (*k).to_string(),
                        value: v.clone(),
                    })
                    .chain(extra.map(|(k, v)| Label {
                        name: k.to_string(),
                        value: v,
                    }))
                    .chain(std::iter::once(Label {
                        name: "__name__".into(),
                        value: format!("{base}{suffix}"),
                    }))
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value,
                        timestamp: at_ms,
                    }],
                });
            };
            match (family.kind, value) {
                (Kind::Counter, Value::Count(n)) => one("_total", None, *n as f64),
                (_, Value::Count(n)) => one("", None, *n as f64),
                (_, Value::Gauge(v)) => one("", None, *v),
                (_, Value::Histogram(buckets)) => {
                    let mut cumulative = 0;
                    for (index, count) in buckets.counts.iter().enumerate() {
                        cumulative += count;
                        let bound = bucket_bound(index);
                        let le = match bound.is_finite() {
                            true => bound.to_string(),
                            false => "+Inf".to_string(),
                        };
                        one("_bucket", Some(("le", le)), cumulative as f64);
                    }
                    one("_sum", None, buckets.sum_seconds);
                    one("_count", None, buckets.count as f64);
                }
            }
        }
    }
    out
}

/// One push's body: the write request, snappy-compressed (raw block format).
fn encode(series: Vec<TimeSeries>) -> Bytes {
    let request = WriteRequest { timeseries: series };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any buffer that fits in memory");
    Bytes::from(body)
}

struct Batch {
    body: Bytes,
    samples: u64,
}

/// How one try went.
enum Try {
    Accepted,
    /// Worth trying again: no connection, a timeout, 5xx, 429.
    Again(String),
    /// Refused for good (another 4xx: a bad sample, out of order, unauthorized).
    Refused(String),
}

type Sending = Pin<Box<dyn Future<Output = Try> + Send>>;

/// The pushing task of one run.
pub(crate) struct Pusher {
    finish: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<PushReport>>,
}

impl Pusher {
    pub(crate) fn spawn(
        state: Arc<Mutex<Exported>>,
        run: RunLabels,
        remote: &RemoteWrite,
        client: reqwest::Client,
    ) -> Pusher {
        let (finish, finishing) = oneshot::channel();
        let task = tokio::spawn(push(
            Source { state, run },
            remote.clone(),
            client,
            finishing,
        ));
        Pusher {
            finish: Some(finish),
            task: Some(task),
        }
    }

    /// Pushes the final values, waits for the queue to empty (at most `FINAL_PUSH`), and
    /// writes `remote_write.json`; says on stderr what was lost.
    pub(crate) async fn finish(&mut self, run_dir: &Path) -> Option<PushReport> {
        if let Some(finish) = self.finish.take() {
            let _ = finish.send(());
        }
        let report = self.task.take()?.await.ok()?;
        let json = serde_json::to_vec_pretty(&report).expect("a push report serializes");
        if let Err(e) = crate::util::atomic::write_atomic(&run_dir.join("remote_write.json"), &json)
        {
            crate::util::text::warn(&format!("warning: cannot write remote_write.json: {e}\n"));
        }
        if !report.lost_nothing() {
            crate::util::text::warn(&format!(
                "warning: remote write to {}: {} batch(es) refused, {} dropped ({} sent); last error: {}\n",
                report.url,
                report.batches_refused,
                report.batches_dropped,
                report.batches_sent,
                report.last_error.as_deref().unwrap_or("none")
            ));
        }
        Some(report)
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Where batches come from.
struct Source {
    state: Arc<Mutex<Exported>>,
    run: RunLabels,
}

impl Source {
    /// A batch of every series now; `last_ms` keeps timestamps strictly increasing.
    fn batch(&self, last_ms: &mut i64) -> Batch {
        let now = jiff::Timestamp::now().as_millisecond();
        *last_ms = now.max(*last_ms + 1);
        let state = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        let series = series(&families(&state, &self.run), *last_ms);
        Batch {
            samples: series.len() as u64,
            body: encode(series),
        }
    }
}

/// The pushing loop: a batch every interval into the queue, the oldest sent one at a time;
/// on `finishing`, one last batch and the queue drained within `FINAL_PUSH`.
async fn push(
    source: Source,
    remote: RemoteWrite,
    client: reqwest::Client,
    mut finishing: oneshot::Receiver<()>,
) -> PushReport {
    let mut report = PushReport {
        url: remote.url.to_string(),
        ..PushReport::default()
    };
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut tick = tokio::time::interval(remote.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_ms = 0;
    let mut sending: Option<Sending> = None;
    let mut backoff = Duration::from_millis(250);
    let mut retry_at: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        if sending.is_none() && retry_at.is_none_or(|at| at <= Instant::now()) {
            retry_at = None;
            if let Some(batch) = queue.front() {
                sending = Some(Box::pin(send(
                    client.clone(),
                    remote.clone(),
                    batch.body.clone(),
                )));
            }
        }
        if deadline.is_some() && queue.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if deadline.is_none() => {
                queue.push_back(source.batch(&mut last_ms));
                make_room(&mut queue, sending.is_some(), &mut report);
            }
            result = &mut finishing, if deadline.is_none() => {
                let _ = result;
                queue.push_back(source.batch(&mut last_ms));
                make_room(&mut queue, sending.is_some(), &mut report);
                deadline = Some(Instant::now() + FINAL_PUSH);
            }
            outcome = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                sending = None;
                match outcome {
                    Try::Accepted => {
                        let batch = queue.pop_front().expect("the batch sent is the first");
                        report.batches_sent += 1;
                        report.samples_sent += batch.samples;
                        backoff = Duration::from_millis(250);
                    }
                    Try::Again(error) => {
                        report.retries += 1;
                        report.last_error = Some(error);
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(LONGEST_BACKOFF);
                    }
                    Try::Refused(error) => {
                        queue.pop_front();
                        if report.batches_refused == 0 {
                            // Said at once: a refusal is usually a wrong URL or token,
                            // which every later batch would meet too.
                            crate::util::text::warn(&format!(
                                "warning: remote write to {} refused a batch: {error} (later refusals are counted in remote_write.json)\n",
                                report.url
                            ));
                        }
                        report.batches_refused += 1;
                        report.last_error = Some(error);
                    }
                }
            }
            () = sleep_until_some(retry_at), if retry_at.is_some() && sending.is_none() => {}
            () = sleep_until_some(deadline), if deadline.is_some() => break,
        }
    }
    report.batches_dropped += queue.len() as u64;
    report
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Keeps the queue within `QUEUE`: the oldest batch not being sent goes.
fn make_room(queue: &mut VecDeque<Batch>, front_in_flight: bool, report: &mut PushReport) {
    if queue.len() > QUEUE {
        queue.remove(usize::from(front_in_flight));
        report.batches_dropped += 1;
    }
}

async fn send(client: reqwest::Client, remote: RemoteWrite, body: Bytes) -> Try {
    let mut request = client
        .post(remote.url.clone())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    for (name, value) in &remote.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Try::Accepted,
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let said = format!(
                "{status}: {}",
                crate::util::text::printable(text.trim())
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
            if status.is_server_error() || status.as_u16() == 429 {
                Try::Again(said)
            } else {
                Try::Refused(said)
            }
        }
        Err(e) => Try::Again(crate::util::text::printable(&e.to_string()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::state::Buckets;

    #[test]
    fn samples_are_named_by_convention_with_sorted_labels() {
        let mut buckets = Buckets {
            count: 3,
            sum_seconds: 0.5,
            ..Buckets::default()
        };
        buckets.counts[0] = 1;
        buckets.counts[3] = 2;
        let family = |name, kind, value| Family {
            name,
            help: "",
            kind,
            seconds: matches!(kind, Kind::Histogram),
            series: vec![(
                vec![("scenario", "s".to_string()), ("journey", "j".to_string())],
                value,
            )],
        };
        let series = series(
            &[
                family("loadgen_requests", Kind::Counter, Value::Count(7)),
                family("loadgen_active_users", Kind::Gauge, Value::Gauge(2.0)),
                family(
                    "loadgen_request_duration",
                    Kind::Histogram,
                    Value::Histogram(buckets),
                ),
            ],
            1_000,
        );
        let named = |name: &str| {
            series
                .iter()
                .filter(|s| {
                    s.labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == name)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(named("loadgen_requests_total")[0].samples[0].value, 7.0);
        assert_eq!(named("loadgen_active_users")[0].samples[0].value, 2.0);
        let buckets = named("loadgen_request_duration_seconds_bucket");
        assert_eq!(buckets.len(), 17);
        let inf = buckets
            .iter()
            .find(|s| s.labels.iter().any(|l| l.name == "le" && l.value == "+Inf"))
            .unwrap();
        assert_eq!(inf.samples[0].value, 3.0, "buckets are cumulative");
        assert_eq!(
            named("loadgen_request_duration_seconds_count")[0].samples[0].value,
            3.0
        );
        for one in &series {
            let names: Vec<&str> = one.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted);
            assert_eq!(one.samples[0].timestamp, 1_000);
        }
    }

    #[test]
    fn a_body_is_snappy_over_protobuf() {
        let body = encode(vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "up".into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 5,
            }],
        }]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(request.timeseries[0].labels[0].value, "up");
        assert_eq!(request.timeseries[0].samples[0].timestamp, 5);
    }
}
