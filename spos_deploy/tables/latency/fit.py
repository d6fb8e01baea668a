"""Per-choice latency entries fitted on whole networks: the additive form, right for small networks too.

An entry timed on its block alone carries a session call's fixed cost and misses what a whole network
shares (input binding, cache, the runtime's fusions across blocks); on networks of 0.1-0.3 ms those
effects are the latency, and a sum of parts plus one fitted line even predicts the widest network as the
fastest (docs/latency.md). Here the entries are instead the least-squares solution over whole networks
measured in their deployed form (:mod:`spos_deploy.runtime.deployed`), in the same additive form so a
prediction stays one table look-up per position:

    latency(blocks, channels) = fixed_ms + sum over positions l of entries[l, blocks[l], channels[l]]

* ``fixed_ms`` is an explicit per-network cost (the call, stem, head, input and output);
* every entry is free (non-negative, solved with bounds): latency is not monotone in width on a CPU. Measured
  2026-12-06 on a 2-core AMD EPYC, onnxruntime fp32, the small space, whole networks of one block type:
  all-SNB-5 0.60 ms at width choice 8 and 0.13 ms at the wider 9; widths whose mid channels are multiples
  of 16 (scales 1.0 and 2.0) run 2-4x faster than their unaligned neighbours. A table that forced entries
  to grow with width would be wrong exactly where a search can win;
* the part-timed entries are the prior, first moved to the whole networks' level (a fixed cost and one
  scale fitted on them, :func:`_scaled_prior`); a ridge term then pulls each entry towards it, with a
  strength chosen by K-fold cross-validation on the whole networks, so choices the networks rarely show keep
  their measured shape while the whole-network measurements correct what the parts got wrong;
* residuals are relative (each network's row divided by its latency): MAPE is what the fit is judged by.

Pure numpy and scipy: the fit of a 20-position table on 100 networks takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from spos_deploy.space import SearchSpace

RIDGE_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FOLDS = 5


@dataclass
class FittedEntries:
    """The fitted predictor: ``fixed_ms + sum of entries`` (NaN entries: choices that do not exist)."""

    entries: np.ndarray
    fixed_ms: float
    ridge: float
    cv_mape: float  # cross-validated MAPE (percent) at the chosen ridge


class _Design:
    """Maps (fixed, entries[l, b, c] of the choices that exist) parameters to entries and networks to rows."""

    def __init__(self, space: SearchSpace):
        self.L, self.B, self.S = space.num_positions, space.num_blocks, space.num_scales
        valid = np.array(space.valid_channels(), bool)  # [L, S]
        self.index = np.full((self.L, self.B, self.S), -1)
        mask = np.broadcast_to(valid[:, None, :], self.index.shape)
        self.index[mask] = 1 + np.arange(int(mask.sum()))
        self.size = 1 + int(mask.sum())

    def rows(self, blocks: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """``[N, size]``: network n's latency is ``rows[n] @ params``."""
        blocks, channels = np.atleast_2d(blocks), np.atleast_2d(channels)
        cols = self.index[np.arange(self.L)[None, :], blocks, channels]
        if np.any(cols < 0):
            raise ValueError("a channel choice that does not exist at its position")
        out = np.zeros((len(blocks), self.size))
        out[:, 0] = 1.0
        np.add.at(out, (np.repeat(np.arange(len(blocks)), self.L), cols.ravel()), 1.0)
        return out

    def params_of(self, entries: np.ndarray, fixed_ms: float) -> np.ndarray:
        x = np.zeros(self.size)
        x[0] = fixed_ms
        ok = self.index >= 0
        x[self.index[ok]] = np.clip(np.nan_to_num(entries[ok], nan=0.0), 0.0, None)
        return x

    def entries_of(self, x: np.ndarray) -> np.ndarray:
        out = np.full((self.L, self.B, self.S), np.nan)
        ok = self.index >= 0
        out[ok] = x[self.index[ok]]
        return out


def _solve(rows: np.ndarray, measured: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares on relative residuals plus ``ridge`` x relative distance to the prior; entries >= 0, the
    fixed cost free (the additive line's intercept can be negative)."""
    scale = float(np.median(measured))
    a = np.vstack([rows / measured[:, None], np.sqrt(ridge) * np.eye(len(prior)) / scale])
    y = np.concatenate([np.ones(len(measured)), np.sqrt(ridge) * prior / scale])
    lower = np.zeros(len(prior))
    lower[0] = -np.inf
    return lsq_linear(a, y, bounds=(lower, np.inf), method="bvls").x


def _scaled_prior(rows: np.ndarray, measured: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The prior moved to the whole networks' level: ``fixed + alpha * (sum of prior entries)`` fitted on
    relative residuals (the additive predictor's line, refitted on deployed measurements). Its shape is
    usually right and its level not (entries timed alone pay a call each); the ridge then pulls towards this."""
    sums = rows[:, 1:] @ prior[1:]
    a = np.stack([np.ones_like(sums), sums], axis=1) / measured[:, None]
    fixed, alpha = np.linalg.lstsq(a, np.ones(len(measured)), rcond=None)[0]
    if not alpha > 0:  # a level the networks cannot tell: scale alone
        fixed, alpha = 0.0, float(np.median(measured / np.maximum(sums, 1e-12)))
    out = prior * alpha
    out[0] = fixed
    return out


def _cv_mape(rows: np.ndarray, measured: np.ndarray, prior: np.ndarray, ridge: float, seed: int) -> float:
    folds = np.random.default_rng(seed).permutation(len(measured)) % FOLDS
    errs = []
    for f in range(FOLDS):
        held = folds == f
        x = _solve(rows[~held], measured[~held], _scaled_prior(rows[~held], measured[~held], prior), ridge)
        errs.append(np.abs(rows[held] @ x - measured[held]) / measured[held])
    return float(np.concatenate(errs).mean() * 100)


def fit_entries(
    space: SearchSpace,
    prior_entries: np.ndarray,
    prior_fixed_ms: float,
    blocks: Any,
    channels: Any,
    measured_ms: Any,
    ridge: float | None = None,
    seed: int = 0,
) -> FittedEntries:
    """Entries and fixed cost fitted on whole networks (``[N, L]`` choices, their deployed ms).

    ``prior_entries`` (``[L, B, S]``) and ``prior_fixed_ms`` are what the fit is pulled towards where the
    networks say little: the part-timed table, scaled by its correction. ``ridge`` None: chosen by
    cross-validation over :data:`RIDGE_GRID` (with fewer than ``2 * FOLDS`` networks, the grid's middle).
    """
    measured = np.asarray(measured_ms, float)
    if measured.ndim != 1 or len(measured) == 0 or np.any(~np.isfinite(measured)) or np.any(measured <= 0):
        raise ValueError("fit_entries needs positive, finite measured latencies")
    design = _Design(space)
    rows = design.rows(np.asarray(blocks), np.asarray(channels))
    prior = design.params_of(prior_entries, prior_fixed_ms)
    if ridge is None:
        if len(measured) < 2 * FOLDS:
            ridge, cv = RIDGE_GRID[len(RIDGE_GRID) // 2], float("nan")
        else:
            scores = {r: _cv_mape(rows, measured, prior, r, seed) for r in RIDGE_GRID}
            ridge = min(scores, key=scores.get)
            cv = scores[ridge]
    else:
        cv = _cv_mape(rows, measured, prior, ridge, seed) if len(measured) >= 2 * FOLDS else float("nan")
    x = _solve(rows, measured, _scaled_prior(rows, measured, prior), ridge)
    return FittedEntries(design.entries_of(x), float(x[0]), float(ridge), cv)
