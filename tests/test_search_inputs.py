"""spos-search on bad input: option values, run folders (config.json, state.json, cache.json), output folders
held by another search or locked by a running one, and signals. Exit 2 (130/143 for signals), one line
naming the problem, no traceback, nothing new left behind. A tiny randomly initialised supernet."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from spos_deploy.search.cli import main as search_main

from spos_deploy.atomic import output_lock
from spos_deploy.space import SearchSpace

from .conftest import TEST_SPACE_CONFIG, interrupt_when, supernet_folder

SMALL = SearchSpace(**TEST_SPACE_CONFIG)
FAST = ["--bn-images", "64", "--batch-size", "64", "--val-limit", "64", "--train-limit", "1024", "--no-progress"]
SEARCH = ["--population", "3", "--generations", "2", "--budget", "4", "--no-plot", *FAST]


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    """A spos-train-style run folder of a randomly initialised supernet of SMALL."""
    return supernet_folder(tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def finished(supernet, tmp_path_factory) -> Path:
    """A finished tiny search (seed 0)."""
    out = tmp_path_factory.mktemp("search") / "out"
    assert search_main(["--supernet", str(supernet), "-o", str(out), *SEARCH]) == 0
    return out


def _fails(capsys, argv: list[str], expect: str) -> str:
    code = search_main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0]


BAD_VALUES = [
    ("--population", "0"),
    ("--generations", "0"),
    ("--mutation", "2"),
    ("--channel-mutation", "-0.5"),
    ("--budget", "0"),
    ("--bn-images", "0"),
    ("--batch-size", "0"),
    ("--workers", "0"),
    ("--parents", "0"),
    ("--crossover", "-1"),
    ("--val-limit", "0"),
    ("--data-limit", "0"),
    ("--score-max", "-1"),
    ("--latency-max-ms", "0"),
    ("--shard", "0/2"),  # removed: the line says what replaced it
    ("--seed", "-1"),
    ("--score-bits", "4"),
    ("--flops-range", "nan"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_VALUES)
def test_nonsense_values_exit_2(flag, value, supernet, tmp_path, capsys):
    args = ["--supernet", str(supernet), "-o", str(tmp_path / "out"), *FAST, flag, value]
    if flag == "--flops-range":
        args += ["5"]
    assert search_main(args) == 2
    err = capsys.readouterr().err
    assert flag in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_gpus_and_old_spellings_parse():
    from spos_deploy.search.cli import build_parser, job_from_args

    for spelling in (["0", "1"], ["0,1"]):
        args = build_parser().parse_args(["--supernet", "s", "-o", "x", "--gpus", *spelling])
        assert job_from_args(args).gpus == [0, 1]
    lut = "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc"  # a shipped table, by name (resolved while parsing)
    old = build_parser().parse_args(["--supernet", "s", "--out", "x", "--lut", lut, "--data-limit", "9"])
    job = job_from_args(old)
    assert (job.out, Path(job.lut).name, job.data_limit) == ("x", f"{lut}.json", 9)


def _run_folder(supernet: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(supernet, run)
    return run


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("layout", "config.json (field 'space'): field 'layout'"),
        ("list", "config.json: expected a JSON object"),
        ("garbled", "config.json: invalid JSON"),
        ("missing-space", "field 'space' is missing"),
        ("mode", "not a supernet run"),
        ("no-config", "no config.json"),
        ("no-params", "no supernet.params"),
        ("scales", "field 'channel_scales'"),
    ],
)
def test_bad_supernet_run_folder(case, expect, supernet, tmp_path, capsys):
    run = _run_folder(supernet, tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    if case == "layout":
        cfg["space"]["layout"] = "Bogus"
    elif case == "scales":
        cfg["space"]["channel_scales"] = [1.0, 0.5]
    elif case == "missing-space":
        del cfg["space"]
    elif case == "mode":
        cfg["mode"] = "subnet"
    text = {"list": "[]", "garbled": '{"mode": "supernet",'}.get(case, json.dumps(cfg))
    (run / "config.json").write_text(text)
    if case == "no-config":
        (run / "config.json").unlink()
    if case == "no-params":
        (run / "supernet.params").unlink()
    out = tmp_path / "out"
    _fails(capsys, ["--supernet", str(run), "-o", str(out), *SEARCH], expect)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("state.json", "[]", "state.json: expected a JSON object"),
        ("state.json", "{", "state.json: invalid JSON"),
        ("state.json", '{"version": 1}', "field 'settings' is missing"),
        ("cache.json", '{"settings": {}, "results": 3}', "field 'results' must be list"),
        ("cache.json", "[]", "cache.json: expected a JSON object"),
    ],
)
def test_bad_state_files_on_resume(name, text, expect, supernet, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    (out / name).write_text(text)
    before = sorted(p.name for p in out.iterdir())
    _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH, "--resume"], expect)
    assert sorted(p.name for p in out.iterdir()) == before


def test_malformed_state_content_names_the_field(supernet, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    d = json.loads((out / "state.json").read_text())
    d["state"]["population"] = []
    (out / "state.json").write_text(json.dumps(d))
    _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH, "--resume"], "field 'state'")


def test_second_search_into_the_same_folder(supernet, finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    results = (out / "results.json").read_bytes()
    # another seed, sequentially: refused, naming the setting, with or without --resume
    _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH, "--seed", "5"], "seed: saved 0, now 5")
    _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH, "--seed", "5", "--resume"], "seed")
    # the same search without --resume: refused; with it: continued (already finished: outputs rewritten)
    _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH], "--resume")
    # a running search holds the folder: a concurrent one is refused
    with output_lock(out, "spos-search (pid 1)"):
        _fails(capsys, ["--supernet", str(supernet), "-o", str(out), *SEARCH, "--resume"], "in use by spos-search")
    # --resume removes what killed runs left (staging of a dead process)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".cache.json.spos-tmp-{int(dead.stdout)}-zz"
    stale.write_text("partial")
    assert search_main(["--supernet", str(supernet), "-o", str(out), *SEARCH, "--resume"]) == 0
    capsys.readouterr()
    assert (out / "results.json").read_bytes() != b"" and not stale.exists()
    assert json.loads(results)["best"] == json.loads((out / "results.json").read_text())["best"]


def test_output_that_is_a_file(supernet, tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("mine")
    _fails(capsys, ["--supernet", str(supernet), "-o", str(f), *SEARCH], "not a folder")
    assert f.read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_a_search_with_their_status(sig, status, supernet, tmp_path):
    out = tmp_path / "out"
    argv = ["--supernet", str(supernet), "-o", str(out), "--population", "50", "--generations", "50", *FAST]
    returncode, err = interrupt_when(
        "spos_deploy.search.cli", argv, out / ".lock", sig, delay=1.0
    )  # into the evaluation
    assert returncode == status, err
