"""Logits and top-1 accuracy of a network over an image array: the one evaluation loop of the toolkit.

Search (supernet paths), training (validation), export (fp32 vs int8) and tests all measure accuracy
here, so "top-1" means the same thing everywhere: argmax of the logits equals the label.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest logit is at the label (0.0 for no rows)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def batched_logits(
    forward: Callable[[Any], Any], images: np.ndarray, batch_size: int = 64, ctx: Any = None
) -> np.ndarray:
    """``forward`` (a Gluon block or any callable on an MXNet array) over ``images`` in batches, in
    inference mode; returns the logits as one float32 array."""
    import mxnet as mx

    ctx = ctx or mx.cpu()
    out = []
    for i in range(0, len(images), batch_size):
        x = mx.nd.array(images[i : i + batch_size], ctx=ctx)
        out.append(forward(x).asnumpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def accuracy(
    forward: Callable[[Any], Any], images: np.ndarray, labels: np.ndarray, batch_size: int = 64, ctx: Any = None
) -> float:
    """Top-1 accuracy of ``forward`` on labelled images."""
    return top1(batched_logits(forward, images, batch_size, ctx), labels)
