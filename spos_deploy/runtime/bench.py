"""Latency of a network: onnxruntime for ``.onnx`` files, MXNet for Gluon blocks and ``-symbol.json`` files.

Sessions come from :mod:`spos_deploy.runtime.ort` and the timing loop and statistics from
:mod:`spos_deploy.runtime.timing`; this module puts them together per runtime. The runtimes are imported
lazily, inside the functions that need them, so a command can set ``OMP_NUM_THREADS`` before MXNet starts
its engine (MXNet reads it once, at import). Input is random-normal float32: latency does not depend on it.
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
) -> LatencyStats:
    """:func:`bench_onnx` on a session already made (to read ``get_providers()`` or profile it); ``label``
    names the model in error messages."""
    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    runner = ort_runner(sess, batch, input_shape, label=label)
    return measure(runner, batch, warmup=warmup, repeats=repeats)


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
    return measure(call, shape[0], warmup=warmup, repeats=repeats)


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
