"""Gluon building blocks of the search space. All of them hybridize and export to a symbol.

Names are given explicitly (``b03_pw1_fwd``, ``b03_se_squeeze_fwd`` ...) so that exported graphs,
ONNX nodes and profiler rows say which position and which op they come from.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import init as mx_init
from mxnet.gluon import HybridBlock, nn

from spos_deploy.nets import dwconv
from spos_deploy.space import BLOCK_KERNELS, BLOCK_KINDS, Position, se_channels

BN_MOMENTUM = 0.9  # MXNet semantics: running = 0.9 * running + 0.1 * batch
BN_EPS = 1e-5


class HardSigmoid(HybridBlock):
    """``clip(x + 3, 0, 6) / 6`` as one ``hard_sigmoid`` op (exports to ONNX HardSigmoid)."""

    def hybrid_forward(self, F, x):
        return F.hard_sigmoid(x, alpha=1.0 / 6, beta=0.5)


class HardSwish(HybridBlock):
    """``x * hard_sigmoid(x)``."""

    def hybrid_forward(self, F, x):
        return x * F.hard_sigmoid(x, alpha=1.0 / 6, beta=0.5)


def activation(kind: str, prefix: str) -> HybridBlock:
    if kind == "relu":
        return nn.Activation("relu", prefix=prefix)
    if kind == "hswish":
        return HardSwish(prefix=prefix)
    raise ValueError(f"unknown activation {kind!r}")


def shuffle_permutation(channels: int) -> np.ndarray:
    """Index ``idx`` with ``y[i] = x[idx[i]]``: ``y[2j] = x[j]``, ``y[2j+1] = x[C/2 + j]``."""
    half = channels // 2
    idx = np.empty(channels, dtype=np.int64)
    idx[0::2] = np.arange(half)
    idx[1::2] = half + np.arange(half)
    return idx


def shuffle_kernel(channels: int) -> np.ndarray:
    """The frozen 1x1 conv weight (C, C, 1, 1) that applies :func:`shuffle_permutation`."""
    w = np.zeros((channels, channels, 1, 1), dtype=np.float32)
    w[np.arange(channels), shuffle_permutation(channels), 0, 0] = 1.0
    return w


@mx_init.register
class ShufflePermutation(mx_init.Initializer):
    """Initialiser that writes :func:`shuffle_kernel` (any square 1x1 weight)."""

    def _init_weight(self, name, arr):
        arr[:] = shuffle_kernel(arr.shape[0])

    _init_default = _init_weight


class ShuffleChannels(HybridBlock):
    """Channel shuffle (2 groups) followed by the split into project and main halves.

    ``mode="reshape"`` uses reshape/transpose with explicit shapes (the MXNet special codes such as
    -4 do not export to ONNX); ``mode="conv"`` uses a frozen 1x1 permutation conv. Both give the same
    permutation; only the first is free of arithmetic, only the second avoids 5-D tensors.
    """

    def __init__(self, channels: int, size: int, mode: str = "reshape", **kwargs):
        super().__init__(**kwargs)
        if channels % 2:
            raise ValueError("channel shuffle needs an even channel count")
        self.channels, self.size, self.mode = channels, size, mode
        if mode == "conv":
            with self.name_scope():
                self.conv = nn.Conv2D(
                    channels,
                    1,
                    use_bias=False,
                    in_channels=channels,
                    prefix="conv_",
                    weight_initializer=ShufflePermutation(),
                )
            self.conv.weight.grad_req = "null"
        elif mode != "reshape":
            raise ValueError(f"unknown shuffle mode {mode!r}")

    def hybrid_forward(self, F, x):
        c, s = self.channels, self.size
        if self.mode == "conv":
            y = self.conv(x)
        else:
            y = F.reshape(x, shape=(-1, 2, c // 2, s, s))
            y = F.transpose(y, axes=(0, 2, 1, 3, 4))
            y = F.reshape(y, shape=(-1, c, s, s))
        project = F.slice_axis(y, axis=1, begin=0, end=c // 2)
        main = F.slice_axis(y, axis=1, begin=c // 2, end=c)
        return project, main


class MaskableBatchNorm(nn.BatchNorm):
    """BatchNorm whose output channels can be switched off by a 0/1 vector ``mask`` of shape (C,).

    Scaling gamma and beta by the mask gives exactly 0 on the masked channels, and every activation used
    here maps 0 to 0, so this equals multiplying the activated output by the mask. It is much cheaper to
    train: MXNet's CPU backward of a (N, C, H, W) x (1, C, 1, 1) ``broadcast_mul`` was about 30% of a
    supernet step, while the product of two (C,) vectors costs nothing.
    """

    def hybrid_forward(self, F, x, mask=None, gamma=None, beta=None, running_mean=None, running_var=None):
        if mask is not None:
            gamma = gamma * mask
            beta = beta * mask
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, name="fwd", **self._kwargs)


class CroppedConv2D(nn.Conv2D):
    """A k x k conv (pad k // 2) on inputs so small that its outer taps only ever see zero padding.

    On an ``in_size`` x ``in_size`` input only the central ``2 * in_size - 1`` taps (stride 1 or 2) can
    touch a pixel, so the conv runs with that central slice of its weight: the same outputs and the same
    gradients (the dropped taps' gradient is exactly 0), at a fraction of the cost. MXNet's CPU backward
    of a 7x7 depthwise conv on a 1x1 input took 79 ms per batch of 128, a 1x1 conv a tenth of that. The
    parameter keeps its full k x k shape, so weights are interchangeable with an uncropped conv.

    ``rewrite_backward``: a depthwise conv of 5x5 or more (after cropping) runs as :mod:`.dwconv`'s operator,
    whose backward is several times faster on CPU (used only under the serial engine).
    """

    def __init__(self, channels: int, kernel: int, in_size: int, rewrite_backward: bool = False, **kwargs):
        super().__init__(channels, kernel, padding=kernel // 2, **kwargs)
        eff = min(kernel, 2 * in_size - 1)
        self._crop = (kernel - eff) // 2
        self._kwargs_cropped = dict(self._kwargs, kernel=(eff, eff), pad=(eff // 2, eff // 2))
        depthwise = self._kwargs["num_group"] == channels and channels > 1
        self._rewrite = rewrite_backward and depthwise and eff >= dwconv.MIN_KERNEL and self._kwargs["no_bias"]

    def hybrid_forward(self, F, x, weight, bias=None):
        c, k = self._crop, self._kwargs["kernel"][0]
        if c:
            weight = F.slice(weight, begin=(None, None, c, c), end=(None, None, k - c, k - c))
        kwargs = self._kwargs_cropped if c else self._kwargs
        if self._rewrite and (F is mx.sym or mx.autograd.is_recording()):
            # only where a backward follows: imperative forwards that record nothing (precise BN's statistics
            # passes, evaluation) read the custom operator's output wrongly, so they run MXNet's own conv
            eff = kwargs["kernel"][0]
            return dwconv.depthwise_conv(F, x, weight, eff, kwargs["stride"][0], eff // 2)
        if bias is None:
            return F.Convolution(x, weight, name="fwd", **kwargs)
        return F.Convolution(x, weight, bias, name="fwd", **kwargs)


class ConvBN(HybridBlock):
    """Conv + BatchNorm (+ activation). ``groups == channels`` makes it depthwise.

    ``merged=True`` is the deployed form: BatchNorm folded into the conv, which then has a bias.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        act: str | None,
        depthwise: bool,
        merged: bool = False,
        in_size: int | None = None,
        **kwargs,
    ):
        """``in_size``: crop the kernel to the taps that input size can reach (:class:`CroppedConv2D`)."""
        super().__init__(**kwargs)
        with self.name_scope():
            conv_args = dict(strides=stride, groups=cin if depthwise else 1, use_bias=merged, in_channels=cin)
            rewrite = depthwise and kernel >= dwconv.MIN_KERNEL and dwconv.rewrite_enabled()
            if in_size is not None and (kernel > 2 * in_size - 1 or rewrite):
                self.conv = CroppedConv2D(cout, kernel, in_size, rewrite, prefix="", **conv_args)
            else:
                self.conv = nn.Conv2D(cout, kernel, padding=kernel // 2, prefix="", **conv_args)
            self.bn = (
                None
                if merged
                else MaskableBatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS, in_channels=cout, prefix="bn_")
            )
            self.act = activation(act, "act_") if act else None

    def hybrid_forward(self, F, x, mask=None):
        """``mask`` (C,) switches output channels off (see :class:`MaskableBatchNorm`); needs BatchNorm."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x) if mask is None else self.bn(x, mask)
        return self.act(x) if self.act is not None else x


class SqueezeExcite(HybridBlock):
    """GAP -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard-sigmoid -> channel-wise scale."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        r = se_channels(channels)
        with self.name_scope():
            self.pool = nn.GlobalAvgPool2D(prefix="pool_")
            self.squeeze = nn.Conv2D(r, 1, use_bias=True, in_channels=channels, prefix="squeeze_")
            self.relu = nn.Activation("relu", prefix="relu_")
            self.excite = nn.Conv2D(channels, 1, use_bias=True, in_channels=r, prefix="excite_")
            self.gate = HardSigmoid(prefix="hsigmoid_")

    def hybrid_forward(self, F, x):
        s = self.gate(self.excite(self.relu(self.squeeze(self.pool(x)))))
        return F.broadcast_mul(x, s)


class ChoiceBlock(HybridBlock):
    """One block of the search space at one position (SNB-3/5/7 or SXB-3) with ``mid`` channels.

    With ``masked=True`` it is a supernet choice block: ``mid`` is the widest choice and
    ``forward(x, mask)`` zeroes the channels beyond the chosen width at every BatchNorm of the mid
    channels (gamma and beta masked, so BN and activation give exactly 0 there). Zeroed channels then
    contribute nothing to the next convolution, so a masked path computes what the slim fixed block
    computes (masking before BN, as the seed project did, leaves them at about beta).
    """

    def __init__(
        self,
        pos: Position,
        block_choice: int,
        mid: int,
        shuffle: str = "reshape",
        masked: bool = False,
        merged: bool = False,
        crop: bool = False,
        mask_mode: str = "bn",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mask_mode not in ("bn", "multiply"):
            raise ValueError(f"unknown mask mode {mask_mode!r}")
        self.pos, self.block_choice, self.mid, self.masked = pos, block_choice, mid, masked
        self.mask_mode = mask_mode
        k, kind = BLOCK_KERNELS[block_choice], BLOCK_KINDS[block_choice]
        cin, cm, cout, s = pos.main_in, mid, pos.main_out, pos.stride
        act = pos.act
        # crop=True (training) crops large kernels on tiny inputs for speed; the default keeps the plain conv so
        # counting, export and deployment see the architecture as specified. Weights are the same either way.
        size_in, size_out = (pos.in_size, pos.out_size) if crop else (None, None)
        with self.name_scope():
            if not pos.reduce:
                self.shuffle = ShuffleChannels(pos.in_channels, pos.in_size, shuffle, prefix="shuffle_")
                self.proj = None
            else:
                self.shuffle = None
                self.proj = nn.HybridSequential(prefix="proj_")
                with self.proj.name_scope():
                    self.proj.add(
                        ConvBN(pos.in_channels, pos.in_channels, k, s, None, True, merged, size_in, prefix="dw_")
                    )
                    self.proj.add(
                        ConvBN(pos.in_channels, pos.in_channels, 1, 1, act, False, merged=merged, prefix="pw_")
                    )
            # (layer, mask after it?)
            if kind == "snb":
                layers = [
                    (ConvBN(cin, cm, 1, 1, act, False, merged=merged, prefix="pw1_"), True),
                    (ConvBN(cm, cm, k, s, None, True, merged, size_in, prefix="dw1_"), True),
                    (ConvBN(cm, cout, 1, 1, act, False, merged=merged, prefix="pw2_"), False),
                ]
            else:
                layers = [
                    (ConvBN(cin, cin, 3, s, None, True, merged, size_in, prefix="dw1_"), False),
                    (ConvBN(cin, cm, 1, 1, act, False, merged=merged, prefix="pw1_"), True),
                    (ConvBN(cm, cm, 3, 1, None, True, merged, size_out, prefix="dw2_"), True),
                    (ConvBN(cm, cm, 1, 1, act, False, merged=merged, prefix="pw2_"), True),
                    (ConvBN(cm, cm, 3, 1, None, True, merged, size_out, prefix="dw3_"), True),
                    (ConvBN(cm, cout, 1, 1, act, False, merged=merged, prefix="pw3_"), False),
                ]
            self.main = nn.HybridSequential(prefix="")
            for layer, _ in layers:
                self.main.add(layer)
            self._mask_after = [m for _, m in layers]
            self.se = SqueezeExcite(cout, prefix="se_") if pos.use_se else None

    def hybrid_forward(self, F, x, mask=None):
        if self.shuffle is not None:
            project, main = self.shuffle(x)
        else:
            project, main = self.proj(x), x
        for i, mask_after in enumerate(self._mask_after):
            layer = self.main[i]
            if not (self.masked and mask_after and mask is not None):
                main = layer(main)
            elif self.mask_mode == "bn":
                main = layer(main, mask)
            else:  # the plain form: multiply the activated output (slower backward, same result)
                main = F.broadcast_mul(layer(main), F.reshape(mask, shape=(1, -1, 1, 1)))
        if self.se is not None:
            main = self.se(main)
        return F.concat(project, main, dim=1)
