"""Constraint checks from lookup tables: FLOPs and params (FLOPs table), latency (latency table).

Pure numpy once the tables are loaded: a metric maps ``[N, L]`` block and channel choices to ``[N]``
values, so millions of candidates are checked per second, before any of them costs an evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spos_deploy.flops_table import FlopsTable
from spos_deploy.space import SearchSpace

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Constraint:
    """Closed ranges on named metrics; a metric maps ``[N, L]`` blocks and channels to ``[N]`` values."""

    metrics: dict[str, Metric]
    bounds: dict[str, tuple[float, float]]

    def values(self, blocks: np.ndarray, channels: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(self.metrics[k](blocks, channels), float) for k in self.bounds}

    def inside(self, blocks: np.ndarray, channels: np.ndarray) -> np.ndarray:
        vals = self.values(blocks, channels)
        ok = np.ones(len(blocks), bool)
        for k, (lo, hi) in self.bounds.items():
            ok &= (vals[k] >= lo) & (vals[k] <= hi)
        return ok


def metric_functions(space: SearchSpace, flops_table: str | None, latency_table: str | None) -> dict[str, Any]:
    """FLOPs and params from a FLOPs table (built on the fly if none is given), latency from a latency table."""
    if flops_table:
        ft = FlopsTable.load(flops_table, expect=space)
    else:
        from spos_deploy.table_build import build_flops_table

        ft = build_flops_table(space, progress=False)
    out: dict[str, Any] = {"flops": lambda b, c: ft.count(b, c)[0], "params": lambda b, c: ft.count(b, c)[1]}
    if latency_table:
        from spos_deploy.latency_table import LatencyTable

        lt = LatencyTable.load(latency_table, expect_space=space)
        out["latency_ms"] = lt.predict
    return out
