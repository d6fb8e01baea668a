"""MicroNet op-by-op counting (pure functions over graph op records).

The rules start from the MicroNet Challenge 2019 (ImageNet track) scoring and are written down,
with the reasons, in ``docs/counting.md``. In short, per op (N = output elements):

* conv / dense, dot products of length n: n mults and n-1 adds per output (+1 add with a bias);
  quantizable. Depthwise and grouped convs use their own n.
* BatchNorm after a conv or dense: folded into it, free (the folded shift becomes the initial value of
  the accumulator). Any other BN: 1 mult + 1 add per element.
* ReLU: 1 mult per element (a comparison, tracked as a multiplication); quantizable.
* clip / ReLU6: 2 comparisons = 2 mults. hard-sigmoid = 1 mult (x/6) + 1 add (+0.5) + clip = 3 mults,
  1 add. hard-swish = hard-sigmoid + 1 mult. Not quantizable.
* SE: global pooling (C mults for the divisions, (HW-1)C adds), its two biased 1x1 convs, ReLU,
  hard-sigmoid, and the channel-wise multiply: 1 mult per element (the seed project left it out).
* Channel shuffle (either form): a 1x1 conv with (C-1)/C sparsity: H*W*C mults, 0 adds, C non-zero
  parameters plus a C*C bitmask; not quantizable.
* elementwise add/mul: 1 add/mult per element; reshape, transpose, slice, concat, flatten, dropout: free.

Storage: a parameter at full precision is 1; a mask bit is 1/16 of a parameter (a 16-bit word, the
challenge's storage unit for unquantized entries). At ``bits`` < 32, quantizable ops' parameters,
mults and adds are scaled by bits/32; other ops stay at full precision.
Score = params / 6.9e6 + (mults + adds) / 1170e6 (MobileNetV2-1.4 reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from spos_deploy.space import owner

if TYPE_CHECKING:  # annotations only: the counting rules stay importable without MXNet
    from spos_deploy.counting.graph import OpRecord

REF_PARAMS = 6.9e6
REF_OPS = 1170e6
MASK_BIT = 1.0 / 16

_FREE = {
    "Reshape",
    "reshape",
    "transpose",
    "SwapAxis",
    "slice",
    "slice_axis",
    "slice_like",
    "Concat",
    "concat",
    "Flatten",
    "flatten",
    "Dropout",
    "_copy",
    "identity",
    "BlockGrad",
    "stop_gradient",
    "expand_dims",
    "squeeze",
    "Cast",
    "_contrib_quantize_v2",
}
_ELEM_ADD = {"elemwise_add", "_plus", "_add", "broadcast_add", "elemwise_sub", "_minus", "_sub", "broadcast_sub"}
_ELEM_MUL = {"elemwise_mul", "_mul", "broadcast_mul", "elemwise_div", "_div", "broadcast_div"}
_SCALAR_ADD = {"_plus_scalar", "_minus_scalar", "_rminus_scalar"}
_SCALAR_MUL = {"_mul_scalar", "_div_scalar", "_rdiv_scalar"}


@dataclass
class MicroRow:
    """One profiled op: counts at full precision (scale with :func:`at_bits`)."""

    name: str
    block: str
    kind: str
    quantizable: bool
    inp_size: int
    kernel: int
    cin: int
    cout: int
    params: float
    mults: int
    adds: int

    @property
    def ops(self) -> int:
        return self.mults + self.adds

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mflops"] = self.ops / 1e6
        return d


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if shape else 0  # per image (batch excluded)


def _size(shape: tuple[int, ...]) -> int:
    return shape[2] if len(shape) >= 3 else 1


def _conv_row(r: OpRecord) -> MicroRow:
    w = r.weight_shape()
    cout, cin_g = w[0], w[1]
    k = w[2] if len(w) > 2 else 1
    groups = int(r.attr("num_group", 1))
    cin = cin_g * groups
    n = math.prod(w[1:])
    nout = _elements(r.out_shape)
    bias = r.has_bias()
    return MicroRow(
        name=r.name,
        block=owner(r.name),
        kind="dwconv" if groups > 1 and groups == cin else "conv",
        quantizable=True,
        inp_size=_size(r.in_shape),
        kernel=k,
        cin=cin,
        cout=1 if groups > 1 and groups == cin else cout,
        params=math.prod(w) + (cout if bias else 0),
        mults=n * nout,
        adds=(n - 1) * nout + (nout if bias else 0),
    )


def _shuffle_row(name: str, channels: int, size: int) -> MicroRow:
    return MicroRow(
        name=name,
        block=owner(name),
        kind="shuffle",
        quantizable=False,
        inp_size=size,
        kernel=1,
        cin=channels,
        cout=channels,
        params=channels + channels * channels * MASK_BIT,
        mults=size * size * channels,
        adds=0,
    )


def _elementwise_row(r: OpRecord, kind: str, mults: int, adds: int, quantizable: bool = False) -> MicroRow:
    n = _elements(r.out_shape)
    c = r.out_shape[1] if len(r.out_shape) > 1 else 1
    return MicroRow(r.name, owner(r.name), kind, quantizable, _size(r.out_shape), -1, c, c, 0, mults * n, adds * n)


# ---- the rules: one small function per op type, looked up by op -------------------------------------
Rule = Callable[["OpRecord"], "MicroRow | None"]
"""Counts one op: its row, or ``None`` when the op is free (folded, or pure data movement)."""

RULES: dict[str, Rule] = {}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the rule of ``ops`` (each op type has exactly one rule)."""

    def register(fn: Rule) -> Rule:
        for op in ops:
            if op in RULES:
                raise ValueError(f"op {op!r} has two MicroNet rules")
            RULES[op] = fn
        return fn

    return register


def _elementwise(kind: str, mults: int, adds: int, quantizable: bool = False) -> Rule:
    """A rule for ops costing ``mults``/``adds`` per output element."""
    return lambda r: _elementwise_row(r, kind, mults, adds, quantizable)


@rule("Convolution")
def _convolution(r: OpRecord) -> MicroRow:
    return _shuffle_row(r.name, r.out_shape[1], _size(r.out_shape)) if r.is_shuffle else _conv_row(r)


@rule("transpose", "SwapAxis")
def _transpose(r: OpRecord) -> MicroRow | None:
    """The reshape-transpose-reshape channel shuffle: (N, C/2, 2, H, W) after the transpose; else free."""
    if len(r.out_shape) != 5:
        return None
    return _shuffle_row(r.name, r.out_shape[1] * r.out_shape[2], r.out_shape[3])


@rule("FullyConnected")
def _dense(r: OpRecord) -> MicroRow:
    w = r.weight_shape()
    bias = w[0] if r.has_bias() else 0
    params = math.prod(w) + bias
    return MicroRow(
        r.name, owner(r.name), "dense", True, 1, 1, w[1], w[0], params, w[0] * w[1], (w[1] - 1) * w[0] + bias
    )


@rule("Pooling")
def _pooling(r: OpRecord) -> MicroRow:
    c, size = r.in_shape[1], _size(r.in_shape)
    if r.attr("global_pool", False):
        hw = math.prod(r.in_shape[2:])
        return MicroRow(r.name, owner(r.name), "gap", False, size, -1, c, c, 0, c, (hw - 1) * c)
    kk = math.prod(r.attr("kernel", (1,)))
    nout = _elements(r.out_shape)
    if r.attr("pool_type", "max") == "avg":
        return MicroRow(r.name, owner(r.name), "avgpool", False, size, -1, c, c, 0, nout, (kk - 1) * nout)
    return MicroRow(r.name, owner(r.name), "maxpool", False, size, -1, c, c, 0, (kk - 1) * nout, 0)


@rule("BatchNorm")
def _batchnorm(r: OpRecord) -> MicroRow | None:
    if r.input_ops and r.input_ops[0] in ("Convolution", "FullyConnected"):
        return None  # folded into the conv / dense before it
    return _elementwise_row(r, "batchnorm", 1, 1)


_ACTIVATIONS = {
    "relu": _elementwise("relu", 1, 0, quantizable=True),
    "sigmoid": _elementwise("sigmoid", 2, 1),
    "tanh": _elementwise("tanh", 3, 2),
    "softrelu": _elementwise("softrelu", 2, 1),
}


@rule("Activation", "relu", "LeakyReLU")
def _activation(r: OpRecord) -> MicroRow:
    act = r.attr("act_type", "relu")
    # leaky / prelu / elu: a comparison and a scale
    return _ACTIVATIONS.get(act, _elementwise(act, 2, 0))(r)


@rule("add_n", "ElementWiseSum")
def _add_n(r: OpRecord) -> MicroRow:
    return _elementwise_row(r, "add", 0, max(len(r.in_shapes) - 1, 0))


rule("sigmoid")(_elementwise("sigmoid", 2, 1))
rule("hard_sigmoid")(_elementwise("hsigmoid", 3, 1))
rule("clip")(_elementwise("clip", 2, 0))
rule(*_ELEM_MUL)(_elementwise("mul", 1, 0))
rule(*_ELEM_ADD)(_elementwise("add", 0, 1))
rule(*_SCALAR_MUL)(_elementwise("scale", 1, 0))
rule(*_SCALAR_ADD)(_elementwise("shift", 0, 1))
rule(*(_FREE - set(RULES)))(lambda r: None)


def micronet_rows(records: list[OpRecord]) -> tuple[list[MicroRow], list[str]]:
    """Rows for every op that costs something, and the op types that had no rule (counted as free)."""
    rows: list[MicroRow] = []
    unknown: set[str] = set()
    for r in records:
        fn = RULES.get(r.op)
        if fn is None:
            unknown.add(r.op)
        elif (row := fn(r)) is not None:
            rows.append(row)
    return rows, sorted(unknown)


def at_bits(row: MicroRow, bits: int) -> tuple[float, float, float]:
    """(params, mults, adds) of a row at ``bits`` precision (only quantizable ops shrink)."""
    f = bits / 32 if row.quantizable and bits < 32 else 1.0
    return row.params * f, row.mults * f, row.adds * f


@dataclass
class MicroTotals:
    params: float
    mults: float
    adds: float

    @property
    def ops(self) -> float:
        return self.mults + self.adds

    @property
    def score(self) -> float:
        return self.params / REF_PARAMS + self.ops / REF_OPS

    def as_dict(self) -> dict:
        return {
            "params": self.params,
            "mults": self.mults,
            "adds": self.adds,
            "ops": self.ops,
            "score": self.score,
        }


def totals(rows: list[MicroRow], bits: int = 32, quantizable: bool | None = None) -> MicroTotals:
    """Totals at ``bits``; ``quantizable`` True/False restricts to those rows (Total_quant / no_quant)."""
    p = m = a = 0.0
    for row in rows:
        if quantizable is not None and row.quantizable != quantizable:
            continue
        rp, rm, ra = at_bits(row, bits)
        p, m, a = p + rp, m + rm, a + ra
    return MicroTotals(p, m, a)


def by_block(rows: list[MicroRow], bits: int = 32) -> dict[str, MicroTotals]:
    """Totals per network part (stem, b00 ..., head) in graph order."""
    out: dict[str, MicroTotals] = {}
    for row in rows:
        t = out.setdefault(row.block, MicroTotals(0.0, 0.0, 0.0))
        rp, rm, ra = at_bits(row, bits)
        t.params += rp
        t.mults += rm
        t.adds += ra
    return out
