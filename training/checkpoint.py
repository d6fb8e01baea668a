"""Checkpoints that are complete or absent, keep the last K, and carry everything a bit-exact resume needs.

A checkpoint is a folder ``ckpt-EEEE-SSSSSS`` (epoch, global step) holding the network weights, the
optimizer state and ``state.json`` (epoch, step in epoch, global step, sampler state, the numpy
generator state, metrics so far). It is written to a temporary folder and renamed, so a crash during
saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from spos_deploy.search.run_folder import read_object

from spos_deploy.atomic import atomic_dir
from spos_deploy.errors import BadInputError, short_message

STATE_KEYS = ("epoch", "step", "global_step", "history")
RUN_SETTINGS_IGNORED = frozenset({"out", "resume", "progress", "max_steps", "keep", "checkpoint_every"})
"""Settings a resumed run may change: they do not change what the run computes."""

_NAME = re.compile(r"^ckpt-(\d{4})-(\d{6,})$")


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not folder.exists():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(2)))


def save_checkpoint(folder: Path, net, trainer, state: dict[str, Any], keep: int) -> Path:
    target = folder / f"ckpt-{state['epoch']:04d}-{state['global_step']:06d}"
    if target.exists():
        return target
    with atomic_dir(target) as tmp:
        net.save_parameters(str(tmp / "net.params"))
        trainer.save_states(str(tmp / "trainer.states"))
        (tmp / "state.json").write_text(json.dumps(state))
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path, net, trainer, ctx) -> dict[str, Any]:
    """Weights, optimizer state and loop position of a checkpoint; a damaged one is a one-line error."""
    state = read_object(path / "state.json", "checkpoint state", STATE_KEYS)
    for key in ("epoch", "step", "global_step"):
        if type(state[key]) is not int or state[key] < 0:
            raise BadInputError(f"{path / 'state.json'}: field '{key}' must be a non-negative integer")
    if not isinstance(state["history"], list):
        raise BadInputError(f"{path / 'state.json'}: field 'history' must be a list")
    try:
        net.load_parameters(str(path / "net.params"), ctx=ctx)
        trainer.load_states(str(path / "trainer.states"))
    except Exception as e:  # noqa: BLE001 - MXNet raises its own error types for bad files
        raise BadInputError(f"{path}: unreadable checkpoint ({short_message(e)})") from None
    return state


def check_same_run(folder: Path, config: dict[str, Any]) -> None:
    """``--resume`` continues the run in ``folder`` only with its settings; name the first that differs.

    Only settings both configurations have are compared, so runs saved by older versions still resume.
    """
    path = folder / "config.json"
    if not path.exists():
        return
    saved = read_object(path, "training run configuration", ("mode",))
    diff = [k for k in config if k in saved and k not in RUN_SETTINGS_IGNORED and _norm(saved[k]) != _norm(config[k])]
    if diff:
        k = diff[0]
        raise BadInputError(
            f"--resume: {folder} is a run with other settings ({k}: saved {saved[k]!r}, now {config[k]!r}); "
            "use the same settings or another --out"
        )


def _norm(v: Any) -> Any:
    """JSON round trip: tuples and lists, ints and floats compare as they would once saved."""
    return json.loads(json.dumps(v))
