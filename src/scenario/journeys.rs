//! Journeys and steps: methods, URL/header/body templates, expected statuses, extractions
//! and think times. Each journey gets its own slot table: the names its templates use become
//! indices into the iteration's slots.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::raw::{RawExpect, RawExtract, RawJourney, RawJourneyHeader, RawStep};
use super::validate::Declared;
use crate::plan::template::{Escape, Source, Template, TemplateError};
use crate::plan::{
    BodyPlan, Check, ConnectionMode, ExtractSource, Extraction, Feeder, Generator, JourneyPlan,
    StatusMatcher, StepPlan, Think,
};
use crate::util::diag::Diagnostics;
use crate::util::units::parse_duration;

/// A `record` of a step that had a mistake: its kind and field names, as written.
pub(super) type UnfinishedRecord = (String, Vec<String>);

/// The journeys' plans, the cookie names their templates read, and the records (kind,
/// field names) of steps that had a mistake: `[[verify]]` still knows what they record.
pub(super) fn validate_journeys(
    journeys: &[RawJourney],
    declared: &Declared<'_>,
    diagnostics: &mut Diagnostics,
) -> (Vec<JourneyPlan>, Vec<String>, Vec<UnfinishedRecord>) {
    let mut unfinished = Vec::new();
    let mut plans = Vec::new();
    let mut cookie_names = Vec::new();
    let mut seen = HashMap::new();
    let mut global_index = 0;
    for journey in journeys {
        let header = journey.header.get_ref();
        let name = header.name.get_ref().clone();
        if seen.insert(name.clone(), ()).is_some() {
            diagnostics.push(
                header.name.span(),
                format!("a journey named `{name}` already exists"),
            );
        }
        let weight = match &header.weight {
            Some(w) if *w.get_ref() == 0 => {
                diagnostics.push(
                    w.span(),
                    "`weight` must be at least 1 (remove the journey to disable it)",
                );
                0
            }
            Some(w) => *w.get_ref(),
            None => 1,
        };
        let pacing = pacing(header, diagnostics);
        let connection = connection(header, diagnostics);
        let mut slots = Slots::new(declared, &mut cookie_names);
        let mut steps = Vec::new();
        let mut step_names = BTreeSet::new();
        for step in &journey.steps {
            let raw = step.get_ref();
            if !step_names.insert(raw.name.get_ref().clone()) {
                diagnostics.push(
                    raw.name.span(),
                    format!(
                        "journey `{name}` already has a step named `{}`",
                        raw.name.get_ref()
                    ),
                );
            }
            match validate_step(raw, global_index, &mut slots, declared, diagnostics) {
                Some(plan) => steps.push(plan),
                None => unfinished.extend(raw.record.iter().map(|record| {
                    let record = record.get_ref();
                    (
                        record.kind.get_ref().clone(),
                        record.fields.keys().cloned().collect(),
                    )
                })),
            }
            global_index += 1;
        }
        plans.push(JourneyPlan {
            name,
            weight,
            pacing,
            connection,
            steps,
            slot_count: slots.count,
            feeder_slots: slots.feeder_slots,
            generator_slots: slots.generator_slots,
        });
    }
    (plans, cookie_names, unfinished)
}

/// A journey's `pacing`, longer than zero.
fn pacing(header: &RawJourneyHeader, diagnostics: &mut Diagnostics) -> Option<Duration> {
    header.pacing.as_ref().and_then(|pacing| {
        match crate::util::units::parse_duration(pacing.get_ref()) {
            Ok(d) if d.is_zero() => {
                diagnostics.push(pacing.span(), "`pacing` must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                diagnostics.push(pacing.span(), message);
                None
            }
        }
    })
}

/// A journey's `connection` mode, the default unless named (an unknown one is reported and
/// the default taken).
fn connection(header: &RawJourneyHeader, diagnostics: &mut Diagnostics) -> ConnectionMode {
    header.connection.as_ref().map_or(
        ConnectionMode::default(),
        |mode| match ConnectionMode::parse(mode.get_ref()) {
            Ok(mode) => mode,
            Err(message) => {
                diagnostics.push(mode.span(), message);
                ConnectionMode::default()
            }
        },
    )
}

/// Names visible to one journey's templates and the slot each occupies.
struct Slots<'a> {
    feeders: &'a [Feeder],
    generators: &'a [Generator],
    /// Feeders and generators declared with a mistake: a reference to one is taken on trust.
    broken: &'a BTreeSet<String>,
    count: usize,
    variables: HashMap<String, usize>,
    feeder_slots: Vec<(usize, usize)>,
    generator_slots: Vec<(usize, usize)>,
    /// Cookie names read by `{{cookie.NAME}}`, across every journey.
    cookies: &'a mut Vec<String>,
}

impl<'a> Slots<'a> {
    fn new(declared: &Declared<'a>, cookies: &'a mut Vec<String>) -> Self {
        Slots {
            feeders: declared.feeders,
            generators: declared.generators,
            broken: declared.broken,
            cookies,
            count: 0,
            variables: HashMap::new(),
            feeder_slots: Vec::new(),
            generator_slots: Vec::new(),
        }
    }

    fn allocate(&mut self) -> usize {
        self.count += 1;
        self.count - 1
    }

    fn resolve(&mut self, name: &str) -> Result<Source, String> {
        match name {
            "vu" => return Ok(Source::Vu),
            "iteration" => return Ok(Source::Iteration),
            "repeat" => return Ok(Source::Repeat),
            _ => {}
        }
        if name == "ack" || name.starts_with("ack.") {
            return Err(format!(
                "`{{{{{name}}}}}` is only for [[verify]] templates (the write being read back)"
            ));
        }
        if let Some(cookie) = name.strip_prefix("cookie.") {
            return self.resolve_cookie(cookie);
        }
        let declared_as = name.split_once('.').map_or(name, |(feeder, _)| feeder);
        if self.broken.contains(declared_as) {
            // Its mistake is reported where it is declared; the plan will not run.
            return Ok(Source::Slot(self.allocate()));
        }
        if let Some((feeder_name, column)) = name.split_once('.') {
            return self.resolve_column(name, feeder_name, column);
        }
        if let Some(slot) = self.variables.get(name) {
            return Ok(Source::Slot(*slot));
        }
        if let Some(index) = self.generators.iter().position(|g| g.name == name) {
            let slot = match self.generator_slots.iter().find(|(g, _)| *g == index) {
                Some((_, slot)) => *slot,
                None => {
                    let slot = self.allocate();
                    self.generator_slots.push((index, slot));
                    slot
                }
            };
            return Ok(Source::Slot(slot));
        }
        let mut known: Vec<String> = self.variables.keys().cloned().collect();
        known.extend(self.generators.iter().map(|g| g.name.clone()));
        known.sort();
        Err(if known.is_empty() {
            format!(
                "unknown reference `{name}`: no earlier step extracts it and no generator has that name"
            )
        } else {
            format!(
                "unknown reference `{name}`: no earlier step extracts it and no generator has that name (known here: {})",
                known.join(", ")
            )
        })
    }

    /// `{{cookie.NAME}}`: the cookie's index among those read, added on first use.
    fn resolve_cookie(&mut self, cookie: &str) -> Result<Source, String> {
        if cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b'=')
        {
            return Err(format!("`{cookie}` is not a cookie name"));
        }
        let index = match self.cookies.iter().position(|c| c == cookie) {
            Some(index) => index,
            None => {
                self.cookies.push(cookie.to_string());
                self.cookies.len() - 1
            }
        };
        Ok(Source::Cookie(index))
    }

    /// `{{FEEDER.COLUMN}}`: the feeder's slot, allocated on first use, and the column.
    fn resolve_column(
        &mut self,
        name: &str,
        feeder_name: &str,
        column: &str,
    ) -> Result<Source, String> {
        let Some(index) = self.feeders.iter().position(|f| f.name == feeder_name) else {
            return Err(format!(
                "unknown feeder `{feeder_name}` in `{{{{{name}}}}}`"
            ));
        };
        let feeder = &self.feeders[index];
        let Some(column_index) = feeder.columns.iter().position(|c| c == column) else {
            return Err(format!(
                "feeder `{feeder_name}` has no column `{column}` (columns: {})",
                feeder.columns.join(", ")
            ));
        };
        let slot = match self.feeder_slots.iter().find(|(f, _)| *f == index) {
            Some((_, slot)) => *slot,
            None => {
                let slot = self.allocate();
                self.feeder_slots.push((index, slot));
                slot
            }
        };
        Ok(Source::Column {
            slot,
            column: column_index,
        })
    }
}

fn validate_step(
    raw: &RawStep,
    global_index: usize,
    slots: &mut Slots<'_>,
    declared: &Declared<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<StepPlan> {
    let before = diagnostics.len();
    let method = method(raw, diagnostics);
    if !raw.url.get_ref().starts_with('/') {
        diagnostics.push(
            raw.url.span(),
            "a step's `url` is a path on the target and must start with `/` (the host comes from [target] base_url)",
        );
    }
    let path = compile_text(&raw.url, Escape::Url, slots, diagnostics);

    let mut headers =
        super::checks::validate_headers(&raw.headers, diagnostics, |value, diagnostics| {
            compile_text(value, Escape::Text, slots, diagnostics)
        });

    let body = validate_body(raw, slots, diagnostics, &mut headers);
    let expect = match &raw.expect {
        None => Some(StatusMatcher::Ranges(vec![(200, 299)])),
        Some(expect) => match parse_expect(expect.get_ref()) {
            Ok(matcher) => Some(matcher),
            Err(message) => {
                diagnostics.push(expect.span(), message);
                None
            }
        },
    };
    let think = raw
        .think
        .as_ref()
        .and_then(|think| match parse_think(think.get_ref()) {
            Ok(think) => Some(think),
            Err(message) => {
                diagnostics.push(think.span(), message);
                None
            }
        });
    let repeat = match &raw.repeat {
        None => Some(1),
        Some(n) if (1..=MAX_REPEAT).contains(n.get_ref()) => Some(*n.get_ref()),
        Some(n) => {
            diagnostics.push(
                n.span(),
                format!("`repeat` must be 1 to {MAX_REPEAT}, not {}", n.get_ref()),
            );
            None
        }
    };
    let checks = raw.check.as_ref().map_or_else(Vec::new, |check| {
        super::checks::validate_checks(check, &mut |name| slots.resolve(name), diagnostics)
    });
    // Extractions are defined after the step's own templates are compiled: a step cannot
    // read what it extracts itself.
    let extract = validate_extractions(raw, slots, diagnostics);
    // A record reads what the step itself extracts (the id the response gave).
    let record = raw.record.as_ref().map(|record| {
        super::record::validate_record(
            record,
            declared,
            &mut |name| slots.resolve(name),
            diagnostics,
        )
    });

    if diagnostics.len() > before {
        return None;
    }
    Some(StepPlan {
        name: raw.name.get_ref().clone(),
        global_index,
        method,
        path: path?,
        headers,
        body: body?,
        expect: expect?,
        keeps_body: extract
            .iter()
            .any(|e| !matches!(e.source, ExtractSource::Header(_)))
            || checks.iter().any(Check::reads_body),
        checks,
        extract,
        think,
        repeat: repeat?,
        record: record.flatten(),
    })
}

/// A step's `method`, GET unless named (an unknown one is reported, GET taken in its place).
fn method(raw: &RawStep, diagnostics: &mut Diagnostics) -> Method {
    match &raw.method {
        None => Method::GET,
        Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            "HEAD" => Method::HEAD,
            "OPTIONS" => Method::OPTIONS,
            other => {
                diagnostics.push(m.span(), format!("unknown HTTP method `{other}`"));
                Method::GET
            }
        },
    }
}

/// A step repeated more often than this is a journey of its own (or a typo).
const MAX_REPEAT: u32 = 10_000;

fn validate_body(
    raw: &RawStep,
    slots: &mut Slots<'_>,
    diagnostics: &mut Diagnostics,
    headers: &mut Vec<(HeaderName, Template)>,
) -> Option<BodyPlan> {
    let given: Vec<Range<usize>> = [
        raw.json.as_ref().map(|v| v.span()),
        raw.form.as_ref().map(|v| v.span()),
        raw.body.as_ref().map(|v| v.span()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        diagnostics.push(
            given[1].clone(),
            "a step takes one of `json`, `form` or `body`, not several",
        );
        return None;
    }
    let mut set_content_type = |value: &str| {
        if !headers
            .iter()
            .any(|(name, _)| name == http::header::CONTENT_TYPE)
        {
            headers.push((http::header::CONTENT_TYPE, Template::literal(value)));
        }
    };
    if let Some(json) = &raw.json {
        set_content_type("application/json");
        return match Template::json(json.get_ref(), &mut |name| slots.resolve(name)) {
            Ok(template) => Some(BodyPlan::Json(template)),
            Err(errors) => {
                for error in errors {
                    diagnostics.push(json.span(), error.message);
                }
                None
            }
        };
    }
    if let Some(form) = &raw.form {
        set_content_type("application/x-www-form-urlencoded");
        let fields: Vec<(String, String)> = form
            .get_ref()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        return match Template::form(&fields, &mut |name| slots.resolve(name)) {
            Ok(template) => Some(BodyPlan::Form(template)),
            Err(errors) => {
                for error in errors {
                    diagnostics.push(form.span(), error.message);
                }
                None
            }
        };
    }
    if let Some(body) = &raw.body {
        return compile_text(body, Escape::Text, slots, diagnostics).map(BodyPlan::Raw);
    }
    Some(BodyPlan::None)
}

fn validate_extractions(
    raw: &RawStep,
    slots: &mut Slots<'_>,
    diagnostics: &mut Diagnostics,
) -> Vec<Extraction> {
    let mut extractions = Vec::new();
    for (variable, spec) in &raw.extract {
        if crate::scenario::validate::RESERVED_NAMES.contains(&variable.as_str())
            || variable.contains('.')
        {
            diagnostics.push(
                spec.span(),
                format!("`{variable}` cannot be a variable name (reserved or contains a dot)"),
            );
            continue;
        }
        if slots.generators.iter().any(|g| &g.name == variable) {
            diagnostics.push(
                spec.span(),
                format!("`{variable}` is already the name of a generator"),
            );
            continue;
        }
        let source = match spec.get_ref() {
            RawExtract::Path(path) => json_extraction(path),
            RawExtract::Header { header } => HeaderName::from_bytes(header.as_bytes())
                .map(ExtractSource::Header)
                .map_err(|_| format!("`{header}` is not a valid header name")),
        };
        match source {
            Ok(source) => {
                let slot = match slots.variables.get(variable) {
                    Some(slot) => *slot,
                    None => {
                        let slot = slots.allocate();
                        slots.variables.insert(variable.clone(), slot);
                        slot
                    }
                };
                extractions.push(Extraction {
                    variable: variable.clone(),
                    slot,
                    source,
                });
            }
            Err(message) => diagnostics.push(spec.span(), message),
        }
    }
    extractions
}

/// A JSON pointer (`/a/0`) or a JSONPath (`$.a[0]`) into a response body.
pub(super) fn json_extraction(path: &str) -> Result<ExtractSource, String> {
    if path.is_empty() || path.starts_with('/') {
        Ok(ExtractSource::JsonPointer(path.to_string()))
    } else if path.starts_with('$') {
        serde_json_path::JsonPath::parse(path)
            .map(ExtractSource::JsonPath)
            .map_err(|e| format!("`{path}` is not a valid JSONPath: {e}"))
    } else {
        Err(format!(
            "`{path}` is neither a JSON pointer (starting with `/`) nor a JSONPath (starting with `$`)"
        ))
    }
}

fn compile_text(
    text: &Spanned<String>,
    escape: Escape,
    slots: &mut Slots<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<Template> {
    match Template::compile(text.get_ref(), escape, &mut |name| slots.resolve(name)) {
        Ok(template) => Some(template),
        Err(errors) => {
            for TemplateError { range, message } in errors {
                diagnostics.push(inner_span(text, range), message);
            }
            None
        }
    }
}

/// Maps a byte range inside a string value to the file, when the string is written plainly
/// (no escapes) so offsets match; otherwise the whole string's span.
pub(super) fn inner_span(text: &Spanned<String>, range: Range<usize>) -> Range<usize> {
    let span = text.span();
    let value = text.get_ref();
    let literal_len = value.len() + 2;
    if span.end - span.start == literal_len {
        span.start + 1 + range.start..span.start + 1 + range.end
    } else {
        span
    }
}

pub(super) fn parse_expect(expect: &RawExpect) -> Result<StatusMatcher, String> {
    let code = |c: u16| {
        if (100..=599).contains(&c) {
            Ok((c, c))
        } else {
            Err(format!("{c} is not an HTTP status (100-599)"))
        }
    };
    let ranges = match expect {
        RawExpect::Code(c) => vec![code(*c)?],
        RawExpect::Codes(codes) if codes.is_empty() => {
            return Err("`expect` cannot be an empty list".into());
        }
        RawExpect::Codes(codes) => codes.iter().map(|c| code(*c)).collect::<Result<_, _>>()?,
        RawExpect::Text(text) => {
            let text = text.trim();
            if let Some(class) = text.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
                if !(1..=5).contains(&class) {
                    return Err(format!("`{text}` is not a status class (1xx-5xx)"));
                }
                vec![(class * 100, class * 100 + 99)]
            } else if let Some((lo, hi)) = text.split_once('-') {
                let lo: u16 = lo
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a status range like \"200-299\""))?;
                let hi: u16 = hi
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a status range like \"200-299\""))?;
                let (lo, _) = code(lo)?;
                let (hi, _) = code(hi)?;
                if lo > hi {
                    return Err(format!("status range `{text}` is reversed"));
                }
                vec![(lo, hi)]
            } else if text.parse::<u16>().is_ok() {
                return Err(format!(
                    "`expect` takes a status as a number: write {text} without quotes"
                ));
            } else {
                return Err(format!(
                    "`{text}` is not an expected status (write 200, [200, 201], \"2xx\" or \"200-299\")"
                ));
            }
        }
    };
    Ok(StatusMatcher::Ranges(ranges))
}

fn parse_think(text: &str) -> Result<Think, String> {
    match text.split_once("..") {
        Some((lo, hi)) => {
            let min = parse_duration(lo)?;
            let max = parse_duration(hi)?;
            if min > max {
                return Err(format!("think range `{text}` is reversed"));
            }
            Ok(Think { min, max })
        }
        None => {
            let fixed = parse_duration(text)?;
            Ok(Think {
                min: fixed,
                max: fixed,
            })
        }
    }
}
