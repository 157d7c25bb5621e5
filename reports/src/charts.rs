//! The report's charts, drawn with plotters into SVG strings that the page inlines: no fonts to
//! load (the SVG names a font family, the browser picks it), no scripts, no network.
//!
//! Text that comes from the tuning log never goes into a chart: captions and legends are HTML
//! (escaped there); charts carry only numbers and `#n` task labels.

use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::ReportError;
use crate::format;
use crate::model::{DefaultBaseline, TargetSummary, TaskSummary, TrialPoint};

/// Font family written into the SVG; the page's stylesheet overrides it with the system stack.
const FONT: &str = "sans-serif";
/// plotters sizes: the SVG font size is this divided by 1.24.
const LABEL_SIZE: f64 = 16.0;
const DESC_SIZE: f64 = 17.0;

const CONVERGENCE_SIZE: (u32, u32) = (560, 300);
const ROOFLINE_SIZE: (u32, u32) = (1000, 460);

/// Trials drawn as dots on a convergence chart: beyond this, every k-th is drawn (each new best
/// is always drawn), which keeps a long night's report small.
const MAX_TRIAL_DOTS: usize = 200;

const INK: RGBColor = RGBColor(0x1f, 0x29, 0x37);
const MUTED: RGBColor = RGBColor(0x6b, 0x72, 0x80);
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);
const AXIS: RGBColor = RGBColor(0x9c, 0xa3, 0xaf);
const BEST_LINE: RGBColor = RGBColor(0x33, 0x41, 0x55);
const TRIAL_DOT: RGBColor = RGBColor(0x94, 0xa3, 0xb8);
const DEFAULT_LINE: RGBColor = RGBColor(0xb4, 0x53, 0x09);
const ROOF: RGBColor = RGBColor(0x0f, 0x76, 0x6e);
const TASK_POINT: RGBColor = RGBColor(0x1d, 0x4e, 0xd8);

/// Colours of the strategies, by their index in the report's sorted strategy list (Tableau 10).
const STRATEGY_COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of `strategy` among the report's `strategies`.
pub(crate) fn strategy_colour(strategies: &[String], strategy: &str) -> RGBColor {
    let index = strategies.iter().position(|s| s == strategy).unwrap_or(0);
    STRATEGY_COLOURS[index % STRATEGY_COLOURS.len()]
}

/// `#1f77b4`, for the HTML legend.
pub(crate) fn css_colour(colour: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", colour.0, colour.1, colour.2)
}

pub(crate) fn best_line_css() -> String {
    css_colour(BEST_LINE)
}
pub(crate) fn trial_dot_css() -> String {
    css_colour(TRIAL_DOT)
}
pub(crate) fn default_line_css() -> String {
    css_colour(DEFAULT_LINE)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws into a fresh SVG of `size` pixels and returns its text.
fn svg(
    chart: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<String, ReportError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|error| ReportError::Chart { chart: chart.to_string(), reason: error.to_string() })?;
    }
    Ok(text)
}

fn label_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&MUTED)
}

fn desc_style() -> TextStyle<'static> {
    (FONT, DESC_SIZE).into_font().color(&INK)
}

/// What the x axis of a convergence chart counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvergenceAxis {
    /// Trials of the task, in the order recorded.
    Trial,
    /// Seconds on the tuning clock.
    TuningTime,
}

/// Best GFLOP/s so far against trials or tuning time: the step line of the best, a dot per `ok`
/// trial (by trial only), each improvement marked in the colour of the strategy that found it,
/// and the default schedule's GFLOP/s as a dashed line.
pub(crate) fn convergence(
    task: &TaskSummary,
    axis: ConvergenceAxis,
    strategies: &[String],
) -> Result<String, ReportError> {
    let x_of = |point: &TrialPoint| match axis {
        ConvergenceAxis::Trial => Some(point.trial_number as f64),
        ConvergenceAxis::TuningTime => point.tuning_time_s,
    };
    let placed: Vec<(f64, &TrialPoint)> =
        task.convergence.iter().filter_map(|point| x_of(point).map(|x| (x, point))).collect();
    let default_gflops = match task.default {
        DefaultBaseline::Measured { gflops, .. } => Some(gflops),
        _ => None,
    };
    let y_top =
        placed.iter().filter_map(|(_, point)| point.best_gflops).chain(default_gflops).fold(0.0, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.12 } else { 1.0 };
    let x_last = placed.iter().map(|(x, _)| *x).fold(0.0, f64::max);
    let (x_min, x_max, x_desc) = match axis {
        ConvergenceAxis::Trial => (0.0, (x_last * 1.03).max(1.0), "trial"),
        ConvergenceAxis::TuningTime => {
            // The clock is the whole log's: a task tuned in a later run starts late on it, so the
            // axis starts at the task's first trial.
            let x_first = placed.iter().map(|(x, _)| *x).fold(x_last, f64::min);
            let span = (x_last - x_first).max(1.0);
            ((x_first - 0.03 * span).max(0.0), x_last + 0.03 * span, "tuning time (s)")
        }
    };
    let name = match axis {
        ConvergenceAxis::Trial => format!("convergence by trial of task {}", task.number),
        ConvergenceAxis::TuningTime => format!("convergence by time of task {}", task.number),
    };

    svg(&name, CONVERGENCE_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(58)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS)
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&|value| format::axis(*value))
            .y_label_formatter(&|value| format::axis(*value))
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc(x_desc)
            .y_desc("GFLOP/s")
            .draw()?;

        if placed.iter().all(|(_, point)| point.best_gflops.is_none()) {
            let message = if task.convergence.is_empty() { "no trials" } else { "no valid kernel yet" };
            chart.draw_series(std::iter::once(Text::new(
                message,
                ((x_min + x_max) / 2.0, y_max / 2.0),
                desc_style().pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
            return Ok(());
        }

        if axis == ConvergenceAxis::Trial {
            let ok_trials: Vec<(f64, f64, bool)> = placed
                .iter()
                .filter_map(|(x, point)| point.gflops.map(|gflops| (*x, gflops, point.improved)))
                .collect();
            let stride = ok_trials.len().div_ceil(MAX_TRIAL_DOTS).max(1);
            chart.draw_series(
                ok_trials
                    .iter()
                    .enumerate()
                    .filter(|(index, (_, _, improved))| *improved || index % stride == 0)
                    .map(|(_, (x, gflops, _))| Circle::new((*x, *gflops), 3, TRIAL_DOT.mix(0.7).filled())),
            )?;
        }

        if let Some(gflops) = default_gflops {
            chart.draw_series(DashedLineSeries::new(
                [(x_min, gflops), (x_max, gflops)],
                6,
                4,
                DEFAULT_LINE.stroke_width(1),
            ))?;
        }

        chart.draw_series(LineSeries::new(best_steps(&placed, x_last), BEST_LINE.stroke_width(2)))?;
        chart.draw_series(placed.iter().filter(|(_, point)| point.improved).filter_map(|(x, point)| {
            let colour = strategy_colour(strategies, &point.strategy);
            point.best_gflops.map(|gflops| Circle::new((*x, gflops), 4, colour.filled()))
        }))?;
        Ok(())
    })
}

/// The best-so-far curve as steps: flat until the next improvement, then up; it starts at the
/// first `ok` trial and runs to `x_last`.
fn best_steps(placed: &[(f64, &TrialPoint)], x_last: f64) -> Vec<(f64, f64)> {
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for (x, point) in placed.iter().filter(|(_, point)| point.improved) {
        let Some(best) = point.best_gflops else { continue };
        if let Some(&(_, previous)) = steps.last() {
            steps.push((*x, previous));
        }
        steps.push((*x, best));
    }
    if let Some(&(x, best)) = steps.last() {
        if x_last > x {
            steps.push((x_last, best));
        }
    }
    steps
}

/// Every task's best kernel of one target placed by arithmetic intensity and GFLOP/s, under the
/// roofs min(peak, intensity × bandwidth); log–log.
pub(crate) fn roofline(target: &TargetSummary, tasks: &[&TaskSummary]) -> Result<String, ReportError> {
    let points: Vec<(usize, f64, f64)> = tasks
        .iter()
        .filter_map(|task| {
            let best = task.best.as_ref()?;
            Some((task.number, task.intensity_flop_per_byte?, best.gflops))
        })
        .filter(|(_, intensity, gflops)| *intensity > 0.0 && *gflops > 0.0)
        .collect();
    let peak = target.peak_gflops.as_ref().map(|m| m.value);
    let bandwidth = target.bandwidth_gbs.as_ref().map(|m| m.value);
    let ridge = peak.zip(bandwidth).map(|(peak, bandwidth)| peak / bandwidth);

    let xs: Vec<f64> = points.iter().map(|(_, intensity, _)| *intensity).chain(ridge).collect();
    let (x_lo, x_hi) = log_range(&xs, 4.0, (0.1, 100.0));
    let mut ys: Vec<f64> = points.iter().map(|(_, _, gflops)| *gflops).chain(peak).collect();
    if let Some(bandwidth) = bandwidth {
        ys.push(bandwidth * x_lo);
    }
    let (y_lo, y_hi) = log_range(&ys, 3.0, (0.1, 100.0));

    svg(&format!("roofline of target {}", target.number), ROOFLINE_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?;
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS)
            .x_label_formatter(&|value| log_label(*value))
            .y_label_formatter(&|value| log_label(*value))
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc("arithmetic intensity (FLOP/byte)")
            .y_desc("GFLOP/s")
            .draw()?;

        match (peak, bandwidth, ridge) {
            (Some(peak), Some(bandwidth), Some(ridge)) => {
                let roof = if ridge > x_lo && ridge < x_hi {
                    vec![(x_lo, bandwidth * x_lo), (ridge, peak), (x_hi, peak)]
                } else {
                    vec![(x_lo, peak.min(bandwidth * x_lo)), (x_hi, peak.min(bandwidth * x_hi))]
                };
                chart.draw_series(LineSeries::new(roof, ROOF.stroke_width(2)))?;
                let roof_label = (FONT, LABEL_SIZE).into_font().color(&ROOF);
                chart.draw_series(std::iter::once(Text::new(
                    format!("peak {} GFLOP/s", format::significant(peak)),
                    (x_hi / 1.15, peak),
                    roof_label.clone().pos(Pos::new(HPos::Right, VPos::Bottom)),
                )))?;
                // Halfway up the bandwidth slope, in log space.
                let label_x = (x_lo * ridge.min(x_hi)).sqrt();
                chart.draw_series(std::iter::once(Text::new(
                    format!("{} GB/s", format::significant(bandwidth)),
                    (label_x, bandwidth * label_x * 1.25),
                    roof_label.pos(Pos::new(HPos::Right, VPos::Bottom)),
                )))?;
            }
            _ => {
                chart.draw_series(std::iter::once(Text::new(
                    "roofs not measured",
                    ((x_lo * x_hi).sqrt(), y_hi / 1.6),
                    desc_style().pos(Pos::new(HPos::Center, VPos::Center)),
                )))?;
            }
        }

        if points.is_empty() {
            chart.draw_series(std::iter::once(Text::new(
                "no valid kernel yet",
                ((x_lo * x_hi).sqrt(), (y_lo * y_hi).sqrt()),
                desc_style().pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
        }
        // Neighbours in intensity get their labels above and below in turn, so that tasks of
        // similar shape stay readable.
        let point_label = (FONT, LABEL_SIZE).into_font().color(&INK);
        let mut by_intensity = points.clone();
        by_intensity.sort_by(|a, b| a.1.total_cmp(&b.1));
        chart.draw_series(by_intensity.iter().enumerate().map(|(index, (number, intensity, gflops))| {
            let label_offset = if index % 2 == 0 { (7, -18) } else { (7, 4) };
            EmptyElement::at((*intensity, *gflops))
                + Circle::new((0, 0), 5, TASK_POINT.filled())
                + Text::new(format!("#{number}"), label_offset, point_label.clone())
        }))?;
        Ok(())
    })
}

/// Labels a log axis at 1, 2 and 5 times a power of ten only; the grid keeps every line.
fn log_label(value: f64) -> String {
    if value <= 0.0 || !value.is_finite() {
        return String::new();
    }
    let mantissa = value / 10f64.powf(value.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|m| (mantissa - m).abs() < 1e-6 * m) {
        format::axis(value)
    } else {
        String::new()
    }
}

/// A log axis range around `values`, widened by `margin`× on both sides; `fallback` when there
/// is nothing to show.
fn log_range(values: &[f64], margin: f64, fallback: (f64, f64)) -> (f64, f64) {
    let positive = values.iter().copied().filter(|value| value.is_finite() && *value > 0.0);
    let lo = positive.clone().fold(f64::INFINITY, f64::min);
    let hi = positive.fold(0.0, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        return fallback;
    }
    (lo / margin, hi * margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(
        trial_number: usize,
        gflops: Option<f64>,
        best_gflops: Option<f64>,
        improved: bool,
    ) -> TrialPoint {
        TrialPoint {
            trial_number,
            tuning_time_s: Some(trial_number as f64),
            gflops,
            best_gflops,
            improved,
            strategy: "random".into(),
        }
    }

    #[test]
    fn best_steps_go_flat_then_up_and_run_to_the_last_trial() {
        let points = [
            point(1, None, None, false),
            point(2, Some(1.0), Some(1.0), true),
            point(3, Some(0.5), Some(1.0), false),
            point(4, Some(3.0), Some(3.0), true),
            point(5, None, Some(3.0), false),
        ];
        let placed: Vec<(f64, &TrialPoint)> = points.iter().map(|p| (p.trial_number as f64, p)).collect();
        assert_eq!(best_steps(&placed, 5.0), [(2.0, 1.0), (4.0, 1.0), (4.0, 3.0), (5.0, 3.0)]);
        assert!(best_steps(&placed[..1], 1.0).is_empty());
    }

    #[test]
    fn log_axes_are_labelled_at_1_2_5() {
        let labels: Vec<String> =
            [1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 40.0, 500.0, 0.2].map(log_label).to_vec();
        assert_eq!(labels, ["1", "2", "", "5", "", "10", "20", "", "500", "0.2"]);
    }

    #[test]
    fn log_ranges_widen_and_fall_back() {
        assert_eq!(log_range(&[1.0, 10.0], 2.0, (0.1, 1.0)), (0.5, 20.0));
        assert_eq!(log_range(&[], 2.0, (0.1, 1.0)), (0.1, 1.0));
        assert_eq!(log_range(&[0.0, f64::NAN], 2.0, (0.1, 1.0)), (0.1, 1.0));
    }
}
