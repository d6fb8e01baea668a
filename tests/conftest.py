"""Shared fixtures. Everything runs on real MXNet graphs; nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOS_SHARED", ROOT.parent / "shared"))
REFERENCE_TABLE = SHARED / "reference" / "seed_flops_params_lookup_table.json"


@pytest.fixture(scope="session")
def reference_table() -> dict:
    if not REFERENCE_TABLE.exists():
        pytest.fail(f"reference data missing: {REFERENCE_TABLE} (the project expects ../shared beside it)")
    return json.loads(REFERENCE_TABLE.read_text())


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console command as a user would (a fresh interpreter), capturing both streams."""
    module = {
        "spos-profile": "spos_deploy.cli.profile",
        "spos-lut": "spos_deploy.cli.lut",
        "spos-export": "spos_deploy.cli.export",
        "spos-bench": "spos_deploy.cli.bench",
    }[args[0]]
    env = dict(os.environ)
    env.pop("SPOS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args[1:]], capture_output=True, text=True, cwd=cwd or ROOT, env=env
    )


def space_args(**config: object) -> list[str]:
    """Command-line options (``--input-size 32 --stage-repeats 1 1 2 1 ...``) of a search-space configuration,
    given as :class:`~spos_deploy.space.SearchSpace` keyword arguments, for the commands that take them."""
    flags = {"use_se": "se", "last_conv_after_pooling": "lcap"}
    out: list[str] = []
    for key, value in config.items():
        flag = "--" + flags.get(key, key).replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else flag.replace("--", "--no-", 1))
        elif isinstance(value, list | tuple):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out
