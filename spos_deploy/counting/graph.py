"""Walk an MXNet symbol graph into plain op records (the only framework code the counters need).

Works on any symbol: our networks, gluoncv model-zoo networks, or an exported ``*-symbol.json``.
Each record carries the shapes and attributes that the pure counting rules in
:mod:`spos_deploy.counting.flops` and :mod:`spos_deploy.counting.micronet` use.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx

from spos_deploy.errors import BadInputError, short_message

_SHUFFLE_CONV = re.compile(r"(^|_)shuffle_conv(_|$)")


@dataclass
class OpRecord:
    """One operator of the graph with the shapes of its first data input and its (first) output."""

    name: str
    op: str
    attrs: dict[str, str]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_ops: list[str] = field(default_factory=list)  # op types producing the data inputs
    in_shapes: list[tuple[int, ...]] = field(default_factory=list)

    def attr(self, key: str, default: Any = None) -> Any:
        """Attribute parsed as a Python literal where possible (``"(3, 3)"`` -> ``(3, 3)``)."""
        if key not in self.attrs:
            return default
        raw = self.attrs[key]
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            if raw in ("True", "true"):
                return True
            if raw in ("False", "false"):
                return False
            return raw

    @property
    def is_shuffle(self) -> bool:
        """Channel shuffle written as a frozen 1x1 permutation conv (recognised by ``shuffle_conv`` in its name)."""
        return self.op == "Convolution" and _SHUFFLE_CONV.search(self.name) is not None

    def weight_shape(self) -> tuple[int, ...]:
        for k, v in self.param_shapes.items():
            if k.endswith("weight"):
                return v
        return ()

    def has_bias(self) -> bool:
        return any(k.endswith("bias") for k in self.param_shapes)


def symbol_from_block(block: mx.gluon.HybridBlock) -> mx.sym.Symbol:
    return block(mx.sym.var("data"))


def load_symbol(path: str) -> mx.sym.Symbol:
    try:
        return mx.sym.load(path)
    except mx.base.MXNetError as e:
        raise BadInputError(f"{path}: not a readable MXNet symbol file ({short_message(e)})") from None


def graph_ops(sym: mx.sym.Symbol, data_shape: tuple[int, ...], data_name: str = "data") -> list[OpRecord]:
    """All op nodes of ``sym`` in topological order, with inferred shapes.

    Parameters are the graph's variable inputs other than ``data_name``; auxiliary states (BN running
    statistics) are left out of ``param_shapes``: they are not learned.
    """
    internals = sym.get_internals()
    arg_shapes, out_shapes, aux_shapes = internals.infer_shape(**{data_name: data_shape})
    if out_shapes is None:
        raise BadInputError(f"cannot infer shapes of the graph for input {data_shape}")
    shape_of: dict[str, tuple[int, ...]] = dict(zip(internals.list_outputs(), map(tuple, out_shapes)))
    shape_of.update(zip(internals.list_arguments(), map(tuple, arg_shapes)))
    shape_of.update(zip(internals.list_auxiliary_states(), map(tuple, aux_shapes)))
    aux = set(internals.list_auxiliary_states())

    nodes = json.loads(sym.tojson())["nodes"]

    def out_name(nid: int, idx: int) -> str:
        node = nodes[nid]
        if node["op"] == "null":
            return node["name"]
        single = f"{node['name']}_output"
        if single in shape_of and idx == 0:
            return single
        return f"{node['name']}_output{idx}"

    records: list[OpRecord] = []
    for nid_self, node in enumerate(nodes):
        if node["op"] == "null":
            continue
        data_in: list[str] = []
        input_ops: list[str] = []
        params: dict[str, tuple[int, ...]] = {}
        for nid, idx, *_ in node["inputs"]:
            src = nodes[nid]
            name = out_name(nid, idx)
            if src["op"] == "null" and src["name"] != data_name:
                if src["name"] not in aux:
                    params[src["name"]] = shape_of[src["name"]]
                continue
            data_in.append(name)
            input_ops.append("data" if src["op"] == "null" else src["op"])
        in_shapes = [shape_of.get(n, ()) for n in data_in]
        records.append(
            OpRecord(
                name=node["name"],
                op=node["op"],
                attrs=dict(node.get("attrs", node.get("attr", {})) or {}),
                in_shape=in_shapes[0] if in_shapes else (),
                out_shape=shape_of.get(out_name(nid_self, 0), ()),
                param_shapes=params,
                input_ops=input_ops,
                in_shapes=in_shapes,
            )
        )
    return records
