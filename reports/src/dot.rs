//! Pictures of derived cells, like the figures of the DARTS paper: a Graphviz DOT digraph per
//! cell type and its SVG rendering, laid out and drawn in Rust (no Graphviz install needed).
//!
//! The DOT follows DARTS' `visualize.py`: the inputs `c_{k-2}` and `c_{k-1}`, the intermediate
//! nodes `0..3` and the output `c_{k}` are filled boxes, each kept edge is labelled with its
//! operation, every concatenated node feeds `c_{k}`, and the ranks run left to right.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hands_models::genotype::{Edge, EDGES_PER_NODE};
use hands_models::output::write_atomic;
use hands_models::Genotype;

use crate::run_dir::CELL_PICTURES;

/// Name of the cell's older input, `c_{k-2}`.
pub const INPUT_PREV_PREV: &str = "c_{k-2}";
/// Name of the cell's newer input, `c_{k-1}`.
pub const INPUT_PREV: &str = "c_{k-1}";
/// Name of the cell's output, `c_{k}`.
pub const OUTPUT: &str = "c_{k}";

/// Fill of the two input boxes (SVG has no `darkseagreen2`: its RGB value is used there).
const INPUT_FILL: &str = "darkseagreen2";
/// Fill of the intermediate node boxes.
const NODE_FILL: &str = "lightblue";
/// Fill of the output box.
const OUTPUT_FILL: &str = "palegoldenrod";

/// The DOT name of state `index` of a cell: 0 and 1 are the inputs, 2.. the intermediate nodes.
fn state_name(index: usize) -> String {
    match index {
        0 => INPUT_PREV_PREV.to_string(),
        1 => INPUT_PREV.to_string(),
        i => (i - 2).to_string(),
    }
}

/// The Graphviz DOT digraph of the normal (`reduction = false`) or reduction cell of
/// `genotype`: one labelled edge per kept operation and one edge from every concatenated node
/// into the output.
pub fn cell_dot(genotype: &Genotype, reduction: bool) -> String {
    let (edges, concat) = genotype.cell(reduction);
    dot_of(edges, concat, if reduction { "reduce" } else { "normal" })
}

fn dot_of(edges: &[Edge], concat: &[usize], name: &str) -> String {
    let nodes = edges.len().div_ceil(2);
    let mut dot = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(dot, "digraph {name} {{");
    let _ = writeln!(dot, "  rankdir=LR;");
    let _ = writeln!(dot, "  edge [fontsize=20, fontname=\"times\"];");
    let _ = writeln!(
        dot,
        "  node [style=filled, shape=box, align=center, fontsize=20, height=0.5, width=0.5, \
         penwidth=2, fontname=\"times\"];"
    );
    for input in [INPUT_PREV_PREV, INPUT_PREV] {
        let _ = writeln!(dot, "  \"{input}\" [fillcolor={INPUT_FILL}];");
    }
    for node in 0..nodes {
        let _ = writeln!(dot, "  \"{node}\" [fillcolor={NODE_FILL}];");
    }
    for (k, (op, from)) in edges.iter().enumerate() {
        let _ = writeln!(
            dot,
            "  \"{}\" -> \"{}\" [label=\"{}\", fillcolor=gray];",
            state_name(*from),
            k / EDGES_PER_NODE,
            op.name()
        );
    }
    let _ = writeln!(dot, "  \"{OUTPUT}\" [fillcolor={OUTPUT_FILL}];");
    for &state in concat {
        let _ = writeln!(
            dot,
            "  \"{}\" -> \"{OUTPUT}\" [fillcolor=gray];",
            state_name(state)
        );
    }
    dot.push_str("}\n");
    dot
}

/// The SVG picture of one cell of `genotype`: the graph of [`cell_dot`], laid out left to right
/// the way Graphviz' `dot` would (see `layout_cell`) and drawn in Rust.
pub fn cell_svg(genotype: &Genotype, reduction: bool) -> String {
    let (edges, concat) = genotype.cell(reduction);
    let title = if reduction {
        "reduction cell"
    } else {
        "normal cell"
    };
    draw_svg(&layout_cell(edges, concat), title)
}

/// Writes the [`CELL_PICTURES`] (`normal.dot`, `normal.svg`, `reduce.dot`, `reduce.svg`) of `genotype` into
/// `dir` (which must exist), after checking that the genotype is valid. Each file is written
/// atomically, so a reader never sees a half-written picture.
pub fn write_cell_pictures(genotype: &Genotype, dir: &Path) -> Result<()> {
    genotype
        .validate()
        .context("cannot draw the cells of an invalid genotype")?;
    for (reduction, dot_file, svg_file) in CELL_PICTURES {
        let dot = cell_dot(genotype, reduction);
        let svg = cell_svg(genotype, reduction);
        write_atomic(&dir.join(dot_file), dot.as_bytes())?;
        write_atomic(&dir.join(svg_file), svg.as_bytes())?;
    }
    Ok(())
}

// ---- Layout -------------------------------------------------------------------------------
//
// The cell is drawn like Graphviz' `dot` draws it with `rankdir=LR`: states sit in columns by
// their longest path from the inputs; every labelled edge owns a slot for its label in the
// column just before its target, so labels never overlap; an edge that spans more columns
// bends through a reserved (invisible) slot in each column it crosses. Slots are ordered and
// placed in their columns by a few barycentre sweeps.

/// Font size of all text, in pixels.
const FONT_SIZE: f64 = 15.0;
/// Advance of one character of the monospaced font, slightly generous.
const CHAR_WIDTH: f64 = 0.62 * FONT_SIZE;
/// Height of a state box.
const BOX_HEIGHT: f64 = 34.0;
/// Height reserved for an edge label.
const LABEL_HEIGHT: f64 = 22.0;
/// Height reserved where an edge crosses a column.
const BEND_HEIGHT: f64 = 10.0;
/// Vertical space between the slots of a column.
const SLOT_GAP: f64 = 16.0;
/// Horizontal space between columns.
const COLUMN_GAP: f64 = 44.0;
/// Space around the drawing.
const MARGIN: f64 = 12.0;
/// RGB value of Graphviz' `darkseagreen2`, which SVG does not name.
const INPUT_FILL_RGB: &str = "#b4eeb4";

/// What a slot of the layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// A state box: an input, an intermediate node or the output.
    State,
    /// The label of an edge.
    Label,
    /// A bend of an edge that crosses the column.
    Bend,
}

/// One box, label or bend of the layout: its column, centre and size.
#[derive(Debug, Clone)]
struct Slot {
    kind: SlotKind,
    text: String,
    fill: &'static str,
    column: usize,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

/// A laid-out cell: its slots, its edges (the slots each passes, source first, target last)
/// and the size of the drawing.
#[derive(Debug)]
struct CellLayout {
    slots: Vec<Slot>,
    routes: Vec<Vec<usize>>,
    width: f64,
    height: f64,
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

/// Lays out a cell with `edges` (two per intermediate node) and `concat` (the states joined
/// into the output). Edges that read a state not computed before their node (which
/// [`Genotype::validate`] refuses) and concat entries that are not intermediate nodes are
/// left out.
fn layout_cell(edges: &[Edge], concat: &[usize]) -> CellLayout {
    let (column, joined) = state_columns(edges, concat);
    let (mut slots, routes) = slots_and_routes(edges, &column, &joined);
    let by_column = order_columns(&mut slots, &routes, column[column.len() - 1] + 1);
    position(slots, routes, &by_column)
}

/// The column of every state (inputs, nodes, output last) and the nodes the output joins.
fn state_columns(edges: &[Edge], concat: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let nodes = edges.len().div_ceil(2);
    let output = nodes + 2;
    let valid = |k: usize, from: usize| from < k / EDGES_PER_NODE + 2;

    // Columns of the states: inputs in column 0, each node two columns right of its latest
    // source (the column between holds the labels), the output two right of its latest node.
    let mut column = vec![0usize; output + 1];
    for node in 0..nodes {
        column[node + 2] = edges
            .iter()
            .enumerate()
            .filter(|&(k, &(_, from))| k / EDGES_PER_NODE == node && valid(k, from))
            .map(|(_, &(_, from))| column[from] + 2)
            .max()
            .unwrap_or(2);
    }
    let joined: Vec<usize> = concat
        .iter()
        .copied()
        .filter(|s| (2..output).contains(s))
        .collect();
    column[output] = joined
        .iter()
        .map(|&s| column[s])
        .max()
        .unwrap_or_else(|| column[2..output].iter().copied().max().unwrap_or(0))
        + 2;

    (column, joined)
}

/// One slot per state, label and bend, and the routes (slot indices) of the edges and of
/// the output's inputs.
fn slots_and_routes(
    edges: &[Edge],
    column: &[usize],
    joined: &[usize],
) -> (Vec<Slot>, Vec<Vec<usize>>) {
    let output = column.len() - 1;
    let valid = |k: usize, from: usize| from < k / EDGES_PER_NODE + 2;
    let mut slots: Vec<Slot> = Vec::new();
    let add = |slots: &mut Vec<Slot>, kind, text: &str, fill, column| {
        let (width, height) = match kind {
            SlotKind::State => ((text_width(text) + 20.0).max(40.0), BOX_HEIGHT),
            SlotKind::Label => (text_width(text) + 8.0, LABEL_HEIGHT),
            SlotKind::Bend => (0.0, BEND_HEIGHT),
        };
        slots.push(Slot {
            kind,
            text: text.to_string(),
            fill,
            column,
            x: 0.0,
            y: 0.0,
            width,
            height,
        });
        slots.len() - 1
    };
    let states: Vec<usize> = (0..=output)
        .map(|s| {
            let (text, fill) = match s {
                0 | 1 => (state_name(s), INPUT_FILL_RGB),
                s if s == output => (OUTPUT.to_string(), OUTPUT_FILL),
                s => (state_name(s), NODE_FILL),
            };
            add(&mut slots, SlotKind::State, &text, fill, column[s])
        })
        .collect();
    let mut routes = Vec::new();
    for (k, &(op, from)) in edges.iter().enumerate() {
        if !valid(k, from) {
            continue;
        }
        let to = k / EDGES_PER_NODE + 2;
        let mut route = vec![states[from]];
        for c in column[from] + 1..column[to] - 1 {
            route.push(add(&mut slots, SlotKind::Bend, "", "none", c));
        }
        route.push(add(
            &mut slots,
            SlotKind::Label,
            op.name(),
            "none",
            column[to] - 1,
        ));
        route.push(states[to]);
        routes.push(route);
    }
    for &from in joined {
        let mut route = vec![states[from]];
        for c in column[from] + 1..column[output] {
            route.push(add(&mut slots, SlotKind::Bend, "", "none", c));
        }
        route.push(states[output]);
        routes.push(route);
    }

    (slots, routes)
}

/// Groups the slots by column and orders each column by sweeps over the routes (the
/// barycentre heuristic), placing them; returns the slots of each column in order.
fn order_columns(slots: &mut [Slot], routes: &[Vec<usize>], columns: usize) -> Vec<Vec<usize>> {
    let mut by_column: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, slot) in slots.iter().enumerate() {
        by_column[slot.column].push(i);
    }
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); slots.len()];
    for route in routes {
        for pair in route.windows(2) {
            after[pair[0]].push(pair[1]);
            before[pair[1]].push(pair[0]);
        }
    }
    for list in &by_column {
        let desired: Vec<f64> = vec![0.0; list.len()];
        place(slots, list, &desired);
    }
    // Labels and bends, which have one slot on each side, follow both; boxes follow the
    // side the sweep comes from.
    let both: Vec<Vec<usize>> = (0..slots.len())
        .map(|i| [before[i].as_slice(), after[i].as_slice()].concat())
        .collect();
    let pick = |slots: &[Slot], side: &[Vec<usize>]| -> Vec<Vec<usize>> {
        (0..slots.len())
            .map(|i| match slots[i].kind {
                SlotKind::State => side[i].clone(),
                _ => both[i].clone(),
            })
            .collect()
    };
    let rightward = pick(slots, &before);
    let leftward = pick(slots, &after);
    for _ in 0..6 {
        for list in by_column.iter_mut().skip(1) {
            sweep(slots, list, &rightward, false);
        }
        for (c, list) in by_column.iter_mut().enumerate().rev().skip(1) {
            sweep(slots, list, &leftward, c == 0);
        }
    }
    for list in by_column.iter_mut().skip(1) {
        sweep(slots, list, &rightward, false);
    }

    by_column
}

/// Sets the columns' x from left to right and moves the drawing inside its margin.
fn position(mut slots: Vec<Slot>, routes: Vec<Vec<usize>>, by_column: &[Vec<usize>]) -> CellLayout {
    // Columns left to right, and the whole drawing moved inside its margin.
    let mut x = MARGIN;
    for list in by_column {
        let width = list.iter().map(|&i| slots[i].width).fold(0.0, f64::max);
        for &i in list {
            slots[i].x = x + width / 2.0;
        }
        x += width + COLUMN_GAP;
    }
    let top = slots
        .iter()
        .map(|s| s.y - s.height / 2.0)
        .fold(f64::INFINITY, f64::min);
    for slot in &mut slots {
        slot.y += MARGIN - top;
    }
    let bottom = slots
        .iter()
        .map(|s| s.y + s.height / 2.0)
        .fold(0.0, f64::max);
    CellLayout {
        slots,
        routes,
        width: x - COLUMN_GAP + MARGIN,
        height: bottom + MARGIN,
    }
}

/// Orders the slots `list` of one column by the mean height of their `neighbours` (unless
/// `fixed`) and places them there.
fn sweep(slots: &mut [Slot], list: &mut [usize], neighbours: &[Vec<usize>], fixed: bool) {
    let desired_of = |slots: &[Slot], i: usize| {
        let n = &neighbours[i];
        if n.is_empty() {
            slots[i].y
        } else {
            n.iter().map(|&j| slots[j].y).sum::<f64>() / n.len() as f64
        }
    };
    if !fixed {
        list.sort_by(|&a, &b| desired_of(slots, a).total_cmp(&desired_of(slots, b)));
    }
    let desired: Vec<f64> = list.iter().map(|&i| desired_of(slots, i)).collect();
    place(slots, list, &desired);
}

/// Places the slots `list` of one column, in that order, as near to their `desired` centres
/// as they can be without overlapping, keeping the column's mean displacement at zero.
fn place(slots: &mut [Slot], list: &[usize], desired: &[f64]) {
    let mut ys: Vec<f64> = Vec::with_capacity(list.len());
    for (n, (&i, &want)) in list.iter().zip(desired).enumerate() {
        let y = match n {
            0 => want,
            _ => {
                let prev = &slots[list[n - 1]];
                want.max(ys[n - 1] + (prev.height + slots[i].height) / 2.0 + SLOT_GAP)
            }
        };
        ys.push(y);
    }
    let shift = desired.iter().zip(&ys).map(|(d, y)| d - y).sum::<f64>() / list.len().max(1) as f64;
    for (&i, y) in list.iter().zip(ys) {
        slots[i].y = y + shift;
    }
}

/// Escapes text for an XML document.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where an edge piece `(route, piece)` leaves and enters a state box: its offset from the
/// box's centre.
type EndOffsets = std::collections::HashMap<(usize, usize), f64>;

/// Draws a laid-out cell as a standalone SVG document titled `title`.
fn draw_svg(layout: &CellLayout, title: &str) -> String {
    let mut svg = String::new();
    let (w, h) = (layout.width.ceil(), layout.height.ceil());
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT_SIZE}">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", xml_escape(title));
    let _ = writeln!(
        svg,
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="5" markerHeight="5" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="black"/></marker></defs>"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);

    let (exit_offset, entry_offset) = end_offsets(layout);
    draw_edges(&mut svg, layout, &exit_offset, &entry_offset);
    draw_slots(&mut svg, &layout.slots);
    svg.push_str("</svg>\n");
    svg
}

/// Where each edge leaves and enters a state box: spread over the box's side, in the
/// vertical order of the slots at the other end, so that edges do not start on each other.
fn end_offsets(layout: &CellLayout) -> (EndOffsets, EndOffsets) {
    let slots = &layout.slots;
    let mut exits: Vec<Vec<(f64, usize, usize)>> = vec![Vec::new(); slots.len()];
    let mut entries: Vec<Vec<(f64, usize, usize)>> = vec![Vec::new(); slots.len()];
    for (r, route) in layout.routes.iter().enumerate() {
        for (p, pair) in route.windows(2).enumerate() {
            exits[pair[0]].push((slots[pair[1]].y, r, p));
            entries[pair[1]].push((slots[pair[0]].y, r, p));
        }
    }
    let spread = |ends: &mut Vec<(f64, usize, usize)>, height: f64| {
        ends.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = ends.len() as f64;
        ends.iter()
            .enumerate()
            .map(|(j, &(_, r, p))| ((r, p), ((j as f64 + 1.0) / (k + 1.0) - 0.5) * height * 0.8))
            .collect::<Vec<_>>()
    };
    let mut exit_offset = EndOffsets::new();
    let mut entry_offset = EndOffsets::new();
    for (i, slot) in slots.iter().enumerate() {
        if slot.kind == SlotKind::State {
            exit_offset.extend(spread(&mut exits[i], slot.height));
            entry_offset.extend(spread(&mut entries[i], slot.height));
        }
    }
    (exit_offset, entry_offset)
}

/// The edges as paths from slot to slot, cut at their labels, the arrow on the last piece.
fn draw_edges(
    svg: &mut String,
    layout: &CellLayout,
    exit_offset: &EndOffsets,
    entry_offset: &EndOffsets,
) {
    let slots = &layout.slots;
    for (r, route) in layout.routes.iter().enumerate() {
        let mut d = String::new();
        for (p, pair) in route.windows(2).enumerate() {
            let (a, b) = (&slots[pair[0]], &slots[pair[1]]);
            let (x0, y0) = match a.kind {
                SlotKind::State => (a.x + a.width / 2.0, a.y + exit_offset[&(r, p)]),
                SlotKind::Label => (a.x + a.width / 2.0, a.y),
                SlotKind::Bend => (a.x, a.y),
            };
            let (x1, y1) = match b.kind {
                SlotKind::State => (b.x - b.width / 2.0, b.y + entry_offset[&(r, p)]),
                SlotKind::Label => (b.x - b.width / 2.0, b.y),
                SlotKind::Bend => (b.x, b.y),
            };
            if d.is_empty() {
                let _ = write!(d, "M{x0:.1},{y0:.1}");
            }
            let dx = (x1 - x0) / 2.0;
            let _ = write!(
                d,
                " C{:.1},{y0:.1} {:.1},{y1:.1} {x1:.1},{y1:.1}",
                x0 + dx,
                x1 - dx
            );
            // A label interrupts its edge; the piece into the target carries the arrow.
            let last = p + 2 == route.len();
            if b.kind == SlotKind::Label || last {
                let marker = if last {
                    r#" marker-end="url(#arrow)""#
                } else {
                    ""
                };
                let _ = writeln!(
                    *svg,
                    r#"<path d="{d}" fill="none" stroke="black" stroke-width="1.5"{marker}/>"#
                );
                d.clear();
            }
        }
    }
}

/// The state boxes and every slot's text.
fn draw_slots(svg: &mut String, slots: &[Slot]) {
    for slot in slots {
        let (left, top) = (slot.x - slot.width / 2.0, slot.y - slot.height / 2.0);
        match slot.kind {
            SlotKind::Bend => continue,
            SlotKind::State => {
                let _ = writeln!(
                    *svg,
                    r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}" stroke="black" stroke-width="2"/>"#,
                    slot.width, slot.height, slot.fill
                );
            }
            SlotKind::Label => {}
        }
        let _ = writeln!(
            *svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="central">{}</text>"#,
            slot.x,
            slot.y,
            xml_escape(&slot.text)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_named_like_darts() {
        assert_eq!(state_name(0), "c_{k-2}");
        assert_eq!(state_name(1), "c_{k-1}");
        assert_eq!(state_name(2), "0");
        assert_eq!(state_name(5), "3");
    }

    #[test]
    fn dot_has_one_edge_per_kept_op_and_per_output() {
        let genotype = Genotype::published("PDARTS").unwrap();
        let dot = cell_dot(&genotype, true);
        assert!(dot.starts_with("digraph reduce {"));
        assert!(dot.contains("rankdir=LR"));
        assert_eq!(dot.matches(" -> ").count(), 12);
        assert_eq!(dot.matches("-> \"c_{k}\"").count(), 4);
        assert!(dot.contains("\"c_{k-2}\" -> \"0\" [label=\"avg_pool_3x3\""));
        assert!(dot.contains("\"1\" -> \"3\" [label=\"dil_conv_5x5\""));
    }
}
