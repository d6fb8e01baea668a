"""OpenVINO as a runtime: precision as asked, parity with onnxruntime on real images, spos-bench and
spos-profile --measure with it, and a clean refusal where OpenVINO cannot be imported.

Real networks (the tiny 32 px model, exported with BN merged), real Fashion-MNIST test images, real
OpenVINO and onnxruntime sessions. Nothing asserts a speed: the machine is shared.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

ov = pytest.importorskip("openvino")

from spos_deploy.data.images import load_images  # noqa: E402
from spos_deploy.deploy import timing_forms  # noqa: E402
from spos_deploy.deploy.onnx import PARITY_RTOL, compare_outputs, export_onnx  # noqa: E402
from spos_deploy.deploy.transforms import merge_bn  # noqa: E402
from spos_deploy.errors import BadInputError  # noqa: E402
from spos_deploy.model_spec import spec_from_dict  # noqa: E402
from spos_deploy.nets.network import build_subnet  # noqa: E402
from spos_deploy.runtime import bench, op_profile  # noqa: E402
from spos_deploy.runtime import openvino as rov  # noqa: E402
from spos_deploy.runtime.ort import ort_logits, ort_session  # noqa: E402

from .conftest import TINY_MODEL, run_cli  # noqa: E402
from .test_bench import assert_one_line_error, run_bench  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """The tiny model as fp32 ONNX, its IR, an NNCF int8 ONNX, a model.json, and 64 real test images."""
    from spos_deploy.deploy.openvino import quantize_for_openvino, write_ir

    d = tmp_path_factory.mktemp("ov")
    spec = spec_from_dict(dict(TINY_MODEL), "tiny")
    onnx_path = export_onnx(merge_bn(build_subnet(spec, seed=0)), d / "tiny.onnx")
    images = load_images("fashion-mnist:test", 32, limit=64).images
    xml = write_ir(onnx_path, d / "tiny.xml")
    int8 = quantize_for_openvino(onnx_path, d / "tiny.int8.onnx", images[:32])
    (d / "tiny.json").write_text(json.dumps(TINY_MODEL))
    return {"dir": d, "onnx": str(onnx_path), "xml": str(xml), "int8": str(int8), "images": images}


# ---- precision --------------------------------------------------------------------------------------------------


def test_fp32_parity_with_onnxruntime_on_real_images(models):
    c = rov.ov_compile(models["onnx"], "fp32", threads=1)
    assert c.inference_precision == "f32" and c.executed_precision == "fp32" and c.int8_layers == 0
    ref = ort_logits(ort_session(models["onnx"], threads=1), models["images"])
    for compiled in (c, rov.ov_compile(models["xml"], "fp32", threads=1)):
        parity = compare_outputs(rov.ov_logits(compiled, models["images"]), ref, PARITY_RTOL)
        assert parity.passed, parity
        assert parity.top1_agreement == 1.0


@pytest.mark.skipif(not rov.available() or not rov.native_bf16(), reason="this CPU has no native bf16")
def test_bf16_compiles_bf16_where_native(models):
    c = rov.ov_compile(models["onnx"], "bf16", threads=1)
    assert c.inference_precision == "bf16" and c.executed_precision == "bf16"
    assert c.as_dict()["layers"] and all("bf16" in per for per in c.layers.values())


def test_bf16_refused_where_not_native(monkeypatch):
    monkeypatch.setattr(rov, "native_bf16", lambda: False)
    with pytest.raises(BadInputError, match="no native bf16"):
        rov.check_precision("bf16")
    rov.check_precision("fp32")
    rov.check_precision("int8")
    with pytest.raises(BadInputError, match="use one of"):
        rov.check_precision("fp16")


def test_int8_needs_a_quantized_model_and_fp32_refuses_one(models):
    with pytest.raises(BadInputError, match="needs a quantized model"):
        rov.ov_compile(models["onnx"], "int8")
    with pytest.raises(BadInputError, match="is quantized"):
        rov.ov_compile(models["int8"], "fp32")
    c = rov.ov_compile(models["int8"], "int8", threads=1)
    assert c.int8_layers > 0 and c.executed_precision.startswith("int8")
    assert bench.onnx_precision(models["int8"]) == "int8" and bench.onnx_precision(models["onnx"]) == "fp32"


def test_bench_openvino_reports_what_it_compiled(models):
    stats, info = bench.bench_openvino(models["xml"], batch=2, threads=1, warmup=1, repeats=12)
    assert (stats.batch, stats.runs) == (2, 12) and stats.load is not None
    assert (info["precision"], info["inference_precision"], info["threads"]) == ("fp32", "f32", 1)
    compiled = rov.ov_compile(models["onnx"], "fp32", threads=1, hint="throughput")
    rate, requests = bench.ov_parallel_throughput(compiled, batch=4, warmup=1, repeats=3)
    assert requests >= 1 and rate.batch == 4 * requests and rate.throughput > 0


# ---- spos-bench -------------------------------------------------------------------------------------------------


def test_spos_bench_onnx_with_openvino_json(models):
    proc = run_bench(models["onnx"], "--runtime", "openvino", "--threads", "1", "--repeats", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["runtime"], d["precision"], d["precision_source"]) == ("openvino", "fp32", "asked")
    ov_info = d["openvino"]
    assert ov_info["inference_precision"] == "f32" and ov_info["executed_precision"] == "fp32"
    assert ov_info["threads"] == 1 and ov_info["hint"] == "latency" and ov_info["compute_layers"] > 0
    assert d["latency"]["runs"] == 12 and isinstance(d["latency"]["load"]["busy"], bool)
    assert d["warnings"] == d["latency"]["warnings"]


def test_spos_bench_ir_text_and_throughput_rows(models):
    proc = run_bench(models["xml"], "--threads", "1", "--repeats", "10", "--warmup", "2", "--throughput", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["runtime"] == "openvino"  # auto: an .xml is an OpenVINO IR
    rows = d["throughput"]
    assert [r["batch"] for r in rows] == [8, 32]
    for r in rows:
        assert r["latency"]["batch"] == r["batch"] and r["images_per_s"] > 0 and isinstance(r["busy"], bool)
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1e3 / r["p50_ms"])
    assert len(d["warnings"]) == sum(len(x["latency"]["warnings"]) for x in [d, *rows])
    proc = run_bench(models["xml"], "--threads", "1", "--repeats", "5", "--throughput", "4")
    assert proc.returncode == 0, proc.stderr
    for words in ("openvino 2026", "compiled inference precision f32", "load: ", "requests in flight"):
        assert words in proc.stdout


def test_spos_bench_refusals(models, tmp_path):
    onnx, xml = models["onnx"], models["xml"]
    assert_one_line_error(run_bench(onnx, "--runtime", "openvino", "--precision", "int8"), "needs a quantized model")
    assert_one_line_error(run_bench(models["int8"], "--runtime", "openvino"), "is quantized", "--precision int8")
    assert_one_line_error(run_bench(onnx, "--precision", "int8"), "--precision int8", "holds, fp32")
    assert_one_line_error(run_bench(onnx, "--hint", "throughput"), "--hint", "openvino")
    assert_one_line_error(run_bench(xml, "--runtime", "onnxruntime"), "--runtime onnxruntime", "OpenVINO IR")
    lone = tmp_path / "lone.xml"
    lone.write_text(open(xml).read())
    assert_one_line_error(run_bench(str(lone)), "lone.xml", "lone.bin")


def test_spos_bench_without_openvino_is_one_line(models, tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys

            class NoOpenVINO:
                def find_spec(self, name, path=None, target=None):
                    if name == "openvino" or name.startswith("openvino."):
                        raise ImportError("openvino is hidden for this test")
                    return None

            sys.meta_path.insert(0, NoOpenVINO())
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    proc = run_bench(models["onnx"], "--runtime", "openvino", "--json")
    assert_one_line_error(proc, "--runtime openvino needs OpenVINO", "pip install")
    assert_one_line_error(run_bench(models["xml"]), "OpenVINO IR", "pip install")
    assert run_bench(models["onnx"], "--repeats", "2", "--warmup", "0").returncode == 0  # onnxruntime unaffected


# ---- spos-profile --measure --runtime openvino ------------------------------------------------------------------


def test_ov_node_mapping():
    known = {"stem_fwd", "b01_pw1_fwd", "b01_pw1_act__mul0"}
    assert op_profile.ov_node("b01_pw1_fwd/WithoutBiases", "Convolution", known) == "b01_pw1_fwd"
    reorder = "b01_pw1_fwd/WithoutBiases_acdb_abcd_b01_pw1_act_hard_sigmoid0"
    assert op_profile.ov_node(reorder, "Reorder", known) == "b01_pw1_fwd"  # from the node it comes from
    assert op_profile.ov_node("data_abcd_acdb_stem_fwd/WithoutBiases", "Reorder", known) == "stem_fwd"  # feeds
    runs = [
        [
            {"node": "stem_fwd/WithoutBiases", "type": "Convolution", "ms": ms},
            {"node": "Split_1", "type": "Split", "ms": 1},
        ]
        for ms in (1.0, 3.0, 2.0)
    ]
    assert op_profile.parse_ov_counters(runs) == {"stem_fwd": 2.0, "Split_1": 1.0}


def test_measure_openvino_maps_time_to_blocks():
    m = timing_forms.measure_spec(spec_from_dict(dict(TINY_MODEL), "tiny"), runs=8, threads=1, runtime="openvino")
    assert m["runtime"] == "openvino" and m["openvino"]["inference_precision"] == "f32"
    parts = {"stem", "head", *(f"b{i:02d}" for i in range(len(TINY_MODEL["block_choices"])))}
    assert parts <= set(m["blocks_ms"]) <= parts | {"other"}
    assert all(m["blocks_ms"][p] > 0 for p in parts)
    total = m["openvino"]["counters_total_ms"]
    blocks = sum(m["blocks_ms"].values())
    assert blocks == pytest.approx(m["nodes_total_ms"])
    assert abs(blocks - total) <= 0.5 * total  # medians per node vs the median of per-run totals
    assert m["blocks_ms"].get("other", 0.0) <= 0.25 * total
    assert isinstance(m["load"]["busy"], bool) and m["end_to_end_p50_ms"] > 0


def test_profile_cli_measure_openvino(models, capsys):
    from spos_deploy.cli.profile import main as profile_main

    args = ["--measure", "--runtime", "openvino", "--threads", "1", "--measure-runs", "5"]
    proc = run_cli("spos-profile", str(models["dir"] / "tiny.json"), *args)
    assert proc.returncode == 0, proc.stderr
    for words in ("measured (openvino fp32", "% of end to end", "load: ", "| b04 "):
        assert words in proc.stdout
    for bad, words in [
        (["--measure", "--device", "gpu", "--runtime", "openvino"], "CPU only"),
        (["--measure", "--runtime", "mxnet"], "per-op times from onnxruntime or openvino"),
        (["--device", "gpu"], "only with --measure"),
        (["--runtime", "openvino"], "only with --measure"),
        (["--measure", "--precision", "bf16"], "use --runtime openvino"),
        (["--measure", "--runtime", "openvino", "--precision", "int8"], "use fp32 or bf16"),
    ]:
        capsys.readouterr()
        assert profile_main(["oneshot", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
