"""How MXNet loads in a spos-deploy process: faster, and with an OpenMP thread for every physical core.

**Scikit-learn and SciPy stay out of MXNet's import.** ``import mxnet`` loads ``mxnet.model``, which subclasses
scikit-learn's ``BaseEstimator`` when scikit-learn is installed, for MXNet's old ``FeedForward`` API (spos-deploy
never uses it), and ``mxnet.contrib.quantization``, which imports ``scipy.stats`` for one calibration mode.
NNCF installs scikit-learn; the two (with pandas) took 1.3 s and about 0.5 s of MXNet's 4.1 s import on a
2-core AMD EPYC (2026-12-07, ``python -X importtime -c "import mxnet"``), paid by every command that builds a
network before it does anything. While ``mxnet`` is being imported, an import of either fails as if it were
not installed, and MXNet's own code falls back (``object`` as the base class; ``stats = None``); at any other
time both import as usual (NNCF still finds scikit-learn). MXNet's entropy calibration, the one user of
``scipy.stats``, gets it back when it runs (:func:`give_mxnet_scipy_stats`). Measured with ``farm-bench -n 10``,
pairs interleaved (2026-12-07): ``import spos_deploy, mxnet`` 2.47 s against 3.44 s with scikit-learn hidden
alone (ratio 0.77), which was 3.59 s against 4.45 s for a plain ``import mxnet``; peak memory 163 MiB against
217 and 256.

**Every physical core computes.** Unless ``OMP_NUM_THREADS`` or ``MXNET_OMP_MAX_THREADS`` says otherwise, MXNet
1.9 on x86 gives its operators half the logical CPUs, assuming two hyperthreads per core: on a machine without
hyperthreads (this 2-core AMD EPYC VM among them) that is half the cores. Just before MXNet loads,
``MXNET_OMP_MAX_THREADS`` is set to the physical cores this process may use
(:func:`spos_deploy.machine.physical_cores`): MXNet's own choice where cores have two hyperthreads, all of them
where they have one. MXNet runs the smaller of OpenMP's thread count and ``MXNET_OMP_MAX_THREADS``, so a count
set for a worker (Ray's per-task ``OMP_NUM_THREADS``, ``spos-bench --threads``, the search's worker pools) still
holds. Training ran 1.31-1.41x as fast on that machine (2026-12-07,
``benchmarks/results/train_throughput/train_throughput_threads.md``).

``import spos_deploy`` installs both (:func:`install`).
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


def mxnet_is_loading() -> bool:
    """True while ``import mxnet`` runs (its module spec is marked as initialising until it completes)."""
    spec = getattr(sys.modules.get("mxnet"), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


HIDDEN = ("sklearn", "scipy")
"""Packages MXNet imports for code spos-deploy does not run (or runs rarely: :func:`give_mxnet_scipy_stats`)."""

THREADS_VARIABLE = "MXNET_OMP_MAX_THREADS"


def give_mxnet_scipy_stats() -> None:
    """Hand ``scipy.stats`` to ``mxnet.contrib.quantization``, which looked for it while MXNet loaded (hidden
    then) and needs it for ``calib_mode="entropy"``."""
    from mxnet.contrib import quantization

    if quantization.stats is None:
        from scipy import stats

        quantization.stats = stats


def use_physical_cores() -> None:
    """Let MXNet, when it loads, run its operators on every physical core, unless the environment already
    sets a thread count (read at that moment: a command may set ``OMP_NUM_THREADS`` after ``import
    spos_deploy``)."""
    if "OMP_NUM_THREADS" in os.environ or THREADS_VARIABLE in os.environ:
        return
    from spos_deploy.machine import physical_cores

    os.environ[THREADS_VARIABLE] = str(physical_cores())


class MXNetImportHook(importlib.abc.MetaPathFinder):
    """Sets MXNet's thread count just before it loads and reports the :data:`HIDDEN` packages as missing while
    it loads; defers to the other finders for everything."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "mxnet":  # asked only while mxnet is not yet in sys.modules
            use_physical_cores()
        elif fullname.partition(".")[0] in HIDDEN and mxnet_is_loading():
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while mxnet loads)", name=fullname)
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MXNetImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, MXNetImportHook())
