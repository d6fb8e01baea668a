"""``spos-train subnets``: many architectures trained into their own run folders; running the command again
finishes only what is missing (the path every Ray task takes too; tests/test_ray.py kills one mid-run)."""

from __future__ import annotations

import json

from spos_deploy.space import SPACES

from .conftest import run_cli

SMALL = SPACES["small"]
TINY = ["--epochs", "1", "--train-limit", "256", "--val-limit", "128", "--batch-size", "64", "--no-hybridize"]


def _model(folder, name: str, block: int) -> str:
    L = SMALL.num_positions
    model = {"name": name, **SMALL.to_config(), "block_choices": [block] * L, "channel_choices": [3] * L}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(model))
    return str(path)


def test_subnets_trains_each_model_once_into_its_folder(tmp_path):
    models = [_model(tmp_path, "a", 0), _model(tmp_path, "b", 2)]
    out = tmp_path / "runs"
    r = run_cli("spos-train", "subnets", *models, "-o", str(out), *TINY, "--json")
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [x["name"] for x in runs] == ["a", "b"] and all(0 < x["val_acc"] <= 1 and x["epochs"] == 1 for x in runs)
    assert {p.name for p in out.iterdir()} >= {"a", "b", "subnets.json"}
    assert json.loads((out / "a" / "result.json").read_text())["model"]["block_choices"] == [0] * SMALL.num_positions
    stamp = (out / "a" / "result.json").stat().st_mtime_ns
    again = run_cli("spos-train", "subnets", *models, "-o", str(out), *TINY, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["runs"] == runs  # read back, not trained again
    assert (out / "a" / "result.json").stat().st_mtime_ns == stamp


def test_subnets_refusals_are_one_line(tmp_path):
    a = _model(tmp_path, "same", 0)
    other = tmp_path / "other"
    other.mkdir()
    b = _model(other, "same", 1)
    r = run_cli("spos-train", "subnets", a, b, "-o", str(tmp_path / "o"), *TINY)
    assert r.returncode == 2 and "named 'same'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("spos-train", "subnets", a, "-o", str(tmp_path / "o"), *TINY, "--launch-local", "2")
    assert r.returncode == 2 and "one worker" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
