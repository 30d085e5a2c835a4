//! The validated, resolved scenario: pure data the engine runs and `loadgen plan` prints.
//! Nothing here does I/O; every name a template used has become an index.

pub(crate) mod chaos;
pub(crate) mod data;
mod load;
pub(crate) mod output;
pub(crate) mod prometheus;
pub(crate) mod schedule;
pub(crate) mod slo;
pub(crate) mod template;
pub(crate) mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method};

pub(crate) use data::{Feeder, FeederOrder, Generator, GeneratorKind, OnExhausted};
pub(crate) use load::LoadPlan;
pub use load::{LoadModel, RateStage, VuStage};

use crate::util::glob::Glob;
use crate::util::safety::AllowList;
use chaos::ChaosPlan;
use slo::SloSpec;
use template::Template;

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub source: PathBuf,
    /// The file as written with its secrets redacted (`secrets.rs`): the copy a run keeps.
    pub redacted_source: String,
    /// The secret values (`secrets.rs`): redacted from every failure sample.
    pub secrets: Vec<String>,
    pub seed: u64,
    pub target: TargetPlan,
    pub load: LoadPlan,
    pub journeys: Vec<JourneyPlan>,
    pub feeders: Vec<Feeder>,
    pub generators: Vec<Generator>,
    /// The cookie names templates read (`{{cookie.NAME}}`), indexed by `Source::Cookie`.
    pub cookie_names: Vec<String>,
    pub chaos: ChaosPlan,
    pub slos: Vec<SloSpec>,
    /// Acknowledged writes to read back after the run, totals and invariants to compare.
    pub verify: crate::plan::verify::VerifyPlan,
    /// Where the figures go besides the run directory (`[output]`).
    pub output: output::OutputPlan,
    /// Where the platform's own metrics are read (`[prometheus]`).
    pub prometheus: Option<prometheus::PrometheusPlan>,
    /// The server's series a run keeps beside its own (`[[observe]]`).
    pub observe: Vec<prometheus::Observe>,
}

#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub base: BaseUrl,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body: u64,
    /// The `Accept-Encoding` offered (default `gzip, br, zstd`; `None`: compression off);
    /// what comes back in gzip, deflate, br or zstd is decoded.
    pub compression: Option<http::HeaderValue>,
    pub headers: HeaderMap,
    pub allow: AllowList,
    /// Extra trusted certificates (PEM) for https, as written: relative to the scenario file.
    pub ca_file: Option<std::path::PathBuf>,
    /// Whether an https target's certificate is verified (`tls_verify`, default true).
    pub tls_verify: bool,
    /// The operator policy's allow-list and where it is written: the target (also one
    /// given by `--target`) must pass it as well as `allow`.
    pub policy_allow: Option<(AllowList, String)>,
    /// The response header that names the serving instance (default `X-Instance`): responses
    /// are counted per value, for failover's "where the traffic went".
    pub instance_header: http::HeaderName,
    /// Which HTTP version to speak; `Auto` is settled per scheme and ALPN before the run.
    pub protocol: Protocol,
    /// A cookie jar per closed-model user (across its iterations) or per open-model
    /// iteration.
    pub cookies: bool,
    /// Redirects followed per step; 0 follows none.
    pub redirects: u32,
    /// Local addresses connections bind to (empty: the kernel picks).
    pub source_addrs: Vec<std::net::IpAddr>,
}

/// The HTTP version a run speaks, once the pre-flight has settled it (`Protocol::Auto` by
/// ALPN): what plan.json and summary.json record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    Http1,
    H2,
    H2c,
}

impl std::fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpVersion::Http1 => "http1",
            HttpVersion::H2 => "h2",
            HttpVersion::H2c => "h2c",
        })
    }
}

/// The HTTP version a target is spoken to with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// https: offer h2 and http/1.1 by ALPN and use what the server picks; http: HTTP/1.1.
    Auto,
    Http1,
    /// HTTP/2 over TLS (ALPN `h2` only).
    H2,
    /// HTTP/2 over plain TCP with prior knowledge.
    H2c,
}

impl Protocol {
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text {
            "auto" => Ok(Protocol::Auto),
            "http1" => Ok(Protocol::Http1),
            "h2" => Ok(Protocol::H2),
            "h2c" => Ok(Protocol::H2c),
            other => Err(format!(
                "`{other}` is not a protocol: auto, http1, h2 or h2c"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
        }
    }

    /// Why this protocol cannot be spoken over the scheme, if it cannot.
    pub fn mismatch(self, tls: bool) -> Option<&'static str> {
        match (self, tls) {
            (Protocol::H2, false) => Some("`h2` needs an https:// base_url (use `h2c` over http)"),
            (Protocol::H2c, true) => Some("`h2c` is HTTP/2 without TLS: use `h2` for https"),
            _ => None,
        }
    }
}

/// How a journey holds its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionMode {
    /// Held across the journey's think times; a closed-model user carries it into its next
    /// iteration, an open-model iteration hands it back to the worker's idle pool at its end
    /// (a browser's keep-alive).
    #[default]
    Keep,
    /// Taken from the worker's idle pool for each request and returned after the response,
    /// so think times hold no connection (a fleet of API clients behind a pool).
    Pool,
    /// A fresh connection for each iteration, closed at its end.
    New,
}

impl ConnectionMode {
    pub fn parse(text: &str) -> Result<ConnectionMode, String> {
        match text {
            "keep" => Ok(ConnectionMode::Keep),
            "pool" => Ok(ConnectionMode::Pool),
            "new" => Ok(ConnectionMode::New),
            other => Err(format!(
                "`{other}` is not a connection mode: keep, pool or new"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConnectionMode::Keep => "keep",
            ConnectionMode::Pool => "pool",
            ConnectionMode::New => "new",
        }
    }
}

/// An `http(s)://host:port/prefix` base URL, split once so the hot path only appends paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// https: every connection is TLS (rustls), verified against the public roots and the
    /// scenario's `ca_file`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for the root).
    pub prefix: String,
    /// Filled by the allow-list check: the address connections go to, resolved once so a
    /// DNS change during the run cannot redirect traffic.
    pub resolved: Option<SocketAddr>,
}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{text}` must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("`{text}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.parse::<std::net::IpAddr>().is_err() && !is_host_name(&host) {
            return Err(format!(
                "`{text}`: `{host}` is neither an IP address nor a host name"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("`{text}`: a base URL cannot carry a query"));
        }
        Ok(BaseUrl {
            tls,
            host,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            prefix: uri.path().trim_end_matches('/').to_string(),
            resolved: None,
        })
    }

    /// The value of the Host header: the host as written, with the port unless it is the
    /// scheme's default.
    pub fn authority(&self) -> String {
        authority(self.tls, &self.host, self.port)
    }
}

/// Dot-separated labels of letters, digits, `_` and `-` (not at either end), the last not
/// a number: `127.0.NaN.1` or `127.0.0.-1` is a bad IP address, not a name to look up.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        && labels
            .last()
            .is_some_and(|last| !last.chars().all(|c| c.is_ascii_digit()))
}

/// `host[:port]` as `Host` and `:authority` carry it: an IPv6 host in brackets, the port
/// left out when it is the scheme's default (443 with `tls`, else 80).
pub(crate) fn authority(tls: bool, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct JourneyPlan {
    pub name: String,
    pub weight: u32,
    /// Closed model: an iteration starts no sooner than this after the same user's
    /// previous one started, think times included.
    pub pacing: Option<Duration>,
    pub connection: ConnectionMode,
    pub steps: Vec<StepPlan>,
    /// Number of variable slots an iteration of this journey needs (see `template::Slot`).
    pub slot_count: usize,
    /// Feeders whose row this journey reads, each with the slot its row goes into.
    pub feeder_slots: Vec<(usize, usize)>,
    /// Generators this journey reads, each with the slot its value goes into.
    pub generator_slots: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct StepPlan {
    pub name: String,
    /// Index of this step across all journeys (its recorder scope).
    pub global_index: usize,
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: BodyPlan,
    pub expect: StatusMatcher,
    /// Response checks besides the status, in the order written; the first that fails
    /// makes the request `check_failed`.
    pub checks: Vec<Check>,
    pub extract: Vec<Extraction>,
    /// Whether a response's body must be kept (decoded) for an extraction or a check;
    /// otherwise it is only drained (a compressed one still inflated within `max_body`, but
    /// only counted). Decided once, here, not per request.
    pub keeps_body: bool,
    pub think: Option<Think>,
    /// Rounds in a row (1: once). Each round is a request of its own, then its think time.
    pub repeat: u32,
    /// What an acknowledged response of this step wrote (`record = {…}`), for
    /// verification after the run.
    pub record: Option<crate::plan::verify::RecordPlan>,
}

/// One response check — a step's, or a `[[verify]]` read-back's — with how reports name
/// it. Both are evaluated by `engine::check`.
#[derive(Debug, Clone)]
pub struct Check {
    pub label: String,
    pub kind: CheckKind,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    /// The JSON body's value at `pointer` equals `expected` (a template is rendered, then
    /// read as JSON: one that is a whole reference keeps its value's type).
    Json {
        pointer: String,
        expected: Expected<serde_json::Value>,
    },
    /// The body (as UTF-8, lossily) contains the text.
    BodyContains(Expected<String>),
    /// The header is present and its value matches the glob (`*`, `?`).
    Header {
        name: HeaderName,
        pattern: Expected<Glob>,
    },
}

/// A check's expected value: `Fixed` when it reads no template value (prepared once, at
/// validation: the hot path parses nothing), otherwise rendered for each response.
#[derive(Debug, Clone)]
pub enum Expected<T> {
    Fixed(T),
    Rendered(Template),
}

impl Check {
    /// Whether the check needs the response body kept.
    pub fn reads_body(&self) -> bool {
        !matches!(self.kind, CheckKind::Header { .. })
    }
}

#[derive(Debug, Clone)]
pub enum BodyPlan {
    None,
    Raw(Template),
    Json(Template),
    Form(Template),
}

/// Which statuses count as success for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusMatcher {
    Ranges(Vec<(u16, u16)>),
}

impl StatusMatcher {
    pub fn matches(&self, status: u16) -> bool {
        let StatusMatcher::Ranges(ranges) = self;
        ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

impl std::fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let StatusMatcher::Ranges(ranges) = self;
        let parts: Vec<String> = ranges
            .iter()
            .map(|(lo, hi)| match (lo, hi) {
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, hi) if lo % 100 == 0 && *hi == lo + 99 => format!("{}xx", lo / 100),
                (lo, hi) => format!("{lo}-{hi}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone)]
pub struct Extraction {
    pub variable: String,
    pub slot: usize,
    pub source: ExtractSource,
}

#[derive(Debug, Clone)]
pub enum ExtractSource {
    JsonPointer(String),
    JsonPath(serde_json_path::JsonPath),
    Header(HeaderName),
}

impl ExtractSource {
    /// The value a JSON extraction finds in `json` (the first JSONPath match); `None` for a
    /// header extraction, which reads no body.
    pub fn in_json<'a>(&self, json: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        match self {
            ExtractSource::JsonPointer(pointer) => json.pointer(pointer),
            ExtractSource::JsonPath(path) => path.query(json).first(),
            ExtractSource::Header(_) => None,
        }
    }

    /// The value a header extraction finds (when it is visible ASCII); `None` for a JSON
    /// extraction, which reads no header.
    pub fn in_headers<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        match self {
            ExtractSource::Header(name) => headers.get(name)?.to_str().ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Think {
    pub min: Duration,
    pub max: Duration,
}

impl Plan {
    /// Carries what the operator policy limits at run time (validation has checked the
    /// rest): its hosts, its target names, its Kubernetes pin where the scenario has none.
    pub fn apply_policy(&mut self, policy: &crate::policy::Policy) {
        self.target.policy_allow = policy.allow_hosts.as_ref().map(|(list, limit)| {
            (
                list.clone(),
                format!("{} ({})", policy.file.display(), limit.at),
            )
        });
        if let Some(targets) = &policy.targets {
            self.chaos.policy_targets = targets.values();
        }
        self.chaos.policy_dirs = policy.dirs();
        if self.chaos.kube_context.is_none() {
            self.chaos.kube_context = policy.kube_context.as_ref().map(|e| e.value.clone());
        }
        if self.chaos.kube_server.is_none() {
            self.chaos.kube_server = policy.kube_server.as_ref().map(|e| e.value.clone());
        }
    }

    /// Whether the run reads the platform's Prometheus after its load: `[prometheus]` with
    /// something to read (`[[observe]]` or a query objective).
    pub fn reads_server(&self) -> bool {
        self.prometheus.is_some()
            && (!self.observe.is_empty() || self.slos.iter().any(|s| s.server.is_some()))
    }

    pub fn step_count(&self) -> usize {
        self.journeys.iter().map(|j| j.steps.len()).sum()
    }

    /// (journey name, step name) for each global step index.
    pub fn step_names(&self) -> Vec<(String, String)> {
        self.journeys
            .iter()
            .flat_map(|j| j.steps.iter().map(|s| (j.name.clone(), s.name.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::BaseUrl;

    #[test]
    fn https_defaults_to_443_and_keeps_its_scheme() {
        let base = BaseUrl::parse("https://staging.example/api/").unwrap();
        assert!(base.tls);
        assert_eq!(base.port, 443);
        assert_eq!(base.authority(), "staging.example");
        assert_eq!(base.to_string(), "https://staging.example/api");
        let plain = BaseUrl::parse("http://127.0.0.1:443").unwrap();
        assert_eq!(plain.authority(), "127.0.0.1:443");
        assert!(
            BaseUrl::parse("ftp://x")
                .unwrap_err()
                .contains("http:// or https://")
        );
    }

    #[test]
    fn a_host_is_an_ip_address_or_a_host_name() {
        for good in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost",
            "http://backend_1:8080",
            "https://staging.example./api",
            "http://10x.example",
        ] {
            assert!(BaseUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "http://127.0.0.-1:8080",
            "http://127.0.NaN.1",
            "http://127.0.4294967296.1",
            "http://999999999999999999999999999.0.0.1",
            "http://127.0.0.0.0000001",
            "http://a..b",
            "http://-a.example",
        ] {
            let error = BaseUrl::parse(bad).expect_err(bad);
            assert!(
                error.contains("neither an IP address nor a host name"),
                "{error}"
            );
        }
    }
}
