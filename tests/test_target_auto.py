"""``spos-export --target auto``: the candidate list, the checks, the decision over measured records (exact, on
synthetic records) and one real run on a small model (real onnxruntime/OpenVINO sessions, real images)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from spos_deploy.deploy import auto
from spos_deploy.deploy.auto import AutoSpace, Candidate, Machine, Record
from spos_deploy.errors import BadInputError
from spos_deploy.runtime import interleave
from tests.conftest import TINY_MODEL, run_cli

pytestmark = pytest.mark.timing  # measures: run alone (pyproject.toml's markers)

ALL = Machine(openvino=True, nncf=True, native_bf16=True)


# ---- candidates -------------------------------------------------------------------------------------------------


def test_every_candidate_is_listed_once_in_a_fixed_order():
    built, skipped = auto.candidates(AutoSpace(), ALL)
    keys = [c.key for c in built]
    # onnxruntime: fp32 x 2 shuffles x 2 activations, int8 x 4 forms x 2 scales x 2 layouts; openvino: 3
    # precisions x 4 forms x 2 batch shapes
    assert len(keys) == 4 + 16 + 24 == len(set(keys)) and not skipped
    assert keys[0] == "onnxruntime/fp32/reshape/mul"
    assert "onnxruntime/int8/conv/op/per-tensor/qoperator" in keys and "openvino/bf16/conv/mul/static" in keys
    assert not any(c.runtime == "onnxruntime" and c.precision == "bf16" for c in built)
    assert all((c.scales is None) == (c.runtime != "onnxruntime" or c.precision != "int8") for c in built)
    assert built == auto.candidates(AutoSpace(), ALL)[0]


@pytest.mark.parametrize(
    "machine, reason",
    [
        (Machine(openvino=True, nncf=True, native_bf16=False), "no native bf16"),
        (Machine(openvino=False, nncf=True, native_bf16=True), "OpenVINO is not installed"),
        (Machine(openvino=True, nncf=False, native_bf16=True), "needs NNCF"),
        (Machine(openvino=True, nncf=True, native_bf16=True, hardswish_in_model=False), "no hard-swish"),
    ],
)
def test_candidates_that_cannot_be_built_are_listed_with_the_reason(machine, reason):
    built, skipped = auto.candidates(AutoSpace(), machine)
    assert skipped and all(reason in s["reason"] for s in skipped)
    assert len(built) + len(skipped) == 44
    assert not {s["candidate"] for s in skipped} & {c.key for c in built}


def test_explicit_options_narrow_the_candidates():
    space = auto.space_from_options("openvino", True, False, "conv", "op", None)
    built, _ = auto.candidates(space, ALL)
    assert [c.key for c in built] == ["openvino/int8/conv/op/dynamic", "openvino/int8/conv/op/static"]
    space = auto.space_from_options("onnx", True, True, None, "mul", None)  # --format onnx is the default
    keys = {c.key for c in auto.candidates(space, ALL)[0]}
    assert "onnxruntime/int8/reshape/mul/per-tensor/qdq" in keys and "openvino/int8/conv/mul/static" in keys
    assert not any("per-channel" in k or "/op" in k for k in keys)
    space = auto.space_from_options("onnx", False, False, None, None, 1)
    assert {c.batch for c in auto.candidates(space, ALL)[0]} == {"static"}
    with pytest.raises(BadInputError, match="mxnet"):
        auto.space_from_options("mxnet", False, False, None, None, None)
    with pytest.raises(BadInputError, match="batch 1"):
        auto.space_from_options("openvino", False, False, None, None, 8)
    # --auto-runtimes keeps one runtime's forms; it cannot contradict --format openvino
    only_ort = auto.space_from_options("onnx", False, False, None, None, None, ["onnxruntime"])
    keys = {c.key for c in auto.candidates(only_ort, ALL)[0]}
    assert keys and all(k.startswith("onnxruntime/") for k in keys)
    with pytest.raises(BadInputError, match="leaves out openvino"):
        auto.space_from_options("openvino", False, False, None, None, None, ["onnxruntime"])
    with pytest.raises(BadInputError, match="--auto-runtimes mxnet"):
        auto.space_from_options("onnx", False, False, None, None, None, ["mxnet"])


# ---- checks -----------------------------------------------------------------------------------------------------


def _logits(n: int = 200, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, classes)).astype(np.float32)


def _flip(logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The same logits with the top class of ``rows`` moved to another class."""
    out = logits.copy()
    for i in rows:
        j = (out[i].argmax() + 1) % out.shape[1]
        out[i, j] = out[i].max() + 1.0
    return out


def test_fp32_must_match_the_reference_within_the_parity_tolerance():
    ref = _logits()
    ok, why, _ = auto.verdict("fp32", ref * (1 + 1e-6), ref, None, True)
    assert ok and "parity" in why
    ok, why, _ = auto.verdict("fp32", ref + 1e-2, ref, None, True)
    assert not ok and ">" in why


def test_reduced_precision_on_labelled_data_may_lose_half_a_point_of_top1():
    ref = _logits(1000)
    labels = ref.argmax(1)  # fp32 top-1 = 1.0
    ok, _, acc = auto.verdict("int8", _flip(ref, np.arange(5)), ref, labels, False)  # 0.5 points lost
    assert ok and acc["top1"] == pytest.approx(0.995) and acc["top1_fp32"] == 1.0
    ok, why, _ = auto.verdict("bf16", _flip(ref, np.arange(6)), ref, labels, False)  # 0.6 points lost
    assert not ok and "points lost" in why


def test_random_weights_or_unlabelled_data_use_top1_agreement():
    ref = _logits(100)
    labels = ref.argmax(1)
    ok, why, acc = auto.verdict("int8", _flip(ref, np.arange(10)), ref, labels, True)  # 0.90 agreement
    assert ok and acc["top1_agreement"] == pytest.approx(0.9) and "random weights" in acc["rule"]
    ok, _, acc = auto.verdict("int8", _flip(ref, np.arange(11)), ref, None, False)
    assert not ok and "unlabelled" in acc["rule"]


# ---- the decision ------------------------------------------------------------------------------------------------


def _rec(key: str, p50: float | None, passed: bool = True) -> Record:
    runtime, precision, shuffle, hswish, *rest = key.split("/")
    extra = {}
    if runtime == "onnxruntime" and precision == "int8":
        extra = {"scales": rest[0], "layout": rest[1]}
    elif runtime == "openvino":
        extra = {"batch": rest[0]}
    c = Candidate(runtime, precision, shuffle, hswish, **extra)
    assert c.key == key
    times = [] if p50 is None else [p50 * 0.9, p50, p50 * 1.5]
    return Record(c, passed, "ok" if passed else "failed its check", times_ms=times)


ORT32 = "onnxruntime/fp32/conv/mul"
ORT8 = "onnxruntime/int8/conv/mul/per-channel/qdq"
OV32 = "openvino/fp32/conv/op/dynamic"
OV8 = "openvino/int8/conv/op/dynamic"
BF16 = "openvino/bf16/conv/op/dynamic"


def test_picks_the_fastest_passing_candidate():
    records = [_rec(ORT32, 8.0), _rec(ORT8, 5.0), _rec(OV32, 6.0), _rec(OV8, 3.5)]
    choice = auto.choose(records)
    assert choice.winner.candidate.key == OV8 and choice.runner_up.candidate.key == ORT8
    assert choice.speedup_vs_next == pytest.approx(5.0 / 3.5) and "1.43x faster" in choice.why
    assert [r.candidate.key for r in auto.ranking(records)] == [OV8, ORT8, OV32, ORT32]


def test_never_picks_a_failing_or_untimed_candidate():
    records = [_rec(ORT32, 8.0), _rec(OV8, 1.0, passed=False), _rec(ORT8, None), _rec(OV32, 9.0)]
    assert auto.choose(records).winner.candidate.key == ORT32
    assert auto.choose([_rec(OV8, 1.0, passed=False)]) is None
    only = auto.choose([_rec(OV32, 2.0), _rec(OV8, 1.0, passed=False)])
    assert only.winner.candidate.key == OV32 and only.runner_up is None and "only" in only.why


def test_a_tie_goes_to_the_candidate_listed_first():
    # within 1 %: the earlier candidate (fp32 before int8) wins even when it measured a little slower
    records = [_rec(ORT32, 5.04), _rec(ORT8, 5.0)]
    choice = auto.choose(records)
    assert choice.winner.candidate.key == ORT32 and "tied" in choice.why
    assert auto.choose([_rec(ORT32, 5.2), _rec(ORT8, 5.0)]).winner.candidate.key == ORT8  # 4 %: no tie


def test_warns_when_reduced_precision_measured_slower_than_its_fp32_twin():
    records = [_rec(ORT32, 8.0), _rec(ORT8, 9.0), _rec(OV32, 6.0), _rec(OV8, 3.0), _rec(BF16, 6.5)]
    lines = auto.slower_than_fp32(records)
    assert len(lines) == 2
    assert lines[0].startswith(f"{ORT8} measured slower than {ORT32}") and "9.000 vs 8.000" in lines[0]
    assert lines[1].startswith(f"{BF16} measured slower than {OV32}")
    assert auto.slower_than_fp32([_rec(ORT32, 8.0), _rec(ORT8, 5.0)]) == []


def test_the_report_section_lists_everything_and_says_why():
    records = [_rec(ORT32, 8.0), _rec(ORT8, 9.0), _rec(OV8, 1.0, passed=False)]
    skipped = [{"candidate": BF16, "reason": "this CPU has no native bf16"}]
    measurement = {"threads": 2, "rounds": 3, "repeats": 10}
    load = {"busy": True, "usable_cores": 2, "others_cores": 1.0, "warning": "machine busy while measuring: x"}
    section = auto.auto_section(records, skipped, measurement, load)
    assert section["winner"] == ORT32 and section["ranking"] == [ORT32, ORT8]
    assert [c["candidate"] for c in section["candidates"]] == [ORT32, ORT8, OV8]
    assert section["candidates"][2]["passed"] is False and section["candidates"][2]["p50_ms"] == 1.0
    assert (
        any("measured slower" in w for w in section["warnings"])
        and "machine busy while measuring: x" in section["warnings"]
    )
    text = auto.auto_markdown(section)
    assert f"{ORT32} **(shipped)**" in text and "no native bf16" in text and "BUSY" in text
    assert text.index(ORT8) < text.index(OV8)  # passing candidates first, the failed one after
    json.dumps(section)


def test_interleaved_rounds_shuffle_the_order_and_time_every_call():
    calls: list[str] = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "abcd"}
    ticks = iter(range(10_000))
    times = interleave.interleaved_times(runners, rounds=6, repeats=3, warmup=2, clock=lambda: next(ticks) / 1e3)
    assert calls[:8] == list("aabbccdd")  # warm-up, then the rounds
    rounds = [calls[8 + 12 * r : 8 + 12 * (r + 1) : 3] for r in range(6)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert all(len(v) == 18 and all(t == pytest.approx(1.0) for t in v) for v in times.values())


def test_a_candidate_whose_speed_moved_between_rounds_marks_the_machine_busy():
    steady = [1.0] * 30
    moved = [1.0] * 10 + [1.5] * 10 + [1.0] * 10
    assert interleave.round_spread(steady, 3) == 0.0 and interleave.round_spread(moved, 3) == pytest.approx(0.5)
    quiet = {"busy": False, "warning": None}
    assert interleave.load_verdict(quiet, {"a": 0.0, "b": 0.05})["busy"] is False
    busy = interleave.load_verdict(quiet, {"a": 0.0, "b": 0.5})
    assert busy["busy"] and busy["round_spread_of"] == "b" and "between interleaved rounds" in busy["warning"]


# ---- a real run ---------------------------------------------------------------------------------------------------


def _export_auto(tmp_path, *extra: str, threads: str | None = "1"):
    model = tmp_path / "tiny.json"
    model.write_text(json.dumps(TINY_MODEL))
    out = tmp_path / "out"
    common = ["--random-init", "-o", str(out), "--target", "auto", "--eval", "fashion-mnist:test"]
    common += ["--eval-count", "100", "--calib", "fashion-mnist:test", "--calib-count", "16"]
    common += ["--threads", threads] if threads else []
    proc = run_cli("spos-export", str(model), *common, "--auto-rounds", "2", "--auto-repeats", "5", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out, json.loads((out / "report.json").read_text())


def _expected_winner(section: dict) -> str:
    """The rule, recomputed from the records the run wrote: the first listed among the passing candidates
    within the tie band of the fastest p50."""
    passing = [c for c in section["candidates"] if c["passed"] and c["p50_ms"] is not None]
    best = min(c["p50_ms"] for c in passing)
    return next(c["candidate"] for c in passing if c["p50_ms"] <= best * (1 + auto.TIE_RTOL))


def _check_run(proc, out, report, space: AutoSpace) -> dict:
    section = report["auto"]
    from spos_deploy.runtime import openvino as rov

    ov = rov.available()
    machine = Machine(
        openvino=ov, nncf=importlib.util.find_spec("nncf") is not None, native_bf16=ov and rov.native_bf16()
    )
    built, _ = auto.candidates(space, machine)
    assert [c["candidate"] for c in section["candidates"]] == [c.key for c in built]  # every one recorded
    for c in section["candidates"]:
        assert c["reason"] and (c["p50_ms"] is not None or c["reason"].startswith("could not be built"))
        assert c["p50_ms"] is None or c["runs"] == 10
    assert section["winner"] == _expected_winner(section) == section["ranking"][0]
    winner = Candidate(**section["winner_forms"])
    assert (out / section["shipped"]["file"]).is_file()
    d = report["deployed"]
    assert (d["shuffle"], d["hswish"]) == (winner.shuffle, winner.hswish)
    assert d["format"] == ("onnx" if winner.runtime == "onnxruntime" else "openvino")
    assert d["precision"] == ("int8" if winner.precision == "int8" else "fp32")
    assert all(ch["passed"] for ch in report["checks"])
    assert section["load"] is not None and "busy" in section["load"]
    assert f"shipped: {section['winner']}" in proc.stdout and "| candidate |" in proc.stdout
    assert "## Auto target" in (out / "report.md").read_text()
    return section


def test_target_auto_ships_the_candidate_its_own_measurements_rank_first(tmp_path):
    """Without --threads, the threads are decided on the shipped file too: one against every core, the
    choice following the rule on the session medians recorded, and the command to run it carrying it."""
    from spos_deploy.runtime.deployed import choose_threads
    from spos_deploy.runtime.load import usable_cpus

    proc, out, report = _export_auto(tmp_path, "--shuffle", "conv", "--hswish", "op", threads=None)
    space = auto.space_from_options("onnx", False, False, "conv", "op", None)
    section = _check_run(proc, out, report, space)
    cores = len(usable_cpus())
    assert section["measurement"]["threads"] == cores
    if cores > 1:
        t = section["threads"]
        assert set(t["measured"]) == {"1", str(cores)}
        assert all(len(v) == 1 and len(v[0]["session_ms"]) == t["sessions"] for v in t["measured"].values())
        budget = {int(k): [m["budget_ms"] for m in v] for k, v in t["measured"].items()}
        assert t["chosen"] == choose_threads(budget)[0]
        assert section["shipped"]["command"].endswith(f"--threads {t['chosen']}") and "run it:" in proc.stdout
    else:
        assert "threads" not in section
    from spos_deploy.runtime import openvino as rov

    assert any(c["runtime"] == "onnxruntime" and c["precision"] == "int8" for c in section["candidates"])
    if rov.available():
        assert {c["precision"] for c in section["candidates"] if c["runtime"] == "openvino"} >= {"fp32", "int8"}


@pytest.mark.slow
def test_target_auto_over_every_candidate(tmp_path):
    proc, out, report = _export_auto(tmp_path)
    _check_run(proc, out, report, AutoSpace())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "mxnet"], "--format mxnet is not one"),
        (["--format", "openvino", "--static-batch", "4"], "measures batch 1"),
        (["--auto-rounds", "0"], "--auto-rounds"),
        (["--format", "openvino", "--auto-runtimes", "onnxruntime"], "leaves out openvino"),
        (["--auto-runtimes", "tensorrt"], "--auto-runtimes"),
    ],
)
def test_target_auto_bad_options_are_one_line(tmp_path, extra, message):
    proc = run_cli("spos-export", "oneshot-s+", "--random-init", "-o", str(tmp_path / "o"), "--target", "auto", *extra)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "o").exists()


def test_auto_runtimes_without_target_auto_is_refused(tmp_path):
    proc = run_cli(
        "spos-export", "oneshot-s+", "--random-init", "-o", str(tmp_path / "o"), "--auto-runtimes", "openvino"
    )
    assert proc.returncode == 2 and "add --target auto" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_qoperator_int8_keeps_the_convs_its_qdq_twin_keeps_in_float(tmp_path):
    """The QOperator layout (new in OrtQuantConfig) writes QLinearConv nodes, ranks convs on the QDQ model and
    so keeps the same convs in float: what auto measures for it is the file the pipeline ships."""
    import onnx

    from spos_deploy.data.images import load_images
    from spos_deploy.deploy.onnx import export_onnx
    from spos_deploy.deploy.quantize import OrtQuantConfig, quantize_onnx
    from spos_deploy.model_spec import spec_from_dict
    from spos_deploy.nets.network import build_subnet
    from spos_deploy.runtime.ort import ort_logits, ort_session

    spec = spec_from_dict(dict(TINY_MODEL))
    fp32 = export_onnx(build_subnet(spec, seed=0), tmp_path / "m.onnx")
    images = load_images("fashion-mnist:test", 32, limit=32).images
    qdq = quantize_onnx(fp32, tmp_path / "qdq.onnx", images, 32, OrtQuantConfig(keep_float=2))
    qop = quantize_onnx(fp32, tmp_path / "qop.onnx", images, 32, OrtQuantConfig(keep_float=2, quant_format="qoperator"))
    assert qop.excluded == qdq.excluded and len(qop.excluded) == 2
    ops = {n.op_type for n in onnx.load(str(tmp_path / "qop.onnx")).graph.node}
    assert "QLinearConv" in ops and "QuantizeLinear" in ops
    a, b = (ort_logits(ort_session(p), images) for p in (qdq.path, qop.path))
    assert np.abs(a - b).max() <= 0.1 * np.abs(a).max()
    with pytest.raises(BadInputError, match="quantization format"):
        quantize_onnx(fp32, tmp_path / "x.onnx", images, 32, OrtQuantConfig(quant_format="qop"))


# ---- --target auto for latency tables (spos-search, spos-lut build) ---------------------------------------------


def test_table_forms_are_the_forms_a_latency_table_measures():
    """Only the graph forms a table is measured in compete when a search's target is decided, and the export
    flags recorded for the winner write exactly that form."""
    from pathlib import Path

    from spos_deploy.space import SPACES, SearchSpace
    from spos_deploy.tables.latency.target import TargetForm, is_table_form, table_auto_space, table_forms

    small, se = SPACES["small"], SearchSpace()
    assert not small.use_se and se.use_se
    assert table_forms(small)["openvino"]["hswish"] == "mul" and table_forms(se)["openvino"]["hswish"] == "op"
    ort_int8 = {"runtime": "onnxruntime", "precision": "int8", "shuffle": "reshape", "hswish": "mul"}
    assert is_table_form(se, {**ort_int8, "scales": "per-channel", "layout": "qdq"})
    assert not is_table_form(se, {**ort_int8, "scales": "per-channel", "layout": "qoperator"})
    assert not is_table_form(se, {**ort_int8, "shuffle": "conv", "scales": "per-channel", "layout": "qdq"})
    ov = {"runtime": "openvino", "precision": "bf16", "shuffle": "reshape", "batch": "static"}
    assert is_table_form(se, {**ov, "hswish": "op"}) and not is_table_form(se, {**ov, "hswish": "mul"})
    assert is_table_form(small, {**ov, "hswish": "mul"})  # no hard-swish: the op form is the mul graph
    narrowed = table_auto_space(se, ["openvino"], "int8")
    assert narrowed.runtimes == ("openvino",) and narrowed.precisions == ("int8",) and narrowed.hswish == ("op",)
    t = TargetForm.of({"runtime": "onnxruntime", "precision": "int8"}, 2, Path("d.json"), {})
    assert t.runtime == "ort-cpu" and t.export_flags() == ["--format", "onnx", "--int8", "--keep-float", "0"]
    assert t.bench_flags() == ["--threads", "2"]
    o = TargetForm.of({"runtime": "openvino", "precision": "bf16"}, 1, Path("d.json"), {})
    assert o.runtime == "openvino-cpu" and o.export_flags() == ["--format", "openvino", "--static-batch", "1"]
    assert o.bench_flags() == ["--threads", "1", "--runtime", "openvino", "--precision", "bf16"]


def test_threads_are_chosen_by_budget_latency_and_ties_go_to_fewer_threads():
    from spos_deploy.runtime.deployed import choose_threads

    assert choose_threads({1: [0.10, 0.20], 2: [0.06, 0.12]})[0] == 2  # clearly faster on two
    assert choose_threads({1: [0.10, 0.20], 2: [0.098, 0.197]})[0] == 1  # within 5 %: one thread
    assert choose_threads({1: [0.10, 0.20], 2: [0.12, 0.25]})[0] == 1
    chosen, why = choose_threads({1: [0.1], 4: [0.2]})
    assert chosen == 1 and "1 thread 0.1000 ms" in why and "4 threads 0.2000 ms" in why
