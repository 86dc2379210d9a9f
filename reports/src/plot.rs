//! SVG plots of a run's JSON-lines logs (`hands-search plot`).
//!
//! From `search.jsonl` it draws `alphas.svg` (per cell type, the mean softmaxed weight of each
//! operation over the 14 edges, per epoch), `alphas_edges.svg` (the same per edge, as small
//! multiples) and `search_curves.svg` (losses, accuracies and learning rate); from
//! `train.jsonl` it draws `train_curves.svg`. The SVGs carry their text as `<text>` elements,
//! so no font is needed to write them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::learning::ArchitectureLearning;
use crate::records::{SearchEpoch, TrainEpoch};
use anyhow::{bail, Context, Result};
use hands_models::output::write_atomic;
use hands_models::Op;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::de::DeserializeOwned;

use crate::outputs::Inputs;
use crate::run_dir::{RunDir, SEARCH_LOG, TRAIN_LOG};

/// Plots the logs found in `run` into `out` (created if missing) and returns the files
/// written. Fails when `run` holds neither `search.jsonl` nor `train.jsonl`.
pub fn plot_run(run: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let search_log = RunDir::new(run).search_log();
    let train_log = RunDir::new(run).train_log();
    if !search_log.is_file() && !train_log.is_file() {
        bail!(
            "{} holds neither {SEARCH_LOG} nor {TRAIN_LOG}: nothing to plot",
            run.display()
        );
    }
    let mut inputs = Inputs::default();
    for input in [run, &search_log, &train_log] {
        inputs.add(input);
    }
    inputs.check(
        [
            "alphas.svg",
            "alphas_edges.svg",
            "search_curves.svg",
            "train_curves.svg",
        ]
        .map(|name| out.join(name)),
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let mut write = |name: &str, svg: String| -> Result<()> {
        let path = out.join(name);
        write_atomic(&path, svg.as_bytes())?;
        written.push(path);
        Ok(())
    };
    if search_log.is_file() {
        let records: Vec<SearchEpoch> = read_jsonl(&search_log)?;
        check_alphas(&search_log, &records)?;
        if records.is_empty() {
            bail!("{} has no records to plot", search_log.display());
        }
        write("alphas.svg", alphas_svg(&records)?)?;
        write("alphas_edges.svg", alphas_edges_svg(&records)?)?;
        let curves: Vec<Curves> = records.iter().map(Curves::from).collect();
        write(
            "search_curves.svg",
            curves_svg("search", &curves, &stage_starts(&records))?,
        )?;
    }
    if train_log.is_file() {
        let records: Vec<TrainEpoch> = read_jsonl(&train_log)?;
        if records.is_empty() {
            bail!("{} has no records to plot", train_log.display());
        }
        let curves: Vec<Curves> = records.iter().map(Curves::from).collect();
        write("train_curves.svg", curves_svg("training", &curves, &[])?)?;
    }
    Ok(written)
}

/// The per-epoch figures drawn by [`curves_svg`].
#[derive(Debug)]
struct Curves {
    epoch: f64,
    lr: f64,
    train_loss: f64,
    train_acc: f64,
    val_loss: Option<f64>,
    val_acc: Option<f64>,
    /// Searches only: pools and skips in the derived normal cell.
    parameter_free_normal: Option<f64>,
    /// Searches with `--hessian-iterations` only: the architecture Hessian's dominant
    /// eigenvalue.
    hessian_eigenvalue: Option<f64>,
    /// Budgeted searches only: the final network's expected cost under the architecture
    /// weights, and the derived genotype's cost.
    expected_cost: Option<f64>,
    genotype_cost: Option<f64>,
    /// Searches only: what the architecture weights learned ([`ArchitectureLearning`]).
    learning: Option<ArchitectureLearning>,
}

impl From<&SearchEpoch> for Curves {
    fn from(r: &SearchEpoch) -> Curves {
        Curves {
            epoch: r.epoch as f64,
            lr: r.stats.lr,
            train_loss: r.stats.train_loss,
            train_acc: r.stats.train_acc,
            val_loss: r.stats.val_loss,
            val_acc: r.stats.val_acc,
            parameter_free_normal: r.parameter_free_normal.map(|n| n as f64),
            hessian_eigenvalue: r.stats.hessian_eigenvalue,
            expected_cost: r.stats.expected_cost,
            genotype_cost: r.genotype_cost,
            learning: r.learning,
        }
    }
}

impl From<&TrainEpoch> for Curves {
    fn from(r: &TrainEpoch) -> Curves {
        Curves {
            epoch: r.epoch as f64,
            lr: r.lr,
            train_loss: r.train_loss,
            train_acc: r.train_acc,
            val_loss: r.val_loss,
            val_acc: r.val_acc,
            parameter_free_normal: None,
            hessian_eigenvalue: None,
            expected_cost: None,
            genotype_cost: None,
            learning: None,
        }
    }
}

/// Reads a JSON-lines file: one record per non-blank line. A bad line is an error naming the
/// file and the line, except a last line without its newline, which a running search may
/// still be writing: that one is skipped with a warning.
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) if i + 1 == lines.len() && !complete => {
                eprintln!(
                    "warning: {}:{}: skipping the unfinished last line ({e})",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => {
                // serde_json ends its message with the position inside the line; the
                // position in the file is given in front instead.
                let message = e.to_string();
                let message = message
                    .rfind(" at line ")
                    .map_or(message.as_str(), |at| &message[..at]);
                bail!(
                    "{}:{}:{}: bad record: {message}",
                    path.display(),
                    i + 1,
                    e.column()
                )
            }
        }
    }
    Ok(records)
}

/// Checks that every edge has one weight per candidate operation.
fn check_alphas(path: &Path, records: &[SearchEpoch]) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        for (name, reduction) in [("normal", false), ("reduce", true)] {
            let (alphas, candidates) = r.cell(reduction);
            let shapes_match = alphas.len() == candidates.len()
                && alphas
                    .iter()
                    .zip(candidates)
                    .all(|(a, c)| a.len() == c.len());
            if !shapes_match || alphas.is_empty() {
                bail!(
                    "{}: record {} (epoch {}): alphas_{name} and candidates_{name} must give \
                     one weight per candidate op on each edge",
                    path.display(),
                    i + 1,
                    r.epoch
                );
            }
        }
    }
    Ok(())
}

/// Operation names in DARTS' order.
fn op_order() -> Vec<String> {
    Op::ALL.iter().map(|op| op.name().to_string()).collect()
}

/// A colour per operation name, fixed across plots (Tableau 10, then plotters' palette).
fn op_color(order: &[String], name: &str) -> RGBColor {
    const TABLEAU: [RGBColor; 10] = [
        RGBColor(127, 127, 127),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    let i = order.iter().position(|n| n == name).unwrap_or(0);
    match TABLEAU.get(i) {
        Some(&c) => c,
        None => {
            let (r, g, b) = Palette99::pick(i).rgb();
            RGBColor(r, g, b)
        }
    }
}

/// Per operation name, the (epoch, weight) series of one edge, or of the mean over all edges
/// (`edge = None`; an op that is not a candidate of an edge weighs 0 there).
fn op_series(
    records: &[SearchEpoch],
    reduction: bool,
    edge: Option<usize>,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records {
        let (alphas, candidates) = r.cell(reduction);
        let edges = match edge {
            Some(e) if e < alphas.len() => e..e + 1,
            Some(_) => continue,
            None => 0..alphas.len(),
        };
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        for e in edges.clone() {
            for (w, op) in alphas[e].iter().zip(&candidates[e]) {
                *sums.entry(op.name()).or_default() += w;
            }
        }
        for (name, sum) in sums {
            series
                .entry(name.to_string())
                .or_default()
                .push((r.epoch as f64, sum / edges.len() as f64));
        }
    }
    series
}

/// The label of edge `e` of a cell: `from→node`, with DARTS' state names.
fn edge_label(e: usize) -> String {
    let (mut node, mut first) = (0, 0);
    while e >= first + node + 2 {
        first += node + 2;
        node += 1;
    }
    let from = match e - first {
        0 => "c_{k-2}".to_string(),
        1 => "c_{k-1}".to_string(),
        s => (s - 2).to_string(),
    };
    format!("{from} → {node}")
}

/// The x range covering `epochs`, never empty.
fn epoch_range(epochs: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = epochs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if hi - lo < 1.0 {
        lo - 0.5..hi + 0.5
    } else {
        lo..hi
    }
}

/// A y range covering `values` with a 5% margin, never empty.
fn value_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi - lo > 1e-9 * hi.abs().max(1e-12) {
        (hi - lo) * 0.05
    } else {
        (hi.abs() * 0.1).max(1e-3)
    };
    lo - pad..hi + pad
}

/// Draws into an SVG document of `size` pixels and returns it.
pub fn render_svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// The epoch where each P-DARTS stage after the first begins, with the stage (0-based).
fn stage_starts(records: &[SearchEpoch]) -> Vec<(f64, usize)> {
    records
        .windows(2)
        .filter(|w| w[1].stage != w[0].stage)
        .map(|w| (w[1].epoch as f64, w[1].stage))
        .collect()
}

/// Labels whole epochs only (the axis may also get ticks in between).
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// Draws a dashed vertical line, labelled `stage N` unless `small`, where each P-DARTS stage
/// begins.
fn draw_stage_lines(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    stages: &[(f64, usize)],
    y: &Range<f64>,
    small: bool,
) -> Result<()> {
    for &(at, stage) in stages {
        chart.draw_series(DashedLineSeries::new(
            [(at, y.start), (at, y.end)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        if !small {
            let style = ("sans-serif", 13).into_font().color(&BLACK.mix(0.7));
            chart.draw_series(std::iter::once(Text::new(
                format!(" stage {}", stage + 1),
                (at, y.end),
                style,
            )))?;
        }
    }
    Ok(())
}

/// Draws the per-op weight lines of one cell (`edge = None`: mean over edges) in `area`.
fn draw_alpha_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    records: &[SearchEpoch],
    order: &[String],
    reduction: bool,
    edge: Option<usize>,
    caption: &str,
    small: bool,
) -> Result<()> {
    let series = op_series(records, reduction, edge);
    let x = epoch_range(records.iter().map(|r| r.epoch as f64));
    // The weights' own range: a search whose weights hardly moved shows how little they did.
    let y = value_range(series.values().flatten().map(|&(_, w)| w));
    let (font, label_size) = if small { (13, 30) } else { (20, 45) };
    // The legend beside the chart, never over its lines.
    let (chart_area, legend_area) = if small {
        (area.clone(), None)
    } else {
        let (chart, legend) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 150);
        (chart, Some(legend))
    };
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(caption, ("sans-serif", font))
        .margin(if small { 4 } else { 10 })
        .x_label_area_size(label_size)
        .y_label_area_size(label_size + 25)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(6)
        .y_labels(6)
        .x_label_formatter(&epoch_label)
        .light_line_style(TRANSPARENT);
    if !small {
        mesh.x_desc("epoch").y_desc(if edge.is_some() {
            "weight"
        } else {
            "mean weight over the edges"
        });
    }
    mesh.label_style(("sans-serif", if small { 10 } else { 14 }))
        .draw()?;
    draw_stage_lines(&mut chart, &stage_starts(records), &y, small)?;
    let mut drawn_ops = Vec::new();
    for name in order {
        let Some(points) = series.get(name) else {
            continue;
        };
        let color = op_color(order, name);
        let style = ShapeStyle::from(&color).stroke_width(2);
        chart.draw_series(
            LineSeries::new(points.iter().copied(), style).point_size(if small { 0 } else { 2 }),
        )?;
        drawn_ops.push((name.as_str(), color));
    }
    if let Some(legend) = legend_area {
        draw_legend(&legend, &drawn_ops)?;
    }
    Ok(())
}

/// A legend of coloured lines and names, top to bottom, in its own area.
fn draw_legend(area: &DrawingArea<SVGBackend, Shift>, entries: &[(&str, RGBColor)]) -> Result<()> {
    for (i, (name, color)) in entries.iter().enumerate() {
        let y = 60 + 22 * i as i32;
        area.draw(&PathElement::new([(4, y), (28, y)], color.stroke_width(3)))?;
        area.draw(&Text::new(
            name.to_string(),
            (34, y - 7),
            ("sans-serif", 14),
        ))?;
    }
    Ok(())
}

/// `alphas.svg`: the mean weight of each op over the epochs, normal and reduction cells side
/// by side.
fn alphas_svg(records: &[SearchEpoch]) -> Result<String> {
    let order = op_order();
    render_svg((1400, 560), |root| {
        let root = root.titled(
            "Architecture weights (softmax over each edge's candidates)",
            ("sans-serif", 24),
        )?;
        let panels = root.split_evenly((1, 2));
        for (area, (reduction, name)) in panels.iter().zip([(false, "normal"), (true, "reduction")])
        {
            let caption = format!(
                "{name} cell: mean over the {} edges",
                records[0].cell(reduction).0.len()
            );
            draw_alpha_panel(area, records, &order, reduction, None, &caption, false)?;
        }
        Ok(())
    })
}

/// `alphas_edges.svg`: one small panel per edge, two rows per cell type, with a shared
/// legend of colours at the top.
fn alphas_edges_svg(records: &[SearchEpoch]) -> Result<String> {
    let order = op_order();
    let edges = records
        .iter()
        .map(|r| r.alphas_normal.len().max(r.alphas_reduce.len()))
        .max()
        .unwrap_or(0);
    let cols = edges.div_ceil(2).max(1);
    render_svg((cols as u32 * 230, 4 * 200 + 90), |root| {
        let root = root.titled("Architecture weights per edge", ("sans-serif", 24))?;
        let (legend, grid) = root.split_vertically(40);
        let used: Vec<&String> = order
            .iter()
            .filter(|name| {
                records.iter().any(|r| {
                    r.candidates_normal
                        .iter()
                        .chain(&r.candidates_reduce)
                        .any(|c| c.iter().any(|op| op.name() == name.as_str()))
                })
            })
            .collect();
        for (i, name) in used.iter().enumerate() {
            let x = 20 + i as i32 * 170;
            let color = op_color(&order, name);
            legend.draw(&PathElement::new(
                [(x, 20), (x + 24, 20)],
                color.stroke_width(3),
            ))?;
            legend.draw(&Text::new(
                name.as_str(),
                (x + 30, 13),
                ("sans-serif", 14).into_font(),
            ))?;
        }
        let cells = grid.split_evenly((4, cols));
        for (row, cell_rows) in cells.chunks(cols).enumerate() {
            let (reduction, name) = if row < 2 {
                (false, "normal")
            } else {
                (true, "reduce")
            };
            for (col, area) in cell_rows.iter().enumerate() {
                let edge = (row % 2) * cols + col;
                if edge >= edges {
                    continue;
                }
                let caption = format!("{name} {}", edge_label(edge));
                draw_alpha_panel(area, records, &order, reduction, Some(edge), &caption, true)?;
            }
        }
        Ok(())
    })
}

/// A line of a curves panel: its label, colour and the value it draws per epoch.
type Line = (&'static str, RGBColor, fn(&Curves) -> Option<f64>);

/// A curves panel: its title, where its legend goes, and its lines.
type Panel = (&'static str, SeriesLabelPosition, Vec<Line>);

/// The panels of `*_curves.svg`: loss, accuracy and learning rate, then those the records
/// have values for (parameter-free ops, the Hessian eigenvalue, the budget's costs).
fn curve_panels(curves: &[Curves]) -> Vec<Panel> {
    let train = RGBColor(31, 119, 180);
    let val = RGBColor(255, 127, 14);
    let mut plots: Vec<Panel> = vec![
        (
            "loss",
            SeriesLabelPosition::UpperRight,
            vec![
                ("train", train, |c| Some(c.train_loss)),
                ("validation", val, |c| c.val_loss),
            ],
        ),
        (
            "accuracy",
            SeriesLabelPosition::LowerRight,
            vec![
                ("train", train, |c| Some(c.train_acc)),
                ("validation", val, |c| c.val_acc),
            ],
        ),
        (
            "learning rate",
            SeriesLabelPosition::UpperRight,
            vec![("lr", train, |c| Some(c.lr))],
        ),
    ];
    if curves.iter().any(|c| c.parameter_free_normal.is_some()) {
        plots.push((
            "parameter-free ops, normal cell",
            SeriesLabelPosition::UpperLeft,
            vec![("pools + skips of 8", train, |c| c.parameter_free_normal)],
        ));
    }
    if curves.iter().any(|c| c.hessian_eigenvalue.is_some()) {
        plots.push((
            "Hessian eigenvalue (alpha)",
            SeriesLabelPosition::UpperLeft,
            vec![("dominant, validation", val, |c| c.hessian_eigenvalue)],
        ));
    }
    if curves.iter().any(|c| c.learning.is_some()) {
        let third = RGBColor(120, 120, 120);
        plots.push((
            "architecture steps (this stage)",
            SeriesLabelPosition::UpperLeft,
            vec![("steps", train, |c| c.learning.map(|l| l.arch_steps as f64))],
        ));
        plots.push((
            "entropy of the weights per edge (nats)",
            SeriesLabelPosition::LowerLeft,
            vec![
                ("normal", train, |c| c.learning.map(|l| l.normal.entropy)),
                ("reduction", val, |c| c.learning.map(|l| l.reduce.entropy)),
                ("uniform", third, |c| {
                    c.learning.map(|l| l.normal.uniform_entropy)
                }),
            ],
        ));
        plots.push((
            "margin of each edge's choice (logits)",
            SeriesLabelPosition::UpperLeft,
            vec![
                ("normal", train, |c| c.learning.map(|l| l.normal.margin)),
                ("reduction", val, |c| c.learning.map(|l| l.reduce.margin)),
                ("noise bound", third, |c| c.learning.map(|l| l.noise_margin)),
            ],
        ));
    }
    if curves.iter().any(|c| c.expected_cost.is_some()) {
        plots.push((
            "cost of the final network",
            SeriesLabelPosition::UpperRight,
            vec![
                ("expected", val, |c| c.expected_cost),
                ("derived genotype", train, |c| c.genotype_cost),
            ],
        ));
    }
    plots
}

/// `*_curves.svg`: loss, accuracy and learning rate per epoch, with the P-DARTS `stages`.
fn curves_svg(what: &str, curves: &[Curves], stages: &[(f64, usize)]) -> Result<String> {
    let plots = curve_panels(curves);
    let panel_count = plots.len();
    render_svg((500 * panel_count as u32, 480), |root| {
        let root = root.titled(&format!("{what} curves"), ("sans-serif", 24))?;
        let panels = root.split_evenly((1, panel_count));
        let x = epoch_range(curves.iter().map(|c| c.epoch));
        for (area, (title, legend, lines)) in panels.iter().zip(plots) {
            let y = value_range(
                lines
                    .iter()
                    .flat_map(|(_, _, pick)| curves.iter().filter_map(pick)),
            );
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d(x.clone(), y.clone())?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(title)
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&epoch_label)
                .light_line_style(TRANSPARENT)
                .label_style(("sans-serif", 14))
                .draw()?;
            draw_stage_lines(&mut chart, stages, &y, false)?;
            for (label, color, pick) in lines {
                let points: Vec<(f64, f64)> = curves
                    .iter()
                    .filter_map(|c| pick(c).map(|v| (c.epoch, v)))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(3))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(legend)
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_labelled_in_darts_order() {
        let labels: Vec<String> = (0..14).map(edge_label).collect();
        assert_eq!(labels[0], "c_{k-2} → 0");
        assert_eq!(labels[1], "c_{k-1} → 0");
        assert_eq!(labels[2], "c_{k-2} → 1");
        assert_eq!(labels[4], "0 → 1");
        assert_eq!(labels[5], "c_{k-2} → 2");
        assert_eq!(labels[8], "1 → 2");
        assert_eq!(labels[9], "c_{k-2} → 3");
        assert_eq!(labels[13], "2 → 3");
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(epoch_range([3.0].into_iter()), 2.5..3.5);
        assert_eq!(epoch_range(std::iter::empty()), 0.0..1.0);
        let r = value_range([0.5, 0.5].into_iter());
        assert!(r.start < 0.5 && r.end > 0.5);
    }

    #[test]
    fn mean_weights_count_missing_candidates_as_zero() {
        let record: SearchEpoch = serde_json::from_value(serde_json::json!({
            "epoch": 0, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5,
            "alphas_normal": [[0.25, 0.75], [1.0]],
            "alphas_reduce": [[1.0], [1.0]],
            "candidates_normal": [["skip_connect", "sep_conv_3x3"], ["sep_conv_3x3"]],
            "candidates_reduce": [["max_pool_3x3"], ["max_pool_3x3"]],
        }))
        .unwrap();
        let series = op_series(std::slice::from_ref(&record), false, None);
        assert_eq!(series["skip_connect"], [(0.0, 0.125)]);
        assert_eq!(series["sep_conv_3x3"], [(0.0, 0.875)]);
        let edge = op_series(std::slice::from_ref(&record), false, Some(1));
        assert_eq!(edge["sep_conv_3x3"], [(0.0, 1.0)]);
        assert!(!edge.contains_key("skip_connect"));
    }
}
