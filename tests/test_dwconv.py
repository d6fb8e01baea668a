"""The rewritten depthwise backward is used exactly where it is safe: under MXNet's serial engine.

The operator's own cases (gradients equal to MXNet's, accumulation, whole training networks) run in a process
of their own under the serial engine (tests/serial_engine_dwconv.py): MXNet chooses its engine once, when it
loads, and this test process runs the threaded one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mxnet as mx  # noqa: F401  (loaded: this process's engine is fixed from here on)
import pytest

from spos_deploy.model_spec import load_spec
from spos_deploy.nets import dwconv, engine
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.space import space_for_layout

from .conftest import ROOT
from .serial_engine_dwconv import _walk


def _rewritten(net) -> int:
    return sum(bool(getattr(b, "_rewrite", False)) for b in _walk(net))


def test_operator_cases_pass_under_the_serial_engine():
    env = dict(os.environ, MXNET_ENGINE_TYPE=engine.SERIAL)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/serial_engine_dwconv.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "11 passed" in proc.stdout, proc.stdout[-1000:]


@pytest.mark.skipif(engine.is_serial(), reason="the suite itself runs the serial engine")
def test_threaded_engine_keeps_mxnets_own_backward(monkeypatch):
    """In a process that loaded MXNet with its threaded engine nothing is rewritten, and asking for the serial
    engine afterwards changes nothing (MXNet read the variable when it loaded)."""
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    assert not dwconv.rewrite_enabled()
    assert _rewritten(build_supernet(space, seed=0)) == 0
    monkeypatch.delenv(engine.VARIABLE, raising=False)
    assert engine.prefer_serial() is False and engine.VARIABLE not in os.environ


def test_training_processes_get_the_serial_engine_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(engine.VARIABLE, raising=False)
    assert engine.training_env() == {engine.VARIABLE: engine.SERIAL}
    monkeypatch.setenv(engine.VARIABLE, "ThreadedEnginePerDevice")
    assert engine.training_env() == {engine.VARIABLE: "ThreadedEnginePerDevice"}


def _train(tmp_path, name: str, env_engine: str | None) -> dict:
    env = dict(os.environ)
    env.pop(engine.VARIABLE, None)
    if env_engine:
        env[engine.VARIABLE] = env_engine
    out = tmp_path / name
    args = ["subnet", "oneshot+", "--input-size", "32", "--train-limit", "256", "--val-data", "none"]
    args += ["--batch-size", "32", "--epochs", "1", "--lr", "0.05", "--no-progress", "-o", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "spos_deploy.training.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "metrics.json").read_text())["history"][-1]


def test_spos_train_uses_the_rewrite_and_the_users_engine_wins(tmp_path):
    """spos-train runs the serial engine and the rewritten backward by itself (the metrics say which ran);
    a user's ``MXNET_ENGINE_TYPE`` is kept, with MXNet's own backward. Both learn the same thing."""
    spec = load_spec("oneshot+", input_size=32)
    assert any(b in (1, 2) for b in spec.block_choices)  # it has 5x5 or 7x7 depthwise convolutions
    fast = _train(tmp_path, "fast", None)
    native = _train(tmp_path, "native", "ThreadedEnginePerDevice")
    assert fast["depthwise_backward"] == "rewritten" and native["depthwise_backward"] == "mxnet"
    assert fast["loss"] == pytest.approx(native["loss"], rel=1e-3)
