"""Build FLOPs/params lookup tables by counting real Gluon graphs.

One uniform network per (block, channel) choice covers every position at once: its graph is split
by owner (``bNN``), so a 20-position, 4-block, 10-scale space needs 40 graph walks, not 800.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from spos_deploy.counting.flops import count_by_owner
from spos_deploy.counting.graph import graph_ops, symbol_from_block
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import SposNet
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.flops.table import FlopsTable


def count_spec_parts(spec: ModelSpec) -> dict:
    """Counts per owner (stem, bNN, head) of a fixed subnet's graph at batch 1."""
    sym = symbol_from_block(SposNet(spec))
    size = spec.space.input_size
    return count_by_owner(graph_ops(sym, (1, 3, size, size)))


def uniform_networks(
    space: SearchSpace, desc: str, progress: bool = True
) -> Iterator[tuple[int, int, ModelSpec, list]]:
    """(block, channel, spec, positions where that channel choice exists) for each uniform network.

    Where a scale gives no mid channels at a position (custom spaces), that position uses the widest choice;
    its entry stays invalid.
    """
    positions = space.positions()
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    jobs = [(b, c) for b in range(B) for c in range(S)]
    for b, c in tqdm(jobs, desc=desc, unit="choice", disable=not progress):
        valid = [p for p in positions if space.channel_valid(p, c)]
        channels = tuple(space.fix_channels([c] * L))
        yield b, c, ModelSpec(space=space, block_choices=(b,) * L, channel_choices=channels, name="table"), valid


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
