//! `[[verify]]` (with `[[verify.count]]` and `[[verify.invariant]]`) → `VerifyPlan`: kinds
//! checked against the steps that record them (a step's `record = {…}` is `record.rs`'s),
//! `{{ack.…}}` references against the fields those records carry, every error positioned.

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::journeys::{inner_span, json_extraction, parse_expect};
use super::raw::{RawCount, RawExtract, RawVerify};
use super::validate::Declared;
use super::validate::allows;
use crate::plan::slo::OnNoData;
use crate::plan::template::{Escape, Source, Template, TemplateError};
use crate::plan::verify::{
    CheckRequest, CountPlan, DEFAULT_RATE, InvariantPlan, KindPlan, OnUnverifiable, Probe,
    VerifyPlan,
};
use crate::plan::{ExtractSource, Generator, JourneyPlan, StatusMatcher};
use crate::util::diag::Diagnostics;
use crate::util::units::parse_rate;

/// The most check requests per second `verify_rate` may ask for.
const MAX_RATE: f64 = 100_000.0;

/// The kinds `[[verify]]` tables read back, in order (before journeys are validated, so a
/// step's `record` can name them).
pub(super) fn kind_names(verify: &[Spanned<RawVerify>]) -> Vec<String> {
    verify
        .iter()
        .filter_map(|v| v.get_ref().kind.as_ref().map(|k| k.get_ref().clone()))
        .collect()
}

/// What the steps record: the journeys' plans, and the kinds recorded by steps that had a
/// mistake (left out of the plans, and reported there).
pub(super) struct Recorded<'a> {
    pub journeys: &'a [JourneyPlan],
    /// Each such record's kind and field names, as written.
    pub unfinished: &'a [super::journeys::UnfinishedRecord],
}

pub(super) fn validate_verify(
    verify: &[Spanned<RawVerify>],
    rate: Option<&Spanned<String>>,
    recorded: &Recorded<'_>,
    declared: &Declared<'_>,
    diagnostics: &mut Diagnostics,
) -> VerifyPlan {
    let kind_names = kind_names(verify);
    let mut plan = VerifyPlan {
        rate: verify_rate(rate, diagnostics),
        ..VerifyPlan::default()
    };
    let mut seen_kinds = BTreeSet::new();
    for entry in verify {
        let raw = entry.get_ref();
        if let Some(kind) = &raw.kind
            && !seen_kinds.insert(kind.get_ref().clone())
        {
            diagnostics.push(
                kind.span(),
                format!(
                    "kind `{}` is read back by another [[verify]] already",
                    kind.get_ref()
                ),
            );
        }
        match (&raw.kind, &raw.url) {
            (Some(kind), Some(url)) => {
                let index = kind_names
                    .iter()
                    .position(|k| k == kind.get_ref())
                    .expect("every kind with a url is in kind_names");
                if let Some(kind_plan) =
                    validate_kind(raw, kind, url, index, recorded, declared, diagnostics)
                {
                    plan.kinds.push(kind_plan);
                }
            }
            (Some(kind), None) => diagnostics.push(
                kind.span(),
                format!(
                    "[[verify]] for kind `{}` needs the `url` that reads one write back (\"/api/…/{{{{ack.id}}}}\")",
                    kind.get_ref()
                ),
            ),
            (None, Some(url)) => diagnostics.push(
                url.span(),
                "[[verify]] with a `url` needs the `kind` of write it reads back",
            ),
            (None, None) => {
                if raw.count.is_empty() && raw.invariant.is_empty() {
                    diagnostics.push(
                        entry.span(),
                        "[[verify]] needs a kind and url, or [[verify.count]] / [[verify.invariant]] tables",
                    );
                }
                refuse_check_keys(raw, diagnostics);
            }
        }
    }
    // Counts and invariants name kinds by index, known only once every kind is in.
    let mut names = BTreeSet::new();
    for entry in verify {
        let raw = entry.get_ref();
        for count in &raw.count {
            if let Some(plan_count) = validate_count(count, raw, &plan.kinds, diagnostics) {
                let span = count
                    .get_ref()
                    .name
                    .as_ref()
                    .map_or(count.span(), |n| n.span());
                unique_name(&plan_count.name, span, &mut names, diagnostics);
                plan.counts.push(plan_count);
            }
        }
        for invariant in &raw.invariant {
            let raw = invariant.get_ref();
            if let Some(probe) = validate_probe(&raw.url, &raw.extract, &raw.headers, diagnostics) {
                let name = raw.name.get_ref().clone();
                unique_name(&name, raw.name.span(), &mut names, diagnostics);
                plan.invariants.push(InvariantPlan { name, probe });
            }
        }
    }
    plan
}

fn unique_name(
    name: &str,
    span: std::ops::Range<usize>,
    names: &mut BTreeSet<String>,
    diagnostics: &mut Diagnostics,
) {
    if !names.insert(name.to_string()) {
        diagnostics.push(
            span,
            format!("another count or invariant is named `{name}` already"),
        );
    }
}

fn verify_rate(rate: Option<&Spanned<String>>, diagnostics: &mut Diagnostics) -> f64 {
    let Some(rate) = rate else {
        return DEFAULT_RATE;
    };
    match parse_rate(rate.get_ref()) {
        Ok(r) if r > 0.0 && r <= MAX_RATE => r,
        Ok(_) => {
            diagnostics.push(
                rate.span(),
                format!("`verify_rate` must be above 0/s and at most {MAX_RATE}/s"),
            );
            DEFAULT_RATE
        }
        Err(message) => {
            diagnostics.push(rate.span(), message);
            DEFAULT_RATE
        }
    }
}

/// A `[[verify]]` without a kind holds only counts and invariants: the keys of a check
/// request would be ignored, so they are errors.
fn refuse_check_keys(raw: &RawVerify, diagnostics: &mut Diagnostics) {
    let given = [
        raw.method.as_ref().map(|v| ("method", v.span())),
        raw.expect.as_ref().map(|v| ("expect", v.span())),
        raw.absent.as_ref().map(|v| ("absent", v.span())),
        raw.check.as_ref().map(|v| ("check", v.span())),
        raw.on_unverifiable
            .as_ref()
            .map(|v| ("on_unverifiable", v.span())),
        raw.on_no_data.as_ref().map(|v| ("on_no_data", v.span())),
    ];
    for (key, span) in given.into_iter().flatten() {
        diagnostics.push(
            span,
            format!("`{key}` belongs to a [[verify]] with a kind and url"),
        );
    }
    if let Some((name, value)) = raw.headers.iter().next() {
        diagnostics.push(
            value.span(),
            format!("header `{name}` belongs to a [[verify]] with a kind and url"),
        );
    }
}

/// The names a check request's templates may read.
struct CheckSlots<'a> {
    fields: &'a [String],
    /// Fields some record of the kind lacks: a reference to one is an error.
    partial: &'a BTreeSet<String>,
    generators: &'a [Generator],
    generator_slots: Vec<(usize, usize)>,
    /// Generators declared with a mistake, and whether a step recording this kind had
    /// one: references they would answer are taken on trust (reported once, there).
    broken: &'a BTreeSet<String>,
    kind_unfinished: bool,
}

impl CheckSlots<'_> {
    fn resolve(&mut self, name: &str) -> Result<Source, String> {
        if name == "ack.id" {
            return Ok(Source::Slot(0));
        }
        if let Some(field) = name.strip_prefix("ack.fields.") {
            return match self.fields.iter().position(|f| f == field) {
                Some(index) => Ok(Source::Slot(1 + index)),
                None if self.kind_unfinished => Ok(Source::Slot(0)),
                None if self.partial.contains(field) => Err(format!(
                    "not every `record` of this kind has field `{field}`: a write without it could not be checked"
                )),
                None => Err(format!(
                    "no `record` of this kind has field `{field}` (fields: {})",
                    if self.fields.is_empty() {
                        "none".to_string()
                    } else {
                        self.fields.join(", ")
                    }
                )),
            };
        }
        if let Some(index) = self.generators.iter().position(|g| g.name == name) {
            let slot = match self.generator_slots.iter().find(|(g, _)| *g == index) {
                Some((_, slot)) => *slot,
                None => {
                    let slot = 1 + self.fields.len() + self.generator_slots.len();
                    self.generator_slots.push((index, slot));
                    slot
                }
            };
            return Ok(Source::Slot(slot));
        }
        if self.broken.contains(name) {
            return Ok(Source::Slot(0));
        }
        Err(format!(
            "unknown reference `{name}`: a [[verify]] template reads {{{{ack.id}}}}, {{{{ack.fields.NAME}}}} and generators"
        ))
    }
}

fn validate_kind(
    raw: &RawVerify,
    kind: &Spanned<String>,
    url: &Spanned<String>,
    index: usize,
    recorded: &Recorded<'_>,
    declared: &Declared<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<KindPlan> {
    let before = diagnostics.len();
    // The kind itself was the mistake: what its checks read is taken on trust.
    let kind_unfinished = diagnostics.was_reported(&kind.span());
    let (records, unfinished) = recorders(kind, index, kind_unfinished, recorded, diagnostics);
    let (fields, partial) = field_sets(&records, unfinished);
    let mut slots = CheckSlots {
        fields: &fields,
        partial: &partial,
        generators: declared.generators,
        generator_slots: Vec::new(),
        broken: declared.broken,
        kind_unfinished,
    };

    let method = check_method(raw, diagnostics);
    let path = check_path(url, &mut slots, diagnostics);
    let headers =
        super::checks::validate_headers(&raw.headers, diagnostics, |value, diagnostics| {
            compile(value, Escape::Text, &mut slots, diagnostics)
        });
    let (expect, absent) = expect_and_absent(raw, kind, diagnostics);
    let checks = raw
        .check
        .as_ref()
        .map(|check| {
            super::checks::validate_checks(check, &mut |name| slots.resolve(name), diagnostics)
        })
        .unwrap_or_default();
    let on_unverifiable = match allows(raw.on_unverifiable.as_ref(), "on_unverifiable", diagnostics)
    {
        true => OnUnverifiable::Allow,
        false => OnUnverifiable::Fail,
    };
    let on_no_data = match allows(raw.on_no_data.as_ref(), "on_no_data", diagnostics) {
        true => OnNoData::Allow,
        false => OnNoData::Fail,
    };
    if diagnostics.len() > before {
        return None;
    }
    let slot_count = 1 + fields.len() + slots.generator_slots.len();
    Some(KindPlan {
        name: kind.get_ref().clone(),
        recorded_by: records.iter().map(|(step, _)| *step).collect(),
        check: CheckRequest {
            method,
            path: path?,
            headers,
            expect: expect?,
            absent: absent?,
            checks,
            slot_count,
            generator_slots: slots.generator_slots,
        },
        fields,
        on_unverifiable,
        on_no_data,
    })
}

/// A step that records a kind: its global index and its record's field names.
type Recorder<'r> = (usize, &'r [String]);

/// The steps that record `kind` (its index among the kinds) with their field names, and the
/// field names of the records of steps that had a mistake; no recorder at all is reported,
/// unless the kind itself was a mistake.
fn recorders<'r>(
    kind: &Spanned<String>,
    index: usize,
    kind_unfinished: bool,
    recorded: &Recorded<'r>,
    diagnostics: &mut Diagnostics,
) -> (Vec<Recorder<'r>>, Vec<&'r [String]>) {
    let records: Vec<Recorder<'r>> = recorded
        .journeys
        .iter()
        .flat_map(|j| j.steps.iter())
        .filter_map(|step| {
            step.record
                .as_ref()
                .filter(|r| r.kind == index)
                .map(|r| (step.global_index, r.fields.as_slice()))
        })
        .collect();
    let unfinished: Vec<&[String]> = recorded
        .unfinished
        .iter()
        .filter(|(k, _)| k == kind.get_ref())
        .map(|(_, fields)| fields.as_slice())
        .collect();
    if records.is_empty() && unfinished.is_empty() && !kind_unfinished {
        diagnostics.push(
            kind.span(),
            format!(
                "no step records kind `{}`: add record = {{ kind = \"{}\", id = \"{{{{…}}}}\" }} to the step whose response acknowledges the write",
                kind.get_ref(),
                kind.get_ref()
            ),
        );
    }
    (records, unfinished)
}

/// The fields every record carries, and those some record lacks.
fn field_sets(
    records: &[Recorder<'_>],
    unfinished: Vec<&[String]>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut all: BTreeSet<String> = BTreeSet::new();
    let mut common: Option<BTreeSet<String>> = None;
    for fields in records.iter().map(|(_, f)| *f).chain(unfinished) {
        let set: BTreeSet<String> = fields.iter().cloned().collect();
        all.extend(set.iter().cloned());
        common = Some(match common {
            None => set,
            Some(common) => common.intersection(&set).cloned().collect(),
        });
    }
    let fields: Vec<String> = common.unwrap_or_default().into_iter().collect();
    let partial: BTreeSet<String> = all
        .difference(&fields.iter().cloned().collect())
        .cloned()
        .collect();
    (fields, partial)
}

/// A check's `method`: GET unless HEAD (an other is reported, GET taken in its place).
fn check_method(raw: &RawVerify, diagnostics: &mut Diagnostics) -> Method {
    match &raw.method {
        None => Method::GET,
        Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            other => {
                diagnostics.push(
                    m.span(),
                    format!(
                        "a check reads, it never writes: `method` is GET or HEAD, not `{other}`"
                    ),
                );
                Method::GET
            }
        },
    }
}

/// A check's `url`: a path on the target, compiled, that reads something of each write.
fn check_path(
    url: &Spanned<String>,
    slots: &mut CheckSlots<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<Template> {
    if !url.get_ref().starts_with('/') {
        diagnostics.push(
            url.span(),
            "`url` is a path on the target and must start with `/`",
        );
    }
    let path = compile(url, Escape::Url, slots, diagnostics);
    if path.as_ref().is_some_and(Template::is_static) {
        diagnostics.push(
            url.span(),
            "`url` reads the same thing for every write: put {{ack.id}} in it",
        );
    }
    path
}

/// A check's `expect` (present) and `absent` statuses, which no status may be both.
fn expect_and_absent(
    raw: &RawVerify,
    kind: &Spanned<String>,
    diagnostics: &mut Diagnostics,
) -> (Option<StatusMatcher>, Option<StatusMatcher>) {
    let statuses = |value: &Option<Spanned<super::raw::RawExpect>>,
                    default: StatusMatcher,
                    diagnostics: &mut Diagnostics| match value {
        None => Some(default),
        Some(v) => match parse_expect(v.get_ref()) {
            Ok(matcher) => Some(matcher),
            Err(message) => {
                diagnostics.push(v.span(), message);
                None
            }
        },
    };
    let expect = statuses(
        &raw.expect,
        StatusMatcher::Ranges(vec![(200, 200)]),
        diagnostics,
    );
    let absent = statuses(
        &raw.absent,
        StatusMatcher::Ranges(vec![(404, 404), (410, 410)]),
        diagnostics,
    );
    if let (Some(expect), Some(absent)) = (&expect, &absent)
        && let Some(both) = (100..=599).find(|s| expect.matches(*s) && absent.matches(*s))
    {
        let span = raw.absent.as_ref().map_or(kind.span(), |a| a.span());
        diagnostics.push(
            span,
            format!("status {both} cannot mean both present (`expect`) and absent (`absent`)"),
        );
    }
    (expect, absent)
}

fn validate_count(
    count: &Spanned<RawCount>,
    parent: &RawVerify,
    kinds: &[KindPlan],
    diagnostics: &mut Diagnostics,
) -> Option<CountPlan> {
    let raw = count.get_ref();
    let kind = match raw.kind.as_ref().or(parent.kind.as_ref()) {
        Some(kind) => match kinds.iter().position(|k| &k.name == kind.get_ref()) {
            Some(index) => Some(index),
            None => {
                // An unknown kind of the parent is reported there already.
                if raw.kind.is_some() {
                    diagnostics.push(
                        kind.span(),
                        format!("no [[verify]] reads back kind `{}`", kind.get_ref()),
                    );
                }
                None
            }
        },
        None => {
            diagnostics.push(
                count.span(),
                "[[verify.count]] needs the `kind` whose acknowledged writes it counts",
            );
            None
        }
    };
    let probe = validate_probe(&raw.url, &raw.extract, &raw.headers, diagnostics);
    let kind = kind?;
    Some(CountPlan {
        name: raw.name.as_ref().map_or_else(
            || format!("{} count", kinds[kind].name),
            |n| n.get_ref().clone(),
        ),
        kind,
        probe: probe?,
    })
}

/// A count's or an invariant's request: a fixed path (it is asked twice and must mean the
/// same both times) and a JSON extraction or a response header (a platform that reports
/// its total as `X-Total-Count`, as json-server and many list APIs do).
fn validate_probe(
    url: &Spanned<String>,
    extract: &Spanned<RawExtract>,
    headers: &BTreeMap<String, Spanned<String>>,
    diagnostics: &mut Diagnostics,
) -> Option<Probe> {
    let before = diagnostics.len();
    if !url.get_ref().starts_with('/') {
        diagnostics.push(
            url.span(),
            "`url` is a path on the target and must start with `/`",
        );
    } else if url.get_ref().contains("{{") {
        diagnostics.push(
            url.span(),
            "this `url` is asked before the load and after verification: it takes no {{…}} references",
        );
    } else if url.get_ref().parse::<http::uri::PathAndQuery>().is_err() {
        diagnostics.push(url.span(), "`url` is not a valid path");
    }
    let (extraction, extract_text) = match extract.get_ref() {
        RawExtract::Path(path) => (json_extraction(path), path.clone()),
        RawExtract::Header { header } => (
            HeaderName::from_bytes(header.as_bytes())
                .map(ExtractSource::Header)
                .map_err(|_| format!("`{header}` is not a valid header name")),
            format!("header {header}"),
        ),
    };
    if let Err(message) = &extraction {
        diagnostics.push(extract.span(), message.clone());
    }
    let mut parsed = Vec::new();
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.get_ref()),
        ) {
            (Ok(name), Ok(value)) => parsed.push((name, value)),
            _ => diagnostics.push(value.span(), format!("`{name}` is not a valid header")),
        }
    }
    if diagnostics.len() > before {
        return None;
    }
    Some(Probe {
        path: url.get_ref().clone(),
        headers: parsed,
        extract: extraction.ok()?,
        extract_text,
    })
}

fn compile(
    text: &Spanned<String>,
    escape: Escape,
    slots: &mut CheckSlots<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<Template> {
    match Template::compile(text.get_ref(), escape, &mut |name| slots.resolve(name)) {
        Ok(template) => Some(template),
        Err(errors) => {
            push_errors(diagnostics, text, errors);
            None
        }
    }
}

pub(super) fn push_errors(
    diagnostics: &mut Diagnostics,
    text: &Spanned<String>,
    errors: Vec<TemplateError>,
) {
    for TemplateError { range, message } in errors {
        diagnostics.push(inner_span(text, range), message);
    }
}
