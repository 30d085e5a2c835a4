//! Raw scenario → `Plan`: every value checked and typed, every error recorded with its span.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::data::{generator_kind, load_feeder};
use super::faults::validate_chaos;
use super::journeys::validate_journeys;
use super::raw::{RawData, RawLoad, RawScenario};
use super::slos::validate_slos;
use super::target::validate_target;
use crate::plan::{
    Feeder, FeederOrder, Generator, LoadModel, LoadPlan, OnExhausted, Plan, RateStage, VuStage,
};
use crate::util::diag::Diagnostics;
use crate::util::units::{parse_duration, parse_rate};

/// Names templates give a meaning of their own: no feeder or generator may take them.
pub(super) const RESERVED_NAMES: [&str; 5] = ["vu", "iteration", "repeat", "cookie", "ack"];

const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
const DEFAULT_RAMP_DOWN: Duration = Duration::from_secs(10);
/// Closed model: the most virtual users at once (each is a task; the plan lists each
/// user's join).
const MAX_VUS: u64 = 100_000;
/// Closed model: the least a user waits after a failed iteration (documented default).
const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(1);

pub(super) fn validate(
    raw: RawScenario,
    source_path: &Path,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Plan> {
    let name = validate_name(raw.name.as_ref(), source_path, diagnostics);
    let target = match &raw.target {
        Some(target) => validate_target(target, diagnostics),
        None if raw.seen.iter().any(|k| k == "target") => None,
        None => {
            diagnostics.push(0..0, "missing [target] section (with at least `base_url`)");
            None
        }
    };
    let load = match &raw.load {
        Some(load) => validate_load(load, diagnostics),
        None if raw.seen.iter().any(|k| k == "load") => None,
        None => {
            diagnostics.push(0..0, "missing [load] section (model and stages)");
            None
        }
    };
    let (feeders, generators, broken) = validate_data(&raw.data, base_dir, diagnostics);
    if raw.journeys.is_empty() && !raw.seen.iter().any(|k| k == "journey") {
        diagnostics.push(0..0, "a scenario needs at least one [[journey]]");
    }
    let kinds = super::verify::kind_names(&raw.verify);
    let declared = Declared {
        feeders: &feeders,
        generators: &generators,
        broken: &broken,
        kinds: &kinds,
        kinds_doubtful: raw.verify.iter().any(|v| {
            v.get_ref()
                .kind
                .as_ref()
                .is_some_and(|k| diagnostics.was_reported(&k.span()))
        }),
    };
    let (journeys, cookie_names, unfinished) =
        validate_journeys(&raw.journeys, &declared, diagnostics);
    let verify = super::verify::validate_verify(
        &raw.verify,
        raw.verify_rate.as_ref(),
        &super::verify::Recorded {
            journeys: &journeys,
            unfinished: &unfinished,
        },
        &declared,
        diagnostics,
    );
    let chaos = validate_chaos(raw.chaos.as_ref(), &raw.faults, base_dir, diagnostics);
    let scopes = Known::journeys_and_steps(&raw, diagnostics);
    let fault_names = Known::new(raw.faults.iter().map(|f| &f.get_ref().name), diagnostics);
    let slos = validate_slos(
        &raw.slos,
        &scopes,
        &fault_names,
        raw.prometheus.is_some(),
        diagnostics,
    );
    let (output, prometheus, observe) = validate_platform_io(&raw, diagnostics);

    if !diagnostics.is_empty() {
        return None;
    }
    Some(Plan {
        name,
        description: raw.description,
        source: source_path.to_path_buf(),
        redacted_source: raw.redacted,
        secrets: raw.secret_values,
        seed: raw.seed.unwrap_or_else(rand::random),
        target: target?,
        load: load?,
        journeys,
        feeders,
        generators,
        cookie_names,
        chaos,
        slos,
        verify,
        output,
        prometheus,
        observe,
    })
}

/// What the run exchanges with the platform's monitoring: `[output]` (Prometheus out),
/// `[prometheus]` and `[[observe]]` (Prometheus in).
fn validate_platform_io(
    raw: &RawScenario,
    diagnostics: &mut Diagnostics,
) -> (
    crate::plan::output::OutputPlan,
    Option<crate::plan::prometheus::PrometheusPlan>,
    Vec<crate::plan::prometheus::Observe>,
) {
    let output = super::output::validate(raw.output.as_ref(), diagnostics);
    let prometheus = super::prometheus::validate_prometheus(raw.prometheus.as_ref(), diagnostics);
    let observe =
        super::prometheus::validate_observe(&raw.observe, raw.prometheus.is_some(), diagnostics);
    (output, prometheus, observe)
}

/// The scenario's name: as written, else the file's stem.
fn validate_name(
    name: Option<&Spanned<String>>,
    source_path: &Path,
    diagnostics: &mut Diagnostics,
) -> String {
    match name {
        Some(name) if name.get_ref().trim().is_empty() => {
            diagnostics.push(name.span(), "`name` cannot be empty");
            String::new()
        }
        Some(name) => name.get_ref().clone(),
        None => source_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into()),
    }
}

/// A `"fail"` (the default) or `"allow"` setting such as `on_no_data`: whether it allows.
pub(super) fn allows(
    value: Option<&Spanned<String>>,
    key: &str,
    diagnostics: &mut Diagnostics,
) -> bool {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "fail")) => false,
        Some((_, "allow")) => true,
        Some((value, other)) => {
            diagnostics.push(
                value.span(),
                format!("`{key}` is \"fail\" or \"allow\", not `{other}`"),
            );
            false
        }
    }
}

/// Parses an optional spanned string with `parse`, recording an error at its span.
pub(super) fn typed<T>(
    value: Option<&Spanned<String>>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
    diagnostics: &mut Diagnostics,
) -> Option<T> {
    match value {
        None => Some(default),
        Some(value) => match parse(value.get_ref()) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                diagnostics.push(value.span(), message);
                None
            }
        },
    }
}

fn validate_load(load: &Spanned<RawLoad>, diagnostics: &mut Diagnostics) -> Option<LoadPlan> {
    let raw = load.get_ref();
    let before = diagnostics.len();
    let ramp_down = typed(
        raw.ramp_down.as_ref(),
        DEFAULT_RAMP_DOWN,
        parse_duration,
        diagnostics,
    );
    let failure_backoff = typed(
        raw.failure_backoff.as_ref(),
        DEFAULT_FAILURE_BACKOFF,
        parse_duration,
        diagnostics,
    );
    let max_in_flight = match &raw.max_in_flight {
        Some(cap) if *cap.get_ref() == 0 => {
            diagnostics.push(cap.span(), "`max_in_flight` must be at least 1");
            None
        }
        Some(cap) => Some(*cap.get_ref() as usize),
        None => Some(DEFAULT_MAX_IN_FLIGHT),
    };
    if raw.stage.is_empty() {
        diagnostics.push(load.span(), "[load] needs at least one [[load.stage]]");
    }
    let mut durations = Vec::new();
    for stage in &raw.stage {
        durations.push(typed(
            Some(&stage.get_ref().duration),
            Duration::ZERO,
            parse_duration,
            diagnostics,
        ));
    }
    let model = match raw.model.get_ref().as_str() {
        "open" => open_model(raw, &durations, diagnostics),
        "closed" => closed_model(raw, &durations, diagnostics),
        other => {
            diagnostics.push(
                raw.model.span(),
                format!("unknown load model `{other}` (expected \"open\" or \"closed\")"),
            );
            None
        }
    };
    if diagnostics.len() > before {
        return None;
    }
    let model = model?;
    if model.total_duration().is_zero() {
        diagnostics.push(load.span(), "the load stages add up to zero seconds");
        return None;
    }
    if let Some(why) = crate::plan::schedule::starts_nothing(&model) {
        let at = raw.stage.last().map_or(load.span(), |s| s.span());
        diagnostics.push(at, why);
        return None;
    }
    Some(LoadPlan {
        model,
        max_in_flight: max_in_flight?,
        ramp_down: ramp_down?,
        failure_backoff: failure_backoff?,
    })
}

/// The open model's start rate and stages; what belongs to the closed model is reported.
fn open_model(
    raw: &RawLoad,
    durations: &[Option<Duration>],
    diagnostics: &mut Diagnostics,
) -> Option<LoadModel> {
    if let Some(vus) = &raw.start_vus {
        diagnostics.push(
            vus.span(),
            "`start_vus` belongs to the closed model; the open model uses `start_rate`",
        );
    }
    let start_rate = typed(raw.start_rate.as_ref(), 0.0, parse_rate, diagnostics);
    let mut stages = Vec::new();
    for (stage, duration) in raw.stage.iter().zip(durations) {
        let stage_raw = stage.get_ref();
        if let Some(vus) = &stage_raw.vus {
            diagnostics.push(
                vus.span(),
                "`vus` belongs to the closed model; an open stage sets `rate`",
            );
        }
        let rate = match &stage_raw.rate {
            None => {
                diagnostics.push(
                    stage.span(),
                    "an open-model stage needs `rate` (e.g. \"50/s\")",
                );
                None
            }
            Some(rate) => typed(Some(rate), 0.0, parse_rate, diagnostics),
        };
        if let (Some(duration), Some(rate)) = (duration, rate) {
            stages.push(RateStage {
                duration: *duration,
                rate,
            });
        }
    }
    start_rate.map(|start_rate| LoadModel::Open { start_rate, stages })
}

/// The closed model's users and stages; what belongs to the open model is reported.
fn closed_model(
    raw: &RawLoad,
    durations: &[Option<Duration>],
    diagnostics: &mut Diagnostics,
) -> Option<LoadModel> {
    if let Some(rate) = &raw.start_rate {
        diagnostics.push(
            rate.span(),
            "`start_rate` belongs to the open model; the closed model uses `start_vus`",
        );
    }
    let mut stages = Vec::new();
    for (stage, duration) in raw.stage.iter().zip(durations) {
        let stage_raw = stage.get_ref();
        if let Some(rate) = &stage_raw.rate {
            diagnostics.push(
                rate.span(),
                "`rate` belongs to the open model; a closed stage sets `vus`",
            );
        }
        match (&stage_raw.vus, duration) {
            (None, _) => diagnostics.push(stage.span(), "a closed-model stage needs `vus`"),
            (Some(vus), _) if *vus.get_ref() > MAX_VUS => diagnostics.push(
                vus.span(),
                format!("`vus` is at most {MAX_VUS}, not {}", vus.get_ref()),
            ),
            (Some(vus), Some(duration)) => stages.push(VuStage {
                duration: *duration,
                vus: *vus.get_ref() as usize,
            }),
            _ => {}
        }
    }
    if let Some(vus) = raw.start_vus.as_ref().filter(|v| *v.get_ref() > MAX_VUS) {
        diagnostics.push(
            vus.span(),
            format!("`start_vus` is at most {MAX_VUS}, not {}", vus.get_ref()),
        );
    }
    let start_vus = raw.start_vus.as_ref().map_or(0, |v| *v.get_ref() as usize);
    Some(LoadModel::Closed { start_vus, stages })
}

/// Names a scenario declares (journeys, steps, faults), as written: a reference to one
/// whose own table had a mistake is still a reference to something declared. When a name
/// itself was the mistake, every reference is taken on trust (`doubtful`).
pub(super) struct Known {
    names: BTreeSet<String>,
    doubtful: bool,
}

impl Known {
    fn new<'a>(
        names: impl Iterator<Item = &'a Spanned<String>>,
        diagnostics: &Diagnostics,
    ) -> Known {
        let mut known = Known {
            names: BTreeSet::new(),
            doubtful: false,
        };
        for name in names {
            known.doubtful |= diagnostics.was_reported(&name.span());
            known.names.insert(name.get_ref().clone());
        }
        known
    }

    /// Each journey's `name` and each step's `journey/step`.
    fn journeys_and_steps(raw: &RawScenario, diagnostics: &Diagnostics) -> Known {
        let mut known = Known::new(
            raw.journeys.iter().map(|j| &j.header.get_ref().name),
            diagnostics,
        );
        for journey in &raw.journeys {
            let journey_name = journey.header.get_ref().name.get_ref();
            for step in &journey.steps {
                let name = &step.get_ref().name;
                known.doubtful |= diagnostics.was_reported(&name.span());
                known
                    .names
                    .insert(format!("{journey_name}/{}", name.get_ref()));
            }
        }
        known
    }

    pub(super) fn knows(&self, name: &str) -> bool {
        self.doubtful || self.names.contains(name)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The feeders and generators templates may read, and the kinds records may name; `broken` names those declared with a
/// mistake (already reported), whose references are taken on trust rather than reported
/// as unknown a second time.
pub(super) struct Declared<'a> {
    pub feeders: &'a [Feeder],
    pub generators: &'a [Generator],
    pub broken: &'a BTreeSet<String>,
    /// The kinds `[[verify]]` reads back, which a step's `record` may name; doubtful when
    /// one of them was itself the mistake.
    pub kinds: &'a [String],
    pub kinds_doubtful: bool,
}

fn validate_data(
    data: &RawData,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> (Vec<Feeder>, Vec<Generator>, BTreeSet<String>) {
    let mut broken = BTreeSet::new();
    let mut feeders = Vec::new();
    for (name, raw) in &data.feeder {
        if RESERVED_NAMES.contains(&name.as_str()) {
            diagnostics.push(
                raw.span(),
                format!("`{name}` is a reserved name (`{{{{{name}.…}}}}` means something else); name the feeder otherwise"),
            );
            continue;
        }
        let feeder = raw.get_ref();
        let order = typed(
            feeder.order.as_ref(),
            FeederOrder::Sequential,
            FeederOrder::parse,
            diagnostics,
        );
        let on_exhausted = typed(
            feeder.on_exhausted.as_ref(),
            OnExhausted::Fail,
            OnExhausted::parse,
            diagnostics,
        );
        if let (Some(order), Some(given)) = (order, &feeder.on_exhausted)
            && order != FeederOrder::Unique
        {
            diagnostics.push(
                given.span(),
                "`on_exhausted` applies to `order = \"unique\"` only (a sequential or random feeder never runs out)",
            );
        }
        // A bad value is already reported; the feeder is still read, so the journeys that
        // use it are not reported as naming an unknown feeder.
        let order = order.unwrap_or(FeederOrder::Sequential);
        let on_exhausted = on_exhausted.unwrap_or(OnExhausted::Fail);
        match load_feeder(name, feeder, order, on_exhausted, base_dir) {
            Ok(feeder) => feeders.push(feeder),
            Err(messages) => {
                for message in messages {
                    diagnostics.push(raw.get_ref().file.span(), message);
                }
                broken.insert(name.clone());
            }
        }
    }
    let mut generators = Vec::new();
    for (name, raw) in &data.generator {
        if RESERVED_NAMES.contains(&name.as_str()) {
            diagnostics.push(
                raw.span(),
                format!("`{name}` is a reserved name; name the generator otherwise"),
            );
            continue;
        }
        if data.feeder.contains_key(name) {
            diagnostics.push(
                raw.span(),
                format!("`{name}` is already the name of a feeder"),
            );
        }
        match generator_kind(raw.get_ref()) {
            Ok(kind) => generators.push(Generator {
                name: name.clone(),
                kind,
            }),
            Err(errors) => {
                for (span, message) in errors {
                    diagnostics.push(span, message);
                }
                broken.insert(name.clone());
            }
        }
    }
    (feeders, generators, broken)
}
