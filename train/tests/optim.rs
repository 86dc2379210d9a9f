//! The optimizers against values computed by hand from PyTorch's update formulas, in f64.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use hands_train::optim::{clip_grad_norm, Adam, AdamConfig, Sgd, SgdConfig};

const W0: [f64; 3] = [1.0, -2.0, 0.5];
/// Per-step linear terms: loss_t = sum(c_t * w) + sum(w^2) / 2, so grad_t = c_t + w.
const CS: [[f64; 3]; 3] = [[0.1, 0.2, -0.3], [-0.5, 0.4, 0.05], [0.3, -0.1, 0.2]];

fn loss(w: &Var, c: &[f64; 3]) -> Tensor {
    let c = Tensor::new(c, &Device::Cpu).unwrap();
    let linear = (w.as_tensor() * c).unwrap().sum_all().unwrap();
    let square = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
    (linear + square).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec1().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn sgd_momentum_weight_decay_matches_torch() {
    // torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01)
    let w = Var::new(&W0, &Device::Cpu).unwrap();
    let idle = Var::new(&[7.0f64], &Device::Cpu).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    let mut sgd = Sgd::new(vec![w.clone(), idle.clone()], config).unwrap();
    let expected = [
        ([0.889, -1.818, 0.4795], [1.11, -1.82, 0.205]),
        (
            [0.749311, -1.510582, 0.4076205],
            [1.39689, -3.07418, 0.718795],
        ),
        (
            [0.5179104889999999, -1.071337018, 0.2817592795],
            [2.31400511, -4.39244982, 1.258612205],
        ),
    ];
    for (c, (want_w, want_buf)) in CS.iter().zip(expected) {
        let grads = loss(&w, c).backward().unwrap();
        sgd.step(&grads).unwrap();
        assert_close(&values(w.as_tensor()), &want_w, "weights");
        assert_close(
            &values(sgd.momentum_buffer(0).unwrap()),
            &want_buf,
            "buffer",
        );
    }
    // The variable without a gradient is left alone and gets no buffer.
    assert_eq!(values(idle.as_tensor()), [7.0]);
    assert!(sgd.momentum_buffer(1).is_none());
    assert_eq!(sgd.state().len(), 1);
}

#[test]
fn adam_l2_weight_decay_matches_torch() {
    // torch.optim.Adam(lr=0.05, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.1)
    let w = Var::new(&W0, &Device::Cpu).unwrap();
    let config = AdamConfig {
        lr: 0.05,
        betas: (0.5, 0.999),
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut adam = Adam::new(vec![w.clone()], config).unwrap();
    let expected = [
        [0.9500000004166667, -1.95000000025, 0.4500000019999999],
        [0.9090392711297368, -1.9012460796554242, 0.39733366187133895],
        [0.8589855826760022, -1.8500079562446279, 0.34236021506008063],
    ];
    for (c, want) in CS.iter().zip(expected) {
        let grads = loss(&w, c).backward().unwrap();
        adam.step(&grads).unwrap();
        assert_close(&values(w.as_tensor()), &want, "weights");
    }
}

fn state_map(state: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    state.into_iter().collect()
}

#[test]
fn optimizer_state_round_trips_to_the_same_next_step() {
    let sgd_config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    let adam_config = AdamConfig {
        lr: 0.05,
        betas: (0.5, 0.999),
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let a = Var::new(&W0, &Device::Cpu).unwrap();
    let b = Var::new(&W0, &Device::Cpu).unwrap();
    let mut sgd = Sgd::new(vec![a.clone()], sgd_config).unwrap();
    let mut adam = Adam::new(vec![b.clone()], adam_config).unwrap();
    for c in &CS[..2] {
        sgd.step(&loss(&a, c).backward().unwrap()).unwrap();
        adam.step(&loss(&b, c).backward().unwrap()).unwrap();
    }
    let mut saved = state_map(sgd.state());
    saved.extend(state_map(adam.state().unwrap()));
    assert!(saved.contains_key("sgd.buf.0"));
    assert!(saved.contains_key("adam.m.0") && saved.contains_key("adam.v.0"));
    assert_eq!(saved["adam.step"].to_vec1::<i64>().unwrap(), [2]);

    // Fresh optimizers over copies of the weights, restored from the state.
    let a2 = Var::from_tensor(a.as_tensor()).unwrap();
    let b2 = Var::from_tensor(b.as_tensor()).unwrap();
    let mut sgd2 = Sgd::new(vec![a2.clone()], sgd_config).unwrap();
    let mut adam2 = Adam::new(vec![b2.clone()], adam_config).unwrap();
    sgd2.load_state(&saved).unwrap();
    adam2.load_state(&saved).unwrap();

    let c = &CS[2];
    sgd.step(&loss(&a, c).backward().unwrap()).unwrap();
    sgd2.step(&loss(&a2, c).backward().unwrap()).unwrap();
    adam.step(&loss(&b, c).backward().unwrap()).unwrap();
    adam2.step(&loss(&b2, c).backward().unwrap()).unwrap();
    assert_eq!(values(a.as_tensor()), values(a2.as_tensor()));
    assert_eq!(values(b.as_tensor()), values(b2.as_tensor()));
}

#[test]
fn state_of_another_model_is_refused() {
    let w = Var::new(&W0, &Device::Cpu).unwrap();
    let mut sgd = Sgd::new(
        vec![w],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
        },
    )
    .unwrap();
    let wrong_shape = HashMap::from([(
        "sgd.buf.0".to_string(),
        Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap(),
    )]);
    let err = sgd.load_state(&wrong_shape).unwrap_err().to_string();
    assert!(err.contains("sgd.buf.0"), "{err}");
    let extra = HashMap::from([(
        "sgd.buf.3".to_string(),
        Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
    )]);
    assert!(sgd.load_state(&extra).is_err());
}

#[test]
fn clip_grad_norm_scales_like_torch_and_refuses_non_finite() {
    let a = Var::new(&[3.0f64], &Device::Cpu).unwrap();
    let b = Var::new(&[0.0f64, 0.0], &Device::Cpu).unwrap();
    let idle = Var::new(&[1.0f64], &Device::Cpu).unwrap();
    // grad a = [3], grad b = [4, 0]: global norm 5.
    let c = Tensor::new(&[4.0f64, 0.0], &Device::Cpu).unwrap();
    let l = ((a.as_tensor().sqr().unwrap() * 0.5)
        .unwrap()
        .sum_all()
        .unwrap()
        + (b.as_tensor() * &c).unwrap().sum_all().unwrap())
    .unwrap();
    let vars = [a.clone(), b.clone(), idle];

    let mut grads = l.backward().unwrap();
    let norm = clip_grad_norm(&vars, &mut grads, 10.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    assert_eq!(
        values(grads.get(&a).unwrap()),
        [3.0],
        "no clipping below max"
    );

    let mut grads = l.backward().unwrap();
    let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    let coef = 1.0 / (5.0 + 1e-6);
    assert_close(&values(grads.get(&a).unwrap()), &[3.0 * coef], "clipped a");
    assert_close(
        &values(grads.get(&b).unwrap()),
        &[4.0 * coef, 0.0],
        "clipped b",
    );

    let nan = Var::new(&[f64::NAN], &Device::Cpu).unwrap();
    let mut grads = (nan.as_tensor() * nan.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let err = clip_grad_norm(&[nan], &mut grads, 5.0).unwrap_err();
    assert!(err.to_string().contains("non-finite gradient"), "{err}");
}
