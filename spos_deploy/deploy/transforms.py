"""Graph transforms on fixed subnets: merge BatchNorm into convs, switch the channel-shuffle form.

Both return a new network and leave the input untouched. Parameters are matched by their structural
names (``features.3.main.0.conv.weight``), which are identical across the forms by construction.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np

from spos_deploy.nets.blocks import shuffle_kernel
from spos_deploy.nets.network import SposNet

_CONV_W, _CONV_B, _BN = "conv.weight", "conv.bias", "bn."


def _bn_eps(net: SposNet) -> dict[str, float]:
    """Epsilon of every BatchNorm by its structural prefix (read from the layer, not assumed)."""
    eps: dict[str, float] = {}

    def walk(block: mx.gluon.Block, prefix: str) -> None:
        for name, child in block._children.items():
            path = f"{prefix}{name}"
            if isinstance(child, mx.gluon.nn.BatchNorm):
                eps[path + "."] = float(child._kwargs["eps"])
            walk(child, path + ".")

    walk(net, "")
    return eps


def merge_bn(net: SposNet, ctx: mx.Context | None = None) -> SposNet:
    """Fold every BatchNorm into the conv before it.

    ``W' = W s`` and ``b' = beta - mean s`` with ``s = gamma / sqrt(var + eps)``.

    The arithmetic runs in float64 and is rounded once to float32, so the merged network matches the
    original in inference mode to float rounding.
    """
    if net.merged:
        return net
    merged = SposNet(net.spec, merged=True)
    merged.initialize(ctx=ctx)
    src = net._collect_params_with_prefix()
    eps = _bn_eps(net)
    for key, p in merged._collect_params_with_prefix().items():
        base = (
            key[: -len(_CONV_W)] if key.endswith(_CONV_W) else key[: -len(_CONV_B)] if key.endswith(_CONV_B) else None
        )
        bn = f"{base}{_BN}" if base is not None else None
        if bn is not None and f"{bn}gamma" in src:
            gamma, beta, mean, var = (
                src[f"{bn}{n}"].data().asnumpy().astype(np.float64)
                for n in ("gamma", "beta", "running_mean", "running_var")
            )
            scale = gamma / np.sqrt(var + eps[bn[: -len(_BN)] + "bn."])
            if key.endswith(_CONV_W):
                w = src[key].data().asnumpy().astype(np.float64)
                p.set_data(mx.nd.array((w * scale.reshape(-1, 1, 1, 1)).astype(np.float32), ctx=ctx))
            else:
                p.set_data(mx.nd.array((beta - mean * scale).astype(np.float32), ctx=ctx))
        else:
            p.set_data(src[key].data().as_in_context(ctx or mx.cpu()))
    return merged


def set_shuffle_form(net: SposNet, form: str, ctx: mx.Context | None = None) -> SposNet:
    """The same network with its channel shuffles as ``reshape`` (reshape/transpose) or ``conv`` (1x1 permutation)."""
    if net.spec.shuffle == form:
        return net
    src = net._collect_params_with_prefix()
    for key, p in src.items():
        if "shuffle" in key:  # converting away from the conv form: it must still be the permutation
            w = p.data().asnumpy()
            if not np.array_equal(w, shuffle_kernel(w.shape[0])):
                raise ValueError(f"{p.name} is not the channel-shuffle permutation; cannot replace it by a reshape")
    out = SposNet(net.spec.with_(shuffle=form), merged=net.merged)
    out.initialize(ctx=ctx)
    for key, p in out._collect_params_with_prefix().items():
        if key in src:
            p.set_data(src[key].data().as_in_context(ctx or mx.cpu()))
    return out
