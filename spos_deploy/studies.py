"""What the benchmark studies (``benchmarks/``) decide with, kept in the library so that it is tested as such:
how far architectures stand apart beyond the seed noise of their training.

Rank statistics (Kendall tau, its bootstrap and p-value) live with the other ranking statistics
(:mod:`spos_deploy.stats`); the stand-alone trainings themselves are :mod:`spos_deploy.training.subnets`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def separability(means: Sequence[float], noise_std: float | None, seeds: int) -> dict[str, float] | None:
    """How far apart the architectures are beyond the seed noise of the stand-alone recipe.

    ``means``: each architecture's top-1 averaged over ``seeds`` trainings; ``noise_std``: the std of one
    training across seeds. The variance of the means is the architectures' own variance plus noise_std^2 / seeds:
    ``f_ratio`` is their ratio to the noise part alone (about 1 when the architectures do not differ), and
    ``reliability`` the architectures' share of it. Against means this noisy even a perfect proxy correlates at
    most sqrt(reliability), which for normal errors caps Kendall's tau at 2/pi arcsin(sqrt(reliability)):
    ``tau_ceiling``, the tau the measurement can show at all.
    """
    if noise_std is None or len(means) < 2 or noise_std <= 0:
        return None
    var_means = float(np.var(means, ddof=1))
    noise_var = noise_std**2 / seeds
    own = max(0.0, var_means - noise_var)
    reliability = own / var_means if var_means > 0 else 0.0
    return {
        "architecture_std": float(np.sqrt(own)),
        "f_ratio": var_means / noise_var,
        "reliability": reliability,
        "tau_ceiling": float(2 / np.pi * np.arcsin(np.sqrt(reliability))),
    }


def pooled_seed_std(accs: Sequence[Sequence[float]]) -> tuple[float, int] | None:
    """The std of one training's top-1 across seeds, pooled over architectures, and its degrees of freedom.

    Pooled because the seed noise is a property of the recipe, not of one architecture: with 3 seeds each, one
    architecture's own std is too rough to test with, the pool of all of them is not. None with one seed."""
    groups = [np.asarray(a, float) for a in accs if len(a) > 1]
    if not groups:
        return None
    df = sum(len(g) - 1 for g in groups)
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
    return float(np.sqrt(ss / df)), df


def lead_test(a: Sequence[float], b: Sequence[float], noise: tuple[float, int] | None) -> dict[str, float] | None:
    """Does architecture ``a`` train better than ``b``? Their per-seed top-1, the lead of the means, its standard
    error from the pooled seed noise ``(std, df)`` (:func:`pooled_seed_std`), and the one-sided p of a t-test with
    those degrees of freedom (H0: ``a`` is no better). None without a noise estimate."""
    from scipy.stats import t as student_t

    if noise is None or noise[0] <= 0:
        return None
    std, df = noise
    lead = float(np.mean(a) - np.mean(b))
    se = std * float(np.sqrt(1 / len(a) + 1 / len(b)))
    return {"lead": lead, "se": se, "t": lead / se, "df": df, "p": float(student_t.sf(lead / se, df))}


def median_lead_pvalue(
    a: Sequence[float], others: Sequence[Sequence[float]], samples: int = 10000, seed: int = 0
) -> dict[str, float]:
    """Does ``a`` beat the median architecture of a random draw? A two-level bootstrap: each resample draws
    the architectures again (with replacement) and, for each, its seeds again, and ``a``'s seeds again; the
    lead is ``a``'s mean minus the median of the others' means. Returns the observed lead, the share of
    resamples where it is <= 0 (the one-sided p), and the 95 % interval of the lead.

    Why not a t-test against the median one: which random architecture is the median is itself decided by seed
    noise and by which architectures were drawn; the resampling carries both."""
    rng = np.random.default_rng(seed)
    a_arr = np.asarray(a, float)
    groups = [np.asarray(o, float) for o in others]
    observed = float(a_arr.mean() - np.median([g.mean() for g in groups]))
    a_means = a_arr[rng.integers(0, len(a_arr), (samples, len(a_arr)))].mean(axis=1)
    picks = rng.integers(0, len(groups), (samples, len(groups)))
    # every architecture's seeds resampled once per resample, used wherever that resample draws it
    g_means = np.stack([g[rng.integers(0, len(g), (samples, len(g)))].mean(axis=1) for g in groups], axis=1)
    leads = a_means - np.median(np.take_along_axis(g_means, picks, axis=1), axis=1)
    lo, hi = np.quantile(leads, [0.025, 0.975])
    return {"lead": observed, "p": float((leads <= 0).mean()), "low": float(lo), "high": float(hi)}
