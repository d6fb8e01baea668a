"""``import spos_deploy`` keeps scikit-learn out of MXNet's import, and only out of that, and gives MXNet every
physical core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spos_deploy.machine import physical_cores

from .conftest import ROOT


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter (MXNet loads once per process), both streams captured."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)


def test_mxnet_loads_without_scikit_learn_which_imports_as_usual_afterwards() -> None:
    pytest.importorskip("sklearn")  # installed with NNCF: what made MXNet's import 1.3 s slower
    code = (
        "import sys, spos_deploy, mxnet as mx\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported with mxnet'\n"
        "assert 'scipy' not in sys.modules, 'scipy was imported with mxnet'\n"
        "assert mx.model.BASE_ESTIMATOR is object\n"
        "assert float(mx.nd.ones((2, 2)).sum().asscalar()) == 4.0\n"
        "from sklearn.base import BaseEstimator\n"
        "print(BaseEstimator.__name__)\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "BaseEstimator"


def test_without_spos_deploy_mxnet_imports_scikit_learn_and_scipy() -> None:
    """The property above is spos_deploy's doing (if MXNet stopped importing them, the finder can go)."""
    pytest.importorskip("sklearn")
    code = "import sys, mxnet\nprint('sklearn' in sys.modules, 'scipy.stats' in sys.modules)\n"
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "True True", proc.stderr


def test_mxnet_entropy_calibration_gets_scipy_stats_back() -> None:
    """MXNet's KL-divergence thresholds (``spos-export --mxnet-calib entropy``) refuse to run without
    ``scipy.stats``, which MXNet looked for while it was hidden; handed back, they compute."""
    code = (
        "import sys, numpy as np, spos_deploy, mxnet\n"
        "from mxnet.contrib import quantization as q\n"
        "assert q.stats is None\n"
        "x = np.random.default_rng(0).normal(size=100000)\n"
        "hist, edges = np.histogram(x, bins=8001, range=(-5, 5))\n"
        "data = {'a': (hist, edges, x.min(), x.max(), 5.0)}\n"
        "try:\n"
        "    q._get_optimal_thresholds(dict(data), 'int8')\n"
        "except ImportError:\n"
        "    print('refused')\n"
        "from spos_deploy.mxnet_import import give_mxnet_scipy_stats\n"
        "give_mxnet_scipy_stats()\n"
        "print(float(q._get_optimal_thresholds(dict(data), 'int8')['a'][1]))\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    refused, threshold = proc.stdout.split()
    assert refused == "refused" and 1.5 < float(threshold) < 5.0  # a clipping threshold for N(0, 1) samples


_OMP_WORKERS = (
    "import os, spos_deploy, mxnet as mx\n"
    "before = len(os.listdir('/proc/self/task'))\n"
    "x = mx.nd.random.normal(shape=(8, 64, 64, 64))\n"
    "w = mx.nd.random.normal(shape=(64, 64, 3, 3))\n"
    "mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=64, no_bias=True).wait_to_read()\n"
    "print(len(os.listdir('/proc/self/task')) - before, os.environ.get('MXNET_OMP_MAX_THREADS'))\n"
)
"""Under the serial engine an operator runs in the calling thread; OpenMP adds (threads - 1) workers to it."""


def _omp_workers(**env: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")}
    proc = _python(_OMP_WORKERS, env={**base, "MXNET_ENGINE_TYPE": "NaiveEngine", **env})
    assert proc.returncode == 0, proc.stderr
    added, variable = proc.stdout.split()
    return int(added), variable


@pytest.mark.skipif(physical_cores() < 2, reason="one physical core: nothing to tell apart")
def test_mxnet_computes_on_every_physical_core_unless_told_otherwise() -> None:
    cores = physical_cores()
    assert _omp_workers() == (cores - 1, str(cores))
    assert _omp_workers(OMP_NUM_THREADS="1") == (0, "None")  # a worker's own count (Ray's, --threads) holds
    assert _omp_workers(MXNET_OMP_MAX_THREADS="3")[1] == "3"  # the user's own limit is left as it is


def test_physical_cores_are_counted_once_per_core() -> None:
    usable = len(os.sched_getaffinity(0))
    assert 1 <= physical_cores() <= usable
    siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    if siblings.exists() and siblings.read_text().strip() == "0":  # no hyperthreads: every CPU is a core
        assert physical_cores() == usable
