"""Check a MicroNet table against op-by-op profiles of random architectures' graphs, at 32 and 8 bits."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.tables.core import count_report, random_architectures
from spos_deploy.tables.micronet.table import MicroNetTable

BITS = (32, 8)
REL_TOL = 1e-9
"""Entries are float sums taken in another order than the graph's: equal to rounding, not to the bit."""


def validate_micronet_table(table: MicroNetTable, samples: int, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Table vs profile (params, ops, score at each of :data:`BITS`) of ``samples`` random architectures."""
    from spos_deploy.counting.profile import profile_spec

    if samples < 1:
        raise BadInputError(f"samples must be >= 1, got {samples}")
    space = table.space
    blocks, channels = random_architectures(space, samples, seed)
    keys = [f"{q}_{bits}" for bits in BITS for q in ("score", "params", "ops")]
    from_table = {k: np.empty(samples) for k in keys}
    from_graph = {k: np.empty(samples) for k in keys}
    specs = []
    for i, (b, c) in enumerate(tqdm(list(zip(blocks, channels)), desc="graph profiles", disable=not progress)):
        spec = ModelSpec(space, tuple(map(int, b)), tuple(map(int, c)))
        specs.append(spec)
        prof = profile_spec(spec)
        for bits in BITS:
            t, g = table.counts(b, c, bits), prof.micronet(bits)
            for q in ("score", "params", "ops"):
                from_table[f"{q}_{bits}"][i], from_graph[f"{q}_{bits}"][i] = t[q], g[q]
    report = count_report(from_table, from_graph, REL_TOL)
    report["mismatches"] = [
        {
            "model": specs[i].to_json(),
            "graph": {k: from_graph[k][i] for k in keys},
            "table": {k: from_table[k][i] for k in keys},
        }
        for i in report.pop("mismatched")
    ]
    return {"kind": "micronet", **report, "config": space.to_config()}
