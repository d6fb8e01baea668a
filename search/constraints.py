"""Constraint checks from lookup tables: FLOPs and params (FLOPs table), MicroNet score (MicroNet table),
latency (latency table).

Pure numpy once the tables are loaded: a metric maps ``[N, L]`` block and channel choices to ``[N]``
values, so millions of candidates are checked per second, before any of them costs an evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spos_deploy.space import SearchSpace
from spos_deploy.tables.flops.table import FlopsTable
from spos_deploy.tables.micronet.build import build_micronet_table
from spos_deploy.tables.micronet.table import MicroNetTable, bits_factor

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


@functools.lru_cache(maxsize=8)
def _built_flops_table(space: SearchSpace) -> FlopsTable:
    """A FLOPs table built from graphs, once per configuration and process (about a second per 40 walks)."""
    from spos_deploy.tables.flops.build import build_flops_table

    return build_flops_table(space, progress=False)


@functools.lru_cache(maxsize=8)
def _micronet_table(space: SearchSpace, path: str | None) -> MicroNetTable:
    """The MicroNet table of ``space``: read from ``path``, or built from graphs once per process."""
    if path:
        return MicroNetTable.load(path, expect=space)
    return build_micronet_table(space, progress=False)


def metric_functions(
    space: SearchSpace,
    flops_table: str | None,
    latency_table: str | None,
    micronet_table: str | None = None,
    score_bits: int = 32,
    latency: Any = None,
    with_score: bool = False,
) -> dict[str, Any]:
    """Vectorized metrics of ``space``: ``flops`` and ``params`` (FLOPs table, built on the fly if none is
    given), ``latency_ms`` (a latency table path, or an already loaded ``latency``) and, with ``with_score``
    or a ``micronet_table`` path, ``score``: the MicroNet score at ``score_bits`` (its table is built from
    graphs on first use and cached in memory). The score is opt-in because callers such as the training
    sampler record every metric they get at every step.
    """
    ft = FlopsTable.load(flops_table, expect=space) if flops_table else _built_flops_table(space)
    bits_factor(score_bits)  # refuse an impossible precision now, not at first use

    def score(b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return _micronet_table(space, micronet_table).score(b, c, score_bits)

    out: dict[str, Any] = {"flops": lambda b, c: ft.count(b, c)[0], "params": lambda b, c: ft.count(b, c)[1]}
    if with_score or micronet_table:
        out["score"] = score
    if latency is not None:
        out["latency_ms"] = latency.predict
    elif latency_table:
        from spos_deploy.tables.latency.table import LatencyTable

        lt = LatencyTable.load(latency_table, expect_space=space)
        out["latency_ms"] = lt.predict
    return out
