"""Shared fixtures. Everything runs on real MXNet graphs; nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import spos_deploy  # noqa: F401  (its privacy settings, spos_deploy.privacy, cover the test process too)
from spos_deploy.machine import physical_cores

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Test files run side by side (./run.sh test): each worker's MXNet, and every command it starts, gets its
    # share of the cores rather than all of them, which would leave OpenMP threads spinning against each other.
    # Set before MXNet loads; OMP_NUM_THREADS, where the user set it, still holds (MXNet takes the smaller).
    _share = physical_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("MXNET_OMP_MAX_THREADS", str(max(1, _share)))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOS_SHARED", ROOT.parent / "shared"))
REFERENCE_TABLE = SHARED / "reference" / "seed_flops_params_lookup_table.json"


@pytest.fixture(scope="session", autouse=True)
def user_tables_dir(tmp_path_factory: pytest.TempPathFactory):
    """Tables built without ``-o`` (and every command this session starts) use a per-session folder, never
    the real ``~/.local/share/spos-deploy/tables`` (:mod:`spos_deploy.tables.catalog`)."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("user-tables")
        mp.setenv("SPOS_TABLES_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def reference_table() -> dict:
    if not REFERENCE_TABLE.exists():
        pytest.fail(f"reference data missing: {REFERENCE_TABLE} (the project expects ../shared beside it)")
    return json.loads(REFERENCE_TABLE.read_text())


TINY_MODEL = {
    "name": "tiny",
    "layout": "OneShot",
    "stage_repeats": [1, 1, 2, 1],
    "stage_out_channels": [32, 64, 128, 256],
    "first_conv_channels": 16,
    "last_conv_channels": 128,
    "block_choices": [0, 1, 3, 2, 0],
    "channel_choices": [9, 9, 9, 9, 9],
    "use_se": True,
    "last_conv_after_pooling": True,
    "input_size": 32,
    "num_classes": 10,
}
"""A 5-position, 32 px, 10-class model: quick to build, export and train on real images in a test."""

COMMAND_MODULES = {
    "spos-profile": "spos_deploy.cli.profile",
    "spos-lut": "spos_deploy.cli.lut",
    "spos-export": "spos_deploy.cli.export",
    "spos-bench": "spos_deploy.cli.bench",
    "spos-search": "spos_deploy.search.cli",
    "spos-train": "spos_deploy.training.cli",
}
"""Every console command and the module behind it (``pyproject.toml`` [project.scripts])."""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console command as a user would (a fresh interpreter), capturing both streams."""
    module = COMMAND_MODULES[args[0]]
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


TEST_SPACE_CONFIG = dict(input_size=32, num_classes=10, stage_repeats=(1, 1, 2, 1))
"""A 5-position space at 32 px: supernets of it build, save and evaluate in about a second."""


def supernet_folder(folder: Path) -> Path:
    """A spos-train-style run folder (config.json + supernet.params) of a randomly initialised supernet of
    the test space."""
    from spos_deploy.nets.supernet import build_supernet
    from spos_deploy.space import SearchSpace

    space = SearchSpace(**TEST_SPACE_CONFIG)
    build_supernet(space, seed=0).save_parameters(str(folder / "supernet.params"))
    (folder / "config.json").write_text(json.dumps({"mode": "supernet", "space": space.to_config()}))
    return folder


def interrupt_when(module: str, argv: list[str], ready: Path, sig: int, delay: float = 0.0) -> tuple[int, str]:
    """Run ``python -m module argv``, send ``sig`` once ``ready`` exists (plus ``delay`` s), and return the exit
    status and stderr; asserts that the signal produced one line (progress logs aside) and no traceback."""
    import signal  # noqa: F401  (callers pass signal.SIGINT / SIGTERM)
    import time

    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ready.exists():
        time.sleep(0.05)
    assert ready.exists(), f"{ready} never appeared"
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("INFO ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return proc.returncode, err
