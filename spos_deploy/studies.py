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
