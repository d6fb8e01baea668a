"""The deployed forms latency is timed in: a network of a spec, with random weights (time does not depend on
them) and BN merged, exported the way the runtime that times it ships it.

* :func:`export_deployed`: the form of a latency table's runtime (:mod:`spos_deploy.runtime.registry`), used by
  the table builder, validation, the fitted predictor's networks and the benchmarks; each engine's form is in
  :data:`DEPLOYED_FORMS`;
* :func:`measure_spec`: the fp32 export ``spos-profile --measure`` profiles
  (:func:`spos_deploy.runtime.op_profile.measure_file`).

Light at import: MXNet and the exporters are imported inside the functions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.registry import DEFAULT_RUNTIME, runtime_named


def calibration_images(spec: ModelSpec, n: int = 4) -> np.ndarray:
    """Random-normal images of the spec's input size to calibrate a random-weight network's int8 form."""
    s = spec.space.input_size
    return np.random.default_rng(0).standard_normal((max(n, 8), 3, s, s)).astype(np.float32)


def _onnxruntime_form(fp32: Path, folder: Path, spec: ModelSpec, precision: str) -> Path:
    """As exported for fp32; int8 QDQ by onnxruntime's static quantization with no conv kept in float."""
    from spos_deploy.deploy.quantize import OrtQuantConfig, quantize_onnx

    if precision == "fp32":
        return fp32
    q = quantize_onnx(
        fp32,
        folder / f"{spec.name}.int8.onnx",
        calibration_images(spec),
        spec.space.input_size,
        OrtQuantConfig(keep_float=0, calib_batch=4),
    )
    return Path(q.path)


def _openvino_form(fp32: Path, folder: Path, spec: ModelSpec, precision: str) -> Path:
    """The HardSwish-op form (what ``spos-export --format openvino`` writes), NNCF-quantized for int8."""
    from spos_deploy.deploy.onnx import rewrite_hswish
    from spos_deploy.deploy.openvino import quantize_for_openvino

    op = folder / f"{spec.name}.hswish.onnx"
    rewrite_hswish(fp32, op)
    if precision != "int8":
        return op
    return quantize_for_openvino(op, folder / f"{spec.name}.ov-int8.onnx", calibration_images(spec))


def _require_nncf(runtime: str, precision: str) -> None:
    if precision == "int8":
        from spos_deploy.deploy.openvino import require_nncf

        require_nncf(f"--runtime {runtime} --precision int8")


DeployedForm = Callable[[Path, Path, ModelSpec, str], Path]

DEPLOYED_FORMS: dict[str, tuple[DeployedForm, Callable[[str, str], None] | None]] = {
    "onnxruntime": (_onnxruntime_form, None),
    "openvino": (_openvino_form, _require_nncf),
}
"""Per engine (:data:`spos_deploy.runtime.registry.ENGINES`) whose tables time ONNX files: how its deployed form
is made from the fp32 export, and what that needs installed (checked up front by :func:`check_form`)."""


def check_form(runtime: str, precision: str) -> None:
    """Refuse up front a deployed form that cannot be made here (OpenVINO int8 needs NNCF)."""
    rt = runtime_named(runtime)
    if rt.onnx_parts:
        needs = DEPLOYED_FORMS[rt.engine][1]
        if needs is not None:
            needs(runtime, precision)


def export_deployed(
    spec: ModelSpec, folder: Path, precision: str, seed: int = 0, runtime: str = DEFAULT_RUNTIME
) -> Path:
    """Random-weight network of ``spec`` in the deployed form of the latency runtime ``runtime`` (BN merged) as
    ONNX: int8 QDQ for onnxruntime int8; for OpenVINO the HardSwish-op form (what ``spos-export --format
    openvino`` writes), NNCF-quantized on the whole network for int8 (parts are cut from it afterwards, so each
    entry runs exactly the quantizers of the deployed network)."""
    from spos_deploy.deploy.onnx import export_onnx
    from spos_deploy.deploy.transforms import merge_bn
    from spos_deploy.nets.network import build_subnet

    rt = runtime_named(runtime)
    if not rt.onnx_parts:
        raise BadInputError(f"--runtime {runtime} times MXNet blocks, not exported files")
    make = DEPLOYED_FORMS[rt.engine][0]
    net = merge_bn(build_subnet(spec, seed=seed))
    return make(export_onnx(net, folder / f"{spec.name}.onnx"), folder, spec, precision)


def measure_spec(
    spec: ModelSpec,
    device: str = "cpu",
    runs: int = 30,
    threads: int | None = None,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Per-node and per-block times of ``spec`` (random weights; time does not depend on them) with
    onnxruntime's profiler or OpenVINO's counters (``precision``: fp32 or bf16; CPU only): its fp32 export
    (BN merged) profiled by :func:`spos_deploy.runtime.op_profile.measure_file`. The options are checked
    before the network is built."""
    from spos_deploy.runtime.op_profile import check_profile, measure_file

    check_profile(device, runs, runtime, precision)
    from spos_deploy.deploy.onnx import export_onnx
    from spos_deploy.deploy.transforms import merge_bn
    from spos_deploy.nets.network import build_subnet

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(merge_bn(build_subnet(spec, seed=0)), Path(tmp) / "m.onnx")
        return measure_file(path, device, runs, threads, runtime, precision)
