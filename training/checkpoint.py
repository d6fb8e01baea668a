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

from spos_deploy.atomic import atomic_dir
from spos_deploy.errors import BadInputError

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
    try:
        state = json.loads((path / "state.json").read_text())
        net.load_parameters(str(path / "net.params"), ctx=ctx)
        trainer.load_states(str(path / "trainer.states"))
    except Exception as e:  # noqa: BLE001 - MXNet raises its own error types for bad files
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise BadInputError(f"{path}: unreadable checkpoint ({type(e).__name__}: {first})") from None
    return state
