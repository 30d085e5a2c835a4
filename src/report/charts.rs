//! Charts as inline SVG (plotters' SVG backend): no script, no external asset. Fault
//! intervals are shaded and numbered; the names are in the report's fault table, so no text
//! from the run ever goes into the SVG unescaped.

use plotters::prelude::*;

use crate::analysis::data::ChartPoint;
use crate::analysis::windows::Interval;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;
const FAULT_FILL: RGBColor = RGBColor(255, 170, 120);

struct Point {
    second: f64,
    requests: f64,
    errors: f64,
    dropped: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

fn points(chart: &[ChartPoint]) -> Vec<Point> {
    chart
        .iter()
        .map(|c| Point {
            second: c.second as f64,
            requests: c.requests,
            errors: c.errors,
            dropped: c.dropped,
            p50: c.p50_us as f64 / 1000.0,
            p95: c.p95_us as f64 / 1000.0,
            p99: c.p99_us as f64 / 1000.0,
        })
        .collect()
}

/// Requests, errors and dropped arrivals per second of intended start (a point's mean when
/// a point spans several seconds).
pub fn throughput(chart: &[ChartPoint], faults: &[Interval]) -> Result<String, String> {
    let data = points(chart);
    draw(
        "requests / s",
        &[
            (
                "requests/s",
                BLUE,
                data.iter().map(|p| (p.second, p.requests)).collect(),
            ),
            (
                "errors/s",
                RED,
                data.iter().map(|p| (p.second, p.errors)).collect(),
            ),
            (
                "dropped/s",
                MAGENTA,
                data.iter().map(|p| (p.second, p.dropped)).collect(),
            ),
        ],
        faults,
    )
}

/// p50 / p95 / p99 per second, in milliseconds (a point's worst second when it spans
/// several).
pub fn latency(chart: &[ChartPoint], faults: &[Interval]) -> Result<String, String> {
    let data: Vec<Point> = points(chart)
        .into_iter()
        .filter(|p| p.requests > 0.0)
        .collect();
    draw(
        "latency ms",
        &[
            (
                "p50",
                GREEN,
                data.iter().map(|p| (p.second, p.p50)).collect(),
            ),
            (
                "p95",
                BLUE,
                data.iter().map(|p| (p.second, p.p95)).collect(),
            ),
            ("p99", RED, data.iter().map(|p| (p.second, p.p99)).collect()),
        ],
        faults,
    )
}

type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// One time chart: the lines over seconds, fault bands shaded behind them, a legend.
fn draw(y_desc: &str, lines: &[Line], faults: &[Interval]) -> Result<String, String> {
    let max_x = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(x, _)| x + 1.0))
        .fold(1.0, f64::max);
    let max_y = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max)
        * 1.1;
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
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, faults, max_y)?;
        for (label, color, points) in lines {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(*label)
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
