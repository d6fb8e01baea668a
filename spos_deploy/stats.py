"""Rank-agreement statistics: Kendall's tau-b, its bootstrap distribution and a one-sided permutation p-value.

Used wherever one ranking is judged against another: a lookup table's predictions against measured latency,
a supernet's accuracy estimates against stand-alone training. Pure numpy; :func:`kendall_tau` is scipy's
(imported when first called, so modules that only import this one stay light).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b rank correlation of ``x`` and ``y`` (ties handled; :func:`scipy.stats.kendalltau`).

    NaN where undefined: fewer than two items, or either ranking constant."""
    from scipy.stats import kendalltau

    return float(kendalltau(np.asarray(x, float), np.asarray(y, float)).statistic)


def kendall_tau_rows(x: Any, y: Any) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` against the same row of ``y`` (both ``(rows, n)``), ties handled;
    NaN where a row is constant. Vectorised over rows (one numpy pass over the ``n (n - 1) / 2`` pairs of
    every row): bootstrap and permutation tests need thousands of rows, which :func:`kendall_tau` would take
    one at a time."""
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    n = x.shape[1]
    if n < 2:
        return np.full(x.shape[0], np.nan)
    i, j = np.triu_indices(n, k=1)
    dx, dy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    n0 = len(i)
    denom = np.sqrt((n0 - (dx == 0).sum(1)) * (n0 - (dy == 0).sum(1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(1) / np.where(denom > 0, denom, 1), np.nan)


def kendall_tau_bootstrap(xs: dict[str, Any], y: Any, samples: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Kendall tau of every ``xs[name]`` against ``y`` on ``samples`` bootstrap resamples of the items.

    All names share the same resamples, so differences between them (is a ranker better than a proxy?) are
    paired. Resampling with replacement adds ties, which tau-b discounts."""
    y = np.asarray(y, float)
    idx = np.random.default_rng(seed).integers(0, len(y), (samples, len(y)))
    return {k: kendall_tau_rows(np.asarray(x, float)[idx], y[idx]) for k, x in xs.items()}


def kendall_tau_pvalue(x: Any, y: Any, samples: int = 2000, seed: int = 0) -> float:
    """One-sided permutation p-value of tau(x, y) under "no positive association": the share of random
    pairings of ``y`` with ``x`` whose tau reaches the observed one (counting the observed pairing itself)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    observed = kendall_tau(x, y)
    if math.isnan(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((samples, len(y))), axis=1)
    taus = kendall_tau_rows(np.broadcast_to(x, perms.shape), y[perms])
    return float((1 + (taus >= observed - 1e-12).sum()) / (samples + 1))
