"""The runtimes latency is measured with: one record per runtime, the one place that knows their names.

Users see one spelling on every command: an **engine** (:data:`ENGINES`: ``onnxruntime``, ``openvino``,
``mxnet``) with ``--runtime`` and a **device** (:data:`DEVICES`: ``cpu``, ``gpu``) with ``--device``, as
``spos-bench``, ``spos-profile``, ``spos-lut`` and ``spos-search`` take them and ``--target auto`` and a latency
table's fingerprint (``runtime``) name the engine.

A **latency runtime** (:data:`RUNTIMES`) is an engine on a device, the record a latency table is measured
with; :func:`runtime_for` is the one mapping from ``--runtime ENGINE --device DEVICE`` to it. Its name
(``ort-cpu``, ``ort-cuda``, ``openvino-cpu``, ``mxnet-cpu``, ``mxnet-gpu``) is data, not a spelling users type
any more: the part of a table's file name and its fingerprint's ``runtime_option`` (shipped tables and tables
built earlier keep theirs). Those names were the ``--runtime`` of ``spos-lut build`` and ``spos-search`` until
this release, so :func:`parse_runtime` still takes them, for one release, as old spellings of an engine and a
device; messages name a runtime by :attr:`Runtime.label` (``onnxruntime on cpu``) and :attr:`Runtime.options`.

Code asks a record (how to run a file, whether a table times cut ONNX parts, which precisions it runs, what
goes into the fingerprint) instead of testing a name. Light at import: the engines are imported inside the
functions that run them, so a command can list the names before any runtime starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spos_deploy.errors import BadInputError

Shape = tuple[int, ...]


# ---- engines -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """An inference engine, whatever the device."""

    name: str  # the spelling of spos-bench, spos-profile, --target auto and the fingerprint's "runtime"
    label: str  # how prose names it
    export_format: str  # the spos-export --format that writes the files it runs
    profiles: bool = False  # per-op times (spos-profile --measure)
    auto_candidate: bool = False  # spos-export --target auto builds and times its forms
    precision_at_compile: bool = False  # the precision is a compile setting (spos-bench must be told it)
    keeps_float: bool = False  # its int8 export can keep the most sensitive convs in float (--keep-float)
    release: Callable[[], str] | None = None  # the installed version, where not the module's __version__

    def version(self) -> str:
        """The installed release (imports the engine)."""
        if self.release is not None:
            return self.release()
        import importlib

        return str(importlib.import_module(self.name).__version__)


def _openvino_release() -> str:
    """Through the module that says how to install OpenVINO when it is missing."""
    from spos_deploy.runtime.openvino import version

    return version()


ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine("onnxruntime", "onnxruntime", "onnx", profiles=True, auto_candidate=True, keeps_float=True),
        Engine(
            "openvino",
            "OpenVINO",
            "openvino",
            profiles=True,
            auto_candidate=True,
            precision_at_compile=True,
            release=_openvino_release,
        ),
        Engine("mxnet", "MXNet", "mxnet"),
    )
}


def engine_named(name: str, what: str = "--runtime") -> Engine:
    """The engine ``name``, or one line naming the engines."""
    if name not in ENGINES:
        raise BadInputError(f"{what} {name}: use one of {', '.join(ENGINES)}")
    return ENGINES[name]


def profiling_engines() -> tuple[str, ...]:
    """Engines ``spos-profile --measure`` reads per-op times from."""
    return tuple(n for n, e in ENGINES.items() if e.profiles)


def auto_engines() -> tuple[str, ...]:
    """Engines whose forms ``--target auto`` builds and times, in its candidate order."""
    return tuple(n for n, e in ENGINES.items() if e.auto_candidate)


# ---- how a latency runtime runs a file ------------------------------------------------------------------------

FileRunner = Callable[["Runtime", "str | os.PathLike[str]", Shape, str, "int | None"], Callable[[], Any]]
"""``(runtime, path, shape, precision, threads)`` -> one synchronous inference on a fixed input of ``shape``."""


def _ort_file_runner(rt: Runtime, path: str | os.PathLike[str], shape: Shape, precision: str, threads: int | None):
    """An onnxruntime session of ``path`` on the runtime's device (the file holds its precision)."""
    from spos_deploy.runtime.ort import ort_runner

    return ort_runner(path, shape[0], shape, device=rt.device, threads=threads)


def _openvino_file_runner(
    rt: Runtime, path: str | os.PathLike[str], shape: Shape, precision: str, threads: int | None
) -> Callable[[], Any]:
    """``path`` compiled by OpenVINO for the one input ``shape`` at ``precision``; an int8 file compiled int8 only
    where it holds quantizers (a cut part without any, none in our networks, is never a refusal)."""
    from spos_deploy.runtime.openvino import is_quantized, ov_compile, ov_runner, read_model

    model = read_model(path)
    if precision == "int8" and not is_quantized(model):
        precision = "fp32"
    compiled = ov_compile(model, precision, threads, static_shape=shape, label=str(path))
    return ov_runner(compiled, shape[0], shape)


def _require_openvino(rt: Runtime, precision: str) -> None:
    from spos_deploy.runtime.openvino import check_precision, require_openvino

    require_openvino(f"--runtime {rt.engine}")
    check_precision(precision)


# ---- latency runtimes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """A latency runtime: an engine on a device, and everything a measurement asks about it."""

    name: str  # data: a table's file-name part and fingerprint "runtime_option" (once spos-lut build --runtime)
    engine: str  # a key of ENGINES
    device: str  # cpu or gpu
    precisions: tuple[str, ...]  # what a table of it can be measured in
    onnx_parts: bool  # tables time cut ONNX parts of the deployed file (else MXNet blocks)
    provider: str  # the fingerprint's "provider"
    fingerprint_extra: tuple[tuple[str, str], ...] = ()  # further fingerprint fields of its deployed form
    make_runner: FileRunner | None = None  # None: it times MXNet blocks, not files
    requires: Callable[[Runtime, str], None] | None = None  # installed parts and CPU support, checked up front

    @property
    def engine_record(self) -> Engine:
        return ENGINES[self.engine]

    @property
    def label(self) -> str:
        """How messages name it: the engine and device as the command line spells them (``onnxruntime on cpu``)."""
        return f"{self.engine} on {self.device}"

    @property
    def options(self) -> str:
        """The options that select it (``--runtime onnxruntime``, ``--runtime mxnet --device gpu``): the device
        only where it is not the default, so that a command a message or a record shows is the shortest."""
        return f"--runtime {self.engine}" + (f" --device {self.device}" if self.device != DEFAULT_DEVICE else "")

    def runner(
        self, path: str | os.PathLike[str], shape: Shape, precision: str, threads: int | None
    ) -> Callable[[], Any]:
        """A fresh session (compiled model) of the file ``path`` on a fixed random input of ``shape``: one
        synchronous inference per call, the untimed first one already made."""
        if self.make_runner is None:
            raise BadInputError(f"--runtime {self.engine} times MXNet blocks, not exported files")
        return self.make_runner(self, path, shape, precision, threads)

    def refuse_precision(self, precision: str) -> None:
        """One line when tables of this runtime cannot be measured at ``precision``, naming those that can."""
        if precision in self.precisions:
            return
        able = [r for r in RUNTIMES.values() if precision in r.precisions]
        labels = list(dict.fromkeys(ENGINES[r.engine].label for r in able))
        if len(labels) == 1:
            names = ", ".join(r.options for r in able)
            raise BadInputError(f"--precision {precision} is measured with {labels[0]} only ({names})")
        raise BadInputError(
            f"--precision {precision} is measured with {' or '.join(labels)}, not {self.engine_record.label}"
        )

    def require(self, precision: str) -> None:
        """Refuse up front what this machine cannot run (engine not installed, precision not native)."""
        if self.requires is not None:
            self.requires(self, precision)

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a latency table records of the runtime (imports the engine): engine, release, provider, the
        deployed form's fields, and the GPU's name on a GPU."""
        fp: dict[str, Any] = {
            "runtime_version": self.engine_record.version(),
            "provider": self.provider,
            **dict(self.fingerprint_extra),
        }
        if self.device == "gpu":
            fp["gpu"] = gpu_name()
        return fp


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("ort-cpu", "onnxruntime", "cpu", ("fp32", "int8"), True, "CPUExecutionProvider", (), _ort_file_runner),
        Runtime(
            "ort-cuda", "onnxruntime", "gpu", ("fp32", "int8"), True, "CUDAExecutionProvider", (), _ort_file_runner
        ),
        Runtime(
            "openvino-cpu",
            "openvino",
            "cpu",
            ("fp32", "int8", "bf16"),
            True,
            "CPU",
            (("hswish", "op"), ("input_shape", "static")),  # compiled for the one input shape measured
            _openvino_file_runner,
            _require_openvino,
        ),
        Runtime("mxnet-cpu", "mxnet", "cpu", ("fp32",), False, "cpu"),
        Runtime("mxnet-gpu", "mxnet", "gpu", ("fp32",), False, "gpu"),
    )
}
"""Every latency runtime, in the order commands list them."""

DEVICES = ("cpu", "gpu")
"""What ``--device`` takes."""
DEFAULT_ENGINE = "onnxruntime"
DEFAULT_DEVICE = "cpu"
DEFAULT_RUNTIME = "ort-cpu"
"""The latency runtime of :data:`DEFAULT_ENGINE` on :data:`DEFAULT_DEVICE` (what a table is measured with
when no ``--runtime`` is given)."""


def runtime_names() -> tuple[str, ...]:
    """The latency runtimes' names (data: table file names, fingerprints; old ``--runtime`` spellings)."""
    return tuple(RUNTIMES)


def runtime_named(name: str) -> Runtime:
    """The latency runtime called ``name`` in a table or setup, or one line naming them."""
    if name not in RUNTIMES:
        raise BadInputError(f"latency runtime {name!r}: not one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_for(engine: str, device: str = DEFAULT_DEVICE) -> Runtime:
    """The latency runtime of ``--runtime engine --device device``: the one mapping from the command-line
    spelling to the record (``--target auto``'s winner, ``spos-lut build``, ``spos-search``), or one line
    saying on which devices latency is measured with that engine."""
    engine_named(engine)
    if device not in DEVICES:
        raise BadInputError(f"--device {device}: use one of {', '.join(DEVICES)}")
    for r in RUNTIMES.values():
        if r.engine == engine and r.device == device:
            return r
    able = [r.device for r in RUNTIMES.values() if r.engine == engine]
    raise BadInputError(
        f"--runtime {engine} --device {device}: latency is measured with {engine} on {' or '.join(able)} only"
    )


def parse_runtime(text: str) -> tuple[str, str | None]:
    """A ``--runtime`` value as ``(engine, device)``: an engine (device None: ``--device`` says it), or an old
    spelling of a latency runtime (``ort-cuda``: ``onnxruntime`` on ``gpu``), accepted for one release because
    ``spos-lut build`` and ``spos-search`` took those until then; anything else is one line naming the engines."""
    if text in ENGINES:
        return text, None
    if text in RUNTIMES:
        return RUNTIMES[text].engine, RUNTIMES[text].device
    raise BadInputError(f"--runtime {text}: use one of {', '.join(ENGINES)}")


def runtime_spelled(text: str) -> Runtime:
    """The latency runtime one word names: an engine, on the default device, or an old name (the
    ``RUNTIME:...`` targets of the benchmarks, which time CPUs)."""
    engine, device = parse_runtime(text)
    return runtime_for(engine, device or DEFAULT_DEVICE)


def gpu_name() -> str | None:
    """This machine's first GPU, as ``nvidia-smi`` names it (None without one)."""
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None
