"""What the benchmark studies (``benchmarks/``) decide with, kept in the library so that it is tested as such:
claims that let side-by-side invocations share a list of trainings, and how far architectures stand apart
beyond the seed noise of their training.

Shard parsing is :func:`spos_deploy.search.shards.parse_shard`; rank statistics (Kendall tau, its bootstrap
and p-value) live with the other ranking statistics.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from spos_deploy.atomic import output_lock

CLAIM = ".claimed"
"""The claim's lock file in a run folder: a lock of its own, since the trainer that runs inside the claim takes
the folder's output lock (``.lock``) itself."""


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[bool]:
    """Yields whether this process may train ``folder``: True when no other live process has claimed it.

    The claim lets several invocations train one list side by side without training a run twice. It is an
    ``flock`` (:func:`spos_deploy.atomic.output_lock` on ``folder/.claimed``, not waiting): the kernel drops it
    when its holder ends, however it ends, so a crashed run's claim is free again without anyone judging it
    stale, and of processes racing for it exactly one wins. The file stays behind; only the lock counts.
    """
    who = f"benchmark training on {socket.gethostname()}"
    with output_lock(folder, who, name=CLAIM, busy_ok=True) as lock:
        yield lock is not None


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
