"""OpenVINO as a runtime: compile an ONNX file or an IR with an explicit precision, run it, read what it ran.

OpenVINO is optional (``pip install 'spos-deploy[openvino]'``): everything here imports it lazily and
:func:`require_openvino` turns its absence into one line naming the option that needed it.

Precision is never left to the plugin. On a CPU with native bf16 (AVX-512 BF16, AMX) OpenVINO's default is
to compile an fp32 model in bfloat16, which changes the outputs by about 1e-2 relative; here ``fp32`` always
sets ``INFERENCE_PRECISION_HINT=f32``, ``bf16`` asks for bfloat16 only where the CPU runs it natively, and
``int8`` needs a quantized model (its unquantized parts run in f32). What was compiled is read back from the
compiled model and its runtime graph (:class:`OvCompiled`), so a report states it instead of assuming it.
Whether the CPU has native bf16 comes from the plugin's capability list; ``SPOS_CPU_CAPABILITIES=FP32,INT8``
replaces that list, to see what would be refused or shipped on a CPU without bf16 (:data:`CAPABILITIES_ENV`).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spos_deploy.errors import BadInputError, short_message

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
HINTS = ("latency", "throughput")
INSTALL_HINT = "pip install 'spos-deploy[openvino]' (openvino==2026.4.1)"
_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what is not quantized stays f32
_COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")
_QUANT_OPS = ("FakeQuantize", "FakeConvert")
_LOW_PRECISIONS = ("i8", "u8")
CAPABILITIES_ENV = "SPOS_CPU_CAPABILITIES"
"""Replaces the CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (comma- or space-separated, e.g. ``FP32,INT8``): what
a command would choose or refuse on a CPU without native bf16 can then be seen, and tested, on one with it. It
only changes what this package decides; it cannot give OpenVINO a capability the CPU lacks."""


def available() -> bool:
    """Whether OpenVINO can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def require_openvino(what: str = "--runtime openvino") -> Any:
    """The ``openvino`` module, or one line saying that ``what`` needs it and how to install it."""
    try:
        import openvino
    except ImportError:
        raise BadInputError(f"{what} needs OpenVINO, which is not installed: {INSTALL_HINT}") from None
    return openvino


@functools.cache
def core() -> ov.Core:
    """One ``ov.Core`` per process (it holds the loaded plugins)."""
    return require_openvino().Core()


def version() -> str:
    return require_openvino().__version__


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU runs natively (``FP32``, ``BF16``, ``INT8``, ...), or the list
    in ``SPOS_CPU_CAPABILITIES`` where that is set (:data:`CAPABILITIES_ENV`)."""
    override = os.environ.get(CAPABILITIES_ENV)
    if override is not None:
        caps = [c.upper() for c in re.split(r"[,\s]+", override) if c]
        _note_override(tuple(caps))
        return caps
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


@functools.cache
def _note_override(caps: tuple[str, ...]) -> None:
    """Say once per list that the capabilities are simulated: a report made under it must not pass for this
    CPU's own."""
    log.warning(
        "%s: CPU capabilities taken as %s, not as OpenVINO reports them", CAPABILITIES_ENV, ", ".join(caps) or "none"
    )


def native_bf16() -> bool:
    """bf16 is worth compiling only where the CPU has it in hardware; elsewhere OpenVINO emulates it slowly."""
    return "BF16" in cpu_capabilities()


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise BadInputError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not native_bf16():
        source = CAPABILITIES_ENV if CAPABILITIES_ENV in os.environ else "OpenVINO"
        caps = ", ".join(c for c in cpu_capabilities() if c != "BF16") or "nothing"
        raise BadInputError(
            f"--precision bf16: this CPU has no native bf16 ({source} lists {caps}; no BF16); use fp32 or int8"
        )


def read_model(model: str | os.PathLike[str] | ov.Model, label: str | None = None) -> ov.Model:
    """An ``ov.Model`` from an ONNX file or an IR (.xml beside its .bin); a file OpenVINO cannot read is one
    line naming it.

    OpenVINO is told which reader to use: left to guess, it offers a file that its ONNX or IR reader refuses to
    every other one it has, and its TensorFlow reader writes its parse errors straight to stderr, lines that
    no ``try`` here can catch."""
    ov = require_openvino()
    if isinstance(model, ov.Model):
        return model
    path = Path(model)
    label = label or str(path)
    if not path.is_file():
        raise BadInputError(f"{label}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise BadInputError(f"{label}: its weights {weights.name} are missing beside it")
        args = [str(path), str(weights)]  # with the weights named, only the IR reader is asked
    else:
        if suffix == ".onnx" and not _frontend("onnx").supported(str(path)):
            raise BadInputError(f"{label}: not an ONNX model (OpenVINO's ONNX reader cannot parse it)")
        args = [str(path)]
    try:
        return core().read_model(*args)
    except Exception as e:  # noqa: BLE001 - OpenVINO raises plain RuntimeError subclasses from C++
        if suffix == ".xml":
            if not _frontend("ir").supported(str(path)):
                raise BadInputError(f"{label}: OpenVINO cannot read it: not an IR (no <net> document in it)") from None
            _check_ir_weights(path, label)
        raise BadInputError(f"{label}: OpenVINO cannot read it: {short_message(e)}") from None


def _frontend(framework: str) -> Any:
    """OpenVINO's reader for ``framework`` (``onnx``, ``ir``): asked directly whether it can read a file."""
    return require_openvino().frontend.FrontEndManager().load_by_framework(framework)


_DATA_TAG = re.compile(r"<data\b[^>]*>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def _check_ir_weights(xml: Path, label: str) -> None:
    """After OpenVINO failed to read an IR: if its ``.bin`` is shorter than the constants in the ``.xml``
    reach, say that, naming the ``.bin`` (OpenVINO's own message quotes a C++ check instead)."""
    weights = xml.with_suffix(".bin")
    try:
        text = xml.read_text(errors="replace")
        have = weights.stat().st_size
    except OSError:
        return
    need = 0
    for tag in _DATA_TAG.finditer(text):
        attrs = dict(_ATTR.findall(tag.group(0)))
        if attrs.get("offset", "").isdigit() and attrs.get("size", "").isdigit():
            need = max(need, int(attrs["offset"]) + int(attrs["size"]))
    if have < need:
        raise BadInputError(
            f"{label}: OpenVINO cannot read it: its weights {weights.name} are too short ({have} bytes, the IR "
            f"reads {need}): truncated, or from another model"
        )


def is_quantized(model: ov.Model) -> bool:
    """Whether the graph carries quantization (FakeQuantize from QDQ ONNX or NNCF, or int8 weights)."""
    for op in model.get_ordered_ops():
        name = op.get_type_name()
        if name in _QUANT_OPS:
            return True
        if name == "Constant" and op.get_output_element_type(0).get_type_name() in _LOW_PRECISIONS:
            return True
    return False


def runtime_precisions(compiled: ov.CompiledModel) -> dict[str, dict[str, int]]:
    """``{layer type: {precision it executes in: count}}`` for the compute layers of the compiled graph."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind in _COMPUTE_LAYERS and "runtimePrecision" in info:
            out[kind][info["runtimePrecision"].astype(str)] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


@dataclass
class OvCompiled:
    """A compiled model and what it actually runs: the precision asked for and the one compiled."""

    compiled: ov.CompiledModel
    precision: str  # asked for: fp32, bf16 or int8
    inference_precision: str  # read back: f32 or bf16 (the precision of what is not quantized)
    layers: dict[str, dict[str, int]]  # compute layers by the precision they execute in
    threads: int
    streams: int
    hint: str
    label: str = "model"
    notes: list[str] = field(default_factory=list)

    @property
    def int8_layers(self) -> int:
        return sum(n for per in self.layers.values() for p, n in per.items() if p in _LOW_PRECISIONS)

    @property
    def compute_layers(self) -> int:
        return sum(n for per in self.layers.values() for n in per.values())

    @property
    def executed_precision(self) -> str:
        """What the compute layers run in, in one word: int8 (all or some), bf16 or fp32."""
        if self.int8_layers:
            return "int8" if self.int8_layers == self.compute_layers else "int8+" + self._float_word()
        return self._float_word()

    def _float_word(self) -> str:
        return "bf16" if self.inference_precision == "bf16" else "fp32"

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": "openvino",
            "openvino": version(),
            "precision": self.precision,
            "inference_precision": self.inference_precision,
            "executed_precision": self.executed_precision,
            "int8_layers": self.int8_layers,
            "compute_layers": self.compute_layers,
            "layers": self.layers,
            "threads": self.threads,
            "streams": self.streams,
            "hint": self.hint,
            **({"notes": self.notes} if self.notes else {}),
        }


def compile_config(precision: str, threads: int | None, hint: str, perf_count: bool) -> dict[str, Any]:
    """The CPU plugin properties for one explicit setting (all of them stated: nothing is left to defaults
    that differ between CPUs)."""
    if hint not in HINTS:
        raise BadInputError(f"--hint {hint}: use one of {', '.join(HINTS)}")
    cfg: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision], "PERFORMANCE_HINT": hint.upper()}
    if threads is not None:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    if perf_count:
        cfg["PERF_COUNT"] = True
    return cfg


def ov_compile(
    model: str | os.PathLike[str] | ov.Model,
    precision: str = "fp32",
    threads: int | None = None,
    hint: str = "latency",
    *,
    static_shape: Sequence[int] | None = None,
    perf_count: bool = False,
    label: str | None = None,
) -> OvCompiled:
    """Compile ``model`` for the CPU at exactly ``precision``; refuse what would silently run another one.

    ``static_shape`` fixes the input shape before compiling (OpenVINO then folds the graph's shape
    arithmetic); without it the model keeps the shape it was exported with (a dynamic batch for ours).
    """
    label = label or (str(model) if isinstance(model, str | os.PathLike) else "model")
    check_precision(precision)
    m = read_model(model, label)
    quantized = is_quantized(m)
    if precision == "int8" and not quantized:
        raise BadInputError(
            f"{label}: --precision int8 needs a quantized model (spos-export --int8 --format openvino writes one)"
        )
    if precision != "int8" and quantized:
        raise BadInputError(f"{label} is quantized: it runs in int8, so ask for --precision int8")
    if len(m.inputs) != 1:
        raise BadInputError(f"{label}: expected one input, the model has {len(m.inputs)}")
    if static_shape is not None:
        try:
            m.reshape({m.inputs[0].get_any_name(): list(static_shape)})
        except Exception as e:  # noqa: BLE001
            raise BadInputError(f"{label}: cannot take input shape {tuple(static_shape)}: {short_message(e)}") from None
    try:
        compiled = core().compile_model(m, "CPU", compile_config(precision, threads, hint, perf_count))
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{label}: OpenVINO could not compile it: {short_message(e)}") from None
    result = OvCompiled(
        compiled=compiled,
        precision=precision,
        inference_precision=_type_word(compiled.get_property("INFERENCE_PRECISION_HINT")),
        layers=runtime_precisions(compiled),
        threads=int(compiled.get_property("INFERENCE_NUM_THREADS")),
        streams=int(compiled.get_property("NUM_STREAMS")),
        hint=hint,
        label=label,
    )
    _check_compiled(result)
    return result


def _type_word(t: Any) -> str:
    """``f32``/``bf16`` from an ``ov.Type`` (or its string, as some releases return)."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def _check_compiled(c: OvCompiled) -> None:
    """What was compiled must be what was asked for: a mismatch is an error, never a footnote."""
    want = "bf16" if c.precision == "bf16" else "f32"
    if c.inference_precision != want:
        raise BadInputError(
            f"{c.label}: asked for {c.precision}, OpenVINO compiled inference precision {c.inference_precision}"
        )
    if c.precision == "int8" and c.int8_layers == 0:
        raise BadInputError(f"{c.label}: quantized, but OpenVINO runs none of its convolutions in int8 on this CPU")
    if c.precision == "int8" and c.int8_layers < c.compute_layers:
        c.notes.append(f"{c.int8_layers} of {c.compute_layers} compute layers run in int8, the rest in f32")


def input_shape_of(c: OvCompiled) -> list[int | None]:
    """The model's input shape, ``None`` for a dynamic dimension (what ``resolve_input_shape`` takes)."""
    ps = c.compiled.inputs[0].get_partial_shape()
    return [d.get_length() if d.is_static else None for d in ps]


@dataclass
class OvRunner:
    """An infer request with a fixed random-normal input: calling it runs one synchronous inference."""

    request: Any
    feed: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.feed.shape

    def __call__(self) -> Any:
        return self.request.infer({0: self.feed})


def ov_runner(
    c: OvCompiled, batch: int = 1, input_shape: Sequence[int | None] | None = None, label: str | None = None
) -> OvRunner:
    """Like :func:`spos_deploy.runtime.ort.ort_runner`: random-normal input (seed 0) of the resolved shape,
    one untimed call (a shape the model cannot take fails here, in one line)."""
    from spos_deploy.runtime.ort import resolve_input_shape

    label = label or c.label
    shape = resolve_input_shape(input_shape_of(c), batch, input_shape, name=f"{label}: input")
    runner = OvRunner(c.compiled.create_infer_request(), np.random.default_rng(0).standard_normal(shape).astype("f4"))
    try:
        runner()
    except Exception as e:  # noqa: BLE001
        raise BadInputError(f"{label}: inference on input shape {shape} failed: {short_message(e)}") from None
    return runner


def ov_logits(c: OvCompiled, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The first output over ``images`` in batches (a static-batch model is run one image at a time)."""
    dims = input_shape_of(c)
    if dims and dims[0] is not None:
        batch = dims[0]
    request = c.compiled.create_infer_request()
    out = []
    for i in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[i : i + batch], dtype=np.float32)
        if len(chunk) < batch and dims and dims[0] is not None:  # pad the last static batch
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
            out.append(request.infer({0: chunk})[c.compiled.outputs[0]][: len(images) - i].copy())
        else:
            out.append(request.infer({0: chunk})[c.compiled.outputs[0]].copy())
    return np.concatenate(out)


def layer_times(request: Any) -> list[dict[str, Any]]:
    """Per-layer performance counters of the last inference of ``request`` (compiled with ``perf_count``):
    node name, its type, the kernel that ran (with its precision) and the wall time in milliseconds."""
    return [
        {
            "node": p.node_name,
            "type": p.node_type,
            "exec_type": p.exec_type,
            "ms": p.real_time.total_seconds() * 1e3,
        }
        for p in request.get_profiling_info()
        if p.status.name == "EXECUTED"
    ]
