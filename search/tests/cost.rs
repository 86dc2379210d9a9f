//! `hands-search cost`: the analytic parameters match the network candle builds, the
//! published DARTS_V2 figures come out, the latency is measured with ONNX Runtime, and a
//! latency table is fitted to measured networks.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use hands_infer::timing::LATENCY_BATCHES;
use hands_models::cost::network_cost;
use hands_models::nn::network::{parameter_count, Network, NetworkConfig};
use hands_models::Genotype;
use hands_nas::cost::{measure_cost, run_cost, CostArgs};
use hands_nas::final_network::FinalNetwork;
use hands_nas::latency::{LatencyModel, Machine, FIT_NETWORKS};
use hands_train::args::NetworkArgs;

fn args(genotype: &str, init_channels: usize, layers: usize, size: u32, runs: usize) -> CostArgs {
    CostArgs {
        genotype: genotype.to_string(),
        network: NetworkArgs {
            init_channels,
            layers,
            stem_stride: 1,
        },
        size,
        classes: 2,
        runs,
        ort_lib: None,
        predict: false,
        json: None,
    }
}

#[test]
fn analytic_parameters_are_those_of_the_built_network() {
    for spec in [
        "DARTS_V2",
        "PC_DARTS_cifar",
        "PDARTS",
        "random:1",
        "random:2",
        "random:3",
    ] {
        let genotype = Genotype::resolve(spec).unwrap();
        for (c, layers) in [(8, 5), (12, 6)] {
            let varmap = VarMap::new();
            let config = NetworkConfig {
                init_channels: c,
                layers,
                stem_stride: 1,
                num_classes: 2,
                auxiliary: false,
            };
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            Network::new(&genotype, &config, vb).unwrap();
            let cost = network_cost(&genotype, c, layers, 1, 32, 2);
            assert_eq!(
                cost.total.parameters as usize,
                parameter_count(&varmap, false),
                "{spec} at C {c}, {layers} cells"
            );
        }
    }
}

#[test]
fn darts_v2_at_the_paper_setting_without_latency() {
    let mut paper = args("DARTS_V2", 36, 20, 32, 0);
    paper.classes = 10;
    let report = measure_cost(&paper).unwrap();
    assert_eq!(report.cost.total.parameters, 3_349_342);
    assert_eq!(report.cost.total.multiply_adds / 1_000_000, 528);
    assert!(report.latency.is_empty());
    let err = measure_cost(&args("NOT_A_GENOTYPE", 8, 5, 32, 0)).unwrap_err();
    assert!(format!("{err:#}").contains("NOT_A_GENOTYPE"), "{err:#}");
}

#[test]
fn latency_is_measured_at_batch_1_and_64() {
    let probe = hands_infer::runtime::runtime(None);
    if !hands_tests::available(
        "latency_is_measured_at_batch_1_and_64",
        "ONNX Runtime",
        probe,
    ) {
        return;
    }
    let report = measure_cost(&args("random:4", 4, 3, 16, 2)).unwrap();
    let batches: Vec<usize> = report.latency.iter().map(|l| l.batch).collect();
    assert_eq!(batches, LATENCY_BATCHES);
    assert!(report
        .latency
        .iter()
        .all(|l| l.median_ms.is_finite() && l.median_ms > 0.0 && l.runs == 2));
}

#[test]
fn the_json_holds_the_printed_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.json");
    let mut shipped = args("DARTS_V2", 8, 5, 32, 0);
    shipped.json = Some(path.clone());
    run_cost(&shipped).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cost = network_cost(&Genotype::published("DARTS_V2").unwrap(), 8, 5, 1, 32, 2);
    assert_eq!(json["parameters"], cost.total.parameters);
    assert_eq!(json["multiply_adds"], cost.total.multiply_adds);
    assert_eq!(json["peak_activation_bytes"], cost.peak_activation_bytes);
    assert_eq!(
        (json["init_channels"].as_u64(), json["layers"].as_u64()),
        (Some(8), Some(5))
    );
    assert_eq!(json["latency"], serde_json::json!([]));
}

#[test]
fn a_latency_table_is_fitted_to_measured_networks_and_kept() {
    let probe = hands_infer::runtime::runtime(None);
    if !hands_tests::available(
        "a_latency_table_is_fitted_to_measured_networks_and_kept",
        "ONNX Runtime",
        probe,
    ) {
        return;
    }
    let machine = Machine::this(1, None).unwrap();
    let network = FinalNetwork {
        init_channels: 4,
        layers: 3,
        stem_stride: 1,
        size: 16,
        classes: 2,
    };
    let model = LatencyModel::fit(machine.clone(), network, 1).unwrap();
    assert_eq!(model.fit.len(), FIT_NETWORKS);
    assert_eq!(model.network(), network);
    for point in &model.fit {
        assert!(
            point.measured_ms > 0.0 && point.measured_ms.is_finite(),
            "{point:?}"
        );
        assert_eq!(model.predict(&point.genotype), point.predicted_ms);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = LatencyModel::cache_file(dir.path(), &machine, network, 1);
    model.save(&path).unwrap();
    assert_eq!(LatencyModel::load(&path).unwrap(), model);
    std::fs::write(&path, "{}").unwrap();
    let err = LatencyModel::load(&path).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a latency table"),
        "{err:#}"
    );
}
