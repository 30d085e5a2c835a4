//! `[prometheus]` (where the platform's metrics are read) and `[[observe]]` (the series a
//! run keeps beside its own). The server's host is held to the allow-list and the policy at
//! prepare, as the target is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plan::prometheus::{Observe, PrometheusPlan, ServerUnit};
use crate::util::diag::Diagnostics;
use crate::util::units::parse_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrometheus {
    /// Absent: the platform's Prometheus (the local stack's, found at prepare).
    pub url: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub scrape_interval: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObserve {
    pub name: Spanned<String>,
    pub query: Spanned<String>,
    pub unit: Spanned<String>,
}

/// The longest a request may take: a query that needs more is too heavy for a drill.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) fn validate_prometheus(
    raw: Option<&Spanned<RawPrometheus>>,
    diagnostics: &mut Diagnostics,
) -> Option<PrometheusPlan> {
    let raw = raw?.get_ref();
    let url = raw.url.as_ref().and_then(|url| match url::Url::parse(url.get_ref()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => {
            Some(parsed)
        }
        Ok(_) => {
            diagnostics.push(
                url.span(),
                "`url` must be an http:// or https:// URL with a host, such as http://127.0.0.1:9090",
            );
            None
        }
        Err(e) => {
            diagnostics.push(url.span(), format!("`url`: {e}"));
            None
        }
    });
    let timeout = duration(raw.timeout.as_ref(), "timeout", diagnostics, |d| {
        (!d.is_zero() && d <= LONGEST_TIMEOUT)
            .then_some(())
            .ok_or("from 1ms to 5m")
    })
    .unwrap_or(PrometheusPlan::DEFAULT_TIMEOUT);
    let scrape_interval = duration(
        raw.scrape_interval.as_ref(),
        "scrape_interval",
        diagnostics,
        |d| {
            (d >= Duration::from_secs(1) && d <= Duration::from_secs(3600))
                .then_some(())
                .ok_or("from 1s to 1h")
        },
    );
    if let (Some(file), Some(url)) = (&raw.ca_file, &url)
        && url.scheme() != "https"
    {
        diagnostics.push(file.span(), "`ca_file` only applies to an https:// url");
    }
    if raw.url.is_some() && url.is_none() {
        return None;
    }
    Some(PrometheusPlan {
        url,
        timeout,
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
        ca_file: raw
            .ca_file
            .as_ref()
            .map(|f| std::path::PathBuf::from(f.get_ref())),
        scrape_interval,
        resolved: None,
    })
}

/// A duration setting, checked by `valid` (which says the range when it refuses).
pub(super) fn duration(
    raw: Option<&Spanned<String>>,
    key: &str,
    diagnostics: &mut Diagnostics,
    valid: impl Fn(Duration) -> Result<(), &'static str>,
) -> Option<Duration> {
    let raw = raw?;
    match parse_duration(raw.get_ref()) {
        Ok(d) => match valid(d) {
            Ok(()) => Some(d),
            Err(range) => {
                diagnostics.push(raw.span(), format!("`{key}` must be {range}"));
                None
            }
        },
        Err(e) => {
            diagnostics.push(raw.span(), format!("`{key}`: {e}"));
            None
        }
    }
}

pub(super) fn validate_observe(
    raw: &[Spanned<RawObserve>],
    prometheus: bool,
    diagnostics: &mut Diagnostics,
) -> Vec<Observe> {
    let mut seen: Vec<&str> = Vec::new();
    let mut observed = Vec::new();
    for entry in raw {
        let entry_ref = entry.get_ref();
        if !prometheus {
            diagnostics.push(
                entry.span(),
                "[[observe]] needs a [prometheus] section with the server's `url`",
            );
        }
        let name = entry_ref.name.get_ref().trim();
        if name.is_empty() {
            diagnostics.push(entry_ref.name.span(), "`name` cannot be empty");
        } else if seen.contains(&name) {
            diagnostics.push(
                entry_ref.name.span(),
                format!("another [[observe]] is named `{name}`: names must differ"),
            );
        }
        seen.push(name);
        if entry_ref.query.get_ref().trim().is_empty() {
            diagnostics.push(entry_ref.query.span(), "`query` cannot be empty");
        }
        let unit = unit(&entry_ref.unit, diagnostics);
        if let Some(unit) = unit {
            observed.push(Observe {
                name: name.to_string(),
                query: entry_ref.query.get_ref().trim().to_string(),
                unit,
            });
        }
    }
    observed
}

/// A server query's unit, as written.
pub(super) fn unit(raw: &Spanned<String>, diagnostics: &mut Diagnostics) -> Option<ServerUnit> {
    let unit = ServerUnit::parse(raw.get_ref().trim());
    if unit.is_none() {
        let known: Vec<String> = ServerUnit::ALL
            .iter()
            .map(|u| format!("\"{}\"", u.name()))
            .collect();
        diagnostics.push(
            raw.span(),
            format!(
                "unknown unit `{}`: one of {}",
                raw.get_ref(),
                known.join(", ")
            ),
        );
    }
    unit
}
