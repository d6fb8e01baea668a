"""Search and training across processes on a real local Ray cluster (2 CPUs): the same result as one process,
a killed actor or training worker that costs no finished work, and refusals in one line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT, run_cli, supernet_folder

pytest.importorskip("ray")

SEARCH = dict(bn_images=64, batch_size=64, val_limit=128, data_limit=4096, progress=False, plot=False)


def _ray_pids(title: str) -> list[int]:
    """This test process's Ray processes (its local instance's, not another suite's on the same machine) whose
    title (Ray sets ``ray::<class or function>``) starts with ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title) and _descends_from(int(entry.name), os.getpid()):
                pids.append(int(entry.name))
    return pids


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _results(folder: Path) -> list[tuple[str, float, int]]:
    cache = json.loads((folder / "cache.json").read_text())
    return [(e["key"], e["accuracy"], e["generation"]) for e in cache["results"]]


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    return supernet_folder(tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the in-process tests: jobs use a running instance as it is."""
    from spos_deploy.cluster import ray_cluster

    with ray_cluster("local", num_cpus=2) as ray:
        yield ray


def _search(supernet: Path, out: Path, ray: str | None, on_evaluate=None) -> dict:
    from spos_deploy.search.driver import SearchConfig
    from spos_deploy.search.runner import SearchJob, run_job

    cfg = SearchConfig(population=8, generations=2, seed=3)
    job = SearchJob(supernet=str(supernet), out=str(out), config=cfg, ray=ray, workers=None if ray else 1, **SEARCH)
    return run_job(job, on_evaluate=on_evaluate)


def test_ray_search_equals_the_single_process_search_even_when_an_actor_is_killed(supernet, tmp_path, local_ray):
    """Same seed, same candidates in the same order with the same scores; an actor process killed by its pid
    before the second generation is restarted by Ray and its evaluations retried, and the result is unchanged."""
    one = _search(supernet, tmp_path / "one", None)
    two = _search(supernet, tmp_path / "ray", "local")
    assert _results(tmp_path / "ray") == _results(tmp_path / "one")
    assert two["best"] == one["best"] and two["timing"]["workers"] == 2

    killed: list[int] = []
    generations: list[int] = []

    def kill_one(blocks, channels) -> None:
        generations.append(len(blocks))
        if len(generations) == 2:  # just before the second generation is handed to the actors
            pids = _ray_pids("ray::EvalActor")
            assert len(pids) == 2, pids
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    three = _search(supernet, tmp_path / "killed", "local", on_evaluate=kill_one)
    assert killed, "no actor was killed"
    assert _results(tmp_path / "killed") == _results(tmp_path / "one")
    assert three["best"] == one["best"]


def test_a_training_worker_killed_mid_run_resumes_from_its_checkpoint(tmp_path, local_ray):
    from spos_deploy.training.subnets import plan_runs, train_runs
    from spos_deploy.training.trainer import SubnetConfig

    from spos_deploy.model_spec import ModelSpec
    from spos_deploy.space import SPACES

    space = SPACES["small"]
    L = space.num_positions
    specs = [ModelSpec(space, (b,) * L, tuple(space.fix_channels([3] * L)), f"arch{b}") for b in (0, 1)]
    base = SubnetConfig(
        out="unused",
        spec=specs[0],
        epochs=3,
        train_limit=1024,
        val_limit=256,
        batch_size=64,
        warmup_epochs=0.2,
        hybridize=False,
        progress=False,
    )
    runs = plan_runs(base, specs, tmp_path / "runs")
    victim = Path(runs[0].cfg.out)
    killed: list[int] = []

    def watch() -> None:  # kill arch0's trainer once its first epoch is checkpointed
        from spos_deploy.training.checkpoint import checkpoints

        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if checkpoints(victim) and (victim / ".lock").exists():
                owner = (victim / ".lock").read_text()
                if "pid" in owner:
                    pid = int(owner.split("pid ")[1].split(")")[0])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    results = train_runs(runs, ray="local", progress=False)
    t.join(timeout=1)
    assert killed, "the training finished before it could be killed"
    assert [r["name"] for r in results] == ["arch0", "arch1"]
    assert all(r["epochs"] == 3 and 0 < r["val_acc"] <= 1 for r in results)
    assert results[0]["resumed_from_epoch"] is not None and results[0]["resumed_from_epoch"] >= 1, results[0]
    assert results[1]["resumed_from_epoch"] is None
    # the tasks trained arch1's 5x5 convolutions with MXNet's own backward (the rewritten one is opt-in only)
    history = json.loads((Path(runs[1].cfg.out) / "metrics.json").read_text())["history"]
    assert [h["depthwise_backward"] for h in history] == ["mxnet"] * 3
    again = train_runs(runs, ray=None, progress=False)  # finished runs are read back, never trained again
    assert again == results


def test_ray_refusals_are_one_line(supernet, tmp_path):
    from .test_search import EVAL_FLAGS

    base = ["--supernet", str(supernet), "--population", "4", "--generations", "1", *EVAL_FLAGS]
    t0 = time.time()
    r = run_cli("spos-search", *base, "-o", str(tmp_path / "a"), "--ray", "127.0.0.1:9")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not answer" in r.stderr and time.time() - t0 < 60 and not (tmp_path / "a").exists()
    r = run_cli("spos-search", *base, "-o", str(tmp_path / "b"), "--ray", "not-an-address")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n            raise ModuleNotFoundError(name)\n"
        "        return None\nsys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    import subprocess

    p = subprocess.run(
        [sys.executable, "-m", "spos_deploy.search.cli", *base, "-o", str(tmp_path / "c"), "--ray"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2 and "pip install 'spos-deploy[ray]'" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_ray_writes_nothing_under_home(supernet, tmp_path):
    """A local Ray instance keeps its authentication token in the environment, not in ~/.ray/auth_token."""
    from .test_search import EVAL_FLAGS

    home = tmp_path / "home"
    home.mkdir()
    args = ["--supernet", str(supernet), "--population", "4", "--generations", "1", *EVAL_FLAGS]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    import subprocess

    p = subprocess.run(
        [sys.executable, "-m", "spos_deploy.search.cli", *args, "-o", str(tmp_path / "o"), "--ray", "--no-plot"],
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert list(home.iterdir()) == [] and "Token authentication" not in p.stderr
