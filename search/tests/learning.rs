//! What the architecture learned (`hands_reports::learning`) on a toy edge trained by the
//! architecture's optimizer: a clearly best candidate is learned beyond the noise bound, a
//! target unrelated to the input is not.

use hands_models::Op;
use hands_reports::learning::{noise_margin, CellLearning, INITIAL_LOGIT_STD};

/// `steps` Adam steps on the logits of one edge of eight candidates: the edge mixes
/// eight fixed random linear maps of a random input by the softmax of its logits and
/// learns to match a target, which is candidate 3's map of the input (`informative`) or
/// a fresh random vector unrelated to the input (noise). Returns the edge's learning.
fn toy_edge(informative: bool, steps: usize, lr: f64) -> CellLearning {
    use candle_core::{Var, D};
    use hands_tests::SeededTensors;

    let mut random = SeededTensors::new(7);
    let maps = random.normal(0.0, 0.25, (8, 16, 16));
    let logits = Var::from_tensor(&random.normal(0.0, INITIAL_LOGIT_STD as f32, 8)).unwrap();
    let config = hands_train::optim::AdamConfig {
        lr,
        betas: (0.5, 0.999),
        eps: 1e-8,
        weight_decay: 1e-3,
    };
    let mut adam = hands_train::optim::Adam::new(vec![logits.clone()], config).unwrap();
    for _ in 0..steps {
        let x = random.normal(0.0, 1.0, (16, 32));
        let outputs = maps.broadcast_matmul(&x).unwrap(); // (8, 16, 32)
        let target = if informative {
            outputs.get(3).unwrap().detach()
        } else {
            random.normal(0.0, 1.0, (16, 32))
        };
        let weights = candle_nn::ops::softmax(logits.as_tensor(), D::Minus1).unwrap();
        let mixed = outputs
            .broadcast_mul(&weights.reshape((8, 1, 1)).unwrap())
            .unwrap()
            .sum(0)
            .unwrap();
        let loss = (mixed - target).unwrap().sqr().unwrap().mean_all().unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
    }
    let weights = candle_nn::ops::softmax(logits.as_tensor(), D::Minus1).unwrap();
    let weights: Vec<f64> = weights
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let ops: Vec<Op> = Op::ALL
        .iter()
        .copied()
        .filter(|op| *op != Op::None)
        .collect();
    let mut candidates = ops.clone();
    candidates.push(ops[0]); // eight candidates, none of them `none`
    CellLearning::of(&[weights], &[candidates])
}

#[test]
fn a_clearly_best_candidate_is_learned_beyond_the_noise_bound() {
    let (steps, lr) = (100, 1e-2);
    let learned = toy_edge(true, steps, lr);
    let noise = toy_edge(false, steps, lr);
    let bound = noise_margin(steps, lr);
    assert!(learned.margin > bound, "{learned:?} against {bound}");
    assert!(
        learned.entropy < learned.uniform_entropy - 0.1,
        "{learned:?}"
    );
    assert!(noise.margin <= bound, "{noise:?} against {bound}");
    let unmoved = toy_edge(true, steps, 0.0);
    assert!(unmoved.margin <= noise_margin(steps, 0.0), "{unmoved:?}");
}
