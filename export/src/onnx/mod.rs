//! Writing ONNX files without protoc: the protobuf messages and a graph builder.

pub mod builder;
pub mod proto;

pub use builder::{model, Attr, Dim, GraphBuilder};
pub use proto::ModelProto;
