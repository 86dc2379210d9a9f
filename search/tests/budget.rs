//! The resource budget: the expected cost of a decided architecture is the derived network's
//! cost, the penalty's gradient matches finite differences and vanishes within the target,
//! and a budgeted search logs the costs and judges its genotype against the target.

use candle_core::{DType, Device, Tensor};
use hands_models::cost::network_cost;
use hands_models::{Genotype, Op};
use hands_nas::args::CostMeasure;
use hands_nas::args::{Algo, SearchArgs};
use hands_nas::budget::{Budget, CostSource, CostTable};
use hands_nas::final_network::FinalNetwork;
use hands_nas::latency::{EdgeKind, LatencyModel, Machine};
use hands_nas::search::{run_search, Finished};
use hands_nas::supernet::{node_edges, Supernet, SupernetConfig};
use hands_tests::datasets::class_folders;

const FINAL: FinalNetwork = FinalNetwork {
    init_channels: 16,
    layers: 8,
    stem_stride: 1,
    size: 32,
    classes: 2,
};

fn supernet(edge_norm: bool) -> Supernet {
    let config = SupernetConfig {
        init_channels: 4,
        layers: 3,
        stem_stride: 1,
        num_classes: 2,
        partial_k: 1,
        edge_norm,
        normal_candidates: SupernetConfig::full_candidates(),
        reduce_candidates: SupernetConfig::full_candidates(),
    };
    Supernet::new(&config, 1, DType::F64, &Device::Cpu).unwrap()
}

fn table(net: &Supernet, measure: CostMeasure) -> CostTable {
    let source = CostSource::counted(measure).unwrap();
    CostTable::new(&source, FINAL, |reduction| {
        net.config().candidates(reduction)
    })
}

/// A budget of `table` (counted as `measure`) at `target`.
fn budget(table: CostTable, measure: CostMeasure, target: f64, weight: f64) -> Budget {
    Budget {
        source: CostSource::counted(measure).unwrap(),
        network: FINAL,
        table,
        target,
        weight,
    }
}

/// A latency table with made-up entries: each op costs its index in DARTS' order on a
/// normal edge, twice that on a reduction cell's, plus its ReLUs.
fn made_up_latency_table(relu: f64) -> LatencyModel {
    let ops = Op::ALL
        .into_iter()
        .filter(|&op| op != Op::None && op != Op::SkipConnect);
    LatencyModel {
        machine: Machine {
            cpu: "test".into(),
            threads: 1,
            ort_library: "none".into(),
        },
        init_channels: FINAL.init_channels,
        layers: FINAL.layers,
        stem_stride: 1,
        size: FINAL.size,
        classes: FINAL.classes,
        batch: 1,
        fixed_ms: 3.0,
        edge_ms: EdgeKind::ALL
            .into_iter()
            .map(|kind| {
                let scale = if kind == EdgeKind::Normal { 1.0 } else { 2.0 };
                let mut entries: std::collections::BTreeMap<Op, f64> = ops
                    .clone()
                    .map(|op| (op, scale * op.index() as f64))
                    .collect();
                if kind == EdgeKind::ReduceInput {
                    entries.insert(Op::SkipConnect, 0.5);
                }
                (kind, entries)
            })
            .collect(),
        relu_ms: EdgeKind::ALL.into_iter().map(|kind| (kind, relu)).collect(),
        fit: Vec::new(),
    }
}

#[test]
fn a_decided_architecture_costs_its_latency_table_entries() {
    let net = supernet(true);
    for relu in [0.0, 0.25] {
        let model = made_up_latency_table(relu);
        let source = CostSource::Latency(model.clone());
        let table = CostTable::new(&source, FINAL, |reduction| {
            net.config().candidates(reduction)
        });
        for name in ["DARTS_V2", "random:5"] {
            let genotype = Genotype::resolve(name).unwrap();
            decide(&net, &genotype);
            let expected = table.expected(&net).unwrap().to_scalar::<f64>().unwrap();
            let mut entries = model.fixed_ms;
            for reduction in [false, true] {
                for &(op, from) in genotype.cell(reduction).0 {
                    entries += model.edge_with_relu(EdgeKind::of(reduction, from), op);
                }
            }
            assert!(
                (expected - entries).abs() < 1e-9,
                "{name}: {expected} {entries}"
            );
            // The prediction counts a state's ReLU once, however many edges read it: the
            // expected cost is its upper bound, and equal without ReLU costs.
            let predicted = source.genotype(&genotype, FINAL);
            if relu == 0.0 {
                assert!((predicted - expected).abs() < 1e-9, "{name}");
            } else {
                assert!(
                    predicted <= expected + 1e-9,
                    "{name}: {predicted} {expected}"
                );
            }
            if relu > 0.0 && name == "DARTS_V2" {
                // Its normal cell reads states 0 and 1 through several separable convolutions.
                assert!(predicted < expected - 0.1, "{predicted} {expected}");
            }
        }
    }
}

/// Sets the alphas and betas of `net` to all but decide `genotype`: its op on each of its
/// edges, and (betas) those two edges of each node.
fn decide(net: &Supernet, genotype: &Genotype) {
    for (reduction, arch) in [(false, &net.normal), (true, &net.reduce)] {
        let (edges, _) = genotype.cell(reduction);
        let mut alphas = vec![0f64; 14 * Op::ALL.len()];
        let mut betas = vec![-60f64; 14];
        for (node, pair) in edges.chunks(2).enumerate() {
            for &(op, from) in pair {
                let edge = node_edges(node).start + from;
                let column = Op::ALL.iter().position(|&o| o == op).unwrap();
                alphas[edge * Op::ALL.len() + column] = 40.0;
                betas[edge] = 0.0;
            }
        }
        let shape = (14, Op::ALL.len());
        arch.alphas
            .set(&Tensor::from_vec(alphas, shape, &Device::Cpu).unwrap())
            .unwrap();
        if let Some(b) = &arch.betas {
            b.set(&Tensor::from_vec(betas, 14, &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn a_decided_architecture_costs_what_its_genotype_does() {
    let net = supernet(true);
    for name in ["DARTS_V2", "PC_DARTS_cifar", "random:5"] {
        let genotype = Genotype::resolve(name).unwrap();
        decide(&net, &genotype);
        let cost = network_cost(&genotype, 16, 8, 1, 32, 2).total;
        for (measure, exact) in [
            (CostMeasure::Mflops, cost.multiply_adds as f64 / 1e6),
            (CostMeasure::Params, cost.parameters as f64 / 1e6),
        ] {
            let expected = table(&net, measure)
                .expected(&net)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(
                (expected - exact).abs() <= 1e-9 * exact,
                "{name} {measure:?}: expected {expected}, genotype {exact}"
            );
        }
    }
}

fn penalty_of(net: &Supernet, budget: &Budget) -> f64 {
    let expected = budget.table.expected(net).unwrap();
    budget
        .penalty(&expected)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn the_penalty_gradient_matches_finite_differences() {
    for edge_norm in [false, true] {
        let net = supernet(edge_norm);
        let table = table(&net, CostMeasure::Mflops);
        let expected = table.expected(&net).unwrap().to_scalar::<f64>().unwrap();
        let budget = budget(table, CostMeasure::Mflops, expected / 2.0, 0.7);
        assert!(penalty_of(&net, &budget) > 0.0);
        let grads = budget
            .penalty(&budget.table.expected(&net).unwrap())
            .unwrap()
            .backward()
            .unwrap();
        let mut vars = vec![&net.normal.alphas, &net.reduce.alphas];
        vars.extend(net.normal.betas.as_ref());
        for var in vars {
            let analytic: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let shape = var.as_tensor().shape().clone();
            for i in [0, 3, 9, base.len() - 1] {
                let h = 1e-5;
                let at = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap())
                        .unwrap();
                    penalty_of(&net, &budget)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                at(0.0);
                assert!(
                    (numeric - analytic[i]).abs() <= 1e-6 * (1.0 + numeric.abs()),
                    "edge_norm {edge_norm}, entry {i}: numeric {numeric}, analytic {}",
                    analytic[i]
                );
            }
        }
    }
}

#[test]
fn within_the_target_the_penalty_and_its_gradient_vanish() {
    let net = supernet(false);
    let table = table(&net, CostMeasure::Params);
    let expected = table.expected(&net).unwrap().to_scalar::<f64>().unwrap();
    let within = budget(table.clone(), CostMeasure::Params, expected * 1.5, 1.0);
    assert_eq!(penalty_of(&net, &within), 0.0);
    let grads = within
        .penalty(&within.table.expected(&net).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let g = grads.get(net.normal.alphas.as_tensor());
    let zero = g.is_none_or(|g| {
        g.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            == 0.0
    });
    assert!(zero);
    // Above it, the gradient pushes every op by its cost: a 5x5 separable convolution's
    // logit is pushed down harder than a pooling's, which costs nothing.
    let over = budget(table, CostMeasure::Params, expected / 3.0, 1.0);
    let grads = over
        .penalty(&over.table.expected(&net).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<Vec<f64>> = grads
        .get(net.normal.alphas.as_tensor())
        .unwrap()
        .to_vec2()
        .unwrap();
    let column = |op| Op::ALL.iter().position(|&o| o == op).unwrap();
    assert!(g[0][column(Op::SepConv5x5)] > g[0][column(Op::MaxPool3x3)]);
    assert!(g[0][column(Op::SepConv5x5)] > 0.0);
}

#[test]
fn a_budgeted_search_logs_the_costs_and_judges_its_genotype() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    class_folders(&data, 12);
    let out = dir.path().join("run");
    let mut args = SearchArgs::new(&data, Algo::Pcdarts);
    args.run.out = Some(out.clone());
    args.data.size = 16;
    args.optimiser.batch = 4;
    args.optimiser.epochs = 2;
    args.network.init_channels = 4;
    args.network.layers = 3;
    args.architecture.arch_warmup_epochs = Some(0);
    args.budget.cost = Some(CostMeasure::Mflops);
    args.budget.cost_target = Some(0.5);
    args.budget.cost_init_channels = 8;
    args.budget.cost_layers = 5;
    run_search(&args).unwrap();
    let log = std::fs::read_to_string(out.join("search.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert!(record["expected_cost"].as_f64().unwrap() > 0.0, "{record}");
        let genotype: Genotype = serde_json::from_value(record["genotype"].clone()).unwrap();
        let cost = network_cost(&genotype, 8, 5, 1, 16, 2).total.multiply_adds as f64 / 1e6;
        assert!((record["genotype_cost"].as_f64().unwrap() - cost).abs() < 1e-9);
    }
    let finished: Finished =
        serde_json::from_str(&std::fs::read_to_string(out.join("finished.json")).unwrap()).unwrap();
    let budget = finished.budget.unwrap();
    assert_eq!(budget.target, 0.5);
    let cost = network_cost(&finished.genotype, 8, 5, 1, 16, 2)
        .total
        .multiply_adds as f64
        / 1e6;
    assert!((budget.cost - cost).abs() < 1e-9);

    // With --cost-strict every derived genotype is within the target.
    let mut strict = args.clone();
    strict.run.out = Some(dir.path().join("strict"));
    strict.budget.cost_strict = true;
    strict.budget.cost_target = Some(1.05);
    run_search(&strict).unwrap();
    let log = std::fs::read_to_string(dir.path().join("strict/search.jsonl")).unwrap();
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            record["genotype_cost"].as_f64().unwrap() <= 1.05,
            "{record}"
        );
    }

    let mut lone = args.clone();
    lone.run.out = Some(dir.path().join("lone"));
    lone.budget.cost_target = None;
    let err = run_search(&lone).unwrap_err().to_string();
    assert!(err.contains("--cost-target"), "{err}");
}
