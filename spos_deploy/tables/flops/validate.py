"""Check a FLOPs/params table against graph counts of random architectures: they must agree to the unit."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.tables.core import count_report, random_architectures
from spos_deploy.tables.flops.build import count_spec_parts
from spos_deploy.tables.flops.table import FlopsTable


def validate_flops_table(table: FlopsTable, samples: int, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Table counts vs whole-graph counts of ``samples`` random architectures (``exact`` when all agree)."""
    if samples < 1:
        raise BadInputError(f"samples must be >= 1, got {samples}")
    space = table.space
    blocks, channels = random_architectures(space, samples, seed)
    t_flops, t_params = table.count(blocks, channels)
    specs, g_flops, g_params = [], [], []
    for b, c in tqdm(list(zip(blocks, channels)), desc="graph counts", disable=not progress):
        spec = ModelSpec(space, tuple(map(int, b)), tuple(map(int, c)))
        parts = count_spec_parts(spec).values()
        specs.append(spec)
        g_flops.append(sum(p.flops for p in parts))
        g_params.append(sum(p.params for p in parts))
    report = count_report(
        {"flops": t_flops, "params": t_params}, {"flops": np.array(g_flops), "params": np.array(g_params)}
    )
    report["mismatches"] = [
        {"model": specs[i].to_json(), "graph": [g_flops[i], g_params[i]], "table": [int(t_flops[i]), int(t_params[i])]}
        for i in report.pop("mismatched")
    ]
    return {"kind": "flops", **report, "config": space.to_config()}
