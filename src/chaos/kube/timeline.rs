//! Readiness over time for a selector's pods: a LIST, then a WATCH from its resourceVersion,
//! recording every change of (ready, total) with its offset from the run's start, and when
//! each replacement pod (one not in the first LIST) became Ready. From that a run reports
//! failover (how far and how long readiness dipped) and recovery time.
//!
//! Offsets are taken on this machine's clock when an event arrives, so they line up with the
//! load generator's own samples; the server's clock is only used for a pod's start-up time
//! (Ready transition minus creation), which both come from the same clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use serde::{Serialize, Serializer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::select::{self, PodSelector};
use crate::chaos::ChaosError;

/// One change of the selector's readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReadinessPoint {
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    pub ready: usize,
    /// Pods that exist, terminating ones included.
    pub total: usize,
}

/// A pod that appeared after the watch began and became Ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodReady {
    pub pod: String,
    /// When this watch first saw it.
    #[serde(serialize_with = "seconds")]
    pub seen_at: Duration,
    /// When this watch saw it Ready.
    #[serde(serialize_with = "seconds")]
    pub ready_at: Duration,
    /// Ready transition minus creation, both by the API server's clock.
    #[serde(serialize_with = "maybe_seconds")]
    pub startup: Option<Duration>,
}

/// How far and for how long readiness fell below where it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dip {
    /// Ready pods when the watch began.
    pub baseline: usize,
    pub lowest: usize,
    #[serde(serialize_with = "seconds")]
    pub started: Duration,
    /// When readiness was back at the baseline; None: not within the watch.
    #[serde(serialize_with = "maybe_seconds")]
    pub recovered: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadinessTimeline {
    pub selector: PodSelector,
    /// Pods present at the first LIST, by name.
    pub initial: Vec<String>,
    pub points: Vec<ReadinessPoint>,
    pub replacements: Vec<PodReady>,
    /// API trouble met while watching (the watch resumed after each), with its offset.
    pub errors: Vec<(f64, String)>,
}

impl ReadinessTimeline {
    /// The first dip below the initial ready count and when it ended.
    pub fn dip(&self) -> Option<Dip> {
        let baseline = self.points.first()?.ready;
        let mut points = self.points.iter().skip_while(|p| p.ready >= baseline);
        let first = points.next()?;
        let mut dip = Dip {
            baseline,
            lowest: first.ready,
            started: first.at,
            recovered: None,
        };
        for point in points {
            if point.ready >= baseline {
                dip.recovered = Some(point.at);
                break;
            }
            dip.lowest = dip.lowest.min(point.ready);
        }
        Some(dip)
    }
}

/// What the watch knows about each pod.
struct Tracker {
    start: Instant,
    timeline: ReadinessTimeline,
    /// name → ready
    pods: BTreeMap<String, bool>,
    initial: BTreeSet<String>,
    /// Replacement pods seen but not yet Ready: name → first seen.
    pending: BTreeMap<String, Duration>,
}

impl Tracker {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// `now` is the event's arrival offset, shared with the point it produces so a
    /// replacement's `ready_at` equals the offset of the recovery point.
    fn upsert(&mut self, pod: &Pod, now: Duration) {
        let info = select::pod_info(pod);
        let is_new = !self.initial.contains(&info.name)
            && !self
                .timeline
                .replacements
                .iter()
                .any(|r| r.pod == info.name);
        if is_new {
            let seen_at = *self.pending.entry(info.name.clone()).or_insert(now);
            if info.ready {
                self.pending.remove(&info.name);
                self.timeline.replacements.push(PodReady {
                    pod: info.name.clone(),
                    seen_at,
                    ready_at: now,
                    startup: startup(pod),
                });
            }
        }
        self.pods.insert(info.name, info.ready);
    }

    fn remove(&mut self, pod: &Pod) {
        if let Some(name) = &pod.metadata.name {
            self.pods.remove(name);
            self.pending.remove(name);
        }
    }

    /// Appends a point when (ready, total) changed.
    fn record(&mut self, at: Duration) {
        let ready = self.pods.values().filter(|r| **r).count();
        let total = self.pods.len();
        let last = self.timeline.points.last();
        if last.is_none_or(|p| p.ready != ready || p.total != total) {
            self.timeline
                .points
                .push(ReadinessPoint { at, ready, total });
        }
    }

    fn error(&mut self, message: String) {
        let at = self.now().as_secs_f64();
        self.timeline.errors.push((at, message));
    }

    /// Replaces the known pods with a fresh LIST (after the watch lost its place).
    fn relist(&mut self, pods: Vec<Pod>) {
        let now = self.now();
        self.pods.clear();
        for pod in &pods {
            self.upsert(pod, now);
        }
        self.record(now);
    }
}

/// Ready transition minus creation, by the server's clock.
fn startup(pod: &Pod) -> Option<Duration> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    let span = ready.duration_since(created);
    Duration::try_from(span).ok()
}

/// Sleeps unless cancelled first; false when cancelled.
async fn pause(cancel: &CancellationToken, period: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(period) => true,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one list-then-watch loop: its arms share the resource version and the ready set, and read best as one"
)]
pub(super) async fn watch(
    client: &kube::Client,
    selector: &PodSelector,
    start: Instant,
    cancel: CancellationToken,
) -> Result<ReadinessTimeline, ChaosError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &selector.namespace);
    let list_params = selector.list_params();
    // The first LIST must work: a watch on a selector we cannot read is a setup error.
    let first = api
        .list(&list_params)
        .await
        .map_err(|e| super::api_error(&format!("listing {selector}"), e))?;
    let mut version = first.metadata.resource_version.clone().unwrap_or_default();
    let initial: BTreeSet<String> = first
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut tracker = Tracker {
        start,
        timeline: ReadinessTimeline {
            selector: selector.clone(),
            initial: initial.iter().cloned().collect(),
            points: Vec::new(),
            replacements: Vec::new(),
            errors: Vec::new(),
        },
        pods: BTreeMap::new(),
        initial,
        pending: BTreeMap::new(),
    };
    tracker.relist(first.items);

    let mut watch_params = WatchParams::default();
    if !selector.labels.is_empty() {
        watch_params = watch_params.labels(&selector.labels);
    }
    if let Some(fields) = &selector.fields {
        watch_params = watch_params.fields(fields);
    }
    let backoff = Duration::from_secs(1);
    let mut need_list = false;
    'watching: while !cancel.is_cancelled() {
        if need_list {
            if !pause(&cancel, backoff).await {
                break;
            }
            match api.list(&list_params).await {
                Ok(list) => {
                    version = list.metadata.resource_version.clone().unwrap_or_default();
                    tracker.relist(list.items);
                    need_list = false;
                }
                Err(e) => {
                    tracker.error(format!("re-listing {selector}: {e}"));
                    continue;
                }
            }
        }
        let opened = tokio::select! {
            _ = cancel.cancelled() => break,
            opened = api.watch(&watch_params, &version) => opened,
        };
        let stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracker.error(format!("watching {selector}: {e}"));
                need_list = true;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut events = 0usize;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break 'watching,
                next = stream.next() => next,
            };
            let event = match next {
                // The server ends every watch after timeoutSeconds: pick up where it left.
                None => break,
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracker.error(format!("watch stream of {selector}: {e}"));
                    need_list = true;
                    break;
                }
            };
            events += 1;
            let now = tracker.now();
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    version = pod.metadata.resource_version.clone().unwrap_or(version);
                    tracker.upsert(&pod, now);
                }
                WatchEvent::Deleted(pod) => {
                    version = pod.metadata.resource_version.clone().unwrap_or(version);
                    tracker.remove(&pod);
                }
                WatchEvent::Bookmark(bookmark) => {
                    version = bookmark.metadata.resource_version;
                }
                WatchEvent::Error(status) => {
                    // 410 Gone: our resourceVersion is too old; only a new LIST helps.
                    tracker.error(format!(
                        "watch of {selector}: {} ({})",
                        status.message, status.code
                    ));
                    need_list = true;
                    break;
                }
            }
            tracker.record(now);
        }
        // A watch that ended without a single event is not worth reopening at full speed.
        if events == 0 && !need_list && !pause(&cancel, backoff).await {
            break;
        }
    }
    Ok(tracker.timeline)
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn maybe_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(points: &[(u64, usize, usize)]) -> ReadinessTimeline {
        ReadinessTimeline {
            selector: PodSelector {
                namespace: "shop".into(),
                labels: "app=api".into(),
                fields: None,
            },
            initial: vec![],
            points: points
                .iter()
                .map(|&(ms, ready, total)| ReadinessPoint {
                    at: Duration::from_millis(ms),
                    ready,
                    total,
                })
                .collect(),
            replacements: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn a_dip_has_a_start_a_floor_and_an_end() {
        let t = timeline(&[
            (0, 3, 3),
            (100, 2, 3),
            (150, 2, 4),
            (200, 1, 3),
            (900, 3, 3),
        ]);
        let dip = t.dip().unwrap();
        assert_eq!(dip.baseline, 3);
        assert_eq!(dip.lowest, 1);
        assert_eq!(dip.started, Duration::from_millis(100));
        assert_eq!(dip.recovered, Some(Duration::from_millis(900)));

        assert!(timeline(&[(0, 3, 3), (5, 3, 4)]).dip().is_none());
        let open = timeline(&[(0, 2, 2), (10, 1, 2)]).dip().unwrap();
        assert_eq!(open.recovered, None);
    }

    #[test]
    fn startup_is_ready_transition_minus_creation() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-22T10:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-11-22T10:00:07Z"}]}
        }))
        .unwrap();
        assert_eq!(startup(&pod), Some(Duration::from_secs(7)));
    }
}
