//! The `/metrics` page: the families in the OpenMetrics text format, encoded by
//! prometheus-client from the exported state at each scrape.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::families::{Family, Kind, RunLabels, Value, bucket_bound, families};
use super::state::Exported;

/// The content type of the page.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label value escaped as the exposition format requires (prometheus-client writes
/// values as given, and journey, step, fault and instance names are the user's text).
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Families {
    state: Arc<Mutex<Exported>>,
    run: RunLabels,
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copied out under the lock, encoded after it.
        let state = self.state.lock().map_err(|_| std::fmt::Error)?.clone();
        for family in families(&state, &self.run) {
            encode_family(&mut encoder, &family)?;
        }
        Ok(())
    }
}

fn encode_family(encoder: &mut DescriptorEncoder, family: &Family) -> std::fmt::Result {
    let metric_type = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    let unit = family.seconds.then_some(Unit::Seconds);
    let mut metric =
        encoder.encode_descriptor(family.name, family.help, unit.as_ref(), metric_type)?;
    for (labels, value) in &family.series {
        let labels: Vec<(&str, Escaped)> = labels
            .iter()
            .map(|(k, v)| (*k, Escaped(v.clone())))
            .collect();
        let mut series = metric.encode_family(&labels)?;
        match value {
            Value::Count(n) => {
                series
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(n, None)?;
            }
            Value::Gauge(v) => series.encode_gauge(v)?,
            Value::Histogram(buckets) => {
                let bounds: Vec<(f64, u64)> = buckets
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(i, count)| {
                        let bound = bucket_bound(i);
                        // prometheus-client writes `+Inf` for f64::MAX.
                        (if bound.is_finite() { bound } else { f64::MAX }, *count)
                    })
                    .collect();
                series.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    buckets.sum_seconds,
                    buckets.count,
                    &bounds,
                    None,
                )?;
            }
        }
    }
    Ok(())
}

/// The registry the page is encoded from.
pub(crate) fn registry(state: Arc<Mutex<Exported>>, run: RunLabels) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families { state, run }));
    registry
}

/// The page: every family, then `# EOF`.
pub(crate) fn page(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_counters_end_in_total() {
        let mut state = Exported {
            step_names: vec![("say \"hi\"\\".into(), "a\nb".into())],
            journey_names: vec!["say \"hi\"\\".into()],
            ..Exported::default()
        };
        state.steps = vec![Default::default()];
        state.journeys = vec![Default::default()];
        let run = RunLabels {
            scenario: "s".into(),
            run_id: "r".into(),
        };
        let text = page(&registry(Arc::new(Mutex::new(state)), run));
        assert!(
            text.contains(r#"journey="say \"hi\"\\",step="a\nb",outcome="ok"} 0"#),
            "{text}"
        );
        assert!(text.contains("loadgen_requests_total{scenario=\"s\",run_id=\"r\""));
        assert!(text.contains("# TYPE loadgen_request_duration_seconds histogram"));
        assert!(text.contains("# UNIT loadgen_request_duration_seconds seconds"));
        assert!(text.contains("le=\"+Inf\""));
        assert!(text.ends_with("# EOF\n"));
    }
}
