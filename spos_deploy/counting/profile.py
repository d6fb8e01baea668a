"""Profiles of networks: paper-convention counts, per-block counts and MicroNet rows, from one graph walk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx

from spos_deploy.counting.flops import count, count_by_owner
from spos_deploy.counting.graph import OpRecord, graph_ops, symbol_from_block
from spos_deploy.counting.micronet import MicroRow, by_block, micronet_rows, totals
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import SposNet
from spos_deploy.space import BLOCK_NAMES, part_key


@dataclass
class Profile:
    name: str
    input_size: int
    records: list[OpRecord]
    rows: list[MicroRow]
    unknown_ops: list[str]
    spec: ModelSpec | None = None
    flops: int = 0
    params: int = 0
    parts: dict[str, Any] = field(default_factory=dict)

    def micronet(self, bits: int = 32) -> dict[str, Any]:
        d = totals(self.rows, bits).as_dict()
        d["bits"] = bits
        d["quantizable"] = totals(self.rows, bits, quantizable=True).as_dict()
        d["not_quantizable"] = totals(self.rows, bits, quantizable=False).as_dict()
        return d

    def blocks(self) -> list[dict[str, Any]]:
        """One entry per searchable position (empty for networks outside the search space)."""
        if self.spec is None:
            return []
        out = []
        for pos, b, c, mid in zip(
            self.spec.space.positions(), self.spec.block_choices, self.spec.channel_choices, self.spec.mids
        ):
            counts = self.parts[part_key(pos.index)]
            out.append(
                {
                    "position": pos.index,
                    "block": b,
                    "block_name": BLOCK_NAMES[b],
                    "channel": c,
                    "scale": self.spec.space.channel_scales[c],
                    "mid_channels": mid,
                    "in_channels": pos.in_channels,
                    "out_channels": pos.out_channels,
                    "stride": pos.stride,
                    "input_size": pos.in_size,
                    "flops": counts.flops,
                    "params": counts.params,
                }
            )
        return out

    def block_rows(self, bits: int = 32) -> list[dict[str, Any]]:
        """MicroNet totals and paper counts per network part (stem, positions, head)."""
        micro = by_block(self.rows, bits)
        names = {}
        if self.spec is not None:
            for pos, b in zip(self.spec.space.positions(), self.spec.block_choices):
                names[part_key(pos.index)] = BLOCK_NAMES[b]
        out = []
        for part, t in micro.items():
            counts = self.parts.get(part)
            out.append(
                {
                    "part": part,
                    "block": names.get(part, ""),
                    "flops": counts.flops if counts else None,
                    "params": counts.params if counts else None,
                    "micronet_params": t.params,
                    "mults": t.mults,
                    "adds": t.adds,
                    "ops": t.ops,
                }
            )
        return out

    def to_json(self, bits: int = 32, include_ops: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "input_size": self.input_size,
            "flops": self.flops,
            "params": self.params,
            "micronet": self.micronet(bits),
            "blocks": self.blocks(),
        }
        if self.spec is not None:
            d["model"] = self.spec.to_json()
            d["stem"] = {"flops": self.parts["stem"].flops, "params": self.parts["stem"].params}
            d["head"] = {"flops": self.parts["head"].flops, "params": self.parts["head"].params}
        d["micronet_blocks"] = self.block_rows(bits)
        if include_ops:
            d["ops"] = [r.as_dict() for r in self.rows]
        if self.unknown_ops:
            d["uncounted_op_types"] = self.unknown_ops
        return d


def profile_symbol(sym: mx.sym.Symbol, input_size: int, name: str, spec: ModelSpec | None = None) -> Profile:
    records = graph_ops(sym, (1, 3, input_size, input_size))
    rows, unknown = micronet_rows(records)
    c = count(records)
    return Profile(
        name=name,
        input_size=input_size,
        records=records,
        rows=rows,
        unknown_ops=unknown,
        spec=spec,
        flops=c.flops,
        params=c.params,
        parts=dict(count_by_owner(records)),
    )


def profile_spec(spec: ModelSpec) -> Profile:
    """Profile the fixed subnet of ``spec`` (weights are not needed: counts depend on shapes only)."""
    return profile_symbol(symbol_from_block(SposNet(spec)), spec.space.input_size, spec.name, spec)


def _mobilenet_v2(multiplier: float) -> Callable[[], mx.gluon.HybridBlock]:
    def make() -> mx.gluon.HybridBlock:
        from gluoncv.model_zoo.mobilenet import get_mobilenet_v2

        return get_mobilenet_v2(multiplier)

    return make


def _zoo(name: str) -> Callable[[], mx.gluon.HybridBlock]:
    def make() -> mx.gluon.HybridBlock:
        from gluoncv.model_zoo import get_model

        return get_model(name, pretrained=False)

    return make


COMPARE_MODELS: dict[str, Callable[[], mx.gluon.HybridBlock]] = {
    "mobilenetv2_1.0": _mobilenet_v2(1.0),
    "mobilenetv2_1.4": _mobilenet_v2(1.4),
    "mobilenetv3_large": _zoo("mobilenetv3_large"),
    "mobilenetv3_small": _zoo("mobilenetv3_small"),
    "shufflenet_v2": _zoo("shufflenet_v2"),
    "shufflenet_v1": _zoo("shufflenet_v1"),
}


def profile_zoo(name: str, input_size: int = 224) -> Profile:
    """Profile a gluoncv model-zoo network, built without pretrained weights."""
    if name in COMPARE_MODELS:
        net = COMPARE_MODELS[name]()
    else:
        from gluoncv.model_zoo import get_model

        try:
            net = get_model(name, pretrained=False)
        except ValueError:
            known = ", ".join(COMPARE_MODELS)
            raise BadInputError(f"--compare: unknown model {name!r} (try {known} or any gluoncv model name)") from None
    return profile_symbol(symbol_from_block(net), input_size, name)
