//! The latency percentile spectrum, as HdrHistogram plots it: latency against
//! 1/(1 − percentile) on a log axis, so the tail (99 %, 99.9 %, 99.99 %) gets as much room
//! as the median. Read from the whole-run histograms (`histograms/totals.hlog`): `all` and
//! each step.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use super::{self as charts, OKABE_ITO};
use crate::record::data::for_each_histogram;
use crate::record::tag::Tag;

/// One scope's spectrum.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Spectrum {
    pub scope: String,
    pub points: Vec<SpectrumPoint>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct SpectrumPoint {
    /// 0 ≤ percentile < 100.
    pub percentile: f64,
    pub latency_us: u64,
}

/// Percentiles every chart shows exactly (so a reader, and a test, find p99 on it).
const NAMED: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// The spectra of `all` and of each step (`step_names[i]` names `step:i`), successes only.
pub(crate) fn read(run_dir: &Path, step_names: &[String]) -> Result<Vec<Spectrum>, String> {
    let mut out = Vec::new();
    for_each_histogram(
        &run_dir.join("histograms/totals.hlog"),
        |_, tag, histogram| {
            let scope = match tag {
                Tag::All => Some("all".to_string()),
                Tag::Step(index) => step_names.get(*index).cloned(),
                _ => None,
            };
            if let Some(scope) = scope
                && !histogram.is_empty()
            {
                out.push(Spectrum {
                    scope,
                    points: points(histogram),
                });
            }
        },
    )?;
    Ok(out)
}

/// Quarter powers of two of 1/(1 − q) up to what the count resolves, the named
/// percentiles, and the maximum where the count resolves beyond them.
fn points(histogram: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let resolved = 1.0 - 1.0 / histogram.len() as f64;
    let mut quantiles: Vec<f64> = (0..=80)
        .map(|k| 1.0 - 1.0 / 2f64.powf(k as f64 / 4.0))
        .filter(|q| *q <= resolved)
        // The named ones always: past what the count resolves they read the maximum, as
        // the summary's do.
        .chain(NAMED.iter().map(|p| p / 100.0))
        .collect();
    quantiles.sort_by(f64::total_cmp);
    quantiles.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let mut points: Vec<SpectrumPoint> = quantiles
        .into_iter()
        .map(|q| SpectrumPoint {
            percentile: (q * 1e6).round() / 1e4,
            latency_us: histogram.value_at_quantile(q),
        })
        .collect();
    let last = points.last().copied();
    let end = (resolved * 1e6).round() / 1e4;
    if last.is_none_or(|p| p.latency_us != histogram.max()) {
        points.push(SpectrumPoint {
            percentile: last.map_or(end, |p| p.percentile.max(end)),
            latency_us: histogram.max(),
        });
    }
    points
}

/// x of a percentile on the chart: 1/(1 − p).
fn x_of(percentile: f64) -> f64 {
    1.0 / (1.0 - (percentile / 100.0).min(0.999_999_9))
}

/// The spectra on one chart: x log (labelled in percentiles), y log milliseconds.
pub(crate) fn chart(spectra: &[(String, &Spectrum)]) -> Result<String, String> {
    let max_x = spectra
        .iter()
        .flat_map(|(_, s)| s.points.iter().map(|p| x_of(p.percentile)))
        .fold(10.0, f64::max)
        * 1.2;
    let ys = || {
        spectra
            .iter()
            .flat_map(|(_, s)| s.points.iter().map(|p| p.latency_us as f64 / 1000.0))
            .filter(|y| *y > 0.0)
    };
    let max_y = ys().fold(1.0, f64::max) * 1.5;
    let min_y = (ys().fold(f64::INFINITY, f64::min) / 1.5).clamp(0.001, max_y / 10.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((1.0..max_x).log_scale(), (min_y..max_y).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency ms (log)")
            // Log-scale ticks are binary fractions: 0.30000000000000004 reads as 0.3.
            .y_label_formatter(&|y| {
                let text = format!("{y:.3}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            })
            .x_label_formatter(&|x| {
                let p = 100.0 * (1.0 - 1.0 / x);
                if p < 99.0 {
                    format!("{p:.0}%")
                } else {
                    format!("{}%", (p * 1000.0).round() / 1000.0)
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        let lines: Vec<charts::Line> = spectra
            .iter()
            .enumerate()
            .map(|(index, (label, spectrum))| {
                let points = spectrum
                    .points
                    .iter()
                    .filter(|p| p.latency_us > 0)
                    .map(|p| (x_of(p.percentile), p.latency_us as f64 / 1000.0))
                    .collect();
                (label.clone(), OKABE_ITO[index % OKABE_ITO.len()], points)
            })
            .collect();
        charts::draw_lines(&mut chart, &lines)?;
        charts::legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_holds_the_named_percentiles_and_ends_at_the_maximum() {
        let mut h = crate::metrics::stats::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let points = points(&h);
        let at = |p: f64| {
            points
                .iter()
                .find(|x| x.percentile == p)
                .map(|x| x.latency_us)
        };
        assert_eq!(at(99.0), Some(h.value_at_quantile(0.99)));
        assert_eq!(at(50.0), Some(h.value_at_quantile(0.5)));
        assert_eq!(at(99.99), Some(h.value_at_quantile(0.9999)));
        assert_eq!(points.last().unwrap().latency_us, h.max());
        let mut few = crate::metrics::stats::new_histogram();
        for v in [10u64, 20, 30] {
            few.record(v).unwrap();
        }
        let few = super::points(&few);
        let p99 = few.iter().find(|p| p.percentile == 99.0).unwrap();
        assert_eq!(
            p99.latency_us, 30,
            "past the count's resolution: the maximum"
        );
        assert!(
            points
                .windows(2)
                .all(|w| w[0].percentile <= w[1].percentile)
        );
    }
}
