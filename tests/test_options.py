"""Options declared once (spos_deploy/cli/options.py) and the policy every command shares: ``--help``,
``--version`` and ``-q/--quiet`` everywhere, old spellings as hidden aliases, ``--force`` that replaces an
output only once its successor is complete (never together with ``--resume``), and the export's progress
bar on a terminal only."""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from spos_deploy.atomic import STAGING_TAG
from spos_deploy.cli import common
from spos_deploy.cli.common import replacing, run
from spos_deploy.cli.options import (
    HelpFormatter,
    add_alias,
    check_force,
    take_aliases_used,
    use_help_formatter,
)
from spos_deploy.errors import BadInputError

from .conftest import COMMAND_MODULES, TINY_MODEL, run_cli

# Every command and sub-command, with the fewest arguments it parses with (nothing is run).
PARSERS: dict[str, list[str]] = {
    "spos-profile": ["oneshot-s+"],
    "spos-export": ["oneshot-s+", "--random-init", "-o", "out"],
    "spos-bench": ["model.onnx"],
    "spos-search": ["--supernet", "sn", "-o", "out"],
    "spos-lut build": ["build"],
    "spos-lut validate": ["validate", "table.json"],
    "spos-lut show": ["show", "table.json"],
    "spos-lut list": ["list"],
    "spos-train supernet": ["supernet", "-o", "run"],
    "spos-train subnet": ["subnet", "oneshot-s+", "-o", "run"],
    "spos-train sampling-plot": ["sampling-plot", "-o", "p.png", "--flops-range", "0", "1", "--params-range", "0", "1"],
}

HIDDEN = ("--out", "--lut", "--data-limit", "--measure-runs", "--bits")
"""The old spellings kept for one release: they parse, and no --help shows them."""


def _parsed(command: str, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed as ``command`` parses it in :func:`~spos_deploy.cli.common.run` (with its option policy:
    ``--quiet`` implies ``--no-progress``), without running the command."""
    prog = command.split()[0]
    seen: list[argparse.Namespace] = []
    parser = importlib.import_module(COMMAND_MODULES[prog]).build_parser()
    assert run(prog, parser, lambda a: seen.append(a) or 0, argv) == 0
    return seen[0]


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_has_help_version_and_quiet(command, capsys):
    prog, *sub = command.split()
    proc = run_cli(prog, *sub, "--help")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "-q, --quiet" in proc.stdout and "-v, --verbose" in proc.stdout
    shown = proc.stdout.replace(",", " ").split()
    assert not [a for a in HIDDEN if a in shown], proc.stdout
    main = importlib.import_module(COMMAND_MODULES[prog]).main
    with pytest.raises(SystemExit) as e:
        main([*sub, "--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("spos-deploy ")
    for flag in ("-q", "--quiet"):
        args = _parsed(command, [*PARSERS[command], flag])
        assert args.quiet and not args.verbose
        assert getattr(args, "no_progress", True), "--quiet must imply --no-progress"


def test_quiet_and_verbose_exclude_each_other(capsys):
    assert importlib.import_module(COMMAND_MODULES["spos-profile"]).main(["oneshot-s+", "-q", "-v"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with" in err[0], err


ALIASES = [
    # (command, arguments, old spelling + value, new spelling + value, destination)
    ("spos-search", ["--supernet", "sn"], ["--out", "x"], ["-o", "x"], "output"),
    ("spos-export", ["oneshot-s+", "--random-init"], ["--out", "x"], ["--output", "x"], "output"),
    ("spos-train supernet", ["supernet", "-o", "r"], ["--data-limit", "9"], ["--train-limit", "9"], "train_limit"),
    ("spos-search", ["--supernet", "sn", "-o", "x"], ["--data-limit", "9"], ["--train-limit", "9"], "train_limit"),
    (
        "spos-search",
        ["--supernet", "sn", "-o", "x"],
        ["--lut", "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc"],
        ["--latency-table", "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc"],
        "latency_table",
    ),
    ("spos-profile", ["oneshot-s+"], ["--measure-runs", "7"], ["--repeats", "7"], "measure_runs"),
    ("spos-profile", ["oneshot-s+"], ["--bits", "8"], ["--score-bits", "8"], "bits"),
    ("spos-search", ["--supernet", "sn", "-o", "x"], ["--bits", "8"], ["--score-bits", "8"], "score_bits"),
    # old runtime values: a latency runtime's name for the engine and device, --measure's device for --device
    (
        "spos-lut build",
        ["build", "--kind", "latency"],
        ["--runtime", "ort-cpu"],
        ["--runtime", "onnxruntime"],
        "runtime",
    ),
    (
        "spos-lut build",
        ["build", "--kind", "latency"],
        ["--runtime", "ort-cuda"],
        ["--runtime", "onnxruntime", "--device", "gpu"],
        "device",
    ),
    (
        "spos-search",
        ["--supernet", "sn", "-o", "x"],
        ["--runtime", "openvino-cpu"],
        ["--runtime", "openvino", "--device", "cpu"],
        "runtime",
    ),
    (
        "spos-search",
        ["--supernet", "sn", "-o", "x"],
        ["--runtime", "mxnet-gpu"],
        ["--runtime", "mxnet", "--device", "gpu"],
        "device",
    ),
    ("spos-lut validate", ["validate", "t.json"], ["--runtime", "mxnet-cpu"], ["--runtime", "mxnet"], "runtime"),
    ("spos-profile", ["oneshot-s+"], ["--measure", "gpu"], ["--measure", "--device", "gpu"], "device"),
    ("spos-profile", ["oneshot-s+"], ["--measure", "cpu"], ["--measure"], "measure"),
]


@pytest.mark.parametrize(
    ("command", "base", "old", "new", "dest"), ALIASES, ids=[f"{a[0]}{' '.join(a[2])}" for a in ALIASES]
)
def test_an_old_spelling_parses_like_the_new_one_and_is_warned_about(command, base, old, new, dest, caplog):
    take_aliases_used()
    with_old = _parsed(command, [*base, *old])
    with_new = _parsed(command, [*base, *new])
    assert getattr(with_old, dest) == getattr(with_new, dest) is not None
    assert vars(with_old) == vars(with_new)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    spelled = [" ".join(old[:n]) for n in (1, 2)]  # an old option (--out), or an old value of one (--runtime ort-cpu)
    assert any(m.startswith(f"{s} is an old spelling of") for m in warned for s in spelled), warned


# ---- one spelling of a runtime: --runtime ENGINE --device DEVICE ------------------------------------------------


def _runtime_actions(command: str) -> list[argparse.Action]:
    """The ``--runtime``, ``--device`` and ``--auto-runtimes`` options of ``command``'s parser."""
    prog, *sub = command.split()
    parser = importlib.import_module(COMMAND_MODULES[prog]).build_parser()
    if sub:
        (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = subs.choices[sub[0]]
    return [a for a in parser._actions if {"--runtime", "--device", "--auto-runtimes"} & set(a.option_strings)]


def test_every_runtime_option_lists_the_same_engine_names():
    """Every command that takes a runtime lists the engines of the registry, in its order, with --device cpu|gpu
    beside it (default cpu); spos-bench adds auto, --target auto narrows to some engines in the same order."""
    from spos_deploy.runtime.registry import DEVICES, ENGINES

    having = {}
    for command in sorted(PARSERS):
        for a in _runtime_actions(command):
            having.setdefault(command, set()).add(a.option_strings[0])
            listed = tuple(a.choices)
            if a.option_strings[0] == "--runtime":
                assert tuple(c for c in listed if c != "auto") == tuple(ENGINES), (command, listed)
                assert listed[0] == "auto" or "auto" not in listed
            elif a.option_strings[0] == "--device":
                assert listed == DEVICES and a.default == "cpu", (command, listed, a.default)
            else:
                assert [e for e in ENGINES if e in listed] == list(listed), (command, listed)
    runtime_commands = {c for c, opts in having.items() if "--runtime" in opts}
    assert runtime_commands == {"spos-bench", "spos-profile", "spos-search", "spos-lut build", "spos-lut validate"}
    assert all("--device" in having[c] for c in runtime_commands)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ort-cpu", []),
        ("ort-cpu", ["--runtime", "onnxruntime", "--device", "cpu"]),
        ("ort-cuda", ["--runtime", "onnxruntime", "--device", "gpu"]),
        ("ort-cuda", ["--device", "gpu"]),
        ("mxnet-cpu", ["--runtime", "mxnet"]),
        ("mxnet-gpu", ["--runtime", "mxnet", "--device", "gpu"]),
    ],
)
def test_an_old_runtime_spelling_selects_the_same_table_as_the_new_one(old, new, monkeypatch):
    """spos-lut build: the same latency runtime (the fingerprint's runtime_option) and the same default table name
    (its file-name part) from the old word as from the new --runtime/--device; spos-search targets the same form."""
    from spos_deploy.cli.lut import _default_name, _latency_setup
    from spos_deploy.cli.options import latency_runtime
    from spos_deploy.space import SPACES
    from spos_deploy.tables.latency import build

    monkeypatch.setattr(build, "gpu_name", lambda: "Test GPU")  # a GPU's name in a table's name, without a GPU
    base = ["build", "--kind", "latency", "--space", "small", "--threads", "1"]
    setups = [
        _latency_setup(_parsed("spos-lut build", [*base, *argv]), SPACES["small"]) for argv in (["--runtime", old], new)
    ]
    assert setups[0].runtime == setups[1].runtime == old  # the runtime_option recorded, as tables always named it
    names = [_default_name(_parsed("spos-lut build", base), SPACES["small"], s) for s in setups]
    assert names[0] == names[1] and f"_{old}_fp32_b1_t1_" in names[0]
    search = ["--supernet", "sn", "-o", "x"]
    forms = [latency_runtime(_parsed("spos-search", [*search, *argv])) for argv in (["--runtime", old], new)]
    assert forms == [old, None if not new else old]  # nothing given: any table's runtime


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("spos-lut", ["build", "--kind", "latency", "--runtime", "ort-cuda", "--device", "cpu"]),
        ("spos-lut", ["build", "--kind", "latency", "--device", "cpu", "--runtime", "ort-cuda"]),
        ("spos-lut", ["build", "--kind", "latency", "--runtime", "ort-cpu", "--runtime", "mxnet-gpu"]),
        ("spos-search", ["--supernet", "sn", "-o", "x", "--runtime", "mxnet-gpu", "--device", "cpu"]),
        ("spos-bench", ["m.onnx", "--device", "gpu", "--runtime", "ort-cpu"]),
        ("spos-profile", ["oneshot-s+", "--measure", "gpu", "--device", "cpu"]),
        ("spos-profile", ["oneshot-s+", "--device", "cpu", "--measure", "gpu"]),
    ],
)
def test_a_device_that_contradicts_an_old_runtime_spelling_is_refused_in_one_line(command, argv, capsys, tmp_path):
    main = importlib.import_module(COMMAND_MODULES[command]).main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "contradicts" in err[0] and "give one of them" in err[0], err
    assert "Traceback" not in err[0]


@pytest.mark.parametrize(
    ("command", "argv", "words"),
    [
        (
            "spos-lut",
            ["build", "--kind", "latency", "--runtime", "openvino", "--device", "gpu"],
            "openvino on cpu only",
        ),
        ("spos-lut", ["build", "--kind", "latency", "--runtime", "ort-gpu"], "invalid choice: 'ort-gpu' (choose from"),
        (
            "spos-lut",
            ["build", "--kind", "latency", "--device", "gpu", "--target", "auto"],
            "drop --runtime and --device",
        ),
        ("spos-profile", ["--measure", "oneshot-s+"], "give the model before --measure"),
    ],
)
def test_a_runtime_that_cannot_be_is_one_line(command, argv, words, capsys):
    main = importlib.import_module(COMMAND_MODULES[command]).main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not any(name in err[0] for name in ("ort-cpu", "ort-cuda", "openvino-cpu", "mxnet-cpu", "mxnet-gpu"))


def test_help_shows_only_the_new_runtime_spelling():
    """No --help lists the old latency-runtime names or --measure's old value (the commands that take them, and
    spos-lut list, whose help names tables)."""
    from spos_deploy.runtime.registry import runtime_names

    for command in ("spos-bench", "spos-profile", "spos-search", "spos-lut build", "spos-lut validate"):
        prog, *sub = command.split()
        parser = importlib.import_module(COMMAND_MODULES[prog]).build_parser()
        use_help_formatter(parser)
        if sub:
            (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            parser = subs.choices[sub[0]]
        text = parser.format_help()
        assert not [n for n in runtime_names() if n in text], (command, text)
        assert "--runtime {" in text and "--device {cpu,gpu}" in text, command
    profile = importlib.import_module(COMMAND_MODULES["spos-profile"]).build_parser()
    use_help_formatter(profile)
    text = profile.format_help()
    assert "[--measure]" in text and "\n  --measure  " in text and "--measure [" not in text, text


def test_an_old_spelling_is_warned_about_on_stderr_even_with_quiet():
    proc = run_cli("spos-profile", "oneshot-s+", "--table", "none", "--bits", "8", "--input-size", "32", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "WARNING spos_deploy: --bits is an old spelling of --score-bits; it goes in the next release"
    ]
    assert "@8b" in proc.stdout  # the alias did what the new spelling does


def test_add_alias_shares_the_action_and_hides_the_old_spelling():
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    p.add_argument("--new-name", type=int, metavar="N", help="a count")
    add_alias(p, "--old-name", "--new-name")
    take_aliases_used()
    assert p.parse_args(["--old-name", "3"]).new_name == 3 == p.parse_args(["--new-name", "3"]).new_name
    assert take_aliases_used() == [("--old-name", "--new-name")] and take_aliases_used() == []
    assert "--old-name" not in p.format_help() and "--new-name N" in p.format_help()
    with pytest.raises(ValueError):
        add_alias(p, "--old-name", "--new-name")
    sub = argparse.ArgumentParser(prog="y")  # a parser made elsewhere gets the formatter from run()
    sub.add_argument("--b")
    add_alias(sub, "--a", "--b")
    use_help_formatter(sub)
    assert "--a" not in sub.format_help().split() and "--b B" in sub.format_help()


# ---- --force and --resume ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["spos-train", "supernet", "-o", "run", "--resume", "--force"],
        ["spos-train", "subnet", "oneshot-s+", "-o", "run", "--force", "--resume"],
        ["spos-search", "--supernet", "sn", "-o", "out", "--resume", "--force"],
        ["spos-lut", "build", "--kind", "latency", "-o", "t.json", "--resume", "--force"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_force_with_resume_is_refused_in_one_line(argv, tmp_path):
    proc = run_cli(*argv, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{argv[0]}: error: --force") and "--resume" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == [] and proc.stdout == ""


def test_check_force():
    check_force(argparse.Namespace(force=True, resume=False))
    check_force(argparse.Namespace(force=False, resume=True))
    check_force(argparse.Namespace())
    with pytest.raises(BadInputError, match="--force .* --resume"):
        check_force(argparse.Namespace(force=True, resume=True))


def _old_output(folder: Path) -> Path:
    folder.mkdir()
    (folder / "old.txt").write_text("the earlier output")
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if STAGING_TAG in p.name)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replacing_swaps_in_the_complete_output_only(exchange, tmp_path, monkeypatch):
    if not exchange:
        monkeypatch.setattr(common, "_exchange", lambda a, b: False)
    old = _old_output(tmp_path / "out")
    with replacing(old, force=True, prog="test") as new:
        assert new != old and not new.exists() and (old / "old.txt").exists()
        new.mkdir()
        (new / "result.json").write_text(json.dumps({"out": str(new), "n": 1}))
    assert sorted(p.name for p in old.iterdir()) == ["result.json"]
    assert json.loads((old / "result.json").read_text()) == {"out": str(old), "n": 1}  # paths repointed
    assert _leftovers(tmp_path) == []
    # a block that fails (or is interrupted) leaves the earlier output as it was
    with pytest.raises(KeyboardInterrupt), replacing(old, force=True, prog="test") as new:
        new.mkdir()
        (new / "half.json").write_text("{")
        raise KeyboardInterrupt
    assert sorted(p.name for p in old.iterdir()) == ["result.json"] and _leftovers(tmp_path) == []


def test_replacing_without_force_or_output_is_the_output_itself(tmp_path):
    with replacing(tmp_path / "new", force=True, prog="test") as p:
        assert p == tmp_path / "new"
    existing = _old_output(tmp_path / "old")
    with replacing(existing, force=False, prog="test") as p:
        assert p == existing
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="not a folder"), replacing(tmp_path / "file", True, "test"):
        pass


# ---- spos-export: --force, --quiet and the progress bar ------------------------------------------------------

EXPORT = ["model.json", "--random-init", "-o", "out", "--no-bench", "--eval-count", "4"]
INT8 = ["--int8", "--calib", "fashion-mnist:train", "--calib-count", "16"]
EXPORT_FILES = ["model.int8.onnx", "model.json", "model.onnx", "report.json", "report.md"]


def _export_on_a_terminal(folder: Path, *extra: str) -> tuple[int, str, str]:
    """``spos-export EXPORT extra`` in ``folder`` with its stderr on a terminal (a pty, 120 columns)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    cmd = [sys.executable, "-m", COMMAND_MODULES["spos-export"], *EXPORT, *extra]
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the pty's other end is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=300)
    reader.join(10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_export_force_replaces_an_existing_folder_once_the_new_one_is_complete(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(TINY_MODEL))
    out = _old_output(tmp_path / "out")
    refused = run_cli("spos-export", *EXPORT, cwd=tmp_path)
    assert refused.returncode == 2 and "output folder exists" in refused.stderr
    # a --force export that fails leaves the earlier folder as it was
    failed = run_cli("spos-export", *EXPORT, "--force", "--calib-count", "1", "--int8", cwd=tmp_path)
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 2, failed.stderr  # INFO + error
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and _leftovers(tmp_path) == []
    # replaced, complete, nothing staged left; on a terminal, the bar over the steps and the int8 batches
    status, stdout, err = _export_on_a_terminal(tmp_path, "--force", *INT8)
    assert status == 0, err
    assert stdout.startswith("wrote out/ (model.onnx, model.int8.onnx)"), stdout
    assert sorted(p.name for p in out.iterdir()) == EXPORT_FILES and _leftovers(tmp_path) == []
    report = json.loads((out / "report.json").read_text())
    assert all(c["passed"] for c in report["checks"]) and report["int8"]["runtime"] == "onnxruntime"
    assert "export:" in err and "step" in err and "int8:" in err and "sensitivity" in err, err
    assert "INFO spos_deploy: --force: replaced out" in err
    # --quiet: no bar, no INFO line, only the results on stdout (the JSON here)
    status, stdout, err = _export_on_a_terminal(tmp_path, "--force", "--quiet", "--json", *INT8)
    assert status == 0 and err.strip() == "", err
    assert json.loads(stdout) == json.loads((out / "report.json").read_text())
    # --no-progress: the log lines, no bar
    status, _, err = _export_on_a_terminal(tmp_path, "--force", "--no-progress")
    assert status == 0 and "INFO" in err and "export:" not in err and "step/s" not in err, err
    assert sorted(p.name for p in out.iterdir()) == sorted(set(EXPORT_FILES) - {"model.int8.onnx"})


def test_export_draws_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(TINY_MODEL))
    proc = run_cli("spos-export", *EXPORT, *INT8, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "export:" not in proc.stderr, proc.stderr
    assert all(line.startswith(("INFO ", "WARNING ")) for line in proc.stderr.strip().splitlines()), proc.stderr
    quiet = run_cli("spos-export", *EXPORT, "--force", "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("wrote out/ (model.onnx)")


# ---- spos-search and spos-train: --force starts a new run in place of the earlier one ------------------------


def test_search_force_replaces_another_search_once_it_is_complete(tmp_path, capsys):
    from spos_deploy.search.cli import main as search_main

    from .conftest import supernet_folder

    supernet = tmp_path / "supernet"
    supernet.mkdir()
    supernet_folder(supernet)
    out = tmp_path / "out"
    fast = ["--supernet", str(supernet), "-o", str(out), "--bn-images", "64", "--batch-size", "64"]
    fast += ["--val-limit", "64", "--train-limit", "1024", "--population", "3", "--generations", "1", "--budget", "3"]
    fast += ["--no-plot", "--no-progress"]
    assert search_main(fast) == 0
    capsys.readouterr()
    assert search_main([*fast, "--seed", "1"]) == 2  # another search's folder: refused, as before
    assert "holds a search with other settings" in capsys.readouterr().err
    assert search_main([*fast, "--seed", "1", "--force", "--quiet", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["seed"] == 1
    results = (out / "results.json").read_text()
    assert json.loads(results)["seed"] == 1 and STAGING_TAG not in results
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out", "supernet"]
