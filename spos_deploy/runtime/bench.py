"""Latency of a network: onnxruntime for ``.onnx`` files, OpenVINO for ``.onnx`` files and IRs, MXNet for
Gluon blocks and ``-symbol.json`` files.

Sessions come from :mod:`spos_deploy.runtime.ort` and :mod:`spos_deploy.runtime.openvino`, the timing loop,
statistics and load record from :mod:`spos_deploy.runtime.timing`; this module puts them together per
runtime. The runtimes are imported lazily, inside the functions that need them, so a command can set
``OMP_NUM_THREADS`` before MXNet starts its engine (MXNet reads it once, at import). Input is random-normal
float32: latency does not depend on it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spos_deploy.errors import BadInputError, short_message
from spos_deploy.runtime.ort import DEVICES, ort_runner, ort_session
from spos_deploy.runtime.timing import LatencyStats, check_counts, measure

if TYPE_CHECKING:  # the runtimes are heavy and MXNet must not start before OMP_NUM_THREADS is set
    import mxnet as mx
    import onnxruntime

    from spos_deploy.runtime.openvino import OvCompiled

_ONNX_INT8_OPS = ("QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")

# --------------------------------------------------------------------------------------------------------------
# onnxruntime


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

    The shape comes from the model (see :func:`~spos_deploy.runtime.ort.resolve_input_shape`): the batch
    dimension from ``batch``, dynamic dimensions from ``input_shape``.
    """
    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    sess = ort_session(path, device=device, threads=threads)
    return bench_ort_session(sess, batch, warmup, repeats, input_shape, label=str(path))


def bench_ort_session(
    sess: onnxruntime.InferenceSession,
    batch: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int | None] | None = None,
    label: str = "model",
    warn_label: str = "",
) -> LatencyStats:
    """:func:`bench_onnx` on a session already made (to read ``get_providers()`` or profile it); ``label``
    names the model in error messages, ``warn_label`` prefixes a busy-machine warning."""
    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    runner = ort_runner(sess, batch, input_shape, label=label)
    return measure(runner, batch, warmup=warmup, repeats=repeats, label=warn_label)


def onnx_precision(path: str | os.PathLike[str]) -> str:
    """The precision an ONNX file holds, which onnxruntime runs as is: ``int8`` when it carries quantized
    ops (QDQ pairs, QLinear*/Integer ops), ``fp16`` for a half-precision input, else ``fp32``."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises many types for a bad file
        raise BadInputError(f"{path}: not a loadable ONNX model: {short_message(e)}") from None
    if any(n.op_type in _ONNX_INT8_OPS or n.op_type.startswith("QLinear") for n in model.graph.node):
        return "int8"
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if inputs and inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        return "fp16"
    return "fp32"


# --------------------------------------------------------------------------------------------------------------
# OpenVINO


def bench_openvino(
    path: str | os.PathLike[str],
    batch: int = 1,
    threads: int | None = None,
    precision: str = "fp32",
    hint: str = "latency",
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int | None] | None = None,
    static_shape: Sequence[int] | None = None,
) -> tuple[LatencyStats, dict]:
    """Latency of an ONNX file or IR with OpenVINO at exactly ``precision``, and what was compiled
    (:meth:`~spos_deploy.runtime.openvino.OvCompiled.as_dict`): a report states the precision that ran."""
    from spos_deploy.runtime.openvino import ov_compile

    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    compiled = ov_compile(path, precision, threads, hint, static_shape=static_shape, label=str(path))
    return bench_ov_compiled(compiled, batch, warmup, repeats, input_shape), compiled.as_dict()


def bench_ov_compiled(
    compiled: OvCompiled,
    batch: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int | None] | None = None,
    label: str = "",
) -> LatencyStats:
    """:func:`bench_openvino` on a model already compiled (one compile serves every batch of a dynamic one)."""
    from spos_deploy.runtime.openvino import ov_runner

    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    return measure(ov_runner(compiled, batch, input_shape), batch, warmup=warmup, repeats=repeats, label=label)


def ov_parallel_throughput(
    compiled: OvCompiled,
    batch: int,
    warmup: int = 2,
    repeats: int = 10,
    input_shape: Sequence[int | None] | None = None,
    label: str = "",
) -> tuple[LatencyStats, int]:
    """Throughput the way OpenVINO's throughput hint is meant to be used: its optimal number of infer
    requests in flight at once. One timed call is one round (every request started, all awaited), so the
    stats' batch is ``requests * batch`` and their throughput is images per second; returns the requests too.

    A single synchronous request would leave all streams but one idle and understate the hint.
    """
    import openvino as ov

    from spos_deploy.runtime.openvino import ov_runner

    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    requests = max(1, int(compiled.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    feed = ov_runner(compiled, batch, input_shape).feed  # also the untimed call that checks the shape
    queue = ov.AsyncInferQueue(compiled.compiled, requests)

    def round_() -> None:
        for _ in range(requests):
            queue.start_async({0: feed})
        queue.wait_all()

    return measure(round_, requests * batch, warmup=warmup, repeats=repeats, label=label), requests


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
    label: str = "",
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
    check_counts(batch=shape[0], warmup=warmup, repeats=repeats)
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
        raise BadInputError(f"inference on input shape {shape} failed: {short_message(e)}") from None
    return measure(call, shape[0], warmup=warmup, repeats=repeats, label=label)


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
        raise BadInputError(f"{sym_path}: not an MXNet symbol file: {short_message(e)}") from None
    inputs = sym.list_inputs()
    data_names = ["data"]
    if "data" not in inputs:
        if params is None:
            raise BadInputError(f"{sym_path}: the graph has no input named 'data'; give --params to tell its inputs")
        try:
            saved = {k.split(":", 1)[-1] for k in mx.nd.load(str(params))}
        except mx.base.MXNetError as e:
            raise BadInputError(f"{params}: not an MXNet params file: {short_message(e)}") from None
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
        raise BadInputError(f"{what}: cannot load the graph's weights: {short_message(e)}") from None
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


def symbol_precision(symbol_json: str | os.PathLike[str]) -> str:
    """``int8`` for a graph MXNet's quantization wrote (it holds quantize ops), else ``fp32``."""
    import json

    try:
        nodes = json.loads(Path(symbol_json).read_text()).get("nodes", [])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return "fp32"  # load_symbol_block says what is wrong with the file
    return "int8" if any("quantize" in str(n.get("op", "")) for n in nodes if isinstance(n, dict)) else "fp32"
