"""``import spos_deploy`` keeps scikit-learn out of MXNet's import, and only out of that."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT


def test_mxnet_loads_without_scikit_learn_which_imports_as_usual_afterwards() -> None:
    pytest.importorskip("sklearn")  # installed with NNCF: what made MXNet's import 1.3 s slower
    code = (
        "import sys, spos_deploy, mxnet as mx\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported with mxnet'\n"
        "assert mx.model.BASE_ESTIMATOR is object\n"
        "assert float(mx.nd.ones((2, 2)).sum().asscalar()) == 4.0\n"
        "from sklearn.base import BaseEstimator\n"
        "print(BaseEstimator.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "BaseEstimator"


def test_without_spos_deploy_mxnet_imports_scikit_learn() -> None:
    """The property above is spos_deploy's doing (if MXNet stopped importing scikit-learn, the finder can go)."""
    pytest.importorskip("sklearn")
    code = "import sys, mxnet\nprint('sklearn' in sys.modules)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
