#!/usr/bin/env python3
"""Compares one hands-search supernet with the PyTorch reference ../shared/bench/darts_ref.py.

Reads what `cargo run -p hands-nas --features cli --example supernet_dump` wrote (weights, architecture
parameters, input batches, logits, loss, gradients, Beta-Decay's gradient, the weights and
momentum buffers after three SGD steps with momentum, weight decay and the gradient clip, and
the unrolled second-order architecture gradient at those weights, all f64), builds the same
supernet with darts_ref's SearchNetwork in float64, loads the exact weights and architecture
parameters into it, and recomputes everything. Exits 1 naming the first tensor whose relative
difference (max |a - b| / max |b|) exceeds 1e-8.

    check_against_pytorch.py DUMP --algo darts|pcdarts [--second-order] [--reference PATH]
"""

import argparse
import importlib.util
import sys
import types

import torch
from safetensors.torch import load_file

TOLERANCE = 1e-8
# Weight steps the dump took before the unrolled step (supernet_dump's WEIGHT_STEPS).
WEIGHT_STEPS = 3


def reference_module(path):
    spec = importlib.util.spec_from_file_location("darts_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_name(ours):
    """hands-search's parameter name -> darts_ref's (module paths differ only in spelling)."""
    name = ours.replace(".preprocess0.", ".pre0.").replace(".preprocess1.", ".pre1.")
    name = name.replace(".op.", ".")
    return name.replace(".conv_1.", ".conv_a.").replace(".conv_2.", ".conv_b.")


def relative(a, b):
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / max(scale, 1e-300)


class MaskedIdentity(torch.nn.Module):
    """The skip candidate under dropout: its input times the next of a shared list of masks."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def forward(self, x):
        return x * next(self.masks)


def with_skip_masks(ref, net, masks, run):
    """`run()` with every stride-1 skip candidate of `net` multiplied by `masks` in order;
    fails unless each mask is used once. Restores the candidates afterwards."""
    skip = ref.PRIMITIVES.index("skip_connect")
    shared = iter(masks)
    patched = []
    for cell in net.cells:
        for edge in cell.edges:
            if isinstance(edge.ops[skip], torch.nn.Identity):
                patched.append((edge, edge.ops[skip]))
                edge.ops[skip] = MaskedIdentity(shared)
    try:
        result = run()
    finally:
        for edge, identity in patched:
            edge.ops[skip] = identity
    if next(shared, None) is not None:
        sys.exit("skip dropout: hands-search drew more masks than PyTorch's skips used")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--algo", choices=["darts", "pcdarts"], required=True)
    ap.add_argument("--second-order", action="store_true")
    ap.add_argument("--reference", default="../shared/bench/darts_ref.py")
    args = ap.parse_args()

    ref = reference_module(args.reference)
    dump = load_file(args.dump)
    weights = {k[len("weight/"):]: v for k, v in dump.items() if k.startswith("weight/")}
    channels = dump["weight/stem.0.weight"].shape[0] // 3
    layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("cells."))
    partial_k = 4 if args.algo == "pcdarts" else 0
    torch.manual_seed(0)
    net = ref.SearchNetwork(channels, 2, layers, partial_k=partial_k, pool_bn=True).double()
    net.train()

    params = dict(net.named_parameters())
    arch_names = {"alpha_normal": "alphas.normal", "alpha_reduce": "alphas.reduce",
                  "beta_normal": "betas.normal", "beta_reduce": "betas.reduce"}
    mapped = {}
    for ours, value in weights.items():
        theirs = torch_name(ours)
        if theirs not in params:
            sys.exit(f"no PyTorch parameter {theirs} for hands-search's {ours}")
        if tuple(params[theirs].shape) != tuple(value.shape):
            sys.exit(f"{ours}: shape {tuple(value.shape)}, PyTorch's {theirs} has "
                     f"{tuple(params[theirs].shape)}")
        mapped[theirs] = ours
    with torch.no_grad():
        for theirs, ours in mapped.items():
            params[theirs].copy_(weights[ours])
        for theirs, ours in arch_names.items():
            if theirs in params:
                params[theirs].copy_(dump[f"arch/{ours}"])
    unmapped = [n for n in params if n not in mapped and n not in arch_names]
    if unmapped:
        sys.exit(f"PyTorch parameters without a hands-search counterpart: {unmapped[:5]}")

    x, y = dump["input/train"], dump["input/train_labels"].long()
    results = []

    def check(what, ours, theirs):
        results.append((what, relative(theirs, ours)))

    logits = net(x)
    check("logits", dump["output/logits"], logits)
    loss = torch.nn.functional.cross_entropy(logits, y)
    check("loss", dump["output/loss"], loss.reshape(1))
    every = list(params.values())
    grads = dict(zip(params, torch.autograd.grad(loss, every, allow_unused=True)))
    for theirs, ours in arch_names.items():
        if theirs in params:
            check(f"grad {ours}", dump[f"grad/{ours}"], grads[theirs])
    weight_errors = {o: relative(grads[t], dump[f"grad/{o}"]) for t, o in mapped.items()}
    worst = max(weight_errors, key=weight_errors.get)
    results.append((f"grad of {len(mapped)} weights (worst: {worst})", weight_errors[worst]))

    # P-DARTS' skip dropout: the identity candidates' outputs times hands-search's masks, in
    # the order it drew them (cell by cell, edge by edge).
    masks = [dump[k] for k in sorted(k for k in dump if k.startswith("dropout/mask/"))]
    if masks:
        dropped_loss = with_skip_masks(
            ref, net, masks, lambda: torch.nn.functional.cross_entropy(net(x), y))
        check("skip dropout: loss", dump["dropout/loss"], dropped_loss.reshape(1))
        grads = torch.autograd.grad(dropped_loss, [params[t] for t in arch_names if t in params])
        for (theirs, ours), grad in zip([(t, o) for t, o in arch_names.items() if t in params],
                                        grads):
            check(f"skip dropout: grad {ours}", dump[f"dropout/grad/{ours}"], grad)

    # Beta-Decay: the gradient of the mean over edges of each edge's logsumexp, per cell.
    for theirs, ours in arch_names.items():
        if theirs.startswith("alpha") and theirs in params:
            alpha = params[theirs]
            smooth_max = torch.logsumexp(alpha, dim=-1).mean()
            (grad,) = torch.autograd.grad(smooth_max, [alpha])
            check(f"Beta-Decay grad {ours}", dump[f"beta_decay/{ours}"], grad)

    options = types.SimpleNamespace(lr=0.025, momentum=0.9, wd=3e-4, arch_lr=0.0,
                                    arch_wd=0.0, grad_only=False, grad_clip=5.0)
    searcher = ref.Searcher(net, options)
    for _ in range(WEIGHT_STEPS):
        searcher.weight_step(x, y)
    step_errors = {o: relative(params[t].detach(), dump[f"stepped/{o}"]) for t, o in mapped.items()}
    worst = max(step_errors, key=step_errors.get)
    results.append((f"{WEIGHT_STEPS} SGD steps: {len(mapped)} weights (worst: {worst})",
                    step_errors[worst]))
    buffer_errors = {
        o: relative(searcher.w_opt.state[params[t]]["momentum_buffer"], dump[f"momentum/{o}"])
        for t, o in mapped.items()
    }
    worst = max(buffer_errors, key=buffer_errors.get)
    results.append((f"momentum buffers (worst: {worst})", buffer_errors[worst]))

    if args.second_order:
        xv, yv = dump["input/val"], dump["input/val_labels"].long()
        searcher.arch_step_second_order(x, y, xv, yv)
        for theirs, ours in arch_names.items():
            if theirs in params:
                check(f"second-order grad {ours} (momentum)", dump[f"second_order/{ours}"],
                      params[theirs].grad)

    failed = False
    for what, error in results:
        verdict = "ok" if error <= TOLERANCE else "FAIL"
        failed |= error > TOLERANCE
        print(f"  {args.algo:8} {what:60} relative difference {error:.2e}  {verdict}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
