//! A server query's series over the run (`[[observe]]`, from prometheus.json), on the
//! run's clock with the same fault bands as the client's charts: the platform's testimony
//! beside loadgen's. At most eight series are drawn (the palette); the chart says how many
//! more the file holds.

use plotters::prelude::*;

use super::{Line, OKABE_ITO, canvas, draw_lines, legend, mesh, shade};
use crate::judge::analysis::windows::Interval;
use crate::record::server::Observed;

/// Lines drawn at most: one per colour.
pub(crate) const MOST_SERIES: usize = OKABE_ITO.len();

/// The query's series as a chart; `None` when it has no points to draw.
pub(crate) fn observed(observed: &Observed, faults: &[Interval]) -> Result<Option<String>, String> {
    let lines: Vec<Line> = observed
        .series
        .iter()
        .filter(|s| !s.points.is_empty())
        .take(MOST_SERIES)
        .zip(OKABE_ITO)
        .map(|(series, color)| (series.describe(), color, series.points.clone()))
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    let points = || lines.iter().flat_map(|(_, _, p)| p.iter());
    let max_x = points().map(|(x, _)| *x).fold(1.0, f64::max);
    let max_x = faults
        .iter()
        .map(|f| f.end_ms as f64 / 1000.0)
        .fold(max_x, f64::max);
    let top = points().map(|(_, y)| *y).fold(0.0, f64::max);
    let bottom = points().map(|(_, y)| *y).fold(0.0, f64::min);
    let max_y = if top > 0.0 { top * 1.1 } else { 1.0 };
    let min_y = if bottom < 0.0 { bottom * 1.1 } else { 0.0 };
    let mut svg = String::new();
    {
        let root = canvas(&mut svg)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, min_y..max_y)
            .map_err(|e| e.to_string())?;
        mesh(&mut chart, observed.unit.name())?;
        shade(&mut chart, faults, (min_y, max_y), max_y * 0.97)?;
        draw_lines(&mut chart, &lines)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}
