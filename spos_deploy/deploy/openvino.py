"""OpenVINO deployment files: the IR (``.xml`` + ``.bin``) of an exported ONNX model, and int8 for OpenVINO.

int8 comes from NNCF's post-training quantization on the ONNX model (NNCF 2.14, the newest release that
installs beside numpy 1.23.5; its OpenVINO backend needs ``openvino.runtime``, which OpenVINO 2026 removed).
NNCF places the quantize/dequantize pairs where OpenVINO's low-precision transformations expect them, so
the CPU plugin runs the convolutions in int8, where the QDQ file written for onnxruntime ran slower in
OpenVINO than fp32 did. The quantized ONNX model is then converted to the IR like the fp32 one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from spos_deploy.atomic import atomic_path, scratch_dir
from spos_deploy.deploy.choices import MIN_CALIBRATION_IMAGES
from spos_deploy.errors import BadInputError, short_message
from spos_deploy.runtime.openvino import require_openvino

log = logging.getLogger(__name__)

NNCF_HINT = "pip install 'spos-deploy[openvino]' (nncf==2.14.1)"
NNCF_PRESETS = ("performance", "mixed")  # symmetric activations (fastest on CPU) or asymmetric


def require_nncf(what: str = "int8 for OpenVINO") -> object:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import nncf
    except ImportError:
        raise BadInputError(f"{what} needs NNCF, which is not installed: {NNCF_HINT}") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def write_ir(onnx_path: str | Path, xml_path: str | Path, static_shape: tuple[int, ...] | None = None) -> Path:
    """Convert ``onnx_path`` to an IR at ``xml_path`` (weights kept in fp32: no fp16 compression, which would
    change the outputs). ``static_shape`` fixes the input shape (OpenVINO then folds the shape arithmetic)."""
    ov = require_openvino("--format openvino")
    xml_path = Path(xml_path)
    try:
        model = ov.convert_model(str(onnx_path))
        if static_shape is not None:
            model.reshape({model.inputs[0].get_any_name(): list(static_shape)})
    except Exception as e:  # noqa: BLE001 - OpenVINO's converter raises plain RuntimeErrors
        raise BadInputError(f"{onnx_path}: OpenVINO cannot convert it: {short_message(e)}") from None
    with scratch_dir(beside=xml_path) as tmp:  # removed even by an exit that skips ``finally`` blocks
        staged = tmp / xml_path.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml_path.with_suffix(".bin"))  # the weights first: an .xml
        os.replace(staged, xml_path)  # never points at a missing or older .bin
    return xml_path


def quantize_for_openvino(
    fp32_onnx: str | Path, out_onnx: str | Path, images: np.ndarray, preset: str = "performance"
) -> Path:
    """int8 ONNX for OpenVINO: NNCF post-training quantization (min-max statistics on ``images``, fast bias
    correction), written atomically to ``out_onnx``."""
    import onnx

    if preset not in NNCF_PRESETS:
        raise BadInputError(f"NNCF preset {preset}: use one of {', '.join(NNCF_PRESETS)}")
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise BadInputError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} images, got {len(images)}")
    nncf = require_nncf()
    model = onnx.load(str(fp32_onnx))
    name = model.graph.input[0].name
    data = nncf.Dataset([{name: np.ascontiguousarray(images[i : i + 1], np.float32)} for i in range(len(images))])
    mode = nncf.QuantizationPreset.PERFORMANCE if preset == "performance" else nncf.QuantizationPreset.MIXED
    # the longest step of an int8 export, and silent (NNCF's output is muted below): say that it started
    log.info("int8 for OpenVINO: NNCF quantization (%s preset) on %d calibration images", preset, len(images))
    # NNCF draws its progress bars on stdout and warns (numpy RuntimeWarnings) on stderr: both are muted, but
    # sys.stderr is never swapped, since an interrupt that must end the process at once (one landing in a
    # destructor) writes its one line to sys.stderr, and a swapped-in buffer would swallow it
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model, data, subset_size=len(images), preset=mode)
    out_onnx = Path(out_onnx)
    with atomic_path(out_onnx) as tmp:
        onnx.save(quantized, str(tmp))
    return out_onnx
