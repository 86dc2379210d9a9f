//! A small builder for ONNX graphs: named initializers, nodes whose names follow the module
//! tree, typed graph inputs and outputs, and the model wrapper with opset and metadata.

use std::collections::{HashMap, HashSet};

use super::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size, e.g. `batch`.
    Named(String),
}

/// One node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// A single integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A single float.
    Float(f32),
    /// A UTF-8 string.
    String(String),
}

impl Attr {
    fn to_proto(&self, name: &str) -> AttributeProto {
        let mut proto = AttributeProto {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let kind = match self {
            Attr::Int(i) => {
                proto.i = Some(*i);
                AttributeType::Int
            }
            Attr::Ints(v) => {
                proto.ints = v.clone();
                AttributeType::Ints
            }
            Attr::Float(f) => {
                proto.f = Some(*f);
                AttributeType::Float
            }
            Attr::String(s) => {
                proto.s = Some(s.as_bytes().to_vec());
                AttributeType::String
            }
        };
        proto.r#type = Some(kind as i32);
        proto
    }
}

/// Builds one ONNX graph in topological order.
///
/// Node names are `{scope}/{OpType}` where `scope` is the module path (e.g.
/// `cells.3.ops.1.op.1/Conv`); a repeated name gets a `_1`, `_2`, ... suffix so names stay
/// unique. A node's output value carries the node's name unless an explicit output name is
/// given (graph outputs such as `logits`).
#[derive(Debug, Default)]
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    node_names: HashSet<String>,
    values: HashSet<String>,
    name_counts: HashMap<String, usize>,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn claim_value(&mut self, name: &str) {
        assert!(
            self.values.insert(name.to_string()),
            "ONNX value name `{name}` defined twice"
        );
    }

    /// Declares a float graph input of the given shape and returns its value name.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.claim_value(name);
        self.inputs
            .push(value_info(name, DataType::Float, Some(dims)));
        name.to_string()
    }

    /// Marks an existing value as a float graph output of the given shape.
    pub fn output(&mut self, value: &str, dims: &[Dim]) {
        assert!(
            self.values.contains(value),
            "output `{value}` is not defined"
        );
        self.outputs
            .push(value_info(value, DataType::Float, Some(dims)));
    }

    /// Adds a float initializer (row-major `data` of shape `dims`) and returns its name.
    pub fn initializer_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer `{name}`: shape {dims:?} does not match {} elements",
            data.len()
        );
        self.claim_value(name);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds an int64 initializer (e.g. `Slice` starts/ends) and returns its name.
    pub fn initializer_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len());
        self.claim_value(name);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Int64 as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// Whether a value (input, initializer or node output) of this name exists.
    pub fn has_value(&self, name: &str) -> bool {
        self.values.contains(name)
    }

    fn unique_node_name(&mut self, base: &str) -> String {
        let count = self.name_counts.entry(base.to_string()).or_insert(0);
        let mut name = if *count == 0 {
            base.to_string()
        } else {
            format!("{base}_{count}")
        };
        *count += 1;
        while self.node_names.contains(&name) || self.values.contains(&name) {
            name = format!("{base}_{count}");
            *count += 1;
        }
        self.node_names.insert(name.clone());
        name
    }

    /// Adds a node `{scope}/{op_type}` with one output and returns the output value name.
    pub fn node(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> String {
        self.node_with_output(scope, op_type, inputs, attrs, None)
    }

    /// Like [`GraphBuilder::node`], with the output value called `output` when given.
    pub fn node_with_output(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        output: Option<&str>,
    ) -> String {
        for input in inputs {
            assert!(
                input.is_empty() || self.values.contains(*input),
                "node {scope}/{op_type} reads undefined value `{input}`"
            );
        }
        let base = if scope.is_empty() {
            op_type.to_string()
        } else {
            format!("{scope}/{op_type}")
        };
        let name = self.unique_node_name(&base);
        let out = output.map(str::to_string).unwrap_or_else(|| name.clone());
        self.claim_value(&out);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(name),
            op_type: Some(op_type.to_string()),
            attribute: attrs.iter().map(|(n, a)| a.to_proto(n)).collect(),
            ..Default::default()
        });
        out
    }

    /// Number of nodes so far.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The finished graph.
    pub fn build(self) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: Some(self.name),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}

fn value_info(name: &str, elem: DataType, dims: Option<&[Dim]>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                    Dim::Named(s) => dimension::Value::DimParam(s.clone()),
                }),
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape,
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// The lowest ONNX IR version that can carry the default-domain operator set `opset`
/// (the pairs of ONNX releases: opset 17/18 in IR 8, 19/20 in IR 9, 21/22 in IR 10, 23 in 11).
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=12 => 7,
        13..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        _ => 11,
    }
}

/// Wraps a graph into a model that imports the default operator set `opset`, with string
/// metadata properties.
pub fn model(graph: GraphProto, opset: i64, metadata: &[(&str, &str)]) -> ModelProto {
    ModelProto {
        ir_version: Some(ir_version_for_opset(opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        producer_name: Some("hands-export".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        domain: None,
        model_version: Some(1),
        doc_string: None,
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn node_names_are_unique_and_follow_scope() {
        let mut g = GraphBuilder::new("g");
        let x = g.input("image", &[Dim::Named("batch".into()), Dim::Fixed(3)]);
        let a = g.node("cells.0.ops.1", "Relu", &[&x], &[]);
        let b = g.node("cells.0.ops.1", "Relu", &[&a], &[]);
        assert_eq!(a, "cells.0.ops.1/Relu");
        assert_eq!(b, "cells.0.ops.1/Relu_1");
        let out = g.node_with_output("", "Softmax", &[&b], &[("axis", Attr::Int(1))], Some("p"));
        g.output(&out, &[Dim::Named("batch".into()), Dim::Fixed(3)]);
        let graph = g.build();
        assert_eq!(graph.node.len(), 3);
        assert_eq!(graph.node[2].name.as_deref(), Some("Softmax"));
        assert_eq!(graph.node[2].output, vec!["p".to_string()]);
    }

    #[test]
    fn model_round_trips_through_protobuf() {
        let mut g = GraphBuilder::new("g");
        let x = g.input("x", &[Dim::Fixed(1), Dim::Fixed(2)]);
        let w = g.initializer_f32("w", &[2], &[1.5, -2.0]);
        let y = g.node("", "Mul", &[&x, &w], &[]);
        g.output(&y, &[Dim::Fixed(1), Dim::Fixed(2)]);
        let m = model(g.build(), 17, &[("k", "v")]);
        let bytes = m.encode_to_vec();
        let back = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.ir_version, Some(8));
        let init = &back.graph.as_ref().unwrap().initializer[0];
        let raw = init.raw_data.as_ref().unwrap();
        assert_eq!(f32::from_le_bytes(raw[4..8].try_into().unwrap()), -2.0);
    }

    #[test]
    fn attributes_carry_their_type() {
        let a = Attr::Ints(vec![1, 1]).to_proto("strides");
        assert_eq!(a.r#type, Some(AttributeType::Ints as i32));
        assert_eq!(a.ints, vec![1, 1]);
        let s = Attr::String("NOTSET".into()).to_proto("auto_pad");
        assert_eq!(s.s.as_deref(), Some(&b"NOTSET"[..]));
    }

    #[test]
    #[should_panic(expected = "undefined value")]
    fn reading_an_undefined_value_is_a_bug() {
        let mut g = GraphBuilder::new("g");
        g.node("", "Relu", &["nope"], &[]);
    }
}
