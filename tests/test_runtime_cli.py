"""spos-export, spos-bench and spos-profile on bad input and interrupts, in-process and real; export counts.

Every bad input must give exit 2, one line on stderr naming the problem, no traceback, and nothing written
beside the output folder. Everything runs on real networks, real weight files and real data files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.cli import bench as bench_cli
from spos_deploy.cli import export as export_cli
from spos_deploy.cli import profile as profile_cli

from .conftest import ROOT, TINY_MODEL

TINY = TINY_MODEL
MAINS: dict[str, Callable] = {"export": export_cli.main, "bench": bench_cli.main, "profile": profile_cli.main}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A model.json, its real weights (random init, saved by save_subnet) and data files, good and bad."""
    from spos_deploy.model_spec import spec_from_dict
    from spos_deploy.nets.network import build_subnet
    from spos_deploy.nets.weights import save_subnet

    d = tmp_path_factory.mktemp("inputs")
    (d / "model.json").write_text(json.dumps(TINY))
    save_subnet(build_subnet(spec_from_dict(TINY), seed=0), d / "w.params")
    other = dict(TINY, block_choices=[1, 1, 1, 1, 1])
    save_subnet(build_subnet(spec_from_dict(other), seed=0), d / "other.params")
    data = (d / "w.params").read_bytes()
    (d / "cut.params").write_bytes(data[: len(data) // 3])
    (d / "junk.params").write_bytes(b"not a params file at all")
    images = np.random.default_rng(0).standard_normal((12, 3, 32, 32)).astype(np.float32)
    np.savez(d / "bad_labels.npz", images=images, labels=np.array([1, 999, 3, -1] + [0] * 8))
    np.savez(d / "good.npz", images=images, labels=np.arange(12) % 10)
    np.savez(d / "wrong_size.npz", images=np.zeros((12, 3, 64, 64), np.float32))
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (d / "afile").write_text("a file, not a folder")
    return {p.stem if p.suffix != ".params" else p.name: p for p in d.iterdir()} | {"dir": d}


def _mutated(files: dict[str, Path], name: str, **change: object) -> str:
    path = files["dir"] / f"{name}.json"
    path.write_text(json.dumps({**TINY, **change}))
    return str(path)


def _call(cmd: str, argv: list[str], capsys) -> tuple[int, str, str]:
    status = MAINS[cmd](argv)
    out, err = capsys.readouterr()
    return status, out, err


def _assert_bad_input(status: int, out: str, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and out == ""
    for w in words:
        assert w in lines[0], lines[0]


# ---- integer-valued floats in model.json ---------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["profile", "bench", "export"])
def test_float_input_size_in_model_json_is_refused(cmd, files, tmp_path, capsys):
    model = _mutated(files, "float_size", input_size=32.0)
    argv = {
        "profile": [model],
        "bench": [model, "--repeats", "1"],
        "export": [model, "--random-init", "-o", str(tmp_path / "out")],
    }[cmd]
    _assert_bad_input(*_call(cmd, argv, capsys), "input_size")
    assert list(tmp_path.iterdir()) == []


# ---- the generated set of bad inputs ------------------------------------------------------------------------

BAD_OPTIONS = [
    ("export", ["--calib-count", "0"], "--calib-count"),
    ("export", ["--eval-count", "0"], "--eval-count"),
    ("export", ["--keep-float", "-1"], "--keep-float"),
    ("export", ["--input-size", "0"], "--input-size"),
    ("export", ["--input-size", "33"], "input_size"),
    ("export", ["--format", "tflite"], "--format"),
    ("export", ["--shuffle", "random"], "--shuffle"),
    ("export", ["--calib-count", "many"], "--calib-count"),
    ("bench", ["--threads", "1000"], "--threads"),
    ("bench", ["--threads", "0"], "--threads"),
    ("bench", ["--batch", "0"], "--batch"),
    ("bench", ["--warmup", "-1"], "--warmup"),
    ("bench", ["--repeats", "0"], "--repeats"),
    ("bench", ["--input-size", "-32"], "--input-size"),
    ("profile", ["--measure", "--measure-runs", "0"], "--measure-runs"),
    ("profile", ["--input-size", "-1"], "--input-size"),
    ("profile", ["--bits", "3"], "--bits"),
    ("profile", ["--threads", "300", "--measure"], "--threads"),
]


@pytest.mark.parametrize("cmd,extra,needle", BAD_OPTIONS, ids=[f"{c}{' '.join(e)}" for c, e, _ in BAD_OPTIONS])
def test_bad_option_values_exit_2_before_any_work(cmd, extra, needle, files, tmp_path, capsys):
    parent = tmp_path / "parent"
    parent.mkdir()
    argv = [str(files["model"]), *extra]
    if cmd == "export":
        argv += ["--random-init", "-o", str(parent / "out"), "--no-bench"]
    start = time.perf_counter()
    _assert_bad_input(*_call(cmd, argv, capsys), needle)
    assert time.perf_counter() - start < 5, "refused only after doing work"
    assert list(parent.iterdir()) == []


MODEL_MUTATIONS = [
    ("short_blocks", {"block_choices": [0, 1, 3]}, "block_choices"),
    ("block_id", {"block_choices": [0, 1, 3, 2, 4]}, "block_choices"),
    ("channel_id", {"channel_choices": [9, 9, 9, 9, 10]}, "channel_choices"),
    ("unknown_key", {"colour": "blue"}, "colour"),
    ("layout", {"layout": "ResNet"}, "layout"),
    ("size_33", {"input_size": 33}, "input_size"),
    ("classes_float", {"num_classes": 10.0}, "num_classes"),
    ("se_string", {"use_se": "yes"}, "use_se"),
]


@pytest.mark.parametrize("cmd", ["export", "bench", "profile"])
@pytest.mark.parametrize("name,change,needle", MODEL_MUTATIONS, ids=[m[0] for m in MODEL_MUTATIONS])
def test_bad_model_json_exit_2_one_line(cmd, name, change, needle, files, tmp_path, capsys):
    model = _mutated(files, name, **change)
    argv = {"profile": [model], "bench": [model, "--repeats", "1"]}.get(cmd)
    if argv is None:
        argv = [model, "--random-init", "-o", str(tmp_path / "out"), "--no-bench"]
    _assert_bad_input(*_call(cmd, argv, capsys), needle)
    assert list(tmp_path.iterdir()) == []


def _export_cases(f: dict[str, Path]) -> list[tuple[str, list[str], tuple[str, ...]]]:
    w = str(f["w.params"])
    return [
        ("weights-missing", ["--params", str(f["dir"] / "none.params")], ("none.params",)),
        ("weights-truncated", ["--params", str(f["cut.params"])], ("cut.params",)),
        ("weights-junk", ["--params", str(f["junk.params"])], ("junk.params",)),
        ("weights-other-architecture", ["--params", str(f["other.params"])], ("do not match",)),
        ("weights-none", [], ("--random-init",)),
        # labels that cannot be classes of a 10-class model
        ("eval-labels-out-of-range", ["--params", w, "--eval", str(f["bad_labels"])], ("bad_labels.npz", "999")),
        ("calib-labels-out-of-range", ["--params", w, "--int8", "--calib", str(f["bad_labels"])], ("999",)),
        ("eval-missing", ["--params", w, "--eval", str(f["dir"] / "nothing.npz")], ("nothing.npz",)),
        ("eval-corrupt", ["--params", w, "--eval", str(f["corrupt"])], ("corrupt.npz",)),
        ("eval-wrong-size", ["--params", w, "--eval", str(f["wrong_size"])], ("wrong_size.npz",)),
        ("calib-too-few", ["--params", w, "--int8", "--calib", str(f["good"]), "--calib-count", "3"], ("at least",)),
    ]


EXPORT_CASE_IDS = [
    "weights-missing",
    "weights-truncated",
    "weights-junk",
    "weights-other-architecture",
    "weights-none",
    "eval-labels-out-of-range",
    "calib-labels-out-of-range",
    "eval-missing",
    "eval-corrupt",
    "eval-wrong-size",
    "calib-too-few",
]


@pytest.mark.parametrize("case", EXPORT_CASE_IDS)
def test_bad_weights_and_data_exit_2_nothing_written(case, files, tmp_path, capsys):
    _, extra, words = next(c for c in _export_cases(files) if c[0] == case)
    argv = [str(files["model"]), *extra, "-o", str(tmp_path / "out"), "--no-bench"]
    _assert_bad_input(*_call("export", argv, capsys), *words)
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder


def test_labels_in_range_are_accepted(files, tmp_path, capsys):
    argv = [str(files["model"]), "--params", str(files["w.params"]), "--eval", str(files["good"])]
    status, out, err = _call("export", [*argv, "-o", str(tmp_path / "out"), "--no-bench", "--json"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["accuracy_fp32"]["images"] == 12


# ---- the output folder is checked before any work ------------------------------------------------------------


def test_output_below_a_file_is_refused_up_front(files, capsys):
    before = sorted(p.name for p in files["dir"].iterdir())
    argv = [str(files["model"]), "--params", str(files["w.params"]), "-o", str(files["afile"] / "sub")]
    start = time.perf_counter()
    _assert_bad_input(*_call("export", argv, capsys), "afile", "is a file")
    assert time.perf_counter() - start < 5
    assert sorted(p.name for p in files["dir"].iterdir()) == before


def test_existing_output_folder_is_refused_and_kept(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = [str(files["model"]), "--params", str(files["w.params"]), "-o", str(out)]
    _assert_bad_input(*_call("export", argv, capsys), "exists")
    assert (out / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---- the counts of the architecture and of the graph that ships ----------------------------------------------


def test_export_reports_architecture_and_deployed_graph_counts(files, tmp_path, capsys):
    from spos_deploy.counting.profile import profile_spec
    from spos_deploy.model_spec import spec_from_dict

    out = tmp_path / "out"
    argv = [str(files["model"]), "--params", str(files["w.params"]), "-o", str(out), "--no-bench"]
    status, text, err = _call("export", argv, capsys)
    assert status == 0, err
    counts = json.loads((out / "report.json").read_text())["counts"]
    arch = profile_spec(spec_from_dict(TINY))
    assert counts["architecture"]["flops"] == arch.flops == counts["flops"]
    assert counts["architecture"]["params"] == arch.params == counts["params"]
    g = counts["deployed_graph"]
    assert g["params"] < arch.params  # BN gamma/beta folded away, conv biases added
    assert g["flops"] > arch.flops  # one bias add per output element of every merged conv
    md = (out / "report.md").read_text()
    assert "| | architecture | deployed graph |" in md and f"{g['flops']:,}" in md
    assert "architecture (paper convention)" in text and f"{g['flops']:,}" in text


@pytest.mark.slow
def test_oneshot_s_plus_deployed_counts_are_the_merged_graph(tmp_path):
    """OneShot-S+ 224: 291,475,944 FLOPs / 3,541,829 params as the architecture (BN form), 296,383,784 /
    3,531,027 as the merged graph that ships."""
    out = tmp_path / "out"
    proc = _command("spos-export", "oneshot-s+", "--random-init", "-o", str(out), "--no-bench", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["counts"]
    assert (counts["architecture"]["flops"], counts["architecture"]["params"]) == (291_475_944, 3_541_829)
    assert (counts["deployed_graph"]["flops"], counts["deployed_graph"]["params"]) == (296_383_784, 3_531_027)


# ---- Ctrl-C in the first seconds -------------------------------------------------------------------------------


def _command(name: str, *args: str, **kw) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / name
    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=env, **kw)


def _loaded_mxnet(pid: int) -> bool:
    try:
        return "libmxnet" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


PROFILE = ["spos-profile", "oneshot-s+", "--measure"]  # --measure: busy for seconds, not done at 1.5 s
EXPORT = ["spos-export", "oneshot-s+", "--random-init", "-o", "OUT"]


@pytest.mark.parametrize(
    "argv,delay",
    [
        (PROFILE, 0.3),
        (PROFILE, 1.5),
        (EXPORT, 0.3),
        (EXPORT, 1.5),
    ],
)
def test_ctrl_c_early_is_one_line_and_130(argv, delay, tmp_path):
    """SIGINT while the command is still loading MXNet (the earliest moment its code runs: the signal policy
    is installed before the heavy imports, and Python itself owns SIGINT before that), or a second later."""
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    exe = Path(sys.executable).parent / argv[0]
    proc = subprocess.Popen(
        [str(exe), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    start = time.monotonic()
    while not _loaded_mxnet(proc.pid) and proc.poll() is None and time.monotonic() - start < 60:
        time.sleep(0.005)
    time.sleep(max(0.0, delay - (time.monotonic() - start)))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1] == f"{argv[0]}: interrupted", err
    # what came before the interrupt may only be log lines (a busy machine warns while latencies are timed)
    assert all(line.startswith(("WARNING ", "INFO ")) for line in lines[:-1]), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_eval_count_applies_to_the_default_images(tmp_path, capsys):
    """--eval-count applies to the bundled ImageNet samples too, not only to --eval data."""
    out = tmp_path / "out"
    argv = ["oneshot", "--input-size", "32", "--random-init", "-o", str(out), "--no-bench", "--eval-count", "5"]
    status, _, err = _call("export", argv, capsys)
    assert status == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [c["images"] for c in report["checks"]] == [5, 5]
