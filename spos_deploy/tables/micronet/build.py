"""Build MicroNet lookup tables by profiling real Gluon graphs, one uniform network per (block, channel).

The framework imports happen inside :func:`build_micronet_table`: constraint checks import this module
to build a table on first use, and must stay importable (and fast to import) without MXNet.
"""

from __future__ import annotations

import numpy as np

from spos_deploy.errors import SposError
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.build_common import uniform_networks
from spos_deploy.tables.micronet.table import FIELDS, MicroNetTable


def _part_fields(rows: list) -> dict[str, np.ndarray]:
    """Sum MicroNet rows per owner into the four :data:`FIELDS`."""
    out: dict[str, np.ndarray] = {}
    for r in rows:
        v = out.setdefault(r.block, np.zeros(len(FIELDS)))
        if r.quantizable:
            v[0] += r.params
            v[2] += r.mults + r.adds
        else:
            v[1] += r.params
            v[3] += r.mults + r.adds
    return out


def build_micronet_table(space: SearchSpace, progress: bool = True) -> MicroNetTable:
    """Profile one uniform network per (block, channel) choice and split its MicroNet rows by owner."""
    from spos_deploy.counting.graph import graph_ops, symbol_from_block
    from spos_deploy.counting.micronet import micronet_rows
    from spos_deploy.nets.network import SposNet

    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    entries = np.full((L, B, S, len(FIELDS)), np.nan)
    stem = head = None
    size = space.input_size
    for b, c, spec, valid in uniform_networks(space, "micronet table", progress):
        rows, _ = micronet_rows(graph_ops(symbol_from_block(SposNet(spec)), (1, 3, size, size)))
        parts = _part_fields(rows)
        if "other" in parts:
            raise SposError("MicroNet rows outside stem, positions and head: the table would not be exact")
        for p in valid:
            entries[p.index, b, c] = parts[part_key(p.index)]
        stem, head = parts["stem"], parts["head"]
    return MicroNetTable(space, stem, head, entries)
