"""Fixed subnets (one architecture) as Gluon networks, and the stem and head they share with the supernet."""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.blocks import ChoiceBlock, ConvBN, HardSwish, SqueezeExcite, activation
from spos_deploy.space import SearchSpace, make_divisible, part_key


class Stem(HybridBlock):
    """3x3 conv (no bias, the space's stem stride: 2, or 1 for small images) + BN + activation."""

    def __init__(self, space: SearchSpace, merged: bool = False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = ConvBN(
                3, space.first_conv_channels, 3, space.stem_stride, space.stem_act, False, merged, prefix=""
            )

    def hybrid_forward(self, F, x):
        return self.conv(x)


class Head(HybridBlock):
    """The last-conv variant of the space, then dropout and the 1x1-conv classifier.

    ``lcap``: pool, conv_fc (bias), act. ``original``: last conv + BN + ReLU, pool.
    ``v2plus``: last conv (0.75 width) + BN + hard-swish, pool, SE, conv_fc (bias), hard-swish.
    """

    def __init__(self, space: SearchSpace, merged: bool = False, **kwargs):
        super().__init__(**kwargs)
        c_last = space.stage_out_channels[-1]
        last = space.last_conv_channels
        variant = space.last_conv_variant
        act = "hswish" if space.use_se else "relu"
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            with self.features.name_scope():
                if variant == "lcap":
                    self.features.add(nn.GlobalAvgPool2D(prefix="pool_"))
                    self.features.add(nn.Conv2D(last, 1, use_bias=True, in_channels=c_last, prefix="conv_fc_"))
                    self.features.add(activation(act, "conv_fc_act_"))
                elif variant == "original":
                    self.features.add(ConvBN(c_last, last, 1, 1, "relu", False, merged, prefix="last_conv_"))
                    self.features.add(nn.GlobalAvgPool2D(prefix="pool_"))
                else:
                    mid = make_divisible(last * 0.75)
                    self.features.add(ConvBN(c_last, mid, 1, 1, "hswish", False, merged, prefix="last_conv_"))
                    self.features.add(nn.GlobalAvgPool2D(prefix="pool_"))
                    self.features.add(SqueezeExcite(mid, prefix="se_"))
                    self.features.add(nn.Conv2D(last, 1, use_bias=True, in_channels=mid, prefix="conv_fc_"))
                    self.features.add(HardSwish(prefix="conv_fc_act_"))
                self.features.add(nn.Dropout(0.2 if space.use_se else 0.1, prefix="dropout_"))
            self.classifier = nn.Conv2D(space.num_classes, 1, use_bias=True, in_channels=last, prefix="classifier_")
            self.flatten = nn.Flatten(prefix="flatten_")

    def hybrid_forward(self, F, x):
        return self.flatten(self.classifier(self.features(x)))


def position_prefix(index: int) -> str:
    return part_key(index) + "_"


class SposNet(HybridBlock):
    """A fixed architecture of the search space (what is trained, exported and deployed).

    ``merged=True`` builds the deployed form without BatchNorm (see :func:`spos_deploy.deploy.transforms.merge_bn`).
    ``crop=True`` (training only) runs large kernels on tiny inputs as their reachable central taps
    (:class:`spos_deploy.nets.blocks.CroppedConv2D`): same outputs and weights, much faster on CPU.
    """

    def __init__(self, spec: ModelSpec, merged: bool = False, crop: bool = False, **kwargs):
        kwargs.setdefault("prefix", "")
        super().__init__(**kwargs)
        self.spec = spec
        self.merged = merged
        space = spec.space
        with self.name_scope():
            self.stem = Stem(space, merged, prefix="stem_")
            self.features = nn.HybridSequential(prefix="")
            with self.features.name_scope():
                for pos, b, mid in zip(space.positions(), spec.block_choices, spec.mids):
                    block = ChoiceBlock(
                        pos, b, mid, spec.shuffle, merged=merged, crop=crop, prefix=position_prefix(pos.index)
                    )
                    self.features.add(block)
            self.head = Head(space, merged, prefix="head_")

    def hybrid_forward(self, F, x):
        return self.head(self.features(self.stem(x)))


def initialize_spos(net: mx.gluon.Block, seed: int | None = None, ctx: mx.Context | None = None) -> None:
    """Initialise as the SPOS recipe does: He-style normal for body convs, N(0, 0.01) for SE/fc/classifier.

    BN gamma 1, beta 0; the frozen shuffle kernels keep their permutation initialiser.
    """
    if seed is not None:
        mx.random.seed(seed)
    for name, p in net.collect_params().items():
        if name.endswith("weight") and len(p.shape) == 4 and "shuffle" not in name:
            if any(k in name for k in ("squeeze", "excite", "conv_fc", "classifier")):
                init = mx.init.Normal(0.01)
            else:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                init = mx.init.Normal((2.0 / fan_in) ** 0.5)
            p.initialize(init, ctx=ctx, force_reinit=True)
        else:  # biases, BN and the frozen shuffle kernels use their own initialisers
            p.initialize(default_init=mx.init.Zero(), ctx=ctx, force_reinit=True)


def build_subnet(spec: ModelSpec, seed: int | None = 0, ctx: mx.Context | None = None, crop: bool = False) -> SposNet:
    """Build and initialise the fixed network of ``spec`` (``crop``: the faster training form, same weights)."""
    net = SposNet(spec, crop=crop)
    initialize_spos(net, seed=seed, ctx=ctx)
    return net
