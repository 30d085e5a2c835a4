//! Prometheus in: the HTTP API client that reads the platform's own metrics — range
//! queries over the run, instant queries at a window's end, the server's scrape interval.
//! Every failure is a value (an unreachable server, a query error, a timeout), never a
//! panic: the caller records it and judges the data it has as missing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::plan::prometheus::PrometheusPlan;

/// The most points one range query may return per series (Prometheus refuses more).
pub(crate) const MAX_POINTS: u64 = 11_000;

/// One series a query returned: its labels and its points, `(unix seconds, value)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A client of one Prometheus server.
pub(crate) struct Puller {
    client: reqwest::Client,
    base: url::Url,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl Puller {
    pub(crate) fn new(
        plan: &PrometheusPlan,
        trust: Option<&crate::engine::tls::Trust>,
    ) -> Result<Puller, String> {
        let host = plan
            .url
            .as_ref()
            .and_then(|u| u.host_str())
            .unwrap_or_default();
        let pin = plan.resolved.map(|address| (host, address));
        let client = crate::engine::tls::control_plane(trust, pin, plan.timeout)?;
        Ok(Puller {
            client,
            base: plan.url.clone().ok_or("no Prometheus url")?,
            headers: plan.headers.clone(),
            timeout: plan.timeout,
        })
    }

    /// The server's global scrape interval (`/api/v1/status/config`).
    pub(crate) async fn scrape_interval(&self) -> Result<Duration, String> {
        let data = self.get("status/config", &[]).await?;
        let yaml = data
            .get("yaml")
            .and_then(serde_json::Value::as_str)
            .ok_or("the server's configuration has no `yaml`")?;
        global_scrape_interval(yaml)
            .ok_or_else(|| "the server's configuration names no global scrape_interval".into())
    }

    /// `query` over `[start, end]` (unix seconds) at `step`, in as many requests as the
    /// server's point limit needs; the series merged by their labels, points in order.
    pub(crate) async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<Series>, String> {
        let step_s = step.as_secs_f64().max(1.0);
        let mut merged: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (from, to) in chunks(start, end, step_s) {
            let data = self
                .get(
                    "query_range",
                    &[
                        ("query", query.to_string()),
                        ("start", format!("{from:.3}")),
                        ("end", format!("{to:.3}")),
                        ("step", format!("{step_s}")),
                    ],
                )
                .await?;
            for series in parse_result(data, "matrix")? {
                merged
                    .entry(series.labels)
                    .or_default()
                    .extend(series.points);
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }

    /// `query` evaluated at `at` (unix seconds): one point per series.
    pub(crate) async fn instant(&self, query: &str, at: f64) -> Result<Vec<Series>, String> {
        let data = self
            .get(
                "query",
                &[("query", query.to_string()), ("time", format!("{at:.3}"))],
            )
            .await?;
        parse_result(data, "vector")
    }

    /// One API call, its `data` or why not.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, String> {
        let url = self
            .base
            .join(&format!("api/v1/{path}"))
            .map_err(|e| format!("{}: {e}", self.base))?;
        let mut form: Vec<(&str, String)> = params.to_vec();
        // The server stops evaluating when the client would have given up.
        form.push(("timeout", format!("{}s", self.timeout.as_secs_f64())));
        // POSTed as a form: a long query does not meet a URL's length limit.
        let mut request = match path {
            "status/config" => self.client.get(url.clone()),
            _ => self
                .client
                .post(url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                        .finish(),
                ),
        };
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("Prometheus at {}: {}", self.base, short(&e.to_string())))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("Prometheus at {}: {}", self.base, short(&e.to_string())))?;
        let answer: Answer = serde_json::from_str(&body).map_err(|_| {
            format!(
                "Prometheus at {} answered {status}: {}",
                self.base,
                short(&body)
            )
        })?;
        match (answer.status.as_str(), answer.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(format!(
                "Prometheus refused the query ({status}, {}): {}",
                answer.error_type.as_deref().unwrap_or("error"),
                short(answer.error.as_deref().unwrap_or("no reason given"))
            )),
        }
    }
}

/// At most 200 printable characters of what a server said.
fn short(text: &str) -> String {
    crate::util::text::printable(text.trim())
        .chars()
        .take(200)
        .collect()
}

/// `[start, end]` cut into ranges of at most `MAX_POINTS` points at `step_s`.
fn chunks(start: f64, end: f64, step_s: f64) -> Vec<(f64, f64)> {
    let span = step_s * (MAX_POINTS - 1) as f64;
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let to = (from + span).min(end);
        out.push((from, to));
        if to >= end {
            break;
        }
        from = to + step_s;
    }
    out
}

fn parse_result(data: serde_json::Value, expected: &str) -> Result<Vec<Series>, String> {
    let data: Data = serde_json::from_value(data)
        .map_err(|e| format!("Prometheus's answer has no {expected} result: {e}"))?;
    if data.result_type != expected {
        return Err(format!(
            "the query returned a {} where a {expected} was expected (a range query needs an instant vector expression)",
            data.result_type
        ));
    }
    let raw: Vec<RawSeries> = serde_json::from_value(data.result)
        .map_err(|e| format!("Prometheus's result is not a {expected}: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|series| {
            let points = series
                .values
                .into_iter()
                .chain(series.value)
                // Values are strings so NaN and ±Inf survive; anything else is dropped.
                .filter_map(|(t, v)| v.parse::<f64>().ok().map(|v| (t, v)))
                .collect();
            Series {
                labels: series.metric,
                points,
            }
        })
        .collect())
}

/// `global.scrape_interval` from the server's configuration (YAML as Prometheus prints it:
/// two-space indentation, `global:` at the top).
fn global_scrape_interval(yaml: &str) -> Option<Duration> {
    let mut in_global = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            in_global = line.trim_end() == "global:";
            continue;
        }
        if in_global && let Some(value) = line.trim().strip_prefix("scrape_interval:") {
            return crate::util::units::parse_duration(value.trim()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_range_is_cut_under_the_point_limit_without_gaps_or_overlap() {
        let parts = chunks(0.0, 30_000.0, 1.0);
        assert_eq!(parts.len(), 3);
        for (from, to) in &parts {
            assert!((to - from) / 1.0 + 1.0 <= MAX_POINTS as f64);
        }
        for pair in parts.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1.0, "the next starts one step on");
        }
        assert_eq!(parts.last().unwrap().1, 30_000.0);
        assert_eq!(chunks(5.0, 65.0, 15.0), vec![(5.0, 65.0)]);
    }

    #[test]
    fn the_global_scrape_interval_is_read_from_the_config() {
        let yaml = "global:\n  scrape_interval: 5s\n  scrape_timeout: 4s\nscrape_configs:\n- job_name: x\n  scrape_interval: 1s\n";
        assert_eq!(global_scrape_interval(yaml), Some(Duration::from_secs(5)));
        assert_eq!(global_scrape_interval("scrape_configs: []\n"), None);
    }

    #[test]
    fn a_result_of_another_type_is_refused_and_odd_values_kept() {
        let data = serde_json::json!({
            "resultType": "matrix",
            "result": [{"metric": {"job": "a"}, "values": [[1.0, "2"], [2.0, "NaN"], [3.0, "+Inf"]]}],
        });
        let series = parse_result(data, "matrix").unwrap();
        assert_eq!(series[0].labels["job"], "a");
        assert_eq!(series[0].points.len(), 3);
        assert!(series[0].points[1].1.is_nan());
        let scalar = serde_json::json!({"resultType": "scalar", "result": [1.0, "1"]});
        assert!(
            parse_result(scalar, "matrix")
                .unwrap_err()
                .contains("scalar")
        );
    }
}
