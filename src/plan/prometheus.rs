//! Prometheus in: where the platform's own metrics are read (`[prometheus]`) and which
//! series a run keeps beside its own (`[[observe]]`). Pure data; fetched after the load by
//! the puller, saved in the run directory, judged and drawn from there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[prometheus]`.
#[derive(Debug, Clone)]
pub struct PrometheusPlan {
    /// The server's base URL (`http://127.0.0.1:9090`); the API is under `/api/v1/`.
    /// `None`: the platform's own, which its adapter names (the local stack's state file).
    pub url: Option<url::Url>,
    /// Each request's limit (default 10 s), also sent as the query's server-side `timeout`.
    pub timeout: Duration,
    /// Sent with every request (an `Authorization`): `${ENV}` references, redacted.
    pub headers: Vec<(String, String)>,
    /// PEM certificates to trust for an https server, relative to the scenario file.
    pub ca_file: Option<PathBuf>,
    /// How often the platform is scraped; `None`: asked from the server (its global
    /// `scrape_interval`). The step of every range query is at least this and 1 s.
    pub scrape_interval: Option<Duration>,
    /// The address the URL's host was allowed at (prepare): connections go there only.
    pub resolved: Option<SocketAddr>,
}

impl PrometheusPlan {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

/// `[[observe]]`: a PromQL query fetched over the run, saved, and drawn beside the client's
/// charts with the same fault bands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observe {
    pub name: String,
    pub query: String,
    pub unit: ServerUnit,
}

/// The unit a server query's values are in: how they are read, drawn and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerUnit {
    /// Seconds (Prometheus's base unit): drawn and compared as durations.
    #[serde(rename = "s")]
    Seconds,
    /// A ratio from 0 to 1; an objective's `%` is read as hundredths.
    #[serde(rename = "ratio")]
    Ratio,
    #[serde(rename = "count")]
    Count,
    #[serde(rename = "bytes")]
    Bytes,
    /// A rate per second.
    #[serde(rename = "/s")]
    PerSecond,
}

impl ServerUnit {
    pub const ALL: [ServerUnit; 5] = [
        ServerUnit::Seconds,
        ServerUnit::Ratio,
        ServerUnit::Count,
        ServerUnit::Bytes,
        ServerUnit::PerSecond,
    ];

    /// As written in a scenario.
    pub fn name(self) -> &'static str {
        match self {
            ServerUnit::Seconds => "s",
            ServerUnit::Ratio => "ratio",
            ServerUnit::Count => "count",
            ServerUnit::Bytes => "bytes",
            ServerUnit::PerSecond => "/s",
        }
    }

    pub fn parse(text: &str) -> Option<ServerUnit> {
        ServerUnit::ALL.into_iter().find(|u| u.name() == text)
    }
}
