"""The choices of the deployment pipeline and its up-front checks, in a module with no heavy imports.

``spos-export`` declares its options from these before any runtime is loaded (its module must stay light
so that Ctrl-C during start-up gets the one-line signal policy) and checks its output folder before any
work; the pipeline and the quantizers check library callers' values against the same tuples.
"""

from __future__ import annotations

import os
from pathlib import Path

from spos_deploy.errors import BadInputError

FORMATS = ("onnx", "mxnet", "openvino")
HSWISH_FORMS = ("mul", "op")  # HardSigmoid(x) * x as MXNet exports it, or the one ONNX HardSwish op (opset 14)
DEFAULT_HSWISH = {"onnx": "mul", "mxnet": "mul", "openvino": "op"}  # op: measured faster in OpenVINO only
SHUFFLE_FORMS = ("reshape", "conv")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")  # onnxruntime static quantization
MXNET_CALIB_MODES = ("none", "naive", "entropy")  # MXNet contrib quantize_net_v2
MIN_CALIBRATION_IMAGES = 8


def check_new_output(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that exists or lies below a file, before any work is done."""
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        raise BadInputError(f"{out}: output folder exists; choose a new one (nothing was written)")
    for up in out.parents:
        if up.exists():
            if not up.is_dir():
                raise BadInputError(f"{out}: {up} is a file, not a folder (nothing was written)")
            break
    return out


def hswish_form(fmt: str, hswish: str | None) -> str:
    """The activation form an export writes: ``hswish`` as asked, else the default of ``fmt``; the MXNet
    graph has only the product form."""
    if hswish is not None and hswish not in HSWISH_FORMS:
        raise BadInputError(f"--hswish {hswish}: use one of {', '.join(HSWISH_FORMS)}")
    if fmt == "mxnet" and hswish == "op":
        raise BadInputError(
            "--hswish op: the HardSwish op exists in ONNX and OpenVINO only; use --format onnx or openvino"
        )
    return hswish or DEFAULT_HSWISH.get(fmt, "mul")


def check_format_options(fmt: str, hswish: str | None, static_batch: int | None) -> None:
    """Options that only some formats take, refused in one line before any runtime is loaded."""
    if fmt not in FORMATS:
        raise BadInputError(f"--format {fmt}: use {' or '.join(FORMATS)}")
    hswish_form(fmt, hswish)
    if static_batch is not None and fmt != "openvino":
        raise BadInputError("--static-batch fixes the input of an OpenVINO IR: use it with --format openvino")
    if static_batch is not None and static_batch < 1:
        raise BadInputError(f"--static-batch {static_batch}: must be >= 1")
