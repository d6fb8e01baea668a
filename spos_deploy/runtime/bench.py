"""Latency of a network: onnxruntime for ``.onnx`` files, MXNet for Gluon blocks and ``-symbol.json`` files.

The statistics (:func:`summarize`, :func:`resolve_input_shape`) are pure so they can be tested exactly; the
runtimes are imported lazily, inside the functions that need them, so a command can set ``OMP_NUM_THREADS``
before MXNet starts its engine (MXNet reads it once, at import).

What a number here means: wall time of one synchronous forward pass (``time.perf_counter`` around the call,
MXNet outputs waited on), after ``warmup`` untimed passes, on random-normal float32 input. p50 is the headline
figure and throughput is derived from it, because the median is what a latency table should hold: means are
pulled up by the occasional scheduler hiccup on a shared machine.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spos_deploy.errors import BadInputError

if TYPE_CHECKING:  # the runtimes are heavy and MXNet must not start before OMP_NUM_THREADS is set
    import mxnet as mx
    import onnxruntime

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu")
# How many times `repeats` time_fn may run when min_seconds asks for more: bounds a run on a tiny model.
MAX_REPEAT_FACTOR = 20

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass
class LatencyStats:
    """Summary of the timed runs of one configuration (times in milliseconds)."""

    batch: int
    runs: int
    warmup: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # images per second = batch / (p50 seconds)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (a non-finite throughput, from a p50 of zero, becomes ``None``)."""
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------------------------
# pure parts


def summarize(times_s: Sequence[float], batch: int, warmup: int) -> LatencyStats:
    """Turn per-call wall times (seconds) into :class:`LatencyStats`.

    Percentiles use numpy's linear interpolation (its default; stated so results are reproducible across
    tools). ``std_ms`` is the population standard deviation (``ddof=0``) so a single run gives 0, not NaN.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("summarize needs at least one time")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be finite and non-negative")
    ms = t * 1e3
    p50, p90, p99 = (float(x) for x in np.percentile(ms, [50, 90, 99], method="linear"))
    return LatencyStats(
        batch=batch,
        runs=int(t.size),
        warmup=warmup,
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        min_ms=float(ms.min()),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        throughput=batch / (p50 / 1e3) if p50 > 0 else math.inf,
    )


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
    out = [batch]
    if _fixed(model_shape[0]) and model_shape[0] != batch:
        raise BadInputError(
            f"{name} has a fixed batch of {model_shape[0]}; batch {batch} needs a model exported with a dynamic "
            f"batch dimension"
        )
    for i in range(1, rank):
        dim, w = model_shape[i], want[i]
        if _fixed(dim):
            if w is not None and w != dim:
                raise BadInputError(f"{name} dimension {i} is fixed at {dim} {_fmt_dims(model_shape)}; requested {w}")
            out.append(int(dim))  # type: ignore[arg-type]
        elif w is None:
            raise BadInputError(
                f"{name} dimension {i} is dynamic {_fmt_dims(model_shape)}; give its size "
                f"(input_shape, or --input-size for H and W)"
            )
        elif w < 1:
            raise BadInputError(f"requested size {w} for {name} dimension {i} must be >= 1")
        else:
            out.append(int(w))
    return tuple(out)


def _fixed(dim: int | str | None) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def _fmt_dims(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join(str(d) if _fixed(d) else "?" if d is None else str(d) for d in shape) + ")"


def _check_counts(batch: int | None = None, warmup: int | None = None, repeats: int | None = None) -> None:
    if batch is not None and batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    if warmup is not None and warmup < 0:
        raise BadInputError(f"warmup must be >= 0, got {warmup}")
    if repeats is not None and repeats < 1:
        raise BadInputError(f"repeats must be >= 1, got {repeats}")


def _one_line(e: BaseException) -> str:
    """The informative line of a runtime's (often multi-line, C++ backtrace) error message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("[bt]", "File ", "Traceback", "Stack trace"))]
    for ln in lines:
        if "Error" in ln or "Check failed" in ln or "error" in ln:
            return ln
    return lines[0] if lines else type(e).__name__


# --------------------------------------------------------------------------------------------------------------
# timing


def time_fn(fn: Callable[[], Any], warmup: int = 10, repeats: int = 50, min_seconds: float = 0.0) -> list[float]:
    """Wall time (seconds) of each of at least ``repeats`` calls of ``fn``, after ``warmup`` untimed calls.

    ``fn`` must be synchronous: it returns only when the work is done (MXNet callers wait on the output).
    The timed loop keeps going past ``repeats`` until ``min_seconds`` of wall time have passed, so fast models
    get enough samples for a stable p99, but never beyond ``20 * repeats`` calls.
    """
    _check_counts(warmup=warmup, repeats=repeats)
    for _ in range(warmup):
        fn()
    times: list[float] = []
    cap = MAX_REPEAT_FACTOR * repeats
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < cap):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------------------------------------------
# onnxruntime


def ort_providers(device: str) -> list[str]:
    """Execution providers for ``device``; CPU stays last as onnxruntime's fallback for unsupported nodes."""
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "gpu":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        raise BadInputError("--device gpu: this onnxruntime build has no CUDA provider (install onnxruntime-gpu)")
    raise BadInputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")


def _onnx_model_bytes(path: Path) -> bytes | str:
    """The model, with initializers removed from the graph inputs when it has any.

    MXNet's exporter (like old PyTorch ones) lists every weight as a graph input too; onnxruntime then treats
    the weights as overridable, skips constant folding and BatchNorm fusion, and the latency measured is not
    what a deployed model would show. Dropping them from the inputs (in memory, as onnxruntime's
    ``remove_initializer_from_input.py`` does to a file) measures the model as it would be deployed.
    Models with external data, or an IR version older than 4 (where weights had to be inputs), load as is.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if model.ir_version < 4 or any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return str(path)
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    if len(keep) == len(model.graph.input):
        return str(path)
    log.debug("%s: %d initializers dropped from the graph inputs", path, len(model.graph.input) - len(keep))
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model.SerializeToString()


def ort_session(
    path: str | os.PathLike[str],
    device: str = "cpu",
    threads: int | None = None,
    profile: bool = False,
) -> onnxruntime.InferenceSession:
    """An onnxruntime session set up for latency measurement.

    One inter-op thread (these networks are a chain; parallel branches are tiny), all graph optimisations,
    and ``threads`` intra-op threads when given (else onnxruntime's default: the physical cores).
    ``profile`` turns on onnxruntime's per-node profiler (call ``end_profiling()`` for the file).
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
    so = onnxruntime.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = profile
    try:
        model = _onnx_model_bytes(p)
        return onnxruntime.InferenceSession(model, sess_options=so, providers=providers)
    except BadInputError:
        raise
    except Exception as e:  # noqa: BLE001 - protobuf and onnxruntime raise many types for a bad file
        raise BadInputError(f"{p}: not a loadable ONNX model: {_one_line(e)}") from None


def bench_onnx(
    path: str | os.PathLike[str],
    batch: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int | None] | None = None,
) -> LatencyStats:
    """Latency of an ONNX model with onnxruntime on random-normal input of its first (only) input.

    The shape comes from the model (see :func:`resolve_input_shape`): the batch dimension from ``batch``,
    dynamic dimensions from ``input_shape``.
    """
    _check_counts(batch=batch, warmup=warmup, repeats=repeats)
    sess = ort_session(path, device=device, threads=threads)
    return bench_ort_session(sess, batch, warmup, repeats, input_shape, label=str(path))


def bench_ort_session(
    sess: onnxruntime.InferenceSession,
    batch: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int | None] | None = None,
    label: str = "model",
) -> LatencyStats:
    """:func:`bench_onnx` on a session already made (to read ``get_providers()`` or profile it); ``label``
    names the model in error messages."""
    _check_counts(batch=batch, warmup=warmup, repeats=repeats)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise BadInputError(f"{label}: expected one input, the model has {len(inputs)} ({names})")
    inp = inputs[0]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype is None:
        raise BadInputError(f"{label}: input '{inp.name}' is {inp.type}; only float inputs can be benchmarked")
    shape = resolve_input_shape(inp.shape, batch, input_shape, name=f"{label}: input '{inp.name}'")
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    feed = {inp.name: x}
    try:  # one untimed call: a shape the graph cannot take fails here with a clear message
        sess.run(None, feed)
    except Exception as e:  # noqa: BLE001 - onnxruntime's pybind exceptions share no useful base
        raise BadInputError(f"{label}: inference on input shape {shape} failed: {_one_line(e)}") from None
    times = time_fn(lambda: sess.run(None, feed), warmup=warmup, repeats=repeats)
    return summarize(times, batch, warmup)


# --------------------------------------------------------------------------------------------------------------
# MXNet


def mxnet_context(device: str) -> mx.Context:
    """The MXNet context for ``device`` (GPU 0 for ``gpu``)."""
    import mxnet as mx

    if device == "cpu":
        return mx.cpu()
    if device == "gpu":
        if mx.context.num_gpus() > 0:
            return mx.gpu(0)
        raise BadInputError(
            "--device gpu: this MXNet build has no GPU support or no GPU is visible (install mxnet-cu112)"
        )
    raise BadInputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")


def _block_context(block: mx.gluon.Block) -> mx.Context:
    import mxnet as mx

    for p in block.collect_params().values():
        return p.list_ctx()[0]
    return mx.cpu()


def bench_mxnet(
    block: mx.gluon.HybridBlock,
    input_shape: tuple[int, ...],
    ctx: mx.Context | None = None,
    warmup: int = 10,
    repeats: int = 50,
) -> LatencyStats:
    """Latency of an initialised Gluon block on random-normal input of ``input_shape`` (batch first).

    A block not yet hybridized is hybridized with a static allocation and static shapes (how it would be
    deployed). MXNet is asynchronous: a call returns when the work is queued, so every timed call waits on
    its outputs. ``ctx`` defaults to where the block's parameters live; they are not moved.
    """
    import mxnet as mx

    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise BadInputError(f"input shape must be positive dimensions, got {tuple(input_shape)}")
    _check_counts(batch=shape[0], warmup=warmup, repeats=repeats)
    ctx = ctx or _block_context(block)
    if not getattr(block, "_active", False):
        block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=shape, ctx=ctx)

    def call() -> None:
        out = block(x)
        for o in out if isinstance(out, list | tuple) else [out]:
            o.wait_to_read()

    try:  # one untimed call: builds the static graph and turns a shape error into one line
        call()
    except mx.base.MXNetError as e:
        raise BadInputError(f"inference on input shape {shape} failed: {_one_line(e)}") from None
    times = time_fn(call, warmup=warmup, repeats=repeats)
    return summarize(times, shape[0], warmup)


def load_symbol_block(
    symbol_json: str | os.PathLike[str], params: str | os.PathLike[str] | None, ctx: mx.Context | None = None
) -> mx.gluon.SymbolBlock:
    """An exported MXNet graph (fp32, or int8 from MXNet's quantization) as a Gluon block.

    The input is ``data`` (what Gluon's ``export`` writes); a graph with another single input name is
    accepted when ``params`` tells the inputs from the weights. Without ``params`` the weights are random
    (the default initialiser): enough for latency, which does not depend on their values.
    """
    import mxnet as mx

    ctx = ctx or mx.cpu()
    sym_path = Path(symbol_json)
    if not sym_path.is_file():
        raise BadInputError(f"{sym_path}: no such file")
    if params is not None and not Path(params).is_file():
        raise BadInputError(f"{params}: no such file")
    try:
        sym = mx.sym.load(str(sym_path))
    except mx.base.MXNetError as e:
        raise BadInputError(f"{sym_path}: not an MXNet symbol file: {_one_line(e)}") from None
    inputs = sym.list_inputs()
    data_names = ["data"]
    if "data" not in inputs:
        if params is None:
            raise BadInputError(f"{sym_path}: the graph has no input named 'data'; give --params to tell its inputs")
        try:
            saved = {k.split(":", 1)[-1] for k in mx.nd.load(str(params))}
        except mx.base.MXNetError as e:
            raise BadInputError(f"{params}: not an MXNet params file: {_one_line(e)}") from None
        data_names = [n for n in inputs if n not in saved]
        if len(data_names) != 1:
            raise BadInputError(f"{sym_path}: expected one data input, found {data_names or 'none'}")
    try:
        with warnings.catch_warnings():  # "cannot decide type for data": the input's dtype is set on the first call
            warnings.simplefilter("ignore", UserWarning)
            block = mx.gluon.SymbolBlock.imports(
                str(sym_path), data_names, None if params is None else str(params), ctx
            )
        if params is None:
            block.initialize(ctx=ctx)
    except (mx.base.MXNetError, AssertionError, ValueError) as e:
        what = params if params is not None else sym_path
        raise BadInputError(f"{what}: cannot load the graph's weights: {_one_line(e)}") from None
    return block


def bench_symbol(
    symbol_json: str | os.PathLike[str],
    params: str | os.PathLike[str] | None,
    input_shape: tuple[int, ...],
    ctx: mx.Context | None = None,
    warmup: int = 10,
    repeats: int = 50,
) -> LatencyStats:
    """Latency of an exported MXNet graph (``prefix-symbol.json`` + optional ``prefix-0000.params``)."""
    block = load_symbol_block(symbol_json, params, ctx)
    return bench_mxnet(block, input_shape, ctx=ctx, warmup=warmup, repeats=repeats)
