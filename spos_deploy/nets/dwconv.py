"""Depthwise convolution whose CPU backward runs as forward convolutions (the training form, large kernels).

MXNet 1.9.1's oneDNN computes the weight gradient of a 3x3 depthwise convolution in its jit depthwise kernel,
but that of a 5x5 or 7x7 one as a generic gemm: on a 2-core AMD EPYC one 7x7 depthwise layer at 32 x 32 with
32 channels took 8-12 ms forward and 190-220 ms forward and backward (docs/supernet.md, "Measured facts about
speed"). Both gradients are themselves depthwise convolutions, which oneDNN runs fast:

* data gradient (stride 1): the output gradient convolved with the kernel flipped in both spatial axes, padded
  by ``k - 1 - pad``; for stride 2, the transposed convolution of the output gradient with the kernel;
* weight gradient: the padded input, with batch x channels as the channels of one image, convolved with the
  output gradient as a per-channel kernel (dilated by the stride), summed over the batch.

These are exact rewrites (the same sums in another order): the gradients match MXNet's own within float32
rounding (tests/serial_engine_dwconv.py). The operator is used only by the training form (``crop=True`` networks, never
exported) and only under MXNet's serial engine (:mod:`spos_deploy.nets.engine`); its parameters keep the plain
convolution's names and shapes, so weights move between the forms.

**Withdrawn (opt-in only, :data:`OPT_IN`):** whole trainings with it validate wrongly although the per-layer
gradients check out (docs/training.md, "Speed"); it stays for finding the cause and for the throughput
benchmark's comparison.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import mxnet as mx

from spos_deploy.nets import engine

OP_TYPE = "spos_depthwise_conv"

#: Kernels at or above this size use the rewritten backward; MXNet's own kernel is faster for 3x3.
MIN_KERNEL = 5

#: The engine MXNet runs in this process: the operator is used only under the serial one (see :mod:`.engine`).
SERIAL_ENGINE = engine.is_serial()

OPT_IN = engine.REWRITE_VARIABLE
"""Set to ``rewritten`` to train with this operator. Off by default: trainings with it on 2026-12-07 reached
their usual training loss but validated at 0.13-0.82 top-1 where MXNet's own backward gives 0.85-0.88 (the
same architectures, Fashion-MNIST, 3 epochs), and the cause is not found; the gradient checks pass."""

_enabled = os.environ.get(OPT_IN, "").strip() == "rewritten"


def rewrite_enabled() -> bool:
    """Whether training-form networks built now use the rewritten backward: under the serial engine, outside
    :func:`native_backward`. Under MXNet's threaded engine the custom operator gave wrong values and heap
    corruption (64 channels on 16 x 16 maps), so there MXNet's own backward runs."""
    return _enabled and SERIAL_ENGINE


@contextlib.contextmanager
def native_backward() -> Iterator[None]:
    """Build training-form networks with MXNet's own depthwise backward inside this block (for comparisons)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def _conv(data: mx.nd.NDArray, weight: mx.nd.NDArray, groups: int, kernel, stride=1, pad=0, dilate=1):
    return mx.nd.Convolution(
        data,
        weight,
        kernel=kernel,
        stride=(stride, stride),
        pad=(pad, pad),
        dilate=(dilate, dilate),
        num_filter=groups,
        num_group=groups,
        no_bias=True,
    )


class _DepthwiseConv(mx.operator.CustomOp):
    def __init__(self, kernel: int, stride: int, pad: int):
        super().__init__()
        self.k, self.s, self.p = kernel, stride, pad

    def forward(self, is_train, req, in_data, out_data, aux):
        x, w = in_data
        y = _conv(x, w, x.shape[1], (self.k, self.k), self.s, self.p)
        y.wait_to_read()
        self.assign(out_data[0], req[0], y)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        x, w = in_data
        dy = out_grad[0]
        n, c, h, wd = x.shape
        k, s, p = self.k, self.s, self.p
        if req[0] != "null":
            if s == 1:
                dx = _conv(dy, mx.nd.flip(mx.nd.flip(w, axis=2), axis=3), c, (k, k), 1, k - 1 - p)
            else:
                ho, wo = dy.shape[2:]
                adj = (h - ((ho - 1) * s - 2 * p + k), wd - ((wo - 1) * s - 2 * p + k))
                dx = mx.nd.Deconvolution(
                    dy, w, kernel=(k, k), stride=(s, s), pad=(p, p), adj=adj, num_filter=c, num_group=c, no_bias=True
                )
            self.assign(in_grad[0], req[0], dx)
        if req[1] != "null":
            ho, wo = dy.shape[2:]
            images = x.reshape((1, n * c, h, wd))
            kernels = dy.reshape((n * c, 1, ho, wo))
            dw = _conv(images, kernels, n * c, (ho, wo), 1, p, dilate=s)
            dw = mx.nd.slice(dw, begin=(None, None, 0, 0), end=(None, None, k, k))
            dw = dw.reshape((n, c, k, k)).sum(axis=0).reshape((c, 1, k, k))
            self.assign(in_grad[1], req[1], dw)


@mx.operator.register(OP_TYPE)
class _DepthwiseConvProp(mx.operator.CustomOpProp):
    def __init__(self, kernel: str, stride: str, pad: str):
        super().__init__(need_top_grad=True)
        self.k, self.s, self.p = int(kernel), int(stride), int(pad)

    def list_arguments(self):
        return ["data", "weight"]

    def list_outputs(self):
        return ["output"]

    def infer_shape(self, in_shape):
        n, c, h, w = in_shape[0]
        out = [(size + 2 * self.p - self.k) // self.s + 1 for size in (h, w)]
        return [in_shape[0], [c, 1, self.k, self.k]], [[n, c, *out]], []

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        return [out_grad[0], in_data[0], in_data[1]]

    def create_operator(self, ctx, shapes, dtypes):
        return _DepthwiseConv(self.k, self.s, self.p)


def depthwise_conv(F, x, weight, kernel: int, stride: int, pad: int, name: str = "fwd"):
    """Depthwise convolution without bias (``F``: ``mx.nd`` or ``mx.sym``) with the rewritten backward."""
    return F.Custom(x, weight, op_type=OP_TYPE, kernel=kernel, stride=stride, pad=pad, name=name)
