//! `--memory lean` (cells recomputed in the backward pass) against `fast` (the whole graph
//! kept): the same losses and gradients in f64, for DARTS' and PC-DARTS' supernets, first and
//! second order, with P-DARTS' skip-connect dropout (the recomputed cells replay the masks the
//! forward pass drew), and the stem's running statistics moved once per step either way.

use candle_core::{DType, Device, Tensor, Var};
use hands_models::Op;
use hands_nas::architect::{loss_and_grads, second_order, LabelledBatch, Unrolling};
use hands_nas::supernet::{Memory, SkipDropout, Supernet, SupernetConfig};
use hands_tests::max_abs_diff;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A supernet of five cells (the second and fourth reduce) in f64, with alphas and betas
/// far from uniform so that every path carries gradient.
fn net(partial_k: usize, memory: Memory) -> Supernet {
    let config = SupernetConfig {
        init_channels: 4,
        layers: 5,
        stem_stride: 1,
        num_classes: 2,
        partial_k,
        edge_norm: partial_k > 1,
        normal_candidates: vec![Op::ALL.to_vec(); 14],
        reduce_candidates: vec![Op::ALL.to_vec(); 14],
    };
    let net = Supernet::new(&config, 3, DType::F64, &Device::Cpu)
        .unwrap()
        .with_memory(memory);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (_, a) in net.arch_vars() {
        let values: Vec<f64> = (0..a.elem_count())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        a.set(&Tensor::from_vec(values, a.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    net
}

fn batch(seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..4 * 3 * 8 * 8)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    (
        Tensor::from_vec(x, (4, 3, 8, 8), &Device::Cpu).unwrap(),
        Tensor::from_vec(vec![0u32, 1, 1, 0], 4, &Device::Cpu).unwrap(),
    )
}

/// Every variable of `net`: weights (with the stem's running statistics) and architecture.
fn variables(net: &Supernet) -> Vec<(String, Var)> {
    let mut vars = net.all_weight_vars();
    vars.extend(net.arch_vars());
    vars
}

/// Asserts that `lean`'s gradients are `fast`'s, variable by variable, within 1e-12.
fn assert_same_grads(
    names: &[(String, Var)],
    lean_vars: &[(String, Var)],
    fast: &candle_core::backprop::GradStore,
    lean: &candle_core::backprop::GradStore,
) {
    let mut compared = 0;
    for ((name, f), (_, l)) in names.iter().zip(lean_vars) {
        match (fast.get(f.as_tensor()), lean.get(l.as_tensor())) {
            (Some(gf), Some(gl)) => {
                let difference = max_abs_diff(gf, gl);
                assert!(
                    difference <= 1e-12,
                    "{name}: gradients differ by {difference}"
                );
                compared += 1;
            }
            (None, None) => {}
            (f, l) => panic!(
                "{name}: a gradient on one path only (fast {}, lean {})",
                f.is_some(),
                l.is_some()
            ),
        }
    }
    assert!(compared > 100, "only {compared} gradients compared");
}

#[test]
fn lean_and_fast_give_the_same_loss_and_gradients_for_darts_and_pcdarts() {
    for partial_k in [1, 2] {
        let (fast_net, lean_net) = (net(partial_k, Memory::Fast), net(partial_k, Memory::Lean));
        let (x, y) = batch(11);
        let batch = LabelledBatch {
            images: &x,
            labels: &y,
        };
        let fast = loss_and_grads(&fast_net, batch, None, "test").unwrap();
        let lean = loss_and_grads(&lean_net, batch, None, "test").unwrap();
        assert!((fast.loss - lean.loss).abs() <= 1e-12, "K {partial_k}");
        assert_eq!(fast.correct, lean.correct);
        assert_same_grads(
            &variables(&fast_net),
            &variables(&lean_net),
            &fast.grads,
            &lean.grads,
        );
        // The stem ran once on each path: its running statistics moved alike.
        for ((name, f), (_, l)) in fast_net
            .all_weight_vars()
            .iter()
            .zip(lean_net.all_weight_vars().iter())
        {
            let difference = max_abs_diff(f.as_tensor(), l.as_tensor());
            assert!(difference <= 1e-12, "{name} differs by {difference}");
        }
    }
}

#[test]
fn lean_and_fast_give_the_same_second_order_architecture_gradient() {
    let (fast_net, lean_net) = (net(1, Memory::Fast), net(1, Memory::Lean));
    let ((xt, yt), (xv, yv)) = (batch(21), batch(22));
    let train = LabelledBatch {
        images: &xt,
        labels: &yt,
    };
    let val = LabelledBatch {
        images: &xv,
        labels: &yv,
    };
    let unrolling = Unrolling {
        xi: 0.05,
        momentum: 0.9,
        weight_decay: 3e-4,
        r_scale: 0.01,
    };
    let gradient = |net: &Supernet| {
        let weights: Vec<Var> = net.weight_vars().into_iter().map(|(_, v)| v).collect();
        let buffers = vec![None; weights.len()];
        second_order(net, &weights, &buffers, train, val, unrolling).unwrap()
    };
    let (fast, lean) = (gradient(&fast_net), gradient(&lean_net));
    assert!((fast.val_loss - lean.val_loss).abs() <= 1e-12);
    for ((name, f), (_, l)) in fast_net.arch_vars().iter().zip(&lean_net.arch_vars()) {
        let difference = max_abs_diff(
            fast.grads.get(f.as_tensor()).unwrap(),
            lean.grads.get(l.as_tensor()).unwrap(),
        );
        assert!(difference <= 1e-12, "{name}: differs by {difference}");
    }
}

#[test]
fn lean_replays_the_skip_dropout_masks_the_forward_pass_drew() {
    let (fast_net, lean_net) = (net(1, Memory::Fast), net(1, Memory::Lean));
    let (x, y) = batch(31);
    let batch = LabelledBatch {
        images: &x,
        labels: &y,
    };
    let step = |net: &Supernet| {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dropout = SkipDropout {
            prob: 0.3,
            rng: &mut rng,
            record: None,
        };
        loss_and_grads(net, batch, Some(dropout), "test").unwrap()
    };
    let (fast, lean) = (step(&fast_net), step(&lean_net));
    assert!((fast.loss - lean.loss).abs() <= 1e-12, "the same masks");
    assert_same_grads(
        &variables(&fast_net),
        &variables(&lean_net),
        &fast.grads,
        &lean.grads,
    );
}
