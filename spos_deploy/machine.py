"""What machine a measurement ran on: recorded with every benchmark and latency table."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache
from typing import Any

_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "sse4_2")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_flags": sorted(f for f in _FLAGS_OF_INTEREST if f in flags),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings counted once), from the
    kernel's topology files; the usable logical count where those cannot be read."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    try:
        for cpu in usable:
            topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
            with open(f"{topology}/physical_package_id") as a, open(f"{topology}/core_id") as b:
                cores.add((a.read().strip(), b.read().strip()))
    except OSError:
        return max(1, len(usable))
    return max(1, len(cores))


def has_vnni() -> bool:
    return any(f in cpu_info()["cpu_flags"] for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def software_versions() -> dict[str, str]:
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    for mod in ("mxnet", "onnxruntime", "onnx"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional at this point
            pass
    for dist in ("openvino", "nncf"):  # optional: the installed release, without importing it
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine_record() -> dict[str, Any]:
    """CPU, cores, OS and library versions, for benchmark and table files."""
    return {
        **cpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        **software_versions(),
    }
