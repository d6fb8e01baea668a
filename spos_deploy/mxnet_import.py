"""A faster ``import mxnet``: scikit-learn is hidden from MXNet's own modules while they load.

``import mxnet`` loads ``mxnet.model``, which subclasses scikit-learn's ``BaseEstimator`` when scikit-learn is
installed, for MXNet's old ``FeedForward`` API (spos-deploy never uses it). NNCF installs scikit-learn, and
importing it (with pandas and scipy.stats) took 1.3 s of MXNet's 4.1 s import on a 2-core AMD EPYC
(2026-12-07, ``python -X importtime -c "import mxnet"``): every command that builds a network paid it before
doing anything. While ``mxnet`` is being imported, an import of scikit-learn fails as if it were not installed
and ``mxnet.model`` falls back to ``object``, as its own code provides; at any other time scikit-learn imports
as usual (NNCF still finds it). ``import spos_deploy`` installs this (:func:`install`).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


def mxnet_is_loading() -> bool:
    """True while ``import mxnet`` runs (its module spec is marked as initialising until it completes)."""
    spec = getattr(sys.modules.get("mxnet"), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


class HideSklearnFromMXNet(importlib.abc.MetaPathFinder):
    """Reports scikit-learn as missing while MXNet loads; defers to the other finders otherwise."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "sklearn" and mxnet_is_loading():
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while mxnet loads)", name=fullname)
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, HideSklearnFromMXNet) for f in sys.meta_path):
        sys.meta_path.insert(0, HideSklearnFromMXNet())
