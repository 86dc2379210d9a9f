#!/usr/bin/env python3
"""Writes the tiny ONNX models that hands-infer's tests (and its benchmark) run.

They stand in for a trained network: conv 3x3 -> ReLU -> global average pool -> Gemm ->
Softmax, with input `image` [N, 3, size, size] (dynamic batch), outputs `logits` and
`probabilities` [N, 2], opset 17, and a valid model card in `metadata_props["hands.card"]`
as hands-export wrote it before models were sealed (no `hands.seal_crc32`: hands-infer
opens them with a warning, as any older export). Weights come from a fixed seed, so reruns give the same
bytes.

    scripts/make-infer-fixture.py OUT.onnx [--size 32] [--card-size N] [--input-name image] [--no-card]

`--card-size`, `--input-name` and `--no-card` make models that must be refused at open.
The committed fixtures in infer/tests/fixtures/ are:

    tiny.onnx                (default)
    card-mismatch.onnx       --card-size 64
    wrong-input-name.onnx    --input-name input
    no-card.onnx             --no-card Needs the `onnx` and `numpy` Python packages; `scripts/bench-infer`
installs them into .tools/py.
"""
import argparse
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = pathlib.Path(__file__).resolve().parent.parent


def card(size: int, parameters: int) -> dict:
    genotype = json.loads((REPO / "models" / "genotypes" / "DARTS_V2.json").read_text())
    return {
        "schema_version": 1,
        "labels": ["female", "male"],
        "input": {
            "size": size,
            "layout": "NCHW",
            "colour": "RGB",
            "resize": "stretch_bilinear",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "genotype": genotype,
        "network": {
            "init_channels": 8,
            "layers": 1,
            "auxiliary": False,
            "parameters": parameters,
        },
        "metrics": None,
        "provenance": {
            "data": "none: synthetic test fixture with random weights",
            "genotype_source": "DARTS_V2",
            "train": {},
            "seed": 0,
            "tool_version": "scripts/make-infer-fixture.py",
        },
    }


def build(size: int, card_size: int, input_name: str, with_card: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    channels = 8
    conv_w = rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (channels,)).astype(np.float32)
    fc_w = rng.normal(0, 1.0, (2, channels)).astype(np.float32)
    fc_b = np.zeros((2,), np.float32)
    initializers = [
        numpy_helper.from_array(conv_w, "stem.weight"),
        numpy_helper.from_array(conv_b, "stem.bias"),
        numpy_helper.from_array(fc_w, "classifier.weight"),
        numpy_helper.from_array(fc_b, "classifier.bias"),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, "stem.weight", "stem.bias"], ["conv"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "classifier.weight", "classifier.bias"],
                         ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "hands-infer-fixture",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="hands make-infer-fixture",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    parameters = sum(int(np.prod(t.dims)) for t in initializers)
    if with_card:
        helper.set_model_props(model, {"hands.card": json.dumps(card(card_size, parameters))})
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--card-size", type=int, help="input size written in the card")
    parser.add_argument("--input-name", default="image")
    parser.add_argument("--no-card", action="store_true", help="leave the model card out")
    args = parser.parse_args()
    model = build(args.size, args.card_size or args.size, args.input_name, not args.no_card)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
