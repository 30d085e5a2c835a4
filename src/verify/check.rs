//! One read-back: the check request of an acknowledged write, sent with the run's own
//! client (its TLS trust, protocol, timeouts and allow-listed address), retried with
//! back-off while the answer says nothing about the write (a timeout, a refused connection,
//! a 5xx), then judged: verified, missing, mismatched or unverifiable.

use std::cell::Cell;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::acks::AckLine;
use crate::engine::check::{Body, Mismatch, first_mismatch};
use crate::engine::http::{Client, Response, Route};
use crate::engine::request::{RequestTemplate, Unrenderable};
use crate::plan::CheckKind;
use crate::plan::Plan;
use crate::plan::data::{generate, iteration_rng};
use crate::plan::template::{Template, Values};
use crate::plan::verify::{KindPlan, Probe};
use crate::plan::{ConnectionMode, ExtractSource};

/// Attempts per check (and per count or invariant request) before it is unverifiable.
pub(crate) const ATTEMPTS: u32 = 3;
/// The wait before each retry.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];
/// Salt of the generators' RNG in checks: a check's values do not repeat a journey's.
const CHECK_SALT: u64 = 0xC0FF_EE00_ACED_0001;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Present, and every field check agreed.
    Verified,
    /// The platform says it is not there (an `absent` status).
    Missing,
    /// Present, but a field check disagreed.
    Mismatched,
    /// The check itself kept failing: no answer about the write.
    Unverifiable,
}

#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub outcome: Outcome,
    /// The last answer's status, if one came.
    pub status: Option<u16>,
    pub attempts: u32,
    /// What differed (mismatched) or what went wrong (unverifiable).
    pub detail: Option<String>,
}

/// Sends checks and probes for one verification, counting every request it sends.
pub(crate) struct Checker<'a> {
    pub client: &'a Client,
    pub plan: &'a Plan,
    pub seed: u64,
    pub cancel: CancellationToken,
    requests: Cell<u64>,
    retries: Cell<u64>,
    source: Option<IpAddr>,
    prefix: String,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(
        client: &'a Client,
        plan: &'a Plan,
        seed: u64,
        cancel: CancellationToken,
    ) -> Self {
        Checker {
            client,
            plan,
            seed,
            cancel,
            requests: Cell::new(0),
            retries: Cell::new(0),
            source: plan.target.source_addrs.first().copied(),
            prefix: plan.target.base.prefix.clone(),
        }
    }

    /// Requests sent so far, and of them retries.
    pub(crate) fn sent(&self) -> (u64, u64) {
        (self.requests.get(), self.retries.get())
    }

    /// Reads acknowledged write `ack` (the `number`th of the run) back.
    pub(crate) async fn check(&self, kind: &KindPlan, ack: &AckLine, number: u64) -> Checked {
        let values = self.values(kind, ack, number);
        let check = &kind.check;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (status, why) = match self
                .send(&check.method, &check.path, &check.headers, &values)
                .await
            {
                Ok(response) => {
                    let status = response.status.as_u16();
                    if check.absent.matches(status) {
                        return checked(Outcome::Missing, Some(status), attempts, None);
                    }
                    if check.expect.matches(status) {
                        return match first_difference(kind, &response, &values) {
                            None => checked(Outcome::Verified, Some(status), attempts, None),
                            Some(difference) => checked(
                                Outcome::Mismatched,
                                Some(status),
                                attempts,
                                Some(difference),
                            ),
                        };
                    }
                    (Some(status), format!("status {status}"))
                }
                Err(why) => (None, why),
            };
            if attempts >= ATTEMPTS || !self.back_off(attempts).await {
                return checked(Outcome::Unverifiable, status, attempts, Some(why));
            }
        }
    }

    /// A count's or an invariant's value: the extraction from a 200 answer's JSON, or its
    /// header's value (read as JSON, so `X-Total-Count: 480` is the number 480).
    pub(crate) async fn probe(&self, probe: &Probe) -> Result<Value, String> {
        let path = Template::literal(&probe.path);
        let headers: Vec<_> = probe
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    Template::literal(value.to_str().unwrap_or_default()),
                )
            })
            .collect();
        let values = SlotValues(Vec::new());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let why = match self.send(&Method::GET, &path, &headers, &values).await {
                Ok(response) if response.status == http::StatusCode::OK => {
                    return extract(&probe.extract, &response).ok_or_else(|| {
                        format!("{} found no value at {}", probe.path, probe.extract_text)
                    });
                }
                Ok(response) => format!("{}: status {}", probe.path, response.status.as_u16()),
                Err(why) => format!("{}: {why}", probe.path),
            };
            if attempts >= ATTEMPTS || !self.back_off(attempts).await {
                return Err(format!("{why} (after {attempts} attempt(s))"));
            }
        }
    }

    /// Waits before retry `attempt`; false when verification was stopped meanwhile.
    async fn back_off(&self, attempt: u32) -> bool {
        let wait = BACKOFF[(attempt as usize - 1).min(BACKOFF.len() - 1)];
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                self.retries.set(self.retries.get() + 1);
                true
            }
            _ = self.cancel.cancelled() => false,
        }
    }

    fn values(&self, kind: &KindPlan, ack: &AckLine, number: u64) -> SlotValues {
        let mut slots = vec![Value::Null; kind.check.slot_count];
        slots[0] = ack.id.clone();
        for (index, field) in kind.fields.iter().enumerate() {
            slots[1 + index] = ack.fields.get(field).cloned().unwrap_or(Value::Null);
        }
        let mut rng = iteration_rng(self.seed ^ CHECK_SALT, number);
        for &(generator, slot) in &kind.check.generator_slots {
            slots[slot] = generate(&self.plan.generators[generator].kind, &mut rng);
        }
        SlotValues(slots)
    }

    async fn send(
        &self,
        method: &Method,
        path: &Template,
        headers: &[(http::HeaderName, Template)],
        values: &SlotValues,
    ) -> Result<Response, String> {
        let request = RequestTemplate {
            method,
            prefix: self.prefix.as_bytes(),
            path,
            target_headers: &self.plan.target.headers,
            headers,
        }
        .render(values, Bytes::new())
        .map_err(|unrenderable| match unrenderable {
            Unrenderable::Url => "the rendered url is not valid".to_string(),
            Unrenderable::Header(name) => format!("header {name} is not valid once rendered"),
        })?;
        self.requests.set(self.requests.get() + 1);
        let route = Route {
            mode: ConnectionMode::Pool,
            source: self.source,
        };
        self.client
            .send(&mut None, route, None, request, true, false)
            .await
            .map_err(|failure| failure.class.name().to_string())
    }
}

fn checked(
    outcome: Outcome,
    status: Option<u16>,
    attempts: u32,
    detail: Option<String>,
) -> Checked {
    Checked {
        outcome,
        status,
        attempts,
        detail,
    }
}

/// The first field check a present write fails, in words (`engine::check` judges it, as
/// it judges a step's checks).
fn first_difference(kind: &KindPlan, response: &Response, values: &SlotValues) -> Option<String> {
    let checks = &kind.check.checks;
    let mismatch = first_mismatch(checks, response, &mut Body::new(&response.body), values)?;
    let Mismatch {
        index,
        expected,
        found,
    } = mismatch;
    Some(match &checks[index].kind {
        CheckKind::Json { pointer, .. } => {
            format!("{pointer}: acknowledged {expected}, found {found}")
        }
        CheckKind::BodyContains(_) => format!("the body does not contain {expected}"),
        CheckKind::Header { name, .. } => {
            format!("header {name}: {found} does not match {expected}")
        }
    })
}

/// A probe's value: from the JSON body, or a header's read as JSON (so `X-Total-Count: 480`
/// is the number 480, and any other text a string).
fn extract(source: &ExtractSource, response: &Response) -> Option<Value> {
    if let Some(header) = source.in_headers(&response.headers) {
        return Some(
            serde_json::from_str(header.trim()).unwrap_or_else(|_| Value::String(header.into())),
        );
    }
    let json: Value = serde_json::from_slice(&response.body).ok()?;
    source.in_json(&json).filter(|v| !v.is_null()).cloned()
}

/// A check's template values: slot 0 the write's id, then its fields, then generators.
struct SlotValues(Vec<Value>);

impl Values for SlotValues {
    fn slot(&self, slot: usize) -> Option<&Value> {
        self.0.get(slot)
    }
    fn column(&self, _: usize, _: usize) -> Option<&Value> {
        None
    }
    fn vu(&self) -> u64 {
        0
    }
    fn iteration(&self) -> u64 {
        0
    }
    fn repeat(&self) -> u32 {
        0
    }
}
