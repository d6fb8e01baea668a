"""spos-deploy: SPOS (ShuffleNetV2 search space) from search to deployment.

The public API, imported lazily (``import spos_deploy`` stays light; MXNet loads on first use)::

    from spos_deploy import load_spec, build_subnet, build_supernet, extract_subnet, profile_spec
    from spos_deploy import FlopsTable, MicroNetTable, LatencyTable

Importing the package first switches off what would send data off the machine or write into the home folder
(OpenVINO's and NNCF's usage telemetry, Ray's usage statistics, matplotlib's caches under ``~``); see
:mod:`spos_deploy.privacy` and ``docs/privacy.md`` (``SPOS_TELEMETRY=on`` leaves the libraries as shipped).
It also keeps scikit-learn and SciPy, which MXNet does not need, out of MXNet's import and gives MXNet every
physical core (:mod:`spos_deploy.mxnet_import`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spos_deploy._version import __version__  # noqa: F401  (the installed version: `spos-* --version` prints it)
from spos_deploy.mxnet_import import install as _install_mxnet_import
from spos_deploy.privacy import keep_local as _keep_local

_keep_local()  # before any command, API call, test or benchmark can import openvino, nncf, matplotlib or ray
_install_mxnet_import()  # MXNet loads about 1.8 s faster and computes on every core (spos_deploy.mxnet_import)

_API = {
    "SearchSpace": "spos_deploy.space",
    "ModelSpec": "spos_deploy.model_spec",
    "load_spec": "spos_deploy.model_spec",
    "spec_from_dict": "spos_deploy.model_spec",
    "build_subnet": "spos_deploy.nets.network",
    "build_supernet": "spos_deploy.nets.supernet",
    "extract_subnet": "spos_deploy.nets.supernet",
    "profile_spec": "spos_deploy.counting.profile",
    "FlopsTable": "spos_deploy.tables.flops.table",
    "MicroNetTable": "spos_deploy.tables.micronet.table",
    "LatencyTable": "spos_deploy.tables.latency.table",
}

__all__ = [
    "FlopsTable",
    "LatencyTable",
    "MicroNetTable",
    "ModelSpec",
    "SearchSpace",
    "build_subnet",
    "build_supernet",
    "extract_subnet",
    "load_spec",
    "profile_spec",
    "spec_from_dict",
]
assert sorted(__all__) == sorted(_API)

if TYPE_CHECKING:
    from spos_deploy.counting.profile import profile_spec
    from spos_deploy.model_spec import ModelSpec, load_spec, spec_from_dict
    from spos_deploy.nets.network import build_subnet
    from spos_deploy.nets.supernet import build_supernet, extract_subnet
    from spos_deploy.space import SearchSpace
    from spos_deploy.tables.flops.table import FlopsTable
    from spos_deploy.tables.latency.table import LatencyTable
    from spos_deploy.tables.micronet.table import MicroNetTable


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spos_deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
