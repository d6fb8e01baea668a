"""OpenVINO latency tables: a real OpenVINO (cpu) table of the small space builds, validates and re-anchors;
its entries cut the deployed OpenVINO graphs (HardSwish op, NNCF int8) by the same part conventions as the
onnxruntime ones; a table of another runtime is refused in one line; no OpenVINO, one line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.errors import BadInputError
from spos_deploy.space import SPACES, owner
from spos_deploy.tables.latency.build import LatencySetup, fingerprint
from spos_deploy.tables.latency.table import LatencyTable

from .conftest import ROOT

pytestmark = pytest.mark.timing  # measures: run alone (pyproject.toml's markers)

SPACE_ARGS = ["--space", "small", "--channel-scales", "1.0", "2.0", "--se"]  # SE: hard-swish activations
SPACE = dataclasses.replace(SPACES["small"], channel_scales=(1.0, 2.0), use_se=True)
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _lut(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spos_deploy.cli.lut", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.fixture(scope="module")
def ov_table(tmp_path_factory) -> Path:
    pytest.importorskip("openvino")
    path = tmp_path_factory.mktemp("ov") / "ov.json"
    proc = _lut(
        "build",
        "--kind",
        "latency",
        "--runtime",
        "openvino",
        "--precision",
        "fp32",
        "--repeats",
        "3",
        "--calibration-networks",
        "3",
        "--fit-networks",
        "12",
        "--sessions",
        "2",
        "--threads",
        "1",
        "-o",
        str(path),
        "--no-progress",
        *SPACE_ARGS,
    )
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.mark.slow
def test_openvino_table_is_measured(ov_table):
    import openvino

    table = LatencyTable.load(ov_table, expect_space=SPACE)
    fp = table.fingerprint
    assert fp["runtime"] == "openvino" and fp["runtime_version"] == openvino.__version__
    assert fp["provider"] == "CPU" and fp["precision"] == "fp32" and fp["hswish"] == "op" and fp["threads"] == 1
    assert table.entries.shape == (5, 4, 2) and np.all(table.entries > 0)
    assert table.stem_ms > 0 and table.head_ms > 0 and len(table.calibration) == 3 and table.slope > 0
    assert len(table.anchors) == 5 and all(a["ms"] > 0 for a in table.anchors)
    # the same table, loaded for this machine's OpenVINO settings, is accepted
    here = fingerprint(LatencySetup(runtime="openvino-cpu", precision="fp32", threads=1), SPACE)
    assert LatencyTable.load(ov_table, expect_fingerprint=here).entries.shape == (5, 4, 2)


@pytest.mark.slow
def test_openvino_table_validates_and_reanchors(ov_table):
    proc = _lut(
        "validate", str(ov_table), "--samples", "3", "--passes", "2", "--runtime", "openvino", "--json",
        "--no-progress", "--plot", str(ov_table.with_suffix(".png")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["samples"] == 3 and r["fingerprint"]["runtime"] == "openvino" and r["reanchor"] is True
    (rd,) = r["rounds"]
    assert rd["reanchor"]["factor"] > 0 and len(rd["reanchor"]["anchors_now_ms"]) == 5
    for p in r["points"]:
        assert p["measured_ms"] > 0 and p["predicted_ms"] > 0
    built = LatencyTable.load(ov_table).predict(
        np.array(r["points"][0]["blocks"]), np.array(r["points"][0]["channels"])
    )
    # a user of the table gets the anchors' factor only when they agree (a shared 2-core VM often disagrees)
    factor = rd["reanchor"]["factor"] if rd["reanchor"]["anchors_agree"] else 1.0
    assert r["points"][0]["predicted_ms"] == pytest.approx(factor * built, rel=1e-9)
    assert rd["reanchored"]["samples"] == 3 and rd["as_built"]["samples"] == 3


@pytest.mark.slow
def test_tables_of_another_runtime_are_refused_both_ways(ov_table, tmp_path):
    ort_here = fingerprint(LatencySetup(runtime="ort-cpu", precision="fp32", threads=1), SPACE)
    with pytest.raises(BadInputError, match="runtime: table 'openvino', here 'onnxruntime'"):
        LatencyTable.load(ov_table, expect_fingerprint=ort_here)
    proc = _lut("validate", str(ov_table), "--runtime", "onnxruntime", "--no-progress")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "runtime: table 'openvino', here 'onnxruntime'" in lines[0]
    # an onnxruntime table asked for as an OpenVINO one
    d = json.loads(ov_table.read_text())
    d["fingerprint"].update(runtime="onnxruntime", runtime_option="ort-cpu", provider="CPUExecutionProvider")
    ort_table = tmp_path / "ort.json"
    ort_table.write_text(json.dumps(d))
    proc = _lut("validate", str(ort_table), "--runtime", "openvino", "--no-progress")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "runtime: table 'onnxruntime', here 'openvino'" in lines[0]


def _compute_owners(model) -> dict[str, str]:
    return {n.name: owner(n.name) for n in model.graph.node if n.op_type not in QDQ}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_parts_cover_the_deployed_graph_once(precision, tmp_path):
    """Cut parts of the OpenVINO form hold every compute node of the deployed graph exactly once, each in
    the part its name says (the ort-cpu convention), and an int8 part runs in int8."""
    pytest.importorskip("openvino")
    if precision == "int8":
        pytest.importorskip("nncf")
    import onnx

    from spos_deploy.deploy.timing_forms import export_deployed
    from spos_deploy.tables.build_common import uniform_spec
    from spos_deploy.tables.latency.build import PartTimer, _part_input_shapes, part_boundaries

    setup = LatencySetup(runtime="openvino-cpu", precision=precision, threads=1, repeats=3)
    spec, _ = uniform_spec(SPACE, 1, 1)
    path = export_deployed(spec, tmp_path, precision, runtime="openvino-cpu")
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert "HardSwish" in ops and ("QuantizeLinear" in ops) == (precision == "int8")
    ort_form = onnx.load(str(export_deployed(spec, tmp_path / "ort", "fp32", runtime="ort-cpu")))
    bounds = part_boundaries(model)
    assert list(bounds) == list(part_boundaries(ort_form)) == ["stem", "b00", "b01", "b02", "b03", "b04", "head"]
    timer = PartTimer(path, setup)
    seen: dict[str, str] = {}
    for part, (src, dst) in bounds.items():
        sub = timer.extractor.extract_model([src], [dst])
        names = list(_compute_owners(sub))
        assert names and not set(names) & set(seen), part
        seen.update(dict.fromkeys(names, part))
    whole = _compute_owners(model)
    assert set(seen) == set(whole)
    assert all(owner(n) in (p, "other") for n, p in seen.items())
    if precision == "int8":
        from spos_deploy.runtime.openvino import ov_compile

        shapes = _part_input_shapes(SPACE, 1)
        for part in ("stem", "b02", "head"):
            src, dst = bounds[part]
            f = tmp_path / f"{part}.onnx"
            f.write_bytes(timer.extractor.extract_model([src], [dst]).SerializeToString())
            assert ov_compile(f, "int8", 1, static_shape=shapes[part]).int8_layers > 0, part


def test_openvino_runtime_without_openvino_is_one_line(tmp_path):
    code = (
        "import sys; sys.modules['openvino'] = None; from spos_deploy.cli.lut import main; "
        f"sys.exit(main(['build', '--kind', 'latency', '--runtime', 'openvino', '-o', r'{tmp_path / 't.json'}', "
        "'--space', 'small']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "needs OpenVINO" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "t.json").exists() and not list(tmp_path.iterdir())
