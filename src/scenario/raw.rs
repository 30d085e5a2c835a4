//! The raw serde mirror of a scenario file: strict (`deny_unknown_fields`), no I/O, values
//! still as written (strings with spans) so validation can point at each bad one.
//!
//! Each section, each journey and each step is deserialized on its own, so one mistake does
//! not hide the others: the user sees every error of the file at once.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::util::diag::Diagnostics;

#[derive(Debug, Default)]
pub(super) struct RawScenario {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub target: Option<Spanned<RawTarget>>,
    pub load: Option<Spanned<RawLoad>>,
    pub data: RawData,
    pub journeys: Vec<RawJourney>,
    pub chaos: Option<Spanned<RawChaos>>,
    pub faults: Vec<Spanned<RawFault>>,
    pub slos: Vec<Spanned<RawSlo>>,
    /// `[[verify]]` tables (or one `[verify]` table holding only counts and invariants).
    pub verify: Vec<Spanned<RawVerify>>,
    /// `verify_rate = "200/s"`: check requests per second at most.
    pub verify_rate: Option<Spanned<String>>,
    /// `[output]`: where the figures go besides the run directory.
    pub output: Option<Spanned<super::output::RawOutput>>,
    /// `[prometheus]`: where the platform's own metrics are read.
    pub prometheus: Option<Spanned<super::prometheus::RawPrometheus>>,
    /// `[[observe]]`: server queries kept beside the run's own series.
    pub observe: Vec<Spanned<super::prometheus::RawObserve>>,
    /// Top-level keys present in the file, so "missing" is not reported for a section that
    /// is present but malformed.
    pub seen: Vec<String>,
    /// Keys whose values are secrets besides the documented ones (`redact = [...]`).
    pub redact: Vec<String>,
    /// The file as written with every secret value redacted (`secrets.rs`): what a run
    /// directory keeps.
    pub redacted: String,
    /// The secret values themselves (written in the file, or read from the environment):
    /// what a failure sample must never quote.
    pub secret_values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub base_url: Spanned<String>,
    pub connect_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    /// Offer compressed responses and decode them (default true), or the exact
    /// `Accept-Encoding` to offer.
    pub compression: Option<Spanned<RawCompression>>,
    pub allow_hosts: Option<Vec<Spanned<String>>>,
    /// PEM certificates to trust for an https target, besides the public roots.
    pub ca_file: Option<Spanned<String>>,
    /// Verify the server's certificate (default true); false accepts any.
    pub tls_verify: Option<Spanned<bool>>,
    /// The response header naming the instance that served a request.
    pub instance_header: Option<Spanned<String>>,
    /// `auto`, `http1`, `h2` or `h2c` (default `auto`).
    pub protocol: Option<Spanned<String>>,
    /// Keep a cookie jar per user (closed model) or per iteration (open model); default true.
    pub cookies: Option<bool>,
    /// Redirects followed per step (default 5; 0 follows none).
    pub redirects: Option<Spanned<u32>>,
    /// Local addresses connections bind to: addresses and `first-last` ranges.
    pub source_addrs: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCompression {
    On(bool),
    Offer(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub model: Spanned<String>,
    pub start_rate: Option<Spanned<String>>,
    pub start_vus: Option<Spanned<u64>>,
    pub max_in_flight: Option<Spanned<u64>>,
    pub ramp_down: Option<Spanned<String>>,
    /// Closed model: the least a user waits after a failed iteration before its next one.
    pub failure_backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub stage: Vec<Spanned<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub duration: Spanned<String>,
    pub rate: Option<Spanned<String>>,
    pub vus: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawData {
    #[serde(default)]
    pub feeder: BTreeMap<String, Spanned<RawFeeder>>,
    #[serde(default)]
    pub generator: BTreeMap<String, Spanned<RawGenerator>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeeder {
    pub file: Spanned<String>,
    pub order: Option<Spanned<String>>,
    pub on_exhausted: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGenerator {
    pub kind: Spanned<String>,
    pub min: Option<Spanned<i64>>,
    pub max: Option<Spanned<i64>>,
    pub values: Option<Spanned<Vec<toml::Value>>>,
}

#[derive(Debug)]
pub(super) struct RawJourney {
    pub header: Spanned<RawJourneyHeader>,
    pub steps: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJourneyHeader {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
    /// Closed model: an iteration starts no sooner than this after the same user's last.
    pub pacing: Option<Spanned<String>>,
    /// `keep`, `pool` or `new`: how the journey holds its connection (default `keep`).
    pub connection: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub name: Spanned<String>,
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub json: Option<Spanned<toml::Value>>,
    pub form: Option<Spanned<BTreeMap<String, String>>>,
    pub body: Option<Spanned<String>>,
    pub expect: Option<Spanned<RawExpect>>,
    pub check: Option<Spanned<RawCheck>>,
    #[serde(default)]
    pub extract: BTreeMap<String, Spanned<RawExtract>>,
    pub think: Option<Spanned<String>>,
    /// Send the step this many times in a row (`{{repeat}}` is the round: 0, 1, …).
    pub repeat: Option<Spanned<u32>>,
    /// What an acknowledged response wrote, to read back after the run.
    pub record: Option<Spanned<RawRecord>>,
}

/// `record = { kind = "enrolment", id = "{{enrolment_id}}", fields = { course = "{{course}}" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    pub kind: Spanned<String>,
    pub id: Spanned<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, Spanned<toml::Value>>,
}

/// One `[[verify]]`: how to read back each recorded write of `kind`, and (nested
/// `[[verify.count]]`, `[[verify.invariant]]`) the totals and invariants to compare.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    pub kind: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub expect: Option<Spanned<RawExpect>>,
    /// Statuses that mean "not there" (default [404, 410]).
    pub absent: Option<Spanned<RawExpect>>,
    pub check: Option<Spanned<RawCheck>>,
    /// "fail" (default) or "allow": whether writes that could not be checked fail the run.
    pub on_unverifiable: Option<Spanned<String>>,
    /// "fail" (default) or "allow": whether a kind nothing acknowledged fails the run.
    pub on_no_data: Option<Spanned<String>>,
    #[serde(default)]
    pub count: Vec<Spanned<RawCount>>,
    #[serde(default)]
    pub invariant: Vec<Spanned<RawInvariant>>,
}

/// `[[verify.count]]`: a total the platform reports, compared with the acknowledged count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCount {
    pub name: Option<Spanned<String>>,
    /// Defaults to the enclosing `[[verify]]`'s kind.
    pub kind: Option<Spanned<String>>,
    pub url: Spanned<String>,
    /// A JSON pointer or JSONPath into the answer, or `{ header = "x-total-count" }`.
    pub extract: Spanned<RawExtract>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// `[[verify.invariant]]`: a value read before the load and after verification, which
/// must not have changed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInvariant {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub extract: Spanned<RawExtract>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawExpect {
    Code(u16),
    Codes(Vec<u16>),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawExtract {
    Path(String),
    Header { header: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChaos {
    pub platform: Option<Spanned<String>>,
    pub compose_project: Option<Spanned<String>>,
    pub stack_state: Option<Spanned<String>>,
    pub docker_host: Option<String>,
    pub kube_api: Option<String>,
    /// The kubeconfig context a run must be on / the API server it must talk to.
    pub kube_context: Option<Spanned<String>>,
    pub kube_server: Option<Spanned<String>>,
    #[serde(default)]
    pub kube_namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_targets: Vec<String>,
    pub settle: Option<Spanned<String>>,
    pub backend_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    pub name: Option<String>,
    pub objective: Spanned<String>,
    pub window: Option<Spanned<String>>,
    pub scope: Option<Spanned<String>>,
    pub recovery: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub abort: Option<bool>,
    pub grace: Option<Spanned<String>>,
    /// "fail" (default) or "allow": whether a window without data fails the run.
    pub on_no_data: Option<Spanned<String>>,
    /// A query objective's PromQL (the platform's own metrics, from `[prometheus]`).
    pub query: Option<Spanned<String>>,
    /// A query objective's unit (required with `query`).
    pub unit: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub name: Spanned<String>,
    pub at: Spanned<String>,
    pub duration: Option<Spanned<String>>,
    pub repeat: Option<Spanned<u32>>,
    pub every: Option<Spanned<String>>,
    pub action: Spanned<String>,
    pub target: Spanned<RawSelector>,
    pub among: Option<Spanned<RawSelector>>,
    pub mode: Option<Spanned<RawMode>>,
    pub max_unavailable: Option<Spanned<RawMaxUnavailable>>,
    pub allow_last: Option<bool>,
    pub signal: Option<Spanned<String>>,
    pub network: Option<String>,
    pub grace: Option<Spanned<String>>,
    pub replicas: Option<u32>,
    pub latency: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub bandwidth: Option<Spanned<String>>,
    pub delay: Option<Spanned<String>>,
    pub probability: Option<Spanned<String>>,
    pub effect: Option<Spanned<String>>,
    pub required: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    pub process: Option<String>,
    pub pidfile: Option<String>,
    pub container: Option<String>,
    pub label: Option<String>,
    pub pods: Option<String>,
    pub deployment: Option<String>,
    pub namespace: Option<String>,
    pub proxy: Option<String>,
    pub port: Option<u16>,
}

/// `check = { json = { "/status" = "confirmed" }, body_contains = "…", header = { … } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub json: Option<BTreeMap<String, toml::Value>>,
    pub body_contains: Option<String>,
    pub header: Option<BTreeMap<String, String>>,
}

/// `max_unavailable = 2` or `max_unavailable = "50%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMaxUnavailable {
    Count(u32),
    Percent(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMode {
    Text(String),
    Count { count: u32 },
    Percent { percent: String },
}

/// The keys a scenario file has at its top level.
const TOP_LEVEL_KEYS: [&str; 16] = [
    "name",
    "description",
    "seed",
    "target",
    "load",
    "data",
    "journey",
    "chaos",
    "fault",
    "slo",
    "verify",
    "verify_rate",
    "redact",
    "output",
    "prometheus",
    "observe",
];

/// Parses the document and each part of it, collecting every error into `diagnostics`.
/// `None` when the file is not valid TOML (the syntax errors are recorded).
pub(super) fn parse(source: &str, diagnostics: &mut Diagnostics) -> Option<RawScenario> {
    let (mut document, syntax_errors) = DeTable::parse_recoverable(source);
    for error in &syntax_errors {
        diagnostics.push(
            error.span().unwrap_or(0..0),
            error.message().trim().to_string(),
        );
    }
    if !syntax_errors.is_empty() {
        // A broken document yields a partial tree; its shape errors would only be noise.
        return None;
    }

    let mut raw = RawScenario::default();
    if let Some((_, value)) = document
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "redact")
    {
        raw.redact = part("redact", value, diagnostics).unwrap_or_default();
    }
    // Redacted from the file as written (references still `${NAME}`), then expanded.
    let secrets = super::secrets::secret_spans(document.get_ref(), &raw.redact);
    raw.redacted = super::secrets::redact_spans(source, &secrets);
    diagnostics.hide(&secrets);
    let read = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        let value = std::env::var(name).ok();
        read.borrow_mut().extend(value.clone());
        value
    };
    super::secrets::expand(&mut document, &lookup, diagnostics);
    raw.secret_values = super::secrets::secret_values(source, &secrets, read.into_inner());
    for (key, value) in document.get_ref().iter() {
        let span = key.span();
        raw.seen.push(key.get_ref().to_string());
        match key.get_ref().as_ref() {
            "name" => raw.name = part("name", value, diagnostics),
            "description" => raw.description = part("description", value, diagnostics),
            "seed" => raw.seed = part("seed", value, diagnostics),
            "target" => raw.target = part("target", value, diagnostics),
            "load" => raw.load = part("load", value, diagnostics),
            "data" => raw.data = part("data", value, diagnostics).unwrap_or_default(),
            "journey" => raw.journeys = journeys(value, diagnostics),
            "chaos" => raw.chaos = part("chaos", value, diagnostics),
            "fault" => raw.faults = each(value, "fault", diagnostics),
            "slo" => raw.slos = each(value, "slo", diagnostics),
            "verify" => raw.verify = verify_tables(value, diagnostics),
            "verify_rate" => raw.verify_rate = part("verify_rate", value, diagnostics),
            "output" => raw.output = part("output", value, diagnostics),
            "prometheus" => raw.prometheus = part("prometheus", value, diagnostics),
            "observe" => raw.observe = each(value, "observe", diagnostics),
            "redact" => {}
            other => diagnostics.push(
                span,
                super::lenient::unknown_key(other, &TOP_LEVEL_KEYS.map(String::from)),
            ),
        }
    }
    Some(raw)
}

/// Deserializes one value on its own, every mistake in it reported (`lenient.rs`).
fn part<T: for<'de> Deserialize<'de>>(
    key: &str,
    value: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Option<T> {
    super::lenient::read(key, value, diagnostics)
}

/// Deserializes each element of an array of tables on its own.
fn each<T: for<'de> Deserialize<'de>>(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<Spanned<T>> {
    let Some(array) = value.get_ref().as_array() else {
        diagnostics.push(
            value.span(),
            format!("`{key}` must be an array of tables: write [[{key}]]"),
        );
        return Vec::new();
    };
    array
        .iter()
        .filter_map(|item| {
            part::<T>(key, item, diagnostics).map(|parsed| Spanned::new(item.span(), parsed))
        })
        .collect()
}

/// `[[verify]]` is an array of tables; a file with only `[[verify.count]]` or
/// `[[verify.invariant]]` makes `verify` one table, read as one entry without a kind.
fn verify_tables(
    value: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Vec<Spanned<RawVerify>> {
    if value.get_ref().as_table().is_some() {
        return part::<RawVerify>("verify", value, diagnostics)
            .map(|parsed| Spanned::new(value.span(), parsed))
            .into_iter()
            .collect();
    }
    each(value, "verify", diagnostics)
}

fn journeys(value: &Spanned<DeValue<'_>>, diagnostics: &mut Diagnostics) -> Vec<RawJourney> {
    let Some(array) = value.get_ref().as_array() else {
        diagnostics.push(
            value.span(),
            "`journey` must be an array of tables: write [[journey]]",
        );
        return Vec::new();
    };
    let mut journeys = Vec::new();
    for item in array.iter() {
        let Some(table) = item.get_ref().as_table() else {
            diagnostics.push(item.span(), "each journey must be a table");
            continue;
        };
        // The steps are split off so each step is checked on its own.
        let mut header_table = table.clone();
        let steps_value = header_table.remove("step");
        let header_value = Spanned::new(item.span(), DeValue::Table(header_table));
        let header = part::<RawJourneyHeader>("journey", &header_value, diagnostics);
        let mut steps = Vec::new();
        match steps_value
            .as_ref()
            .map(|v| (v.span(), v.get_ref().as_array()))
        {
            None => diagnostics.push(item.span(), "a journey needs at least one [[journey.step]]"),
            Some((span, None)) => diagnostics.push(
                span,
                "`step` must be an array of tables: write [[journey.step]]",
            ),
            Some((_, Some(array))) => {
                for step in array.iter() {
                    if let Some(parsed) = part::<RawStep>("step", step, diagnostics) {
                        steps.push(Spanned::new(step.span(), parsed));
                    }
                }
            }
        }
        if let Some(header) = header {
            journeys.push(RawJourney {
                header: Spanned::new(item.span(), header),
                steps,
            });
        }
    }
    journeys
}
