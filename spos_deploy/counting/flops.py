"""FLOPs and params in the SPOS paper convention, from graph op records (pure functions).

FLOPs: one per multiply-accumulate of every convolution / dense layer, plus one per output element of
their bias, plus one per input element of global average pooling (non-global pooling: one per
window element). BatchNorm, activations, the SE multiply, shuffle and concat are free.
Params: conv / dense weights and biases plus BN gamma and beta (running statistics are not learned);
the frozen shuffle-by-conv permutation kernel is not a parameter, and its conv is not counted,
so both shuffle forms count the same.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spos_deploy.space import owner

if TYPE_CHECKING:  # annotations only: the counting rules stay importable without MXNet
    from spos_deploy.counting.graph import OpRecord


def op_flops(r: OpRecord) -> int:
    batch = r.out_shape[0] if r.out_shape else 1
    if r.op == "Convolution":
        if r.is_shuffle:
            return 0
        spatial = math.prod(r.out_shape[2:])
        flops = spatial * math.prod(r.weight_shape()) * batch
        return flops + (math.prod(r.out_shape) if r.has_bias() else 0)
    if r.op == "Deconvolution":
        flops = math.prod(r.in_shape[2:]) * math.prod(r.weight_shape()) * batch
        return flops + (math.prod(r.out_shape) if r.has_bias() else 0)
    if r.op == "FullyConnected":
        flops = math.prod(r.weight_shape()) * batch
        return flops + (math.prod(r.out_shape) if r.has_bias() else 0)
    if r.op == "Pooling":
        if r.attr("global_pool", False):
            return math.prod(r.in_shape)
        return math.prod(r.out_shape) * math.prod(r.attr("kernel", (1,)))
    return 0


def op_params(r: OpRecord) -> int:
    if r.is_shuffle:
        return 0
    return sum(math.prod(s) for s in r.param_shapes.values())


@dataclass(frozen=True)
class Counts:
    flops: int
    params: int


def count(records: list[OpRecord]) -> Counts:
    return Counts(sum(op_flops(r) for r in records), sum(op_params(r) for r in records))


def count_by_owner(records: list[OpRecord]) -> OrderedDict[str, Counts]:
    """Counts per network part, in graph order (``stem``, ``b00`` ... ``bNN``, ``head``)."""
    flops: OrderedDict[str, int] = OrderedDict()
    params: OrderedDict[str, int] = OrderedDict()
    for r in records:
        k = owner(r.name)
        flops[k] = flops.get(k, 0) + op_flops(r)
        params[k] = params.get(k, 0) + op_params(r)
    return OrderedDict((k, Counts(flops[k], params[k])) for k in flops)
