"""Build FLOPs/params lookup tables by counting real Gluon graphs.

One uniform network per (block, channel) choice covers every position at once: its graph is split
by owner (``bNN``), so a 20-position, 4-block, 10-scale space needs 40 graph walks, not 800.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .counting import count_by_owner
from .flops_table import FlopsTable
from .graph import graph_ops, symbol_from_block
from .model_spec import ModelSpec
from .network import SposNet
from .space import SearchSpace


def count_spec_parts(spec: ModelSpec) -> dict:
    """Counts per owner (stem, bNN, head) of a fixed subnet's graph at batch 1."""
    sym = symbol_from_block(SposNet(spec))
    size = spec.space.input_size
    return count_by_owner(graph_ops(sym, (1, 3, size, size)))


def build_flops_table(space: SearchSpace, progress: bool = True) -> FlopsTable:
    positions = space.positions()
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    flops = np.full((L, B, S), -1, dtype=np.int64)
    params = np.full((L, B, S), -1, dtype=np.int64)
    fallback = int(np.argmax(space.channel_scales))
    stem = head = None
    jobs = [(b, c) for b in range(B) for c in range(S)]
    for b, c in tqdm(jobs, desc="flops table", unit="choice", disable=not progress):
        valid = [space.mid(p, c) >= 1 for p in positions]
        channels = tuple(c if ok else fallback for ok in valid)
        spec = ModelSpec(space=space, block_choices=(b,) * L, channel_choices=channels, name="table")
        parts = count_spec_parts(spec)
        for p, ok in zip(positions, valid):
            if ok:
                counts = parts[f"b{p.index:02d}"]
                flops[p.index, b, c], params[p.index, b, c] = counts.flops, counts.params
        stem, head = parts["stem"], parts["head"]
    return FlopsTable(space, stem.flops, stem.params, head.flops, head.params, flops, params)
