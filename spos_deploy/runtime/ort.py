"""onnxruntime sessions: the one place that makes them (providers, options, graph inputs, errors).

Every session of the toolkit (parity checks, int8 checks, benchmarks, latency tables, op profiles) comes
from :func:`ort_session`, so a model is always run with the settings it is measured and deployed with:
one inter-op thread (these networks are a chain; parallel branches are tiny), all graph optimisations,
the CPU provider last as the fallback, onnxruntime's own warnings silenced, and a file that cannot be
loaded reported in one line naming it. onnxruntime and onnx are imported inside the functions: importing
this module is light (the commands import it before their signal handlers matter).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spos_deploy.errors import BadInputError, short_message

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu")
ORT_LOG_ERRORS_ONLY = 3  # onnxruntime severity: 0 verbose ... 3 error

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def ort_providers(device: str) -> list[str]:
    """Execution providers for ``device``; CPU stays last as onnxruntime's fallback for unsupported nodes."""
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "gpu":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        raise BadInputError(
            "--device gpu: this onnxruntime build has no CUDA provider (pip install onnxruntime-gpu==1.18.1)"
        )
    raise BadInputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")


def strip_initializer_inputs(model: onnx.ModelProto) -> int:
    """Drop the graph inputs that are initializers (the weights), in place; returns how many were dropped.

    MXNet's exporter (like old PyTorch ones) lists every weight as a graph input too; onnxruntime then treats
    the weights as overridable, skips constant folding and BatchNorm fusion, its quantization pre-processing
    folds nothing, and the latency measured is not what a deployed model would show. Export calls this on
    the file it writes; :func:`ort_session` calls it (in memory) on files made elsewhere.
    """
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def _model_source(path: Path) -> bytes | str:
    """The path itself, or the model's bytes with initializers stripped from its inputs when it has any.

    Models with external data, or an IR version older than 4 (where weights had to be inputs), load as is.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if model.ir_version < 4 or any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return str(path)
    removed = strip_initializer_inputs(model)
    if not removed:
        return str(path)
    log.debug("%s: %d initializers dropped from the graph inputs", path, removed)
    return model.SerializeToString()


def ort_session(
    path: str | os.PathLike[str],
    device: str = "cpu",
    threads: int | None = None,
    profile: bool = False,
) -> onnxruntime.InferenceSession:
    """An onnxruntime session of the ``.onnx`` file at ``path`` (settings in the module docstring).

    ``threads`` intra-op threads when given (else onnxruntime's default: the physical cores); ``profile``
    turns on onnxruntime's per-node profiler (call ``end_profiling()`` for the file).
    """
    import onnxruntime

    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, expected an .onnx file")
    if threads is not None and threads < 1:
        raise BadInputError(f"threads must be >= 1, got {threads}")
    providers = ort_providers(device)
    onnxruntime.set_default_logger_severity(ORT_LOG_ERRORS_ONLY)
    so = onnxruntime.SessionOptions()
    so.log_severity_level = ORT_LOG_ERRORS_ONLY
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = profile
    try:
        return onnxruntime.InferenceSession(_model_source(p), sess_options=so, providers=providers)
    except Exception as e:  # noqa: BLE001 - protobuf and onnxruntime raise many types for a bad file
        raise BadInputError(f"{p}: not a loadable ONNX model: {short_message(e)}") from None


def resolve_input_shape(
    model_shape: Sequence[int | str | None],
    batch: int,
    input_shape: Sequence[int | None] | None = None,
    name: str = "input",
) -> tuple[int, ...]:
    """The concrete shape to feed a model whose input is declared as ``model_shape``.

    ``model_shape`` is what onnxruntime reports: an int for a fixed dimension, a name or ``None`` for a
    dynamic one. Dimension 0 is the batch and always comes from ``batch``. ``input_shape`` is the full
    shape the caller wants, with ``None`` for "whatever the model says"; a fixed dimension it contradicts is
    refused rather than silently overridden, so a table never records a shape the user did not ask for.
    """
    rank = len(model_shape)
    if rank == 0:
        raise BadInputError(f"{name} is a scalar; expected a batched tensor such as (N, C, H, W)")
    if input_shape is not None and len(input_shape) != rank:
        raise BadInputError(
            f"{name} has rank {rank} {_fmt_dims(model_shape)}, but the requested shape "
            f"{tuple(input_shape)} has rank {len(input_shape)} (--input-size assumes an N, C, H, W input)"
        )
    want = list(input_shape) if input_shape is not None else [None] * rank
    if want[0] is not None and want[0] != batch:
        raise BadInputError(f"requested shape {tuple(input_shape or ())} disagrees with batch {batch}")
    if _fixed(model_shape[0]) and model_shape[0] != batch:
        raise BadInputError(
            f"{name} has a fixed batch of {model_shape[0]}; batch {batch} needs a model exported with a dynamic "
            f"batch dimension"
        )
    return (batch, *(_resolve_dim(model_shape, i, want[i], name) for i in range(1, rank)))


def _resolve_dim(model_shape: Sequence[int | str | None], i: int, w: int | None, name: str) -> int:
    dim = model_shape[i]
    if _fixed(dim):
        if w is not None and w != dim:
            raise BadInputError(f"{name} dimension {i} is fixed at {dim} {_fmt_dims(model_shape)}; requested {w}")
        return int(dim)  # type: ignore[arg-type]
    if w is None:
        raise BadInputError(
            f"{name} dimension {i} is dynamic {_fmt_dims(model_shape)}; give its size "
            f"(input_shape, or --input-size for H and W)"
        )
    if w < 1:
        raise BadInputError(f"requested size {w} for {name} dimension {i} must be >= 1")
    return int(w)


def _fixed(dim: int | str | None) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def _fmt_dims(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join(str(d) if _fixed(d) else "?" if d is None else str(d) for d in shape) + ")"


@dataclass
class OrtRunner:
    """A session with a fixed random-normal input: calling it runs one synchronous inference."""

    session: onnxruntime.InferenceSession
    feed: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.feed.values())).shape

    def __call__(self) -> Any:
        return self.session.run(None, self.feed)


def ort_runner(
    model: str | os.PathLike[str] | onnxruntime.InferenceSession,
    batch: int = 1,
    input_shape: Sequence[int | None] | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    label: str | None = None,
) -> OrtRunner:
    """Make the session (unless ``model`` is one), feed random-normal data (seed 0) of its one float input,
    run it once untimed, and return the runner: what every latency measurement does before timing.

    The shape comes from the model (see :func:`resolve_input_shape`): the batch dimension from ``batch``,
    dynamic dimensions from ``input_shape``. The untimed call makes a shape the graph cannot take fail here,
    in one line naming ``label`` (default: the path), and leaves the session's one-time set-up out of timing.
    """
    sess = ort_session(model, device=device, threads=threads) if isinstance(model, str | os.PathLike) else model
    label = label or (str(model) if isinstance(model, str | os.PathLike) else "model")
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise BadInputError(f"{label}: expected one input, the model has {len(inputs)} ({names})")
    inp = inputs[0]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype is None:
        raise BadInputError(f"{label}: input '{inp.name}' is {inp.type}; only float inputs can be benchmarked")
    shape = resolve_input_shape(inp.shape, batch, input_shape, name=f"{label}: input '{inp.name}'")
    runner = OrtRunner(sess, {inp.name: np.random.default_rng(0).standard_normal(shape).astype(dtype)})
    try:
        runner()
    except Exception as e:  # noqa: BLE001 - onnxruntime's pybind exceptions share no useful base
        raise BadInputError(f"{label}: inference on input shape {shape} failed: {short_message(e)}") from None
    return runner


def ort_logits(session: onnxruntime.InferenceSession, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The first output of ``session`` over ``images`` in batches (the onnxruntime twin of
    :func:`spos_deploy.nets.evaluate.batched_logits`)."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)])
