//! The study's plots, drawn with plotters into PNG and SVG with an embedded font (DejaVu Sans),
//! so that they look the same on every machine.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Error;

use crate::util::font::{FAMILY, register as register_font};

/// A colour per series that stays apart from its neighbours (Tableau 10).
pub fn palette(i: usize) -> RGBColor {
    const COLOURS: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = COLOURS[i % COLOURS.len()];
    RGBColor(r, g, b)
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::msg(format!("{}: cannot draw the plot: {e}", path.display()))
}

/// Something drawn onto any plotters backend.
pub trait Drawing {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draw `drawing` into `STEM.png` and `STEM.svg` of `width` x `height` pixels.
pub fn both(stem: &Path, (width, height): (u32, u32), drawing: &impl Drawing) -> Result<(), Error> {
    register_font();
    let png = stem.with_extension("png");
    {
        let root = BitMapBackend::new(&png, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&png, e))?;
        drawing.draw(&root).map_err(|e| plot_err(&png, e))?;
        root.present().map_err(|e| plot_err(&png, e))?;
    }
    let svg = stem.with_extension("svg");
    let root = SVGBackend::new(&svg, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&svg, e))?;
    drawing.draw(&root).map_err(|e| plot_err(&svg, e))?;
    root.present().map_err(|e| plot_err(&svg, e))?;
    Ok(())
}

/// One line of an accuracy plot: mean and the band around it at each x.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>, // x, mean, low, high
    pub colour: RGBColor,
    pub dashed: bool,
}

/// A panel of accuracy against labels per class (log axis) with error bands.
pub fn accuracy_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series],
    x_labels: &[(f64, String)],
) -> Result<(), String> {
    let xs: Vec<f64> = x_labels.iter().map(|(x, _)| *x).collect();
    let (x_min, x_max) = (
        xs.iter().cloned().fold(f64::INFINITY, f64::min) / 1.3,
        xs.iter().cloned().fold(0.0, f64::max) * 1.3,
    );
    let lows = series.iter().flat_map(|s| s.points.iter().map(|p| p.2));
    let highs = series.iter().flat_map(|s| s.points.iter().map(|p| p.3));
    let y_min = (lows.fold(1.0, f64::min) - 0.03).max(0.0);
    let y_max = (highs.fold(0.0, f64::max) + 0.03).min(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x_min..x_max).log_scale().with_key_points(xs.clone()),
            y_min..y_max,
        )
        .map_err(|e| e.to_string())?;
    let labels = x_labels.to_vec();
    chart
        .configure_mesh()
        .x_desc("labelled images per class (log scale)")
        .y_desc("test accuracy")
        .x_label_formatter(&|x| {
            labels
                .iter()
                .find(|(v, _)| (v / x - 1.0).abs() < 1e-6)
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    for s in series {
        let band: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.0, p.3))
            .chain(s.points.iter().rev().map(|p| (p.0, p.2)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                s.colour.mix(0.15).filled(),
            )))
            .map_err(|e| e.to_string())?;
        let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
        let style = ShapeStyle::from(&s.colour).stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(line.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(line.clone(), style))
        }
        .map_err(|e| e.to_string())?;
        let colour = s.colour;
        drawn.label(s.label.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
        });
        chart
            .draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, s.colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    let drawn: Vec<Vec<(f64, f64)>> = series
        .iter()
        .flat_map(|s| {
            [
                s.points.iter().map(|p| (p.0, p.1)).collect(),
                s.points.iter().map(|p| (p.0, p.2)).collect(),
                s.points.iter().map(|p| (p.0, p.3)).collect(),
            ]
        })
        .collect();
    chart
        .configure_series_labels()
        .position(emptiest_corner(
            &drawn,
            (x_min, x_max),
            (y_min, y_max),
            true,
        ))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 14))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The corner of the plot whose legend box would hide the fewest drawn points: `lines` in data
/// coordinates (sampled along their segments), ranges as drawn (`log_x` for a log axis). Ties
/// go to lower right, then upper right, upper left, lower left.
pub fn emptiest_corner(
    lines: &[Vec<(f64, f64)>],
    (x_min, x_max): (f64, f64),
    (y_min, y_max): (f64, f64),
    log_x: bool,
) -> SeriesLabelPosition {
    let fx = |x: f64| {
        if log_x {
            (x.ln() - x_min.ln()) / (x_max.ln() - x_min.ln())
        } else {
            (x - x_min) / (x_max - x_min)
        }
    };
    let fy = |y: f64| (y - y_min) / (y_max - y_min);
    // (position, right side?, upper side?)
    let corners = [
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let mut counts = [0usize; 4];
    for line in lines {
        let mut samples: Vec<(f64, f64)> = Vec::new();
        for w in line.windows(2) {
            let (a, b) = ((fx(w[0].0), fy(w[0].1)), (fx(w[1].0), fy(w[1].1)));
            samples.extend((0..10).map(|k| {
                let t = k as f64 / 10.0;
                (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
            }));
        }
        if let Some(&(x, y)) = line.last() {
            samples.push((fx(x), fy(y)));
        }
        for (x, y) in samples {
            for (i, &(_, right, upper)) in corners.iter().enumerate() {
                let in_x = if right { x > 0.55 } else { x < 0.45 };
                let in_y = if upper { y > 0.5 } else { y < 0.5 };
                counts[i] += (in_x && in_y) as usize;
            }
        }
    }
    let best = (0..4).min_by_key(|&i| counts[i]).expect("four corners");
    corners.into_iter().nth(best).expect("four corners").0
}

/// A panel of one quantity per epoch, one line per method.
pub fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    lines: &[(String, RGBColor, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ys = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1));
    let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let pad = ((y_max - y_min) * 0.08).max(0.01);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5..x_max + 0.5, (y_min - pad)..(y_max + pad))
        .map_err(|e| e.to_string())?;
    let decimals = if y_max - y_min < 0.1 { 3 } else { 2 };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels((x_max as usize).clamp(2, 12))
        // Only whole epochs get a label.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, colour, points) in lines {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    let drawn: Vec<Vec<(f64, f64)>> = lines.iter().map(|l| l.2.clone()).collect();
    chart
        .configure_series_labels()
        .position(emptiest_corner(
            &drawn,
            (0.5, x_max + 0.5),
            (y_min - pad, y_max + pad),
            false,
        ))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Points in 2-D coloured by class, with a legend of the class names.
pub fn scatter_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[(f64, f64, usize)],
    class_names: &[String],
) -> Result<(), String> {
    let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 190);
    let fold = |f: fn(&(f64, f64, usize)) -> f64| {
        points
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (x0, x1) = fold(|p| p.0);
    let (y0, y1) = fold(|p| p.1);
    let (px, py) = ((x1 - x0) * 0.04 + 1e-9, (y1 - y0) * 0.04 + 1e-9);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("first principal component")
        .y_desc("second principal component")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&(x, y, c)| Circle::new((x, y), 2, palette(c).mix(0.7).filled())),
        )
        .map_err(|e| e.to_string())?;
    for (c, name) in class_names.iter().enumerate() {
        let y = 60 + 24 * c as i32;
        legend_area
            .draw(&Circle::new((12, y), 6, palette(c).filled()))
            .map_err(|e| e.to_string())?;
        legend_area
            .draw(&Text::new(name.clone(), (26, y - 8), (FAMILY, 15)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A confusion matrix (rows: true class, columns: predicted), each row normalised to sum 1,
/// the share printed in every cell.
pub fn confusion_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    counts: &[Vec<usize>],
    class_names: &[String],
) -> Result<(), String> {
    let k = counts.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(150)
        // A segmented range over 0..=n has n + 1 cells.
        .build_cartesian_2d(
            (0..k.saturating_sub(1)).into_segmented(),
            (0..k.saturating_sub(1)).into_segmented(),
        )
        .map_err(|e| e.to_string())?;
    let names = class_names.to_vec();
    let centre = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => Some(*i),
        _ => None,
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted class (numbered as the rows, from 0 at the top)")
        .y_desc("true class")
        .x_labels(k)
        .y_labels(k)
        .x_label_formatter(&|x| centre(x).map(|i| i.to_string()).unwrap_or_default())
        .y_label_formatter(&|y| {
            centre(y)
                .and_then(|i| names.get(k - 1 - i.min(k - 1)).cloned())
                .unwrap_or_default()
        })
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let centred = (FAMILY, 12)
        .into_font()
        .into_text_style(area)
        .pos(Pos::new(HPos::Center, VPos::Center));
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &n) in row.iter().enumerate() {
            let share = n as f64 / total;
            let y = k - 1 - t;
            let shade = RGBColor(
                (255.0 - 224.0 * share) as u8,
                (255.0 - 136.0 * share) as u8,
                (255.0 - 75.0 * share) as u8,
            );
            let corner = |a: usize, b: usize| (SegmentValue::Exact(a), SegmentValue::Exact(b));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [corner(p, y), corner(p + 1, y + 1)],
                    shade.filled(),
                )))
                .map_err(|e| e.to_string())?;
            let colour = if share > 0.5 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{share:.2}"),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    centred.clone().color(&colour),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_the_lines_are_not() {
        // A line rising through the lower right to the upper right: the left is empty, and of
        // its corners the upper one has no point of the line at all.
        let rising = vec![vec![(0.0, 0.0), (1.0, 0.1), (2.0, 1.0)]];
        let pos = emptiest_corner(&rising, (0.0, 2.0), (0.0, 1.0), false);
        assert!(matches!(pos, SeriesLabelPosition::UpperLeft));
        // A falling line leaves the lower left and the upper right empty; the tie goes right.
        let falling = vec![vec![(0.0, 1.0), (2.0, 0.0)]];
        let pos = emptiest_corner(&falling, (0.0, 2.0), (0.0, 1.0), false);
        assert!(matches!(pos, SeriesLabelPosition::UpperRight));
        // Points high on a log axis at its right end push the legend to the lower right.
        let high = vec![vec![(10.0, 0.9), (100.0, 0.95)]];
        let pos = emptiest_corner(&high, (1.0, 130.0), (0.0, 1.0), true);
        assert!(matches!(pos, SeriesLabelPosition::LowerRight));
    }
}
