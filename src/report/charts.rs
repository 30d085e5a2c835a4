//! Charts as inline SVG (plotters' SVG backend): no script, no external asset. Fault
//! intervals are shaded and numbered; the names are in the report's fault table, so no text
//! from the run ever goes into the SVG unescaped.

use plotters::prelude::*;

use crate::analysis::data::Series;
use crate::analysis::windows::Interval;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;
const FAULT_FILL: RGBColor = RGBColor(255, 170, 120);

struct Point {
    second: f64,
    requests: f64,
    errors: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

fn points(series: &Series) -> Vec<Point> {
    series
        .iter()
        .filter_map(|(second, scopes)| {
            scopes.get("all").map(|c| Point {
                second: *second as f64,
                requests: c.requests as f64,
                errors: c.errors as f64,
                p50: c.p50_us as f64 / 1000.0,
                p95: c.p95_us as f64 / 1000.0,
                p99: c.p99_us as f64 / 1000.0,
            })
        })
        .collect()
}

/// Requests and errors per second.
pub fn throughput(series: &Series, faults: &[Interval]) -> Result<String, String> {
    let data = points(series);
    let max_x = data.last().map_or(1.0, |p| p.second + 1.0);
    let max_y = data.iter().map(|p| p.requests).fold(1.0, f64::max) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("requests / s")
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, faults, max_y)?;
        chart
            .draw_series(LineSeries::new(
                data.iter().map(|p| (p.second, p.requests)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("requests/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                data.iter().map(|p| (p.second, p.errors)),
                RED.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("errors/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// p50 / p95 / p99 per second, in milliseconds.
pub fn latency(series: &Series, faults: &[Interval]) -> Result<String, String> {
    let data: Vec<Point> = points(series)
        .into_iter()
        .filter(|p| p.requests > 0.0)
        .collect();
    let max_x = data.last().map_or(1.0, |p| p.second + 1.0);
    let max_y = data.iter().map(|p| p.p99).fold(1.0, f64::max) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("latency ms")
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, faults, max_y)?;
        for (label, color, pick) in [
            ("p50", GREEN, (|p: &Point| p.p50) as fn(&Point) -> f64),
            ("p95", BLUE, |p: &Point| p.p95),
            ("p99", RED, |p: &Point| p.p99),
        ] {
            chart
                .draw_series(LineSeries::new(
                    data.iter().map(|p| (p.second, pick(p))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn shade(chart: &mut Chart<'_, '_>, faults: &[Interval], max_y: f64) -> Result<(), String> {
    for (index, fault) in faults.iter().enumerate() {
        let start = fault.start_ms as f64 / 1000.0;
        let end = (fault.end_ms as f64 / 1000.0).max(start + 0.3);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, 0.0), (end, max_y)],
                FAULT_FILL.mix(0.35).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("F{}", index + 1),
                (start, max_y * 0.97),
                ("sans-serif", 14).into_font().color(&BLACK),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
