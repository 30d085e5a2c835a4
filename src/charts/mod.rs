//! Charts as inline SVG (plotters' SVG backend): no script, no external asset. Fault
//! intervals are shaded and numbered; the names are in the report's fault table, so no text
//! from the run goes into the SVG but instance names, which plotters escapes. Colours are
//! the Okabe–Ito palette (distinguishable with every common colour-vision deficiency).

pub(crate) mod observed;
pub(crate) mod spectrum;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::judge::analysis::windows::Interval;
use crate::record::data::ChartPoint;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;

/// Okabe & Ito (2008), "Color Universal Design".
pub(crate) const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];
const BLUE: RGBColor = OKABE_ITO[0];
const ORANGE: RGBColor = OKABE_ITO[1];
const GREEN: RGBColor = OKABE_ITO[2];
const VERMILLION: RGBColor = OKABE_ITO[3];
const SKY: RGBColor = OKABE_ITO[4];
const PURPLE: RGBColor = OKABE_ITO[5];
const INK: RGBColor = OKABE_ITO[7];
const FAULT_FILL: RGBColor = RGBColor(200, 200, 200);

pub(super) type Line = (String, RGBColor, Vec<(f64, f64)>);

fn line(
    label: &str,
    color: RGBColor,
    chart: &[ChartPoint],
    y: impl Fn(&ChartPoint) -> f64,
) -> Line {
    (
        label.to_string(),
        color,
        chart.iter().map(|p| (p.second as f64, y(p))).collect(),
    )
}

/// `color` halfway to white: a step's p50 beside its p99.
fn lighter(RGBColor(r, g, b): RGBColor) -> RGBColor {
    let half = |c: u8| c + (255 - c) / 2;
    RGBColor(half(r), half(g), half(b))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Requests sent, arrivals scheduled, errors and arrivals dropped, per second of intended
/// start (a point's mean when it spans several seconds).
pub(crate) fn throughput(chart: &[ChartPoint], faults: &[Interval]) -> Result<String, String> {
    let mut lines = vec![
        line("sent/s", BLUE, chart, |p| p.requests),
        line("errors/s", VERMILLION, chart, |p| p.errors),
        line("dropped/s", PURPLE, chart, |p| p.dropped),
    ];
    if chart.iter().any(|p| p.planned > 0.0) {
        lines.insert(1, line("iterations planned/s", SKY, chart, |p| p.planned));
    } else if chart.iter().any(|p| p.scheduled > 0.0) {
        lines.insert(1, line("arrivals scheduled/s", SKY, chart, |p| p.scheduled));
    }
    if chart.iter().any(|p| p.not_started > 0.0) {
        lines.push(line("not started/s", ORANGE, chart, |p| p.not_started));
    }
    // Every second with a dropped or unstarted iteration is marked, however few: the load
    // planned for it was not all delivered.
    let dropped: Vec<(f64, f64)> = chart
        .iter()
        .filter(|p| p.dropped + p.not_started > 0.0)
        .map(|p| (p.second as f64, p.dropped + p.not_started))
        .collect();
    linear_marked("requests / s", &lines, &dropped, faults)
}

/// p50 / p95 / p99 / max of successful responses and p99 of failures, in milliseconds on a
/// logarithmic axis, so a multi-second spike does not flatten every other second (a point's
/// worst second when it spans several).
pub(crate) fn latency(chart: &[ChartPoint], faults: &[Interval]) -> Result<String, String> {
    let served: Vec<ChartPoint> = chart.iter().filter(|p| p.requests > 0.0).cloned().collect();
    let mut lines = vec![
        line("p50", GREEN, &served, |p| ms(p.p50_us)),
        line("p95", BLUE, &served, |p| ms(p.p95_us)),
        line("p99", ORANGE, &served, |p| ms(p.p99_us)),
        line("max", INK, &served, |p| ms(p.max_us)),
    ];
    if chart.iter().any(|p| p.failed_p99_us > 0) {
        lines.push(line("failed p99", VERMILLION, chart, |p| {
            ms(p.failed_p99_us)
        }));
    }
    logarithmic("latency ms (log)", &lines, faults)
}

/// p99 and p50 of each of a journey's steps per second (`steps`: index and name), on a log
/// axis: where a journey's time goes, and which step a fault hurt.
pub(crate) fn steps(
    chart: &[ChartPoint],
    steps: &[(usize, String)],
    faults: &[Interval],
) -> Result<String, String> {
    let mut lines = Vec::new();
    for (n, (index, name)) in steps.iter().enumerate() {
        let color = OKABE_ITO[n % OKABE_ITO.len()];
        let served: Vec<&ChartPoint> = chart
            .iter()
            .filter(|p| p.steps.get(index).is_some_and(|s| s.requests > 0.0))
            .collect();
        let series = |pick: fn(&crate::record::data::StepPoint) -> u64| -> Vec<(f64, f64)> {
            served
                .iter()
                .map(|p| (p.second as f64, ms(pick(&p.steps[index]))))
                .collect()
        };
        lines.push((format!("{name} p99"), color, series(|s| s.p99_us)));
        lines.push((format!("{name} p50"), lighter(color), series(|s| s.p50_us)));
    }
    logarithmic("latency ms (log)", &lines, faults)
}

/// Responses per second by the instance that served them, stacked: a killed instance's band
/// drops to zero while the others widen.
pub(crate) fn instances(
    chart: &[ChartPoint],
    faults: &[Interval],
) -> Result<Option<String>, String> {
    let mut names: Vec<&String> = chart.iter().flat_map(|p| p.instances.keys()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(None);
    }
    // Cumulative tops, one band per instance in name order.
    let bands: Vec<Line> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let points = chart
                .iter()
                .map(|p| {
                    let below: f64 = names[..=i]
                        .iter()
                        .map(|n| p.instances.get(*n).copied().unwrap_or(0.0))
                        .sum();
                    (p.second as f64, below)
                })
                .collect();
            (name.to_string(), OKABE_ITO[i % OKABE_ITO.len()], points)
        })
        .collect();
    stacked("responses / s by instance", &bands, faults).map(Some)
}

/// Journeys in flight (the active users) and how late arrivals left (p99, ms): the
/// generator's own health.
pub(crate) fn generator(chart: &[ChartPoint], faults: &[Interval]) -> Result<String, String> {
    linear(
        "in flight · lateness ms",
        &[
            line("journeys in flight (active users)", BLUE, chart, |p| {
                p.in_flight as f64
            }),
            line("lateness p99 ms", ORANGE, chart, |p| ms(p.lag_p99_us)),
        ],
        faults,
    )
}

fn extent(lines: &[Line]) -> (f64, f64, f64) {
    let max_x = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(x, _)| x + 1.0))
        .fold(1.0, f64::max);
    let ys = || lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y));
    let max_y = ys().fold(1.0, f64::max) * 1.1;
    let min_y = ys().filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
    (max_x, max_y, if min_y.is_finite() { min_y } else { 0.1 })
}

fn canvas(svg: &mut String) -> Result<DrawingArea<SVGBackend<'_>, Shift>, String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    Ok(root)
}

fn linear(y_desc: &str, lines: &[Line], faults: &[Interval]) -> Result<String, String> {
    linear_marked(y_desc, lines, &[], faults)
}

/// `linear` with `marks` drawn as crosses over the lines.
fn linear_marked(
    y_desc: &str,
    lines: &[Line],
    marks: &[(f64, f64)],
    faults: &[Interval],
) -> Result<String, String> {
    let (max_x, max_y, _) = extent(lines);
    let mut svg = String::new();
    {
        let root = canvas(&mut svg)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(|e| e.to_string())?;
        mesh(&mut chart, y_desc)?;
        shade(&mut chart, faults, (0.0, max_y), max_y * 0.97)?;
        draw_lines(&mut chart, lines)?;
        if !marks.is_empty() {
            chart
                .draw_series(
                    marks
                        .iter()
                        .map(|(x, y)| Cross::new((*x, *y), 5, PURPLE.stroke_width(2))),
                )
                .map_err(|e| e.to_string())?
                .label("second with dropped arrivals or iterations not started")
                .legend(|(x, y)| Cross::new((x + 8, y), 5, PURPLE.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn logarithmic(y_desc: &str, lines: &[Line], faults: &[Interval]) -> Result<String, String> {
    let (max_x, max_y, min_y) = extent(lines);
    let lines: Vec<Line> = lines
        .iter()
        .map(|(l, c, p)| {
            (
                l.clone(),
                *c,
                p.iter().copied().filter(|(_, y)| *y > 0.0).collect(),
            )
        })
        .collect();
    let floor = (min_y / 2.0).max(0.001);
    let mut svg = String::new();
    {
        let root = canvas(&mut svg)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, (floor..max_y.max(floor * 10.0)).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        shade(&mut chart, faults, (floor, max_y), max_y * 0.8)?;
        draw_lines(&mut chart, &lines)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn stacked(y_desc: &str, bands: &[Line], faults: &[Interval]) -> Result<String, String> {
    let (max_x, max_y, _) = extent(bands);
    let mut svg = String::new();
    {
        let root = canvas(&mut svg)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(|e| e.to_string())?;
        mesh(&mut chart, y_desc)?;
        shade(&mut chart, faults, (0.0, max_y), max_y * 0.97)?;
        // Top band first: each lower one is painted over the one above it.
        for (label, color, points) in bands.iter().rev() {
            let color = *color;
            chart
                .draw_series(AreaSeries::new(
                    points.iter().copied(),
                    0.0,
                    color.mix(0.85),
                ))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A chart over seconds (or any f64 axis) and an f64 axis, linear or logarithmic.
pub(super) type Chart<'a, 'b, X = RangedCoordf64, Y = RangedCoordf64> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

fn mesh(chart: &mut Chart<'_, '_>, y_desc: &str) -> Result<(), String> {
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| e.to_string())
}

pub(super) fn draw_lines<X, Y>(
    chart: &mut Chart<'_, '_, X, Y>,
    lines: &[Line],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (label, color, points) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    Ok(())
}

pub(super) fn legend<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

fn band(fault: &Interval) -> (f64, f64) {
    let start = fault.start_ms as f64 / 1000.0;
    (start, (fault.end_ms as f64 / 1000.0).max(start + 0.3))
}

/// The fault bands from `min_y` to `max_y`, each labelled F1, F2… at `label_y`.
fn shade<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, RangedCoordf64, Y>,
    faults: &[Interval],
    (min_y, max_y): (f64, f64),
    label_y: f64,
) -> Result<(), String> {
    for (index, fault) in faults.iter().enumerate() {
        let (start, end) = band(fault);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, min_y), (end, max_y)],
                FAULT_FILL.mix(0.45).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("F{}", index + 1),
                (start, label_y),
                ("sans-serif", 14).into_font().color(&BLACK),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
