"""Which paths the supernet trains on: block selection, channel-selection warm-up, constrained sampling.

Pure numpy. Constraint metrics come from lookup tables (:mod:`spos_deploy.tables.flops.table`,
:mod:`spos_deploy.tables.latency.table`), so checking a candidate costs microseconds.

* Block selection: every position draws a block uniformly, every step.
* Channel selection warm-up: before ``cs_start_epoch`` every block runs at its widest width; from then on
  the allowed channel choices widen from the largest scales down, on the seed project's schedule (or one
  step every ``pace`` epochs).
* Constrained sampling: by rejection, or by *strolling evolution*: the target region (a range of two
  metrics, e.g. FLOPs x params) is cut into a grid, every sample is aimed at the next cell in turn, and
  candidates mutate from earlier samples until one lands in that cell. Samples then cover the region
  evenly, where rejection sampling piles up wherever random paths happen to land.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.constraints import Constraint
from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace

# The seed project's warm-up: delay d(e) for e = epochs since channel selection started (OneShot layout,
# first-stage channels >= 64); scales allowed = ids [S - d - 2, S - 1]. Beyond the table, d = e.
SEED_DELAYS_ONESHOT = [0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8]
# ShuffleNetV2+ layout: the seed's table misses e = 26 (a KeyError there); 6 fills the gap.
SEED_DELAYS_V2PLUS = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5] + [6] * 15 + [7]


@dataclass(frozen=True)
class WarmupSchedule:
    """Allowed channel choices per epoch."""

    num_scales: int
    cs_start_epoch: int = 0
    warmup: bool = True
    pace: int | None = None  # epochs per widening step; None: the seed project's schedule
    min_choice: int = 0  # 2 reproduces the seed's --ignore-first-two-cs
    v2plus_table: bool = False

    def delay(self, e: int) -> int:
        if not self.warmup:
            return self.num_scales
        if self.pace is not None:
            return e // self.pace
        table = SEED_DELAYS_V2PLUS if self.v2plus_table else SEED_DELAYS_ONESHOT
        return table[e] if e < len(table) else e

    def allowed(self, epoch: int) -> np.ndarray:
        """Channel-choice ids allowed at ``epoch`` (0-based)."""
        last = self.num_scales - 1
        if epoch < self.cs_start_epoch:
            return np.array([last])
        start = max(self.min_choice, self.num_scales - self.delay(epoch - self.cs_start_epoch) - 2)
        return np.arange(min(start, last), last + 1)


def warmup_for(
    space: SearchSpace, cs_start_epoch: int, warmup: bool = True, pace: int | None = None, min_choice: int = 0
) -> WarmupSchedule:
    return WarmupSchedule(
        space.num_scales, cs_start_epoch, warmup, pace, min_choice, v2plus_table=space.stage_out_channels[0] < 64
    )


class UniformSampler:
    """Uniform blocks, uniform channel choices among the allowed ones."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator):
        self.space, self.rng = space, rng

    def sample(self, n: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L = self.space.num_positions
        blocks = self.rng.integers(0, self.space.num_blocks, (n, L))
        channels = allowed[self.rng.integers(0, len(allowed), (n, L))]
        return blocks, channels


class RejectionSampler:
    """Draw uniform paths and keep those inside the constraint."""

    def __init__(self, base: UniformSampler, constraint: Constraint, batch: int = 512, max_batches: int = 200):
        self.base, self.constraint, self.batch, self.max_batches = base, constraint, batch, max_batches

    def sample(self, n: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got_b, got_c, have = [], [], 0
        for _ in range(self.max_batches):
            b, c = self.base.sample(self.batch, allowed)
            ok = self.constraint.inside(b, c)
            got_b.append(b[ok])
            got_c.append(c[ok])
            have += int(ok.sum())
            if have >= n:
                return np.concatenate(got_b)[:n], np.concatenate(got_c)[:n]
        raise BadInputError(
            f"constraints {self.constraint.bounds} are (nearly) impossible: {have} of "
            f"{self.batch * self.max_batches} random paths met them"
        )


@dataclass
class StrollingEvolution:
    """Even coverage of a 2-metric target region by evolving paths cell by cell.

    ``grid`` cuts each of the two constrained metrics into that many equal ranges; sample k aims at cell
    k mod (grid x grid), visited in a boustrophedon order (the "stroll"). Children come from crossover of
    two pool members closest to the cell plus per-gene mutation; the first child inside the cell is
    emitted and joins the pool. Cells no path can reach are dropped after ``give_up`` failures.
    """

    base: UniformSampler
    constraint: Constraint
    grid: int = 6
    pool_size: int = 64
    children_per_try: int = 64
    mutate: float = 0.1
    give_up: int = 30
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.constraint.bounds) != 2:
            raise ValueError("strolling evolution needs exactly two constrained metrics")
        self.keys = list(self.constraint.bounds)
        self.state.setdefault("step", 0)
        self.state.setdefault("dead", [])
        self.pool_b: np.ndarray | None = None
        self.pool_c: np.ndarray | None = None

    def cells(self) -> list[tuple[int, int]]:
        order = []
        for i in range(self.grid):
            row = range(self.grid) if i % 2 == 0 else range(self.grid - 1, -1, -1)
            order += [(i, j) for j in row]
        return [c for c in order if list(c) not in self.state["dead"]]

    def _cell_bounds(self, cell: tuple[int, int]) -> dict[str, tuple[float, float]]:
        out = {}
        for k, idx in zip(self.keys, cell):
            lo, hi = self.constraint.bounds[k]
            w = (hi - lo) / self.grid
            out[k] = (lo + idx * w, lo + (idx + 1) * w if idx < self.grid - 1 else hi)
        return out

    def _in(self, vals: dict[str, np.ndarray], bounds: dict[str, tuple[float, float]]) -> np.ndarray:
        ok = np.ones(len(next(iter(vals.values()))), bool)
        for k, (lo, hi) in bounds.items():
            ok &= (vals[k] >= lo) & (vals[k] <= hi)
        return ok

    def _seed_pool(self, allowed: np.ndarray) -> None:
        rej = RejectionSampler(self.base, self.constraint)
        self.pool_b, self.pool_c = rej.sample(self.pool_size, allowed)

    def _children(self, bounds: dict[str, tuple[float, float]], allowed: np.ndarray) -> tuple[np.ndarray, ...]:
        rng = self.base.rng
        assert self.pool_b is not None and self.pool_c is not None
        vals = self.constraint.values(self.pool_b, self.pool_c)
        centre = {k: (lo + hi) / 2 for k, (lo, hi) in bounds.items()}
        span = {k: self.constraint.bounds[k][1] - self.constraint.bounds[k][0] for k in self.keys}
        dist = sum(((vals[k] - centre[k]) / span[k]) ** 2 for k in self.keys)
        near = np.argsort(dist)[: max(4, len(dist) // 4)]
        n, L = self.children_per_try, self.pool_b.shape[1]
        ma, pa = rng.choice(near, n), rng.choice(near, n)
        pick = rng.random((n, L)) < 0.5
        b = np.where(pick, self.pool_b[ma], self.pool_b[pa])
        c = np.where(pick, self.pool_c[ma], self.pool_c[pa])
        mb, mc = rng.random((n, L)) < self.mutate, rng.random((n, L)) < self.mutate
        rb, rc = self.base.sample(n, allowed)
        c = np.where(np.isin(c, allowed), c, rc)  # warm-up may have narrowed the allowed choices
        return np.where(mb, rb, b), np.where(mc, rc, c)

    def sample_one(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.pool_b is None:
            self._seed_pool(allowed)
        cells = self.cells()
        if not cells:
            raise BadInputError(f"constraints {self.constraint.bounds}: no reachable part of the region")
        cell = cells[self.state["step"] % len(cells)]
        bounds = self._cell_bounds(cell)
        for _ in range(self.give_up):
            b, c = self._children(bounds, allowed)
            vals = self.constraint.values(b, c)
            hit = np.flatnonzero(self._in(vals, bounds))
            if hit.size:
                i = hit[0]
                self.pool_b = np.concatenate([self.pool_b[1:], b[i : i + 1]])
                self.pool_c = np.concatenate([self.pool_c[1:], c[i : i + 1]])
                self.state["step"] += 1
                return b[i], c[i]
            # no child there yet: let the nearest ones into the pool so the stroll moves towards the cell
            ok = np.flatnonzero(self.constraint.inside(b, c))
            if ok.size:
                k = ok[: max(1, ok.size // 4)]
                self.pool_b = np.concatenate([self.pool_b[len(k) :], b[k]])
                self.pool_c = np.concatenate([self.pool_c[len(k) :], c[k]])
        self.state["dead"].append(list(cell))
        return self.sample_one(allowed)

    def sample(self, n: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = [self.sample_one(allowed) for _ in range(n)]
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def coverage_cv(values: dict[str, np.ndarray], bounds: dict[str, tuple[float, float]], grid: int) -> float:
    """Coefficient of variation of sample counts over the grid cells of the region (0 = perfectly even)."""
    keys = list(bounds)
    idx = []
    for k in keys:
        lo, hi = bounds[k]
        idx.append(np.clip(((values[k] - lo) / (hi - lo) * grid).astype(int), 0, grid - 1))
    counts = np.zeros((grid,) * len(keys))
    np.add.at(counts, tuple(idx), 1)
    return float(counts.std() / counts.mean())
