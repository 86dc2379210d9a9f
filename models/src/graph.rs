//! The interface of the exported ONNX graph, which `hands-export` writes and `hands-infer`
//! runs: the names of its input, its outputs and its batch dimension, and how a row of
//! probabilities is read as a prediction (by `hands-infer` and `hands-search eval` alike).

/// Name of the graph input: normalised images `[batch, 3, size, size]`.
pub const INPUT_NAME: &str = "image";
/// Name of the graph output holding the classifier's logits `[batch, labels]`.
pub const LOGITS_NAME: &str = "logits";
/// Name of the graph output holding the softmax of the logits `[batch, labels]`.
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// The predicted label of a row of probabilities: the index of the largest value, the first
/// on ties; NaN never wins.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.2, 0.8]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[0.2, 0.7, 0.7]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.1]), 1);
    }
}
