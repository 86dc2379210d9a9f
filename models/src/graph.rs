//! The interface of the exported ONNX graph, which `hands-export` writes and `hands-infer`
//! runs: the names of its input, its outputs and its batch dimension.

/// Name of the graph input: normalised images `[batch, 3, size, size]`.
pub const INPUT_NAME: &str = "image";
/// Name of the graph output holding the classifier's logits `[batch, labels]`.
pub const LOGITS_NAME: &str = "logits";
/// Name of the graph output holding the softmax of the logits `[batch, labels]`.
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";
