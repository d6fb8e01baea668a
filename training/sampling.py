"""Which paths the supernet trains on: block selection, channel-selection warm-up, constrained sampling.

Pure numpy. The uniform and the rejection sampler are search's (:mod:`search.sampling`): training and
search draw architectures the same way. Constraint metrics come from lookup tables
(:mod:`spos_deploy.tables.flops.table`, :mod:`spos_deploy.tables.latency.table`), so checking a candidate
costs microseconds.

* Block selection: every position draws a block uniformly, every step.
* Channel selection warm-up: before ``cs_start_epoch`` every block runs at its widest width; from then on
  the allowed channel choices widen from the largest scales down, on the seed project's schedule (or one
  step every ``pace`` epochs).
* Sandwich rule (BigNAS, slimmable networks): every step trains the widest and the narrowest allowed
  channels and ``random`` uniform paths, each with its own uniform blocks, so the narrow end of the space is
  trained on every step instead of once in ten; the widest path's predictions can teach the others
  (in-place distillation, in the trainer).
* Constrained sampling: by rejection, or by *strolling evolution*: the target region (a range of two
  metrics, e.g. FLOPs x params) is cut into a grid, every sample is aimed at the next cell in turn, and
  candidates mutate from earlier samples until one lands in that cell. Samples then cover the region
  evenly, where rejection sampling piles up wherever random paths happen to land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from spos_deploy.search.constraints import Constraint, metric_functions
from spos_deploy.search.sampling import RejectionSampler, UniformSampler

from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace

__all__ = [
    "Constraint",
    "PathSampler",
    "RejectionSampler",
    "StrollingEvolution",
    "UniformSampler",
    "PATH_RULES",
    "WarmupSchedule",
    "coverage_cv",
    "warmup_for",
]

# The seed project's warm-up: delay d(e) for e = epochs since channel selection started (OneShot layout,
# first-stage channels >= 64); scales allowed = ids [S - d - 2, S - 1]. Beyond the table, d = e.
SEED_DELAYS_ONESHOT = [0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8]
# ShuffleNetV2+ layout: the seed's table misses e = 26 (a KeyError there); 6 fills the gap.
SEED_DELAYS_V2PLUS = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5] + [6] * 15 + [7]

PATH_RULES = {
    "uniform": "one uniform path per step (the seed project's rule)",
    "sandwich": "the widest and the narrowest allowed channels plus uniform paths, every step (BigNAS)",
}
"""Which paths one supernet step trains: ``--path-rule``."""


@dataclass(frozen=True)
class WarmupSchedule:
    """Allowed channel choices per epoch: the widest choice alone before ``cs_start_epoch``, then the
    ``delay + 2`` widest scales (ranked by the space's scales, so the widest is the space's
    :attr:`~spos_deploy.space.SearchSpace.widest_choice`)."""

    space: SearchSpace
    cs_start_epoch: int = 0
    warmup: bool = True
    pace: int | None = None  # epochs per widening step; None: the seed project's schedule
    min_choice: int = 0  # 2 reproduces the seed's --ignore-first-two-cs
    v2plus_table: bool = False

    @property
    def num_scales(self) -> int:
        return self.space.num_scales

    def delay(self, e: int) -> int:
        if not self.warmup:
            return self.num_scales
        if self.pace is not None:
            return e // self.pace
        table = SEED_DELAYS_V2PLUS if self.v2plus_table else SEED_DELAYS_ONESHOT
        return table[e] if e < len(table) else e

    def allowed(self, epoch: int) -> np.ndarray:
        """Channel-choice ids allowed at ``epoch`` (0-based), narrowest first."""
        by_width = np.argsort(np.asarray(self.space.channel_scales), kind="stable")  # narrowest .. widest
        if epoch < self.cs_start_epoch:
            return np.array([self.space.widest_choice])
        start = max(self.min_choice, self.num_scales - self.delay(epoch - self.cs_start_epoch) - 2)
        return np.sort(by_width[min(start, self.num_scales - 1) :])


def warmup_for(
    space: SearchSpace, cs_start_epoch: int, warmup: bool = True, pace: int | None = None, min_choice: int = 0
) -> WarmupSchedule:
    return WarmupSchedule(
        space, cs_start_epoch, warmup, pace, min_choice, v2plus_table=space.stage_out_channels[0] < 64
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


def block_probabilities(weights: Sequence[float] | None, num_blocks: int, constraint: str) -> np.ndarray | None:
    """Sampling probabilities of the block types from relative weights (None: uniform). Only unconstrained
    sampling takes them: the constrained samplers decide their own distribution."""
    if weights is None:
        return None
    w = np.asarray(weights, float)
    if len(w) != num_blocks or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise BadInputError(f"--block-weights: expected {num_blocks} weights >= 0, not all 0; got {list(weights)}")
    if constraint != "none":
        raise BadInputError(f"--block-weights applies to unconstrained sampling, not to --constraint {constraint}")
    return w / w.sum()


class PathSampler:
    """Paths for supernet steps: uniform, or constrained (rejection / strolling evolution), warm-up aware.

    Uniform and rejection paths of step ``g`` come from a generator seeded with ``(seed, g)``, so a resumed
    run draws them again without state; strolling evolution carries a pool, whose state is checkpointed.
    """

    def __init__(
        self,
        space: SearchSpace,
        schedule: WarmupSchedule,
        seed: int,
        constraint: str = "none",
        bounds: dict[str, tuple[float, float]] | None = None,
        flops_table: str | None = None,
        latency_table: str | None = None,
        block_weights: tuple[float, ...] | None = None,
        path_rule: str = "uniform",
        sandwich_random: int = 1,
    ):
        if path_rule not in PATH_RULES:
            raise BadInputError(f"path rule {path_rule!r}: choose one of {', '.join(PATH_RULES)}")
        if path_rule == "sandwich" and (constraint != "none" or block_weights):
            raise BadInputError("--path-rule sandwich trains the whole space: drop --constraint and --block-weights")
        if sandwich_random < 0:
            raise BadInputError(f"--sandwich-random {sandwich_random}: give 0 or more uniform paths per step")
        self.path_rule, self.sandwich_random = path_rule, sandwich_random
        self.space, self.schedule, self.seed, self.mode = space, schedule, seed, constraint
        self.block_p = block_probabilities(block_weights, space.num_blocks, constraint)
        self.uniform = UniformSampler(space)
        self.metrics = metric_functions(space, flops_table, latency_table)
        self.evolution: StrollingEvolution | None = None
        bounds = dict(bounds or {})
        if constraint != "none":
            if not bounds:
                raise BadInputError(f"--constraint {constraint} needs bounds (e.g. --flops-range)")
            missing = [k for k in bounds if k not in self.metrics]
            if missing:
                raise BadInputError(f"no table for constraint(s) {missing}: pass --latency-table for latency_ms")
            self.constraint = Constraint(self.metrics, bounds)
        if constraint == "evolution":
            if len(bounds) != 2:
                raise BadInputError("--constraint evolution needs exactly two bounded metrics (e.g. FLOPs and params)")
            self.evo_rng = np.random.default_rng([seed, 7])
            self.evolution = StrollingEvolution(UniformSampler(self.uniform.gs, self.evo_rng), self.constraint)

    def sample(self, epoch: int, global_step: int) -> tuple[np.ndarray, np.ndarray]:
        allowed = self.schedule.allowed(epoch)
        if self.evolution is not None:
            return self.evolution.sample_one(allowed)
        base = UniformSampler(self.uniform.gs, np.random.default_rng([self.seed, global_step]))
        if self.mode == "random":
            b, c = RejectionSampler(base, self.constraint).sample(1, allowed)
        else:
            b, c = base.sample(1, allowed)
            if self.block_p is not None:  # drawn after the channels, from the same stream
                b = base.rng.choice(len(self.block_p), size=b.shape, p=self.block_p)
        return b[0], c[0]

    def step_paths(self, epoch: int, global_step: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The paths step ``global_step`` trains, by the path rule: the widest first under the sandwich rule
        (the in-place teacher of the others)."""
        if self.path_rule == "uniform":
            return [self.sample(epoch, global_step)]
        return self.sandwich(epoch, global_step)

    def sandwich(self, epoch: int, global_step: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Widest allowed channels, narrowest allowed channels, then ``sandwich_random`` uniform paths; every
        path with its own uniform blocks, all from a generator seeded by the step (a resumed run repeats it)."""
        allowed = self.schedule.allowed(epoch)
        base = UniformSampler(self.uniform.gs, np.random.default_rng([self.seed, global_step, 1]))
        blocks, channels = base.sample(2 + self.sandwich_random, allowed)
        mask = base.valid_mask(allowed)
        scales = np.broadcast_to(np.asarray(self.space.channel_scales, dtype=float), mask.shape)
        widest = np.where(mask, scales, -np.inf).argmax(axis=1)
        narrowest = np.where(mask, scales, np.inf).argmin(axis=1)
        return [(blocks[0], widest), (blocks[1], narrowest)] + [(blocks[i], channels[i]) for i in range(2, len(blocks))]

    def state(self) -> dict[str, Any]:
        if self.evolution is None:
            return {}
        ev = self.evolution
        return {
            "step": ev.state["step"],
            "dead": ev.state["dead"],
            "rng": self.evo_rng.bit_generator.state,
            "pool_b": None if ev.pool_b is None else ev.pool_b.tolist(),
            "pool_c": None if ev.pool_c is None else ev.pool_c.tolist(),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if self.evolution is None or not st:
            return
        ev = self.evolution
        ev.state["step"], ev.state["dead"] = st["step"], st["dead"]
        self.evo_rng.bit_generator.state = st["rng"]
        ev.pool_b = None if st["pool_b"] is None else np.array(st["pool_b"])
        ev.pool_c = None if st["pool_c"] is None else np.array(st["pool_c"])

    def describe(self, blocks: np.ndarray, channels: np.ndarray) -> dict[str, float]:
        return {k: float(f(blocks[None], channels[None])[0]) for k, f in self.metrics.items()}
