"""Candidates that meet the constraints, found before anything is evaluated.

Pure numpy over the lookup-table metrics of :mod:`search.constraints`. Every metric used as a constraint
(FLOPs, params, MicroNet score, predicted latency) is additive: a constant (stem, head, latency
correction) plus one entry per position. :func:`additive_form` recovers those entries from the metric
function itself (one vectorized call on L*B*S one-position changes of a base architecture), which gives:

* the exact smallest and largest value each metric can take (per-position minima and maxima), so a bound
  nothing can meet is reported at once, naming the constraint and what is achievable;
* a guided sampler for narrow but feasible boxes, used when uniform rejection sampling finds nothing.

:class:`ConstrainedSampler` draws uniform candidates and keeps those inside all bounds (the rejection
sampler of :mod:`search.sampling`), with a cap; only if the cap passes with too few hits does it also draw
around the cheapest and the most expensive architectures (each position keeps the extreme choice or is
redrawn, with a random redraw rate), which reaches the corners of the space that uniform draws practically
never visit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from spos_deploy.errors import BadInputError

from .constraints import Constraint
from .genes import GeneSpace, Phase
from .sampling import UniformSampler, reject

log = logging.getLogger(__name__)

REJECTION_CAP = 100_000  # uniform draws before the guided sampler takes over (and again for the guided one)


@dataclass
class AdditiveForm:
    """``metric(arch) == const + sum_l entries[l, block_l, channel_l]`` (``entries`` NaN where invalid)."""

    const: float
    entries: np.ndarray  # [L, B, S]

    def allowed(self, phase: Phase) -> np.ndarray:
        """The entries a phase can choose from (others NaN)."""
        e = self.entries.copy()
        L = e.shape[0]
        if phase.fixed_blocks is not None:
            keep = np.zeros(e.shape, bool)
            keep[np.arange(L), np.asarray(phase.fixed_blocks), :] = True
            e[~keep] = np.nan
        if phase.fixed_channels is not None:
            keep = np.zeros(e.shape, bool)
            keep[np.arange(L), :, np.asarray(phase.fixed_channels)] = True
            e[~keep] = np.nan
        return e

    def range(self, phase: Phase = Phase()) -> tuple[float, float]:
        """Exact smallest and largest value over the architectures of ``phase``."""
        e = self.allowed(phase).reshape(self.entries.shape[0], -1)
        return float(self.const + np.nanmin(e, axis=1).sum()), float(self.const + np.nanmax(e, axis=1).sum())


def additive_form(metric, gs: GeneSpace) -> AdditiveForm:
    """Per-position entries of an additive metric, from ``L * B * S + 1`` evaluations of the metric itself."""
    L, B, S = gs.num_positions, gs.num_blocks, gs.num_scales
    ids, _ = gs.channel_ids()
    base_b = np.zeros(L, np.int64)
    base_c = ids[:, 0].copy()  # any valid choice per position will do
    pos, blk, ch = (a.reshape(-1) for a in np.meshgrid(np.arange(L), np.arange(B), np.arange(S), indexing="ij"))
    valid = gs.valid_channels[pos, ch]
    blocks = np.tile(base_b, (len(pos), 1))
    channels = np.tile(base_c, (len(pos), 1))
    rows = np.arange(len(pos))
    blocks[rows, pos] = blk
    channels[rows, pos] = np.where(valid, ch, base_c[pos])
    base = float(np.asarray(metric(base_b[None], base_c[None]), float)[0])
    vals = np.asarray(metric(blocks, channels), float) - base
    entries = np.where(valid, vals, np.nan).reshape(L, B, S)
    return AdditiveForm(base, entries)


NAMES = {"flops": "FLOPs", "params": "parameters", "score": "MicroNet score", "latency_ms": "predicted latency"}


def fmt_value(metric: str, v: float) -> str:
    if metric in ("flops", "params"):
        return f"{v:,.0f}"
    if metric == "latency_ms":
        return f"{v:.4g} ms"
    return f"{v:.6g}"


class ConstrainedSampler:
    """Uniform candidates inside the constraint's bounds (rejection, then guided sampling), never outside.

    ``labels`` names each bounded metric as the user gave it (``{"flops": "--flops-range"}``) for errors.
    """

    def __init__(
        self,
        gs: GeneSpace,
        constraint: Constraint,
        labels: dict[str, str] | None = None,
        cap: int = REJECTION_CAP,
    ):
        self.gs, self.constraint, self.cap = gs, constraint, cap
        self.labels = labels or {}
        self.uniform = UniformSampler(gs)
        self._forms: dict[str, AdditiveForm] = {}

    def form(self, metric: str) -> AdditiveForm:
        if metric not in self._forms:
            self._forms[metric] = additive_form(self.constraint.metrics[metric], self.gs)
        return self._forms[metric]

    def ranges(self, phase: Phase = Phase()) -> dict[str, tuple[float, float]]:
        """Achievable [min, max] of every bounded metric within ``phase``."""
        return {k: self.form(k).range(phase) for k in self.constraint.bounds}

    def inside(self, blocks: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """``[N]``: valid genes and every bound met (the check every candidate passes before evaluation)."""
        if len(blocks) == 0:
            return np.zeros(0, bool)
        ok = self.gs.is_valid(blocks, channels)
        if self.constraint.bounds:
            ok &= self.constraint.inside(blocks, channels)
        return ok

    def check_bounds(self, phase: Phase = Phase()) -> None:
        """Refuse a bound that no architecture of ``phase`` can meet, naming it and the achievable extreme."""
        for metric, (lo, hi) in self.constraint.bounds.items():
            amin, amax = self.form(metric).range(phase)
            label = self.labels.get(metric, metric)
            tol = 1e-9 * max(1.0, abs(amin), abs(amax))
            if amin > hi + tol:
                raise BadInputError(
                    f"{label}: no architecture has {NAMES.get(metric, metric)} at or below {fmt_value(metric, hi)}; "
                    f"the smallest achievable is {fmt_value(metric, amin)}"
                )
            if amax < lo - tol:
                raise BadInputError(
                    f"{label}: no architecture has {NAMES.get(metric, metric)} at or above {fmt_value(metric, lo)}; "
                    f"the largest achievable is {fmt_value(metric, amax)}"
                )

    # ---- sampling -----------------------------------------------------------------------------------------
    def _anchors(self, phase: Phase) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cheapest and most expensive architectures of ``phase`` by the summed, range-normalised metrics."""
        gs = self.gs
        total = np.zeros((gs.num_positions, gs.num_blocks, gs.num_scales))
        for k in self.constraint.bounds:
            f = self.form(k)
            amin, amax = f.range(phase)
            total = total + f.allowed(phase) / max(amax - amin, 1e-12)
        flat = total.reshape(gs.num_positions, -1)
        lo = np.nanargmin(flat, axis=1)
        hi = np.nanargmax(flat, axis=1)
        S = gs.num_scales
        return lo // S, lo % S, hi // S, hi % S

    def _guided(self, rng: np.random.Generator, n: int, phase: Phase) -> tuple[np.ndarray, np.ndarray]:
        """Draws around the cheapest / most expensive architecture with a random per-candidate redraw rate."""
        lo_b, lo_c, hi_b, hi_c = self._anchors(phase)
        L = self.gs.num_positions
        use_hi = rng.random(n) < 0.5
        rate = rng.random(n)
        redraw = rng.random((n, L)) < rate[:, None]
        rb, rc = self.uniform.draw(rng, n, phase=phase)
        ab = np.where(use_hi[:, None], hi_b[None, :], lo_b[None, :])
        ac = np.where(use_hi[:, None], hi_c[None, :], lo_c[None, :])
        return phase.apply(np.where(redraw, rb, ab), np.where(redraw, rc, ac))

    def sample(
        self,
        rng: np.random.Generator,
        n: int,
        phase: Phase = Phase(),
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` distinct candidates inside the bounds whose keys are not in ``exclude``, in draw order.

        Fewer than ``n`` come back only when the space (or the box) has no more new candidates to find
        within the caps. If no candidate inside the bounds exists at all, a one-line error says so.
        """
        self.check_bounds(phase)
        batch = max(256, 4 * n)
        got_b: list[np.ndarray] = []
        got_c: list[np.ndarray] = []
        seen = set(exclude)
        any_inside = False
        for draw in (self._uniform, self._guided):
            got = reject(lambda k, d=draw: d(rng, k, phase), self.inside, n - len(got_b), batch, self.cap, seen)
            got_b += got.blocks
            got_c += got.channels
            any_inside |= got.any_accepted
            if len(got_b) >= n or not self.constraint.bounds:
                break
            log.info(
                "%d of %d uniform samples were new and inside the constraints: sampling around the extremes",
                len(got_b),
                got.drawn,
            )
        if not any_inside:
            ranges = "; ".join(
                f"{self.labels.get(k, k)} achievable {fmt_value(k, a)}..{fmt_value(k, b)}"
                for k, (a, b) in self.ranges(phase).items()
            )
            raise BadInputError(
                f"no architecture meets all constraints together ({2 * self.cap} samples tried; each alone is "
                f"achievable: {ranges})"
            )
        L = self.gs.num_positions
        if not got_b:
            return np.zeros((0, L), np.int64), np.zeros((0, L), np.int64)
        return np.array(got_b), np.array(got_c)

    def _uniform(self, rng: np.random.Generator, n: int, phase: Phase) -> tuple[np.ndarray, np.ndarray]:
        return self.uniform.draw(rng, n, phase=phase)
