"""int8 quantization: onnxruntime static QDQ (with a sensitivity pass) and MXNet contrib ``quantize_net``.

onnxruntime flow, as its own tools lay it out: pre-process (shape inference, graph optimisation that
folds what can be folded) -> calibrate on real images -> quantize (QDQ, per-tensor or per-channel
weights). Then a per-layer sensitivity pass: both models run on the calibration images with every
intermediate tensor exposed, each conv's *added* error (the drop in signal-to-quantization-noise
ratio from its input to its output) is measured, and the few worst convs are kept in float. NAS
models with depthwise convs and hard-swish are known to quantize badly; this is where they do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.deploy.choices import CALIBRATION_METHODS, MIN_CALIBRATION_IMAGES, MXNET_CALIB_MODES
from spos_deploy.errors import BadInputError
from spos_deploy.machine import has_vnni
from spos_deploy.mxnet_import import give_mxnet_scipy_stats

log = logging.getLogger(__name__)

ORT_QUANT_FORMATS = ("qdq", "qoperator")


class ArrayReader:
    """Feeds calibration images to onnxruntime in batches (a ``CalibrationDataReader``); ``on_batch`` is called
    for each batch handed out (a progress bar's tick)."""

    def __init__(
        self,
        images: np.ndarray,
        input_name: str = "data",
        batch: int = 8,
        on_batch: Callable[[], Any] | None = None,
    ):
        self.images, self.input_name, self.batch, self.on_batch = images, input_name, batch, on_batch
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self.images):
            return None
        out = {self.input_name: self.images[self._i : self._i + self.batch]}
        self._i += self.batch
        if self.on_batch is not None:
            self.on_batch()
        return out

    def rewind(self) -> None:
        self._i = 0


def _reader(images: np.ndarray, input_name: str, batch: int, on_batch: Callable[[], Any] | None = None):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(ArrayReader, CalibrationDataReader):
        pass

    return _Reader(images, input_name, batch, on_batch)


def _batches(images: int, batch: int) -> int:
    return -(-images // batch)


SENSITIVITY_IMAGES = 32
"""Images the sensitivity pass runs both models on (at most)."""


def check_calibration_images(
    images: np.ndarray, input_size: int, minimum: int = MIN_CALIBRATION_IMAGES, what: str = "calibration data"
) -> None:
    """Refuse calibration images of the wrong shape, or too few for stable ranges; ``what`` names them."""
    if images.ndim != 4 or images.shape[1:] != (3, input_size, input_size):
        raise BadInputError(
            f"{what} has shape {tuple(images.shape)[1:]} per image, the model needs (3, {input_size}, {input_size})"
        )
    if len(images) < minimum:
        raise BadInputError(f"{what} has {len(images)} images, at least {minimum} are needed")


@dataclass
class OrtQuantConfig:
    per_channel: bool = True
    method: str = "minmax"
    reduce_range: bool | None = None  # None: decide from this CPU's int8 instructions
    keep_float: int = 2  # convs kept in float by the sensitivity pass (0 disables it)
    calib_batch: int = 8
    exclude: list[str] = field(default_factory=list)
    quant_format: str = "qdq"  # qdq: QuantizeLinear/DequantizeLinear pairs; qoperator: QLinearConv and friends

    def resolved_reduce_range(self) -> bool:
        """AVX2 without VNNI saturates in the u8*s8 kernels; 7-bit weights avoid it (onnxruntime's advice)."""
        return (not has_vnni()) if self.reduce_range is None else self.reduce_range


def preprocess_onnx(src: str | Path, dst: str | Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return Path(dst)


def _quantize(
    src: Path,
    dst: Path,
    images: np.ndarray,
    cfg: OrtQuantConfig,
    exclude: list[str],
    fmt: str | None = None,
    on_batch: Callable[[], Any] | None = None,
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.method]
    quantize_static(
        str(src),
        str(dst),
        _reader(images, "data", cfg.calib_batch, on_batch),
        quant_format=QuantFormat.QOperator if (fmt or cfg.quant_format) == "qoperator" else QuantFormat.QDQ,
        per_channel=cfg.per_channel,
        reduce_range=cfg.resolved_reduce_range(),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude or None,
        calibrate_method=method,
        extra_options={"CalibMovingAverage": True} if cfg.method == "minmax" else {},
    )


def conv_sensitivity(
    fp32: Path, qdq: Path, images: np.ndarray, batch: int = 8, on_batch: Callable[[], Any] | None = None
) -> list[tuple[str, float]]:
    """Convs ranked by the quantization noise they add: SQNR(input) - SQNR(output), in dB, worst first
    (``on_batch``: called for each batch either model runs, a progress bar's tick)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    with tempfile.TemporaryDirectory() as tmp:
        aug_f, aug_q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        modify_model_output_intermediate_tensors(str(fp32), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
        n = min(len(images), SENSITIVITY_IMAGES)
        act_f = collect_activations(str(aug_f), _reader(images[:n], "data", batch, on_batch))
        act_q = collect_activations(str(aug_q), _reader(images[:n], "data", batch, on_batch))
    errors = compute_activation_error(create_activation_matching(act_q, act_f))
    sqnr = {t: e.get("xmodel_err") for t, e in errors.items() if e.get("xmodel_err") is not None}
    model = onnx.load(str(fp32))
    ranked = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.output[0] not in sqnr:
            continue
        out_q = sqnr[node.output[0]]
        in_q = sqnr.get(node.input[0], float("inf"))
        if not np.isfinite(in_q):
            in_q = max(out_q, 60.0)  # the image itself: quantized only at its own input
        ranked.append((node.name, float(in_q - out_q)))
    ranked.sort(key=lambda r: -r[1])
    return ranked


@dataclass
class OrtQuantResult:
    path: str
    excluded: list[str]
    sensitivity: list[tuple[str, float]]
    config: dict

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sensitivity"] = [{"node": n, "added_noise_db": round(v, 3)} for n, v in self.sensitivity[:10]]
        return d


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    images: np.ndarray,
    input_size: int,
    cfg: OrtQuantConfig | None = None,
    progress: bool = False,
) -> OrtQuantResult:
    """Static int8 QDQ quantization of an fp32 ONNX model calibrated on ``images``.

    The pre-processed model and the calibration files live in a temporary folder of this call: only
    ``out_path`` is left behind. The sensitivity pass always ranks convs on a QDQ model (onnxruntime's
    activation-matching debugger reads QDQ graphs only); a QOperator model is then written with the same
    convs kept in float. ``progress``: a bar on stderr over the batches of calibration and of the sensitivity
    pass (where stderr is a terminal).
    """
    cfg = cfg or OrtQuantConfig()
    if cfg.method not in CALIBRATION_METHODS:
        raise BadInputError(f"unknown calibration method {cfg.method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    if cfg.quant_format not in ORT_QUANT_FORMATS:
        raise BadInputError(f"quantization format {cfg.quant_format!r}: use one of {', '.join(ORT_QUANT_FORMATS)}")
    check_calibration_images(images, input_size)
    out_path = Path(out_path)
    sensitivity: list[tuple[str, float]] = []
    excluded = list(cfg.exclude)
    calib = _batches(len(images), cfg.calib_batch)
    total = calib + (calib + 2 * _batches(min(len(images), SENSITIVITY_IMAGES), cfg.calib_batch)) * (cfg.keep_float > 0)
    bar = tqdm(total=total, desc="int8", unit="batch", disable=None if progress else True, leave=False)
    tick = bar.update
    with bar, tempfile.TemporaryDirectory(prefix="spos-quantize-") as tmp:
        pre = preprocess_onnx(fp32_path, Path(tmp) / "preprocessed.onnx")
        if cfg.keep_float > 0:
            bar.set_postfix_str("calibration")
            _quantize(pre, out_path, images, cfg, excluded, fmt="qdq", on_batch=tick)
            bar.set_postfix_str("sensitivity")
            sensitivity = conv_sensitivity(pre, out_path, images, cfg.calib_batch, tick)
            excluded += [n for n, _ in sensitivity[: cfg.keep_float] if n not in excluded]
            log.info("keeping in float: %s", ", ".join(excluded))
        bar.set_postfix_str("quantization")
        _quantize(pre, out_path, images, cfg, excluded, on_batch=tick)
    config = asdict(cfg)
    config["reduce_range"] = cfg.resolved_reduce_range()
    return OrtQuantResult(str(out_path), excluded, sensitivity, config)


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to a temporary file for the duration (C++ logging ignores Python's sys.stderr).

    What was written is replayed to stderr if the block fails, so nothing is lost when it matters.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# ---- MXNet contrib ----------------------------------------------------------------------------------


def quantize_mxnet(
    net,
    images: np.ndarray,
    input_size: int,
    calib_mode: str = "naive",
    batch: int = 8,
    exclude_layers: list[str] | None = None,
):
    """MXNet contrib ``quantize_net_v2`` (oneDNN backend) to an int8 symbol, calibrated on ``images``.

    Returns a hybridized ``SymbolBlock``; ``export(prefix)`` writes the int8 symbol/params.
    """
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    if calib_mode not in MXNET_CALIB_MODES:
        raise BadInputError(f"unknown MXNet calibration mode {calib_mode!r}; use one of {', '.join(MXNET_CALIB_MODES)}")
    check_calibration_images(images, input_size)
    if calib_mode == "entropy":
        give_mxnet_scipy_stats()
    loader = mx.io.NDArrayIter(data={"data": images}, batch_size=batch, last_batch_handle="discard")
    net.hybridize()
    net(mx.nd.zeros((1, 3, input_size, input_size)))
    quiet = logging.getLogger("spos_deploy.mxnet_quantization")
    quiet.setLevel(logging.WARNING)
    with quiet_stderr():  # the graph pass logs a line per node at INFO level from C++
        qnet = quantize_net_v2(
            net,
            quantized_dtype="auto",
            quantize_mode="full",
            exclude_layers=exclude_layers,
            # MXNet 1.9's int8 elementwise product (hard-swish, SE scale) fails on uint8 inputs; keep it fp32
            exclude_operators=["_mul", "elemwise_mul", "broadcast_mul"],
            calib_data=loader if calib_mode != "none" else None,
            data_shapes=[mx.io.DataDesc("data", (batch, 3, input_size, input_size))],
            calib_mode=calib_mode,
            num_calib_examples=len(images) // batch * batch,
            ctx=mx.cpu(),
            logger=quiet,
        )
    qnet.hybridize(static_alloc=True, static_shape=True)
    return qnet
