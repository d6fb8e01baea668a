"""spos-export --format openvino: the IR checked against MXNet with f32 forced, int8 through NNCF measured on
real labelled data, bf16 where native, the HardSwish form, and one-line errors (OpenVINO missing, bad IR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from spos_deploy.errors import BadInputError

from .conftest import ROOT, TINY_MODEL, run_cli
from .test_deploy import trained  # noqa: F401  (the fixture: the tiny model trained on Fashion-MNIST)

ov = pytest.importorskip("openvino")

CHECK = "OpenVINO fp32 (IR, f32 forced) vs MXNet"


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "model.json"
    path.write_text(json.dumps(TINY_MODEL))
    return path


def _export(capsys: pytest.CaptureFixture, tiny: Path, out: Path, *extra: str) -> dict:
    """spos-export in this process (the runtimes are imported once for the module, not once per test)."""
    from spos_deploy.cli.export import main

    argv = [str(tiny), "--random-init", "-o", str(out), "--eval", "fashion-mnist:test", "--eval-count", "30"]
    capsys.readouterr()
    assert main([*argv, "--json", *extra]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    return report


def _mxnet_reference(images: np.ndarray) -> np.ndarray:
    """Logits of the network spos-export --random-init builds (seed 0), computed here independently."""
    import mxnet as mx

    from spos_deploy.model_spec import spec_from_dict
    from spos_deploy.nets.network import build_subnet

    return build_subnet(spec_from_dict(TINY_MODEL), seed=0)(mx.nd.array(images)).asnumpy()


def _op_types(xml: Path) -> set[str]:
    return {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops()}


def test_openvino_export_writes_a_checked_ir(capsys, tiny_json, tmp_path):
    from spos_deploy.data.images import fashion_mnist
    from spos_deploy.runtime.openvino import native_bf16, ov_compile, ov_logits

    out = tmp_path / "out"
    report = _export(capsys, tiny_json, out, "--format", "openvino")
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.json", "model.xml", "report.json", "report.md"]
    check = next(c for c in report["checks"] if c["check"] == CHECK)
    assert check["passed"] and check["max_rel"] < 1e-4 and check["executed_precision"] == "fp32"
    assert all(c["passed"] for c in report["checks"])
    assert report["openvino"]["version"] == ov.__version__
    fp32 = report["openvino"]["compiled"]["fp32"]
    assert fp32["inference_precision"] == "f32" and fp32["int8_layers"] == 0 and fp32["compute_layers"] > 0
    assert report["deployed"]["format"] == "openvino" and report["deployed"]["hswish"] == "op"
    assert report["deployed"]["hardswish_ops"] == 14 and "HSwish" in _op_types(out / "model.xml")
    # the shipped IR, compiled here, gives the logits of the network MXNet computes
    images = fashion_mnist("test", 32, limit=30).images
    logits = ov_logits(ov_compile(out / "model.xml", "fp32"), images)
    ref = _mxnet_reference(images)
    assert np.abs(logits - ref).max() / np.abs(ref).max() < 1e-4
    lat = report["latency"]
    assert lat["openvino_fp32"]["precision"] == "fp32" and lat["openvino_fp32"]["executed_precision"] == "fp32"
    if native_bf16():
        assert lat["openvino_bf16"]["executed_precision"] == "bf16" and report["bf16"]["measured"]
        assert report["bf16"]["accuracy"]["top1_agreement"] > 0.8
    else:
        assert "openvino_bf16" not in lat and "no native bf16" in report["bf16"]["reason"]
    md = (out / "report.md").read_text()
    assert "## OpenVINO" in md and ov.__version__ in md and CHECK in md


def test_hswish_mul_form_and_static_batch(capsys, tiny_json, tmp_path):
    out = tmp_path / "out"
    report = _export(
        capsys, tiny_json, out, "--format", "openvino", "--hswish", "mul", "--static-batch", "4", "--no-bench"
    )
    ops = _op_types(out / "model.xml")
    assert "HSwish" not in ops and "HardSigmoid" in ops
    assert report["deployed"]["hswish"] == "mul" and report["deployed"]["static_batch"] == 4
    assert report["openvino"]["input_shape"] == [4, 3, 32, 32]
    shape = ov.Core().read_model(str(out / "model.xml")).inputs[0].get_partial_shape()
    assert shape.is_static and list(shape.to_shape()) == [4, 3, 32, 32]
    assert all(c["passed"] for c in report["checks"]) and any(c["check"] == CHECK for c in report["checks"])
    assert report["latency"] == {}


@pytest.mark.parametrize("form", ["mul", "op"])
def test_onnx_hswish_form(capsys, tiny_json, tmp_path, form):
    out = tmp_path / "out"
    extra = ["--hswish", "op"] if form == "op" else []  # mul is the ONNX default
    report = _export(capsys, tiny_json, out, "--no-bench", *extra)
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert report["deployed"]["hswish"] == form
    assert ops.count("HardSwish") == (14 if form == "op" else 0)
    assert ops.count("HardSigmoid") == (3 if form == "op" else 17)  # the SE gates stay HardSigmoid
    check = next(c for c in report["checks"] if c["check"] == "onnxruntime fp32 vs MXNet")
    assert check["passed"] and check["max_rel"] < 1e-4


def test_option_mismatches_are_one_line(tiny_json, tmp_path):
    cases = [
        (["--format", "mxnet", "--hswish", "op"], "HardSwish op exists in ONNX and OpenVINO only"),
        (["--format", "onnx", "--static-batch", "2"], "--static-batch"),
        (["--format", "openvino", "--static-batch", "0"], "must be >= 1"),
    ]
    for i, (extra, words) in enumerate(cases):
        out = tmp_path / f"o{i}"
        p = run_cli("spos-export", str(tiny_json), "--random-init", "-o", str(out), "--no-bench", *extra)
        assert p.returncode == 2 and words in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr and not out.exists()


def test_broken_ir_and_wrong_input_are_one_line(capsys, tiny_json, tmp_path):
    from spos_deploy.runtime.openvino import ov_compile, ov_runner

    out = tmp_path / "out"
    _export(capsys, tiny_json, out, "--format", "openvino", "--no-bench")
    c = ov_compile(out / "model.xml", "fp32")
    with pytest.raises(BadInputError, match="fixed at 32") as e:
        ov_runner(c, 1, (1, 3, 64, 64))
    assert "\n" not in str(e.value)
    weights = (out / "model.bin").read_bytes()
    (out / "model.bin").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(BadInputError, match="model.xml: OpenVINO cannot read it") as e:
        ov_compile(out / "model.xml", "fp32")
    assert "\n" not in str(e.value)
    (out / "model.bin").unlink()
    with pytest.raises(BadInputError, match="model.bin are missing"):
        ov_compile(out / "model.xml", "fp32")


_BLOCK = """
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {mod!r} or name.startswith({mod!r} + "."):
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None

sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("blocked,extra,words", [("openvino", [], "OpenVINO"), ("nncf", ["--int8"], "NNCF")])
def test_missing_openvino_or_nncf_is_one_line(tiny_json, tmp_path, blocked, extra, words):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_BLOCK.format(mod=blocked)))
    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    out = tmp_path / "out"
    argv = [str(tiny_json), "--random-init", "-o", str(out), "--format", "openvino", *extra]
    p = subprocess.run(
        [sys.executable, "-m", "spos_deploy.cli.export", *argv], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert p.returncode == 2, p.stderr
    assert f"needs {words}, which is not installed" in p.stderr and "pip install" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr and not out.exists()


@pytest.mark.slow
def test_openvino_int8_and_bf16_accuracy_on_real_labelled_data(trained, tmp_path):  # noqa: F811
    from spos_deploy.data.images import fashion_mnist
    from spos_deploy.runtime.openvino import native_bf16, ov_compile, ov_logits

    folder, fp32_acc = trained
    out = tmp_path / "out"
    proc = run_cli(
        "spos-export",
        str(folder / "model.json"),
        "--params",
        str(folder / "w.params"),
        "-o",
        str(out),
        "--format",
        "openvino",
        "--int8",
        "--calib",
        "fashion-mnist:train",
        "--calib-count",
        "64",
        "--eval",
        "fashion-mnist:test",
        "--eval-count",
        "300",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert all(c["passed"] for c in report["checks"])
    assert {f["name"] for f in report["files"].values()} == {
        "model.xml",
        "model.bin",
        "model.int8.xml",
        "model.int8.bin",
    }
    q = report["int8"]
    assert q["runtime"] == "openvino" and q["int8_layers"] > 0 and q["executed_precision"].startswith("int8")
    acc = q["accuracy"]
    assert acc["labelled"] and acc["images"] == 300
    assert abs(acc["top1_fp32"] - fp32_acc) < 0.1  # 300 of the same 500 test images
    assert acc["top1_int8"] > acc["top1_fp32"] - 0.05, acc
    assert acc["top1_agreement"] > 0.9
    # the shipped int8 IR, compiled here: quantized, runs its convolutions in int8, the reported top-1
    compiled = ov_compile(out / "model.int8.xml", "int8")
    assert compiled.int8_layers == q["int8_layers"] > 0
    test = fashion_mnist("test", 32, limit=300)
    top1 = float((ov_logits(compiled, test.images).argmax(1) == test.labels).mean())
    assert abs(top1 - acc["top1_int8"]) < 1e-9
    assert report["latency"]["openvino_int8"]["executed_precision"].startswith("int8")
    if native_bf16():
        b = report["bf16"]["accuracy"]
        assert b["labelled"] and b["top1_bf16"] > b["top1_fp32"] - 0.02 and b["top1_agreement"] > 0.95, b
        assert report["latency"]["openvino_bf16"]["executed_precision"] == "bf16"
    else:
        assert not report["bf16"]["measured"] and "openvino_bf16" not in report["latency"]
