"""spos-train on bad input and on resume: exit 2 with one line naming the problem, nothing left behind, run
folders locked, stale staging removed, one line ending in steps.csv, signals. Real runs of a tiny supernet."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from spos_deploy.training.cli import main as train_main

from spos_deploy.atomic import output_lock

from .conftest import interrupt_when, space_args

TINY = [*space_args(input_size=32, num_classes=10, stage_repeats=[1, 1, 2, 1]), "--no-progress"]
RUN = ["supernet", *TINY, "--train-limit", "256", "--val-data", "none", "--batch-size", "32", "--epochs", "2"]


def _fails(capsys, argv: list[str], expect: str) -> str:
    code = train_main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A supernet run stopped after 6 steps, with a checkpoint at step 4."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert train_main([*RUN, "--max-steps", "6", "--checkpoint-every", "4", "-o", str(out)]) == 0
    return out


BAD_VALUES = [
    ("--lr", "-1"),
    ("--lr", "0"),
    ("--epochs", "0"),
    ("--batch-size", "0"),
    ("--max-steps", "0"),
    ("--keep", "0"),
    ("--label-smoothing", "1.5"),
    ("--momentum", "-0.1"),
    ("--wd", "-1"),
    ("--warmup-epochs", "-1"),
    ("--checkpoint-every", "-1"),
    ("--train-limit", "0"),
    ("--val-limit", "0"),
    ("--eval-paths", "0"),
    ("--cs-pace", "0"),
    ("--cs-start-epoch", "-1"),
    ("--seed", "-3"),
    ("--launch-local", "0"),
    ("--flops-range", "-1"),
    ("--kvstore", "bogus"),
    ("--epochs", "two"),
    ("--block-weights", "-1"),
    ("--block-weights", "1"),  # one weight for four block types
    ("--kd-weight", "2"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_VALUES)
def test_nonsense_values_exit_2_before_any_work(flag, value, tmp_path, capsys):
    args = [*RUN, "-o", str(tmp_path / "out"), flag, value]
    if flag == "--flops-range":
        args += ["5"]
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert flag in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_mixup_below_zero_is_refused(tmp_path, capsys):
    assert train_main(["subnet", "oneshot", "--input-size", "32", "--mixup", "-1", "-o", str(tmp_path / "o")]) == 2
    assert "--mixup" in capsys.readouterr().err


def test_gpus_accept_both_spellings():
    from spos_deploy.training.cli import _config, build_parser

    for spelling in (["0", "1"], ["0,1"]):
        args = build_parser().parse_args([*RUN, "-o", "x", "--gpus", *spelling])
        assert _config(args).gpus == [0, 1]
    lut = "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc"  # a shipped table, by name (resolved while parsing)
    old = build_parser().parse_args([*RUN, "--out", "x", "--data-limit", "64", "--latency-table", lut])
    assert old.output == "x" and old.train_limit == 64 and Path(old.latency_table).name == f"{lut}.json"


def test_output_that_is_a_file_exit_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("mine")
    _fails(capsys, [*RUN, "-o", str(f)], str(f))
    _fails(capsys, [*RUN, "-o", str(f / "sub")], "is a file")
    assert f.read_text() == "mine"


@pytest.mark.parametrize("case", ["missing", "unlabelled", "classes"])
def test_bad_data_leaves_no_run_folder(case, tmp_path, capsys):
    import numpy as np

    out = tmp_path / "out"
    if case == "missing":
        argv, expect = [*RUN, "--data", str(tmp_path / "nothing")], "nothing"
    elif case == "unlabelled":
        np.savez(tmp_path / "x.npz", images=np.zeros((8, 3, 32, 32), np.float32))
        argv, expect = [*RUN, "--data", str(tmp_path / "x.npz")], "labelled"
    else:
        argv, expect = [*RUN, "--num-classes", "5"], "classes"
    _fails(capsys, [*argv, "-o", str(out)], expect)
    assert not out.exists()


def _copy(run_folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_folder, out)
    return out


def test_resume_cleans_stale_staging_and_keeps_one_line_ending(run_folder, tmp_path, capsys):
    out = _copy(run_folder, tmp_path)
    # what kill -9 during a checkpoint leaves: a staging folder of a process that no longer runs (for a
    # checkpoint the resumed run never writes again, so only the resume itself can remove it)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".ckpt-0000-000003.spos-tmp-{int(dead.stdout)}-abc123"
    stale.mkdir()
    (stale / "net.params").write_bytes(b"\0" * 1000)
    # steps.csv as the csv module wrote it before (CRLF) plus a step beyond the checkpoint
    (out / "steps.csv").write_bytes((out / "steps.csv").read_bytes().replace(b"\n", b"\r\n"))
    assert train_main([*RUN, "--max-steps", "10", "--checkpoint-every", "4", "-o", str(out), "--resume"]) == 0
    capsys.readouterr()
    assert not stale.exists()
    data = (out / "steps.csv").read_bytes()
    assert b"\r" not in data
    assert [int(line.split(b",")[0]) for line in data.splitlines()] == list(range(10))
    assert not [p.name for p in out.iterdir() if ".spos-tmp-" in p.name]


def test_resume_with_other_settings_is_refused(run_folder, tmp_path, capsys):
    out = _copy(run_folder, tmp_path)
    _fails(capsys, [*RUN, "--lr", "0.3", "--max-steps", "8", "-o", str(out), "--resume"], "lr: saved 0.2, now 0.3")
    _fails(capsys, [*RUN, "-o", str(out)], "--resume")


def test_locked_run_folder_is_refused(run_folder, tmp_path, capsys):
    out = _copy(run_folder, tmp_path)
    with output_lock(out, "another spos-train"):
        _fails(capsys, [*RUN, "--max-steps", "8", "-o", str(out), "--resume"], "in use by another spos-train")


@pytest.mark.parametrize("case", ["net-params", "state-list", "state-field", "config-list"])
def test_damaged_run_folder_gives_one_line(case, run_folder, tmp_path, capsys):
    out = _copy(run_folder, tmp_path)
    ckpt = out / "ckpt-0000-000004"
    if case == "net-params":
        (ckpt / "net.params").write_bytes((ckpt / "net.params").read_bytes()[:3000])
        expect = "unreadable checkpoint"
    elif case == "state-list":
        (ckpt / "state.json").write_text("[]")
        expect = "expected a JSON object"
    elif case == "state-field":
        state = json.loads((ckpt / "state.json").read_text())
        state["global_step"] = "four"
        (ckpt / "state.json").write_text(json.dumps(state))
        expect = "field 'global_step'"
    else:
        (out / "config.json").write_text("[]")
        expect = "config.json: expected a JSON object"
    line = _fails(capsys, [*RUN, "--max-steps", "8", "-o", str(out), "--resume"], expect)
    if case == "net-params":
        assert "Traceback" not in line and line.rstrip().endswith(")") and len(line) > 60, line


def test_final_weights_and_model_json_are_written_atomically(tmp_path, capsys):
    """The final files come from the atomic writers: a stale staging file of the same target goes away."""
    out = tmp_path / "net"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name in ("model.params", "model.json"):
        (out / f".{name}.spos-tmp-{int(dead.stdout)}-x").write_bytes(b"partial")
    argv = ["subnet", "oneshot+", "--input-size", "32", "--train-limit", "64", "--val-data", "none"]
    argv += ["--batch-size", "32", "--epochs", "1", "--no-progress", "-o", str(out)]
    assert train_main(argv) == 0
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert "model.params" in names and "model.json" in names and not [n for n in names if "spos-tmp" in n]
    assert json.loads((out / "model.json").read_text())["name"]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_end_a_run_with_their_status(sig, status, tmp_path):
    out = tmp_path / "run"
    argv = [*RUN, "--epochs", "50", "--train-limit", "2048", "-o", str(out)]
    returncode, err = interrupt_when("spos_deploy.training.cli", argv, out / "steps.csv", sig)
    assert returncode == status, err


def _supernet_config(argv: list[str]):
    from spos_deploy.training.cli import _config, build_parser

    return _config(build_parser().parse_args(["supernet", *argv]))


def test_the_small_space_trains_with_its_own_recipe_unless_told_otherwise(tmp_path):
    from spos_deploy.training.recipes import SUPERNET_RECIPES

    small = SUPERNET_RECIPES["small"]
    cfg = _supernet_config(["--space", "small", "-o", str(tmp_path / "a")])
    assert (cfg.epochs, cfg.lr, cfg.warmup_epochs) == (small["epochs"], small["lr"], small["warmup_epochs"])
    assert (cfg.label_smoothing, cfg.augment) == (small["label_smoothing"], small["augment"])
    assert cfg.cs_start_epoch == cfg.epochs  # full width: channel selection never starts
    cfg = _supernet_config(["--space", "small", "--lr", "0.05", "--epochs", "3", "-o", str(tmp_path / "b")])
    assert (cfg.lr, cfg.epochs, cfg.cs_start_epoch) == (0.05, 3, 3)
    cfg = _supernet_config(["--space", "small", "--stage-repeats", "1", "1", "1", "1", "-o", str(tmp_path / "c")])
    assert cfg.lr == SUPERNET_RECIPES["imagenet"]["lr"]  # no longer the built-in space: the generic recipe


def test_a_small_space_model_json_brings_the_small_recipe(tmp_path):
    from spos_deploy.model_spec import ModelSpec
    from spos_deploy.space import SPACES

    space = SPACES["small"]
    model = tmp_path / "model.json"
    model.write_text(json.dumps(ModelSpec(space, (1,) * space.num_positions, (0,) * space.num_positions).to_json()))
    cfg = _supernet_config(["--from-model", str(model), "-o", str(tmp_path / "run")])
    assert cfg.space == space and cfg.augment == "none" and cfg.cs_start_epoch == cfg.epochs
    cfg = _supernet_config(["-o", str(tmp_path / "run")])
    assert (cfg.lr, cfg.augment, cfg.cs_start_epoch) == (0.2, "crop-flip", 0)  # the ImageNet default, as before
