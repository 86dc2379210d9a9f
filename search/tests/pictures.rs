//! Cell pictures (DOT and SVG) and plots of the JSON-lines logs.

use std::path::Path;

use hands_models::{Genotype, Op};
use hands_reports::dot::{cell_dot, write_cell_pictures};
use hands_reports::plot::plot_run;
use serde_json::json;

/// Parses `text` as XML and checks that its root is an `<svg>` element.
fn assert_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{} does not start like an SVG: {:?}",
        path.display(),
        &text[..text.len().min(60)]
    );
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    text
}

/// The text of every `<text>` element of an SVG, concatenated.
fn svg_text(svg: &str) -> String {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dot_of_a_published_cell_has_every_edge_and_op() {
    let genotype = Genotype::published("DARTS_V2").unwrap();
    for reduction in [false, true] {
        let dot = cell_dot(&genotype, reduction);
        assert!(dot.starts_with("digraph "), "{dot}");
        assert!(dot.contains("rankdir=LR"), "{dot}");
        let edges: Vec<&str> = dot.lines().filter(|l| l.contains(" -> ")).collect();
        assert_eq!(edges.len(), 12, "{dot}");
        let labelled = edges.iter().filter(|l| l.contains("label=")).count();
        assert_eq!(labelled, 8, "{dot}");
        let into_output = edges.iter().filter(|l| l.contains("-> \"c_{k}\"")).count();
        assert_eq!(into_output, 4, "{dot}");
        for node in ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"] {
            assert!(
                dot.contains(&format!("\"{node}\" [fillcolor=")),
                "{node}: {dot}"
            );
        }
        let (cell, _) = genotype.cell(reduction);
        for (k, (op, from)) in cell.iter().enumerate() {
            let source = match from {
                0 => "c_{k-2}".to_string(),
                1 => "c_{k-1}".to_string(),
                i => (i - 2).to_string(),
            };
            let edge = format!("\"{source}\" -> \"{}\" [label=\"{}\"", k / 2, op.name());
            assert!(dot.contains(&edge), "missing {edge}: {dot}");
        }
    }
}

#[test]
fn cell_pictures_are_written_as_dot_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = Genotype::published("PDARTS").unwrap();
    write_cell_pictures(&genotype, dir.path()).unwrap();
    // Rewriting in place (as each search epoch does) works.
    write_cell_pictures(&genotype, dir.path()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["normal.dot", "normal.svg", "reduce.dot", "reduce.svg"]
    );
    for (reduction, stem) in [(false, "normal"), (true, "reduce")] {
        let dot = std::fs::read_to_string(dir.path().join(format!("{stem}.dot"))).unwrap();
        assert_eq!(dot, cell_dot(&genotype, reduction));
        let svg = assert_svg(&dir.path().join(format!("{stem}.svg")));
        let text = svg_text(&svg);
        let (cell, _) = genotype.cell(reduction);
        for (op, _) in cell {
            assert!(text.contains(op.name()), "{stem}.svg lacks {op}");
        }
        for node in ["c_{k-2}", "c_{k-1}", "c_{k}"] {
            assert!(text.contains(node), "{stem}.svg lacks {node}");
        }
    }
}

/// A softmax over `logits`.
fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// A synthetic `search.jsonl` in the format of `hands-search search`: two P-DARTS-like stages,
/// the second with four candidates per edge.
fn search_log(epochs: usize) -> String {
    let genotype = Genotype::published("DARTS_V2").unwrap();
    let mut text = String::new();
    for epoch in 0..epochs {
        let stage = usize::from(epoch >= epochs / 2);
        let ops: Vec<Op> = if stage == 0 {
            Op::ALL.to_vec()
        } else {
            vec![
                Op::SkipConnect,
                Op::SepConv3x3,
                Op::MaxPool3x3,
                Op::DilConv3x3,
            ]
        };
        let alphas: Vec<Vec<f64>> = (0..14)
            .map(|e| {
                let logits: Vec<f64> = (0..ops.len())
                    .map(|o| ((o + e) % ops.len()) as f64 * epoch as f64 * 0.1)
                    .collect();
                softmax(&logits)
            })
            .collect();
        let candidates = vec![ops.clone(); 14];
        let record = json!({
            "epoch": epoch,
            "stage": stage,
            "stage_epoch": epoch % (epochs / 2),
            "layers": 5,
            "lr": 0.025 * (1.0 - epoch as f64 / epochs as f64),
            "arch_active": epoch > 0,
            "train_loss": 0.7 - 0.02 * epoch as f64,
            "train_acc": 0.5 + 0.03 * epoch as f64,
            "val_loss": if epoch == 0 { None } else { Some(0.69 - 0.01 * epoch as f64) },
            "val_acc": if epoch == 0 { None } else { Some(0.52 + 0.02 * epoch as f64) },
            "seconds": 12.5,
            "alphas_normal": alphas,
            "alphas_reduce": alphas,
            "betas_normal": null,
            "betas_reduce": null,
            "candidates_normal": candidates,
            "candidates_reduce": candidates,
            "parameter_free_normal": epoch % 5,
            "hessian_eigenvalue": 0.1 * (1.0 + epoch as f64),
            "expected_cost": 20.0 - epoch as f64,
            "genotype_cost": 18.0,
            "genotype": genotype,
        });
        text.push_str(&record.to_string());
        text.push('\n');
    }
    text
}

fn train_log(epochs: usize) -> String {
    (0..epochs)
        .map(|epoch| {
            json!({
                "epoch": epoch, "lr": 0.025, "drop_path": 0.2 * epoch as f64 / epochs as f64,
                "train_loss": 0.7 / (1.0 + epoch as f64), "train_acc": 0.6,
                "val_loss": 0.6, "val_acc": 0.7, "seconds": 3.0,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn plots_of_a_search_log() {
    let run = tempfile::tempdir().unwrap();
    std::fs::write(run.path().join("search.jsonl"), search_log(6)).unwrap();
    let out = run.path().join("plots");
    let written = plot_run(run.path(), &out).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["alphas.svg", "alphas_edges.svg", "search_curves.svg"]
    );
    for path in &written {
        assert!(path.starts_with(&out), "{}", path.display());
        assert_svg(path);
    }
    let alphas = svg_text(&std::fs::read_to_string(out.join("alphas.svg")).unwrap());
    for op in Op::ALL {
        assert!(alphas.contains(op.name()), "alphas.svg lacks {op}");
    }
    assert!(alphas.contains("normal cell") && alphas.contains("reduction cell"));
    let edges = svg_text(&std::fs::read_to_string(out.join("alphas_edges.svg")).unwrap());
    assert!(
        edges.contains("c_{k-2} → 0") && edges.contains("2 → 3"),
        "{edges}"
    );
    let curves = svg_text(&std::fs::read_to_string(out.join("search_curves.svg")).unwrap());
    for word in [
        "loss",
        "accuracy",
        "train",
        "validation",
        "parameter-free ops",
        "Hessian eigenvalue",
        "cost of the final network",
        "derived genotype",
    ] {
        assert!(curves.contains(word), "search_curves.svg lacks {word}");
    }
}

#[test]
fn plot_subcommand_writes_into_the_run_folder_by_default() {
    let run = tempfile::tempdir().unwrap();
    std::fs::write(run.path().join("train.jsonl"), train_log(1)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hands-search"))
        .args(["plot", "--run"])
        .arg(run.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let svg = assert_svg(&run.path().join("train_curves.svg"));
    assert!(svg_text(&svg).contains("training curves"));
    assert!(
        !svg_text(&svg).contains("parameter-free"),
        "a training has no cell to count"
    );
    assert!(!svg_text(&svg).contains("Hessian"));
    assert!(!svg_text(&svg).contains("cost of the final network"));
    assert!(!run.path().join("alphas.svg").exists());
}

#[test]
fn bad_logs_are_refused_with_file_and_line() {
    let run = tempfile::tempdir().unwrap();
    let err = plot_run(run.path(), run.path()).unwrap_err().to_string();
    assert!(
        err.contains("neither search.jsonl nor train.jsonl"),
        "{err}"
    );

    let log = search_log(4);
    let mut lines: Vec<&str> = log.lines().collect();
    lines[2] = "{\"epoch\": 2, \"lr\": oops}";
    let path = run.path().join("search.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = format!("{:#}", plot_run(run.path(), run.path()).unwrap_err());
    assert!(
        err.contains(&format!("{}:3:", path.display())) && !err.contains("at line"),
        "error should name the file and line 3: {err}"
    );

    // A record whose weights do not match its candidates.
    let mut record: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    record["alphas_reduce"][5] = json!([1.0]);
    std::fs::write(&path, record.to_string() + "\n").unwrap();
    let err = plot_run(run.path(), run.path()).unwrap_err().to_string();
    assert!(err.contains("alphas_reduce"), "{err}");
    assert!(err.contains("search.jsonl"), "{err}");
}

#[test]
fn an_unfinished_last_line_is_skipped() {
    let run = tempfile::tempdir().unwrap();
    let mut log = train_log(3);
    log.push_str("{\"epoch\": 3, \"lr\"");
    std::fs::write(run.path().join("train.jsonl"), log).unwrap();
    let written = plot_run(run.path(), run.path()).unwrap();
    assert_eq!(written, [run.path().join("train_curves.svg")]);
}
