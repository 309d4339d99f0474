//! The reports' PNG charts: the node's memory over time during the storm, latency CDFs, and
//! plain lines (`ws-fanout`'s delivery latency against clients).
//! Text is rendered with the Noto Sans shipped in the `ttf-noto-sans` crate (Apache-2.0),
//! so charts look the same on a machine without any system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// One line on a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (720, 400);

fn colour(i: usize) -> RGBColor {
    [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ][i % 4]
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", FontStyle::Normal, ttf_noto_sans::REGULAR);
    });
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// Draws each series as a coloured line and the legend naming them, at `position`.
fn lines_with_legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(err)
}

/// Node memory (MiB) against seconds, with the node's memory limit as a dashed line.
pub fn memory(
    path: &Path,
    title: &str,
    series: &[Series],
    limit_mib: Option<f64>,
) -> Result<(), String> {
    fonts();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(limit_mib.unwrap_or(1.0), f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("node live memory (MiB)")
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    if let Some(limit) = limit_mib {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, limit), (x_max, limit)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("memory limit ({limit:.0} MiB): OOM above"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    lines_with_legend(&mut chart, series, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

/// Latency CDF: fraction of requests answered within x milliseconds (log x axis).
pub fn cdf(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    fonts();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_min = xs().fold(f64::MAX, f64::min).max(0.001) * 0.8;
    let x_max = xs().fold(0.01, f64::max) * 1.25;
    let x_min = x_min.min(x_max / 10.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests")
        .light_line_style(WHITE)
        .x_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    lines_with_legend(&mut chart, series, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

/// Lines of y against x on linear axes from zero, with an optional dashed horizontal
/// target (value, legend), e.g. delivery latency against the number of clients.
pub fn lines(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    series: &[Series],
    target: Option<(f64, &str)>,
) -> Result<(), String> {
    fonts();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points()
        .map(|p| p.1)
        .fold(target.map_or(1.0, |t| t.0), f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(axes.0)
        .y_desc(axes.1)
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    if let Some((value, label)) = target {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, value), (x_max, value)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(err)?;
    }
    lines_with_legend(&mut chart, series, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)
}
