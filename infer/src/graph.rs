//! What the ONNX graph says about its output: the model's `probabilities` must come straight
//! from a Softmax over the labels, or its values are not probabilities (raw logits, a
//! sigmoid per label, ...). ONNX Runtime does not show the nodes of a loaded model, so the
//! few ONNX protobuf fields needed are read here; every other field is skipped unread.

/// `onnx.ModelProto`, only its graph.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `onnx.GraphProto`, only its nodes.
#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
}

/// `onnx.NodeProto`, only what identifies the operator and its output.
#[derive(Clone, PartialEq, prost::Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, optional, tag = "4")]
    op_type: Option<String>,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
    #[prost(string, optional, tag = "7")]
    domain: Option<String>,
}

/// `onnx.AttributeProto`, only integer attributes.
#[derive(Clone, PartialEq, prost::Message)]
struct AttributeProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    i: Option<i64>,
}

/// Checks that `output` of the encoded model `bytes` is computed by a Softmax (default ONNX
/// domain) over axis 1 of its `[batch, labels]` tensor. Returns what is wrong otherwise.
pub(crate) fn check_softmax_output(bytes: &[u8], output: &str) -> Result<(), String> {
    let model = <ModelProto as prost::Message>::decode(bytes)
        .map_err(|e| format!("not an ONNX model: {e}"))?;
    let nodes = model.graph.map(|g| g.node).unwrap_or_default();
    let producer = nodes
        .iter()
        .find(|n| n.output.iter().any(|o| o == output))
        .ok_or_else(|| format!("no node computes the output `{output}`"))?;
    let op = producer.op_type.as_deref().unwrap_or("");
    let domain = producer.domain.as_deref().unwrap_or("");
    let not_probabilities = || {
        format!(
            "the output `{output}` is computed by {op} ({}), not by a Softmax over the labels, so its values are not probabilities; export the model with hands-export",
            if domain.is_empty() { "ai.onnx" } else { domain }
        )
    };
    if op != "Softmax" || !(domain.is_empty() || domain == "ai.onnx") {
        return Err(not_probabilities());
    }
    let axis = producer
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("axis"))
        .and_then(|a| a.i);
    match axis {
        None | Some(1) | Some(-1) => Ok(()),
        Some(axis) => Err(format!(
            "the output `{output}` is a Softmax over axis {axis}, not over the labels (axis 1)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn model(op: &str, domain: &str, axis: Option<i64>) -> Vec<u8> {
        let node = |op: &str, output: &str, attribute| NodeProto {
            output: vec![output.into()],
            op_type: Some(op.into()),
            attribute,
            domain: Some(domain.into()),
        };
        let attribute = axis
            .map(|i| AttributeProto {
                name: Some("axis".into()),
                i: Some(i),
            })
            .into_iter()
            .collect();
        ModelProto {
            graph: Some(GraphProto {
                node: vec![
                    node("Gemm", "logits", Vec::new()),
                    node(op, "probabilities", attribute),
                ],
            }),
        }
        .encode_to_vec()
    }

    fn check(bytes: &[u8]) -> Result<(), String> {
        check_softmax_output(bytes, "probabilities")
    }

    #[test]
    fn only_a_softmax_over_the_labels_gives_probabilities() {
        check(&model("Softmax", "", Some(1))).unwrap();
        check(&model("Softmax", "ai.onnx", None)).unwrap();
        let sigmoid = check(&model("Sigmoid", "", None)).unwrap_err();
        assert!(sigmoid.contains("computed by Sigmoid"), "{sigmoid}");
        assert!(check(&model("Softmax", "com.example", Some(1))).is_err());
        let axis = check(&model("Softmax", "", Some(0))).unwrap_err();
        assert!(axis.contains("axis 0"), "{axis}");
        assert!(check(b"\xff\xff not protobuf").is_err());
        let missing = ModelProto { graph: None }.encode_to_vec();
        assert!(check(&missing).unwrap_err().contains("no node computes"));
    }
}
