//! Where a run's figures go besides its directory: Prometheus, by scrape or by push.

use std::net::SocketAddr;
use std::time::Duration;

/// `[output]`.
#[derive(Debug, Clone, Default)]
pub struct OutputPlan {
    pub prometheus: PrometheusOut,
}

/// `[output.prometheus]`.
#[derive(Debug, Clone, Default)]
pub struct PrometheusOut {
    /// Serve `/metrics` on this address (`--metrics-listen` overrides it).
    pub listen: Option<SocketAddr>,
    /// Push the same series to a remote-write receiver.
    pub remote_write: Option<RemoteWrite>,
}

/// A Prometheus remote-write receiver (`…/api/v1/write`), under the run's allow-list.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    pub url: url::Url,
    /// How often the series are pushed (default 1 s).
    pub interval: Duration,
    /// Sent with every push (an `Authorization`, a tenant): values may be `${ENV}`
    /// references, redacted from the run directory as every header is.
    pub headers: Vec<(String, String)>,
    /// The address the URL's host was allowed at (prepare): connections go there only.
    pub resolved: Option<SocketAddr>,
}

impl RemoteWrite {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
}
