//! `prometheus.json`: the platform's own metrics as the run fetched them after its load —
//! each `[[observe]]` query's series over the run — so `loadgen report` re-draws and
//! re-judges without the server. Points are seconds from the run's start (the series'
//! clock), values as Prometheus returned them; a point that is not a finite number (NaN,
//! ±Inf) is left out. A query that failed keeps its reason and no series.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::prometheus::ServerUnit;

/// The file's name in the run directory.
pub(crate) const FILE: &str = "prometheus.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServerData {
    /// The server read.
    pub(crate) url: String,
    /// The run's start, in Unix milliseconds: what a point's second counts from.
    pub(crate) start_unix_ms: i64,
    /// The range queries' step and the scrape interval it rests on, in seconds.
    pub(crate) step_s: f64,
    pub(crate) scrape_interval_s: f64,
    /// Why the server could not be read at all (every query then has no series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) observe: Vec<Observed>,
    /// Each query objective's series over the run and, per window, the evidence that the
    /// platform was scraped in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) objectives: Vec<ObjectiveData>,
}

/// One query objective as fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ObjectiveData {
    pub(crate) name: String,
    pub(crate) query: String,
    #[serde(default)]
    pub(crate) series: Vec<ServerSeries>,
    #[serde(default)]
    pub(crate) windows: Vec<WindowSamples>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// What shows a window has server data: the raw samples Prometheus scraped in it
/// (`count_over_time` at the window's end) of the query's least-scraped selector, counting
/// its best-scraped series. Prometheus fills gaps from its lookback, so points alone prove
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WindowSamples {
    pub(crate) label: String,
    #[serde(default)]
    pub(crate) samples: Option<u64>,
    /// The selector with the fewest samples, named in a `no_data` verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fewest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// One `[[observe]]` query as fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Observed {
    pub(crate) name: String,
    pub(crate) query: String,
    pub(crate) unit: ServerUnit,
    #[serde(default)]
    pub(crate) series: Vec<ServerSeries>,
    /// Why it has no series: the server refused the query, or could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServerSeries {
    pub(crate) labels: BTreeMap<String, String>,
    /// `(second from the run's start, value)`, in time order.
    pub(crate) points: Vec<(f64, f64)>,
}

impl ServerSeries {
    /// The labels as PromQL writes them: `{instance="a", job="b"}` (`{}` for none).
    pub(crate) fn describe(&self) -> String {
        let pairs: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
}

/// The run's server data, when it fetched any.
pub(crate) fn read(run_dir: &Path) -> Result<Option<ServerData>, String> {
    let path = run_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub(crate) fn write(run_dir: &Path, data: &ServerData) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(data).expect("server data serializes");
    crate::util::atomic::write_atomic(&run_dir.join(FILE), &json)
}

/// What summary.json lists of each observed query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedSummary {
    pub name: String,
    pub query: String,
    pub unit: ServerUnit,
    pub series: usize,
    pub points: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ObservedSummary {
    pub(crate) fn of(observed: &Observed) -> ObservedSummary {
        ObservedSummary {
            name: observed.name.clone(),
            query: observed.query.clone(),
            unit: observed.unit,
            series: observed.series.len(),
            points: observed.series.iter().map(|s| s.points.len()).sum(),
            error: observed.error.clone(),
        }
    }
}
