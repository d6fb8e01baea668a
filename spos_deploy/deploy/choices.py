"""The choices of the deployment pipeline and its up-front checks, in a module with no heavy imports.

``spos-export`` declares its options from these before any runtime is loaded (its module must stay light
so that Ctrl-C during start-up gets the one-line signal policy) and checks its output folder before any
work; the pipeline and the quantizers check library callers' values against the same tuples.
"""

from __future__ import annotations

import os
from pathlib import Path

from spos_deploy.errors import BadInputError

FORMATS = ("onnx", "mxnet")
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
