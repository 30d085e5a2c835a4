//! After the load: the platform's own metrics, fetched from its Prometheus once `[chaos]
//! settle` and one scrape interval have passed (so the last seconds have been scraped), and
//! saved as `prometheus.json` — judged and drawn from there, by the run and by `loadgen
//! report` alike. Nothing here fails the run: a server that cannot be read leaves its
//! reason in the file, and what rests on it is judged as missing data.

use std::path::Path;
use std::time::Duration;

use crate::chaos::runner::Occurrence;
use crate::engine::tls::Trust;
use crate::judge::analysis::windows::{fault_intervals, instances};
use crate::plan::Plan;
use crate::plan::prometheus::PrometheusPlan;
use crate::plan::slo::SloSpec;
use crate::puller::Puller;
use crate::record::server::{ObjectiveData, Observed, ServerData, ServerSeries, WindowSamples};

/// The scrape interval assumed when neither the scenario nor the server says it.
const ASSUMED_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// When the run's load began and ended.
pub(super) struct Span {
    /// The engine's start, on the wall clock (series second 0).
    pub(super) start_unix_ms: i64,
    /// The engine's start, on the monotonic clock.
    pub(super) start: tokio::time::Instant,
    /// Seconds from the start to the load's end.
    pub(super) load_s: f64,
    /// The fault occurrences as they happened: the windows query objectives are judged in.
    pub(super) occurrences: Vec<Occurrence>,
}

/// The trust for an https server: its `ca_file`, relative to the scenario file.
fn trust(plan: &Plan, prometheus: &PrometheusPlan) -> Option<Trust> {
    let file = prometheus.ca_file.as_ref()?;
    let base = plan.source.parent().unwrap_or(Path::new("."));
    Some(Trust::File(base.join(file)))
}

/// Fetches every `[[observe]]` query over the run and writes `prometheus.json`; `None` when
/// the plan reads no server. `interrupted` ends the wait for the last scrape early.
pub(super) async fn fetch(
    plan: &Plan,
    run_dir: &Path,
    span: &Span,
    interrupted: impl std::future::Future<Output = ()>,
) -> Option<ServerData> {
    if !plan.reads_server() {
        return None;
    }
    let prometheus = plan.prometheus.as_ref()?;
    let objectives: Vec<&SloSpec> = plan.slos.iter().filter(|s| s.server.is_some()).collect();
    let mut data = ServerData {
        url: prometheus
            .url
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        start_unix_ms: span.start_unix_ms,
        ..ServerData::default()
    };
    if prometheus.url.is_none() {
        let why =
            "no Prometheus to read: [prometheus] names no `url` and the platform's was not found";
        return Some(save(run_dir, failed(plan, data, why.into())));
    }
    let puller = match Puller::new(prometheus, trust(plan, prometheus).as_ref()) {
        Ok(puller) => puller,
        Err(e) => return Some(save(run_dir, failed(plan, data, e))),
    };
    let scrape = match prometheus.scrape_interval {
        Some(interval) => interval,
        None => puller
            .scrape_interval()
            .await
            .unwrap_or(ASSUMED_SCRAPE_INTERVAL),
    };
    let step = scrape.max(Duration::from_secs(1));
    data.scrape_interval_s = scrape.as_secs_f64();
    data.step_s = step.as_secs_f64();
    // The seconds after the load are the "after" windows': settle is part of the run.
    let covered_s = span.load_s + plan.chaos.settle.as_secs_f64();
    let not_before = span.start + Duration::from_secs_f64(covered_s) + scrape;
    tokio::select! {
        () = tokio::time::sleep_until(not_before) => {}
        () = interrupted => {}
    }
    let start = span.start_unix_ms as f64 / 1000.0;
    for observe in &plan.observe {
        let fetched = puller
            .range(&observe.query, start, start + covered_s, step)
            .await;
        data.observe.push(Observed {
            name: observe.name.clone(),
            query: observe.query.clone(),
            unit: observe.unit,
            series: fetched
                .as_ref()
                .map(|series| series.iter().map(|s| relative(s, start)).collect())
                .unwrap_or_default(),
            error: fetched.err(),
        });
    }
    for spec in objectives {
        data.objectives
            .push(objective(&puller, plan, span, spec, start, covered_s, step).await);
    }
    Some(save(run_dir, data))
}

/// One query objective: its series over the run, and per window the samples scraped in it.
async fn objective(
    puller: &Puller,
    plan: &Plan,
    span: &Span,
    spec: &SloSpec,
    start: f64,
    covered_s: f64,
    step: Duration,
) -> ObjectiveData {
    let objective = spec
        .server
        .as_ref()
        .expect("only query objectives are fetched");
    let fetched = puller
        .range(&objective.query, start, start + covered_s, step)
        .await;
    let mut data = ObjectiveData {
        name: spec.name.clone(),
        query: objective.query.clone(),
        series: fetched
            .as_ref()
            .map(|series| series.iter().map(|s| relative(s, start)).collect())
            .unwrap_or_default(),
        windows: Vec::new(),
        error: fetched.err(),
    };
    if data.error.is_some() {
        return data;
    }
    let run_ms = (span.load_s * 1000.0) as u64;
    let intervals = fault_intervals(&span.occurrences, run_ms);
    let settle_ms = plan.chaos.settle.as_millis() as u64;
    for window in instances(&spec.window, &intervals, settle_ms, run_ms.div_ceil(1000)) {
        if window.not_run.is_some() {
            continue;
        }
        let mut evidence = WindowSamples {
            label: window.label.clone(),
            samples: None,
            fewest: None,
            error: None,
        };
        for selector in &objective.selectors {
            let mut samples = 0;
            for range in &window.seconds {
                let query = format!(
                    "max(count_over_time({selector}[{}s]))",
                    range.end - range.start
                );
                match puller.instant(&query, start + range.end as f64).await {
                    Ok(series) => {
                        samples += series
                            .first()
                            .and_then(|s| s.points.first())
                            .map_or(0, |(_, v)| *v as u64);
                    }
                    Err(e) => evidence.error = Some(e),
                }
            }
            if evidence.samples.is_none_or(|fewest| samples < fewest) {
                evidence.samples = Some(samples);
                evidence.fewest = Some(selector.clone());
            }
        }
        data.windows.push(evidence);
    }
    data
}

/// A series on the run's clock, its non-finite points left out.
fn relative(series: &crate::puller::Series, start: f64) -> ServerSeries {
    ServerSeries {
        labels: series.labels.clone(),
        points: series
            .points
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| (((t - start) * 1000.0).round() / 1000.0, *v))
            .collect(),
    }
}

/// Every query without series, for one reason.
fn failed(plan: &Plan, mut data: ServerData, error: String) -> ServerData {
    data.objectives = plan
        .slos
        .iter()
        .filter_map(|s| {
            Some(ObjectiveData {
                name: s.name.clone(),
                query: s.server.as_ref()?.query.clone(),
                series: Vec::new(),
                windows: Vec::new(),
                error: Some(error.clone()),
            })
        })
        .collect();
    data.observe = plan
        .observe
        .iter()
        .map(|o| Observed {
            name: o.name.clone(),
            query: o.query.clone(),
            unit: o.unit,
            series: Vec::new(),
            error: Some(error.clone()),
        })
        .collect();
    data.error = Some(error);
    data
}

fn save(run_dir: &Path, data: ServerData) -> ServerData {
    if let Err(e) = crate::record::server::write(run_dir, &data) {
        crate::util::text::warn(&format!(
            "warning: cannot write {}: {e}\n",
            crate::record::server::FILE
        ));
    }
    data
}
