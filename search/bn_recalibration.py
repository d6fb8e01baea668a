"""Accuracy of one supernet path: BatchNorm statistics recalibrated for the path, then top-1 on labelled data.

A supernet's BN running statistics mix every path it trained; a single path's activations have other
statistics, so they are recomputed on a fixed set of training images before evaluating (the SPOS recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as np

from spos_deploy.datasets import Dataset, eval_batches, train_batches

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


def reset_bn_stats(net: mx.gluon.Block) -> None:
    """Running means to 0 and variances to 1, so recalibration starts from nothing the path did not see."""
    for name, p in net.collect_params().items():
        if name.endswith("running_mean"):
            p.set_data(mx.nd.zeros(p.shape, ctx=p.list_ctx()[0]))
        elif name.endswith("running_var"):
            p.set_data(mx.nd.ones(p.shape, ctx=p.list_ctx()[0]))


def recalibrate_bn(forward: Forward, batches: Sequence[np.ndarray], ctx: mx.Context) -> None:
    """Recompute BN running statistics for the current path: forward passes in training mode, no update.

    With MXNet's momentum 0.9, 20 batches leave 12% weight on the statistics from before.
    """
    for x in batches:
        with mx.autograd.train_mode():
            forward(mx.nd.array(x, ctx=ctx)).wait_to_read()


def evaluate(forward: Forward, ds: Dataset, batch_size: int, ctx: mx.Context) -> float:
    """Top-1 accuracy of ``forward`` (inference mode) on ``ds`` at centre crops."""
    correct = total = 0
    for x, y in eval_batches(ds, batch_size):
        pred = forward(mx.nd.array(x, ctx=ctx)).argmax(axis=1).asnumpy()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)
