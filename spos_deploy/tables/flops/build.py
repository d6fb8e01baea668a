"""Build FLOPs/params lookup tables by counting real Gluon graphs, one uniform network per (block, channel)."""

from __future__ import annotations

import numpy as np

from spos_deploy.counting.flops import count_by_owner
from spos_deploy.counting.graph import graph_ops, symbol_from_block
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import SposNet
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.build_common import uniform_networks
from spos_deploy.tables.flops.table import FlopsTable


def count_spec_parts(spec: ModelSpec) -> dict:
    """Counts per owner (stem, bNN, head) of a fixed subnet's graph at batch 1."""
    sym = symbol_from_block(SposNet(spec))
    size = spec.space.input_size
    return count_by_owner(graph_ops(sym, (1, 3, size, size)))


def build_flops_table(space: SearchSpace, progress: bool = True) -> FlopsTable:
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    flops = np.full((L, B, S), -1, dtype=np.int64)
    params = np.full((L, B, S), -1, dtype=np.int64)
    stem = head = None
    for b, c, spec, valid in uniform_networks(space, "flops table", progress):
        parts = count_spec_parts(spec)
        for p in valid:
            counts = parts[part_key(p.index)]
            flops[p.index, b, c], params[p.index, b, c] = counts.flops, counts.params
        stem, head = parts["stem"], parts["head"]
    return FlopsTable(space, stem.flops, stem.params, head.flops, head.params, flops, params)
