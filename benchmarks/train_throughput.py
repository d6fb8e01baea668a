"""Supernet training speed: spos-train's supernet step vs a plain imperative per-path loop, side by side.

Same supernet (default OneShot space at 32x32, 10 classes), same Fashion-MNIST batches, same paths, one run:

* plain imperative per-path loop: channel masks multiplied onto activated outputs, full kernels, no hybridize
  (a direct port of the seed project's NasBlock design);
* hybridized plain: the same, each choice block a static graph;
* spos-train: hybridized, channel masks folded into BN gamma/beta, large kernels cropped to the taps a tiny
  input can reach (same outputs and gradients: tests/test_supernet.py).

    python -m benchmarks.train_throughput [--steps 60] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import mxnet as mx
import numpy as np
from spos_deploy.search.sampling import UniformSampler
from tabulate import tabulate

from benchmarks.record import provenance, write_record
from spos_deploy.data.batches import load_dataset, train_batches
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.runtime import load
from spos_deploy.space import SearchSpace

STUDY = "train_throughput"


def run(hybrid: bool, fast: bool, batches, paths, warmup: int) -> float:
    space = SearchSpace(input_size=32, num_classes=10)
    net = build_supernet(space, seed=0) if fast else build_supernet(space, seed=0, mask_mode="multiply", crop=False)
    if hybrid:
        net.hybridize_blocks(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), "nag", {"learning_rate": 0.05, "momentum": 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    t0, images = None, 0
    for i, ((x, y), (b, c)) in enumerate(zip(batches, paths)):
        if i == warmup:
            mx.nd.waitall()
            t0 = time.perf_counter()
        with mx.autograd.record():
            loss = loss_fn(net(mx.nd.array(x), b, c), mx.nd.array(y))
        loss.backward()
        trainer.step(len(y), ignore_stale_grad=True)
        loss.wait_to_read()
        if i >= warmup:
            images += len(y)
    mx.nd.waitall()
    return images / (time.perf_counter() - t0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    space = SearchSpace(input_size=32, num_classes=10)
    ds = load_dataset("fashion-mnist:train", 32, train=True, limit=args.batch_size * (args.steps + args.warmup))
    batches = [(x, y) for _, x, y in train_batches(ds, args.batch_size, 0, seed=0)]
    b, c = UniformSampler(space, np.random.default_rng(0)).sample(len(batches), np.arange(space.num_scales))
    paths = list(zip(b, c))
    with load.probe() as probe:
        imperative = run(False, False, batches, paths, args.warmup)
        hybrid_plain = run(True, False, batches, paths, args.warmup)
        hybrid = run(True, True, batches, paths, args.warmup)
    rows = [
        ["imperative per-path loop (output masks, full kernels)", f"{imperative:.1f}", "1.00x"],
        ["hybridized choice blocks, same ops", f"{hybrid_plain:.1f}", f"{hybrid_plain / imperative:.2f}x"],
        ["spos-train: hybridized, BN masks, cropped kernels", f"{hybrid:.1f}", f"{hybrid / imperative:.2f}x"],
    ]
    text = tabulate(
        rows, headers=["supernet training", "images / s", "speed-up"], tablefmt="github", disable_numparse=True
    )
    print(text)
    prov = provenance(STUDY, argv)
    result = {
        "benchmark": "train_throughput",
        "batch_size": args.batch_size,
        "steps": len(batches) - args.warmup,
        "imperative_images_per_s": imperative,
        "hybrid_plain_images_per_s": hybrid_plain,
        "hybrid_images_per_s": hybrid,
        "speedup": hybrid / imperative,
    }
    md = (
        f"# Supernet training throughput (OneShot space, 32x32, Fashion-MNIST, batch {args.batch_size})\n\n"
        f"{prov.where}, MXNet {prov.machine.get('mxnet')}; the same batches and "
        f"paths for both, {len(batches) - args.warmup} timed steps after {args.warmup} warm-up steps.\n\n"
        f"{text}\n"
    )
    write_record(STUDY, STUDY, result, md, prov=prov, load=probe.record())


if __name__ == "__main__":
    main()
