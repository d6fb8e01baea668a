"""The policy every command shares: one-line usage errors, the signal policy, light command modules,
atomic writes that clean up after killed runs, and output-folder locks."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spos_deploy.atomic import atomic_dir, output_lock, read_json, remove_stale_staging, write_json
from spos_deploy.errors import BadInputError, short_message

from .conftest import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = COMMAND_MODULES
HEAVY = ("mxnet", "onnx", "onnxruntime", "matplotlib", "gluoncv")


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_usage_errors_are_one_line_and_exit_2(prog, capsys):
    main = importlib.import_module(COMMANDS[prog]).main
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error:") and err[0].endswith(f"(see {prog} --help)")


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_every_command_and_sub_command_has_version(prog, capsys):
    """``--version`` works on every command and sub-command, ``spos-profile`` included."""
    from spos_deploy import __version__

    main = importlib.import_module(COMMANDS[prog]).main
    sub = {"spos-lut": ["show"], "spos-train": ["supernet"]}.get(prog, [])
    for argv in ([], sub) if sub else ([],):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--version"])
        assert e.value.code == 0 and capsys.readouterr().out == f"spos-deploy {__version__}\n"


@pytest.mark.parametrize("module", sorted(COMMANDS.values()))
def test_command_modules_import_no_framework(module):
    """The signal handlers are installed in ``run``: a framework imported at module level would escape them."""
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()} at import time"


_SCRIPT = """
import sys, time, argparse
from spos_deploy.cli.common import run

def body(args):
    if args.mode == "import":
        import mxnet  # noqa: F401  (a heavy import under way when the signal lands)
        time.sleep(30)
    elif args.mode == "swallow":   # a library that catches KeyboardInterrupt and carries on
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            pass
        return 0
    elif args.mode == "destructor":  # the signal lands in __del__, where Python would only print a warning
        class Slow:
            def __del__(self):
                time.sleep(30)
        s = Slow()
        del s
        return 0
    elif args.mode == "staged-destructor":  # the same while atomic writers hold staging paths
        from spos_deploy.atomic import atomic_dir, atomic_path

        class Slow:
            def __del__(self):
                time.sleep(30)
        with atomic_dir(args.out + "/export") as d, atomic_path(args.out + "/table.json") as f:
            (d / "model.onnx").write_text("partial")
            f.write_text("partial")
            s = Slow()
            del s
        return 0
    elif args.mode == "half-built":  # the signal stops a constructor; the object's destructor then fails
        class HalfBuilt:  # (an MXNet Symbol interrupted before its handle is set)
            def __init__(self):
                time.sleep(30)
                self.handle = 1
            def __del__(self):
                self.handle
        HalfBuilt()
        return 0
    elif args.mode == "teardown":  # done, but the interpreter's teardown is slow (MXNet: half a second)
        class Slow:
            def __del__(self):
                time.sleep(30)
        globals()["keep"] = Slow()
        return 0
    else:
        time.sleep(30)
    return 0

p = argparse.ArgumentParser()
p.add_argument("mode")
p.add_argument("out", nargs="?")
print("ready", flush=True)
sys.exit(run("spos-demo", p, body))
"""


def _signal_run(mode: str, sig: int, delay: float, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), mode, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(
    "mode, sig, status, word",
    [
        ("sleep", signal.SIGINT, 130, "interrupted"),
        ("sleep", signal.SIGTERM, 143, "terminated"),
        ("swallow", signal.SIGINT, 130, "interrupted"),
        ("destructor", signal.SIGINT, 130, "interrupted"),
        ("half-built", signal.SIGINT, 130, "interrupted"),
        ("import", signal.SIGINT, 130, "interrupted"),
    ],
)
def test_signal_policy(mode, sig, status, word):
    r = _signal_run(mode, sig, 0.3 if mode == "import" else 1.0)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == status, r.stderr
    assert lines == [f"spos-demo: {word}"], r.stderr


def test_a_signal_after_the_work_never_kills_by_signal():
    """Python restores the default signal actions before it unloads modules: a Ctrl-C in that window used to
    end a finished command by the signal itself (status -2, no line). The process now ends without that
    teardown, at once, with the command's status."""
    start = time.monotonic()
    r = _signal_run("teardown", signal.SIGINT, 1.0)
    assert r.returncode in (0, 130), r.returncode
    assert r.returncode == 0 or r.stderr.strip() == "spos-demo: interrupted"
    assert time.monotonic() - start < 20


def test_a_hard_exit_removes_the_staging_paths(tmp_path):
    """A signal inside a destructor ends the process at once, skipping ``finally`` blocks (which would leave the
    staging folder of a spos-export stopped by an early Ctrl-C); the live staging paths still go."""
    r = _signal_run("staged-destructor", signal.SIGINT, 1.0, str(tmp_path))
    assert (r.returncode, r.stderr.strip()) == (130, "spos-demo: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_short_message_keeps_the_informative_line():
    mx_like = RuntimeError(
        'Traceback (most recent call last):\n  File "x.py", line 3, in f\n[bt] (0) libmxnet.so\n'
        "MXNetError: Check failed: shape mismatch (3 vs 4)"
    )
    assert short_message(mx_like) == "Check failed: shape mismatch (3 vs 4)"
    ov_like = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\nException from src/frontends/ir/src/frontend.cpp:2:\n"
        "Incorrect weights in bin file!\n"
    )
    assert short_message(ov_like) == "Incorrect weights in bin file!"
    assert short_message(ValueError("")) == "ValueError"
    assert len(short_message(ValueError("x" * 1000))) == 300


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_of_a_killed_run_is_removed_by_the_next_write(tmp_path):
    dead = _dead_pid()
    stale_file = tmp_path / f".out.json.spos-tmp-{dead}-abc"
    stale_dir = tmp_path / f".export.spos-tmp-{dead}-xyz"
    live = tmp_path / f".out.json.spos-tmp-{os.getppid()}-live"  # a running writer's: kept
    stale_file.write_text("partial")
    stale_dir.mkdir()
    (stale_dir / "net.params").write_bytes(b"\0" * 1000)
    live.write_text("in progress")
    write_json(tmp_path / "out.json", {"a": 1})
    assert not stale_file.exists() and live.exists() and stale_dir.exists()
    with atomic_dir(tmp_path / "export") as d:
        (d / "model.onnx").write_text("x")
    assert not stale_dir.exists() and (tmp_path / "export" / "model.onnx").exists()
    assert remove_stale_staging(tmp_path / "out.json") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", "export", live.name])


def test_a_parent_that_is_a_file_is_bad_input(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        write_json(tmp_path / "afile" / "sub" / "x.json", {})
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        with atomic_dir(tmp_path / "afile" / "sub"):
            pass


def test_output_lock_refuses_a_second_job_and_dies_with_its_process(tmp_path):
    folder = tmp_path / "run"
    code = (
        "import sys, time\nfrom spos_deploy.atomic import output_lock\n"
        f"with output_lock({str(folder)!r}, 'spos-search'):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BadInputError, match=rf"in use by spos-search \(pid {holder.pid}\)"):
            with output_lock(folder, "spos-search"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(folder, "spos-search"):  # the kernel dropped the dead holder's lock
        pass


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(BadInputError, match="bad.json: not a text file"):
        read_json(bad)
    bad.write_text('{"a": ')
    with pytest.raises(BadInputError, match="invalid JSON at line 1"):
        read_json(bad)
    with pytest.raises(BadInputError, match="is a folder"):
        read_json(tmp_path)
