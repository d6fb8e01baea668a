"""Accuracy of one supernet path: BatchNorm statistics recalibrated for the path, then top-1 on labelled data.

A supernet's BN running statistics mix every path it trained; a single path's activations have other
statistics, so they are recomputed on a fixed set of training images before evaluating (the SPOS recipe):
:func:`precise_bn` sets them to the exact statistics over those images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as np

from spos_deploy.data.batches import Dataset, train_batches
from spos_deploy.data.images import centre_crop
from spos_deploy.nets.evaluate import accuracy

Forward = Callable[[mx.nd.NDArray], mx.nd.NDArray]


def bn_batches(train_ds: Dataset, images: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """A fixed list of augmented training batches (``images`` images in all) for BN recalibration."""
    need = max(1, -(-images // batch_size))
    out = []
    for _, x, _ in train_batches(train_ds, batch_size, 0, seed):
        out.append(x)
        if len(out) == need:
            break
    return out


def evaluate(forward: Forward, ds: Dataset, batch_size: int, ctx: mx.Context) -> float:
    """Top-1 accuracy of ``forward`` (inference mode) on ``ds`` at centre crops (the toolkit's one top-1 loop,
    :func:`spos_deploy.nets.evaluate.accuracy`)."""
    return accuracy(forward, centre_crop(ds.images, ds.input_size), ds.labels, batch_size, ctx)


def batchnorms(*blocks: mx.gluon.Block) -> list[mx.gluon.nn.BatchNorm]:
    """Every BatchNorm layer inside ``blocks`` (e.g. the stem, one path's choice blocks and the head)."""
    found: list[mx.gluon.nn.BatchNorm] = []
    for block in blocks:
        block.apply(lambda b: found.append(b) if isinstance(b, mx.gluon.nn.BatchNorm) else None)
    return found


_STAT_EPS = 1e-5  # epsilon of the statistics op (cuDNN's minimum); subtracted again below


def precise_bn(
    forward: Forward, layers: Sequence[mx.gluon.nn.BatchNorm], batches: Sequence[np.ndarray], ctx: mx.Context
) -> None:
    """Set the running statistics of ``layers`` to the exact mean and variance over all ``batches``.

    MXNet 1.9 updates BatchNorm's running statistics only in the *backward* pass, so forward passes in
    training mode alone (the usual recipe) leave them untouched. Here forward hooks read each layer's batch
    statistics during training-mode forward passes (so later layers see batch-normalised activations, as
    in training), and the statistics over all images of all batches replace the running ones. The result
    depends only on the path and the batches, never on what was evaluated before. The layers must run
    imperatively (not inside a hybridized block), where hooks fire.

    The per-batch statistics come from MXNet's own BatchNorm op (``output_mean_var``: mean and inverse
    standard deviation), which is ~8x faster on CPU than MXNet's generic reductions and stays on the device;
    batches are combined in float64 (mean of the means; mean of ``var + mean^2`` minus the squared mean).
    """
    per_batch: dict[int, list[tuple[mx.nd.NDArray, mx.nd.NDArray]]] = {}
    unit: dict[int, tuple[mx.nd.NDArray, ...]] = {}

    def hook(block: mx.gluon.Block, inputs: tuple, output: mx.nd.NDArray) -> None:
        x = inputs[0]
        c = x.shape[1]
        if c not in unit:
            unit[c] = (mx.nd.ones(c, ctx=x.context), mx.nd.zeros(c, ctx=x.context))
        ones, zeros = unit[c]
        _, mean, inv_std = mx.nd.BatchNorm(
            x, ones, zeros, zeros.copy(), ones.copy(), eps=_STAT_EPS, fix_gamma=False, output_mean_var=True
        )
        per_batch.setdefault(id(block), []).append((mean, inv_std))

    handles = [bn.register_forward_hook(hook) for bn in layers]
    try:
        for x in batches:
            with mx.autograd.train_mode():
                forward(mx.nd.array(x, ctx=ctx)).wait_to_read()
    finally:
        for h in handles:
            h.detach()
    for bn in layers:
        if id(bn) not in per_batch:
            raise RuntimeError(f"{bn.name}: no statistics collected (is it inside a hybridized block?)")
        means = np.stack([m.asnumpy() for m, _ in per_batch[id(bn)]]).astype(np.float64)
        inv = np.stack([s.asnumpy() for _, s in per_batch[id(bn)]]).astype(np.float64)
        variances = np.maximum(1.0 / np.square(inv) - _STAT_EPS, 0.0)
        mean = means.mean(axis=0)
        var = np.maximum((variances + np.square(means)).mean(axis=0) - np.square(mean), 0.0)
        bn.running_mean.set_data(mx.nd.array(mean, ctx=ctx))
        bn.running_var.set_data(mx.nd.array(var, ctx=ctx))
