"""The benchmarks' shared helpers that decide what is trained and what a result says (benchmarks/_subnets.py,
benchmarks/search_quality.py): run claims between side-by-side invocations, --shard parsing, and the
search-quality verdict with its seed noise."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _subnets  # noqa: E402
import search_quality  # noqa: E402
import supernet_ranking  # noqa: E402


def test_a_claimed_run_is_not_claimed_again_until_released(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with _subnets.claimed(run) as first:
        assert first
        assert (run / _subnets.CLAIM).exists()
        with _subnets.claimed(run) as second:  # this process is alive: its claim holds
            assert not second
    assert not (run / _subnets.CLAIM).exists()
    with _subnets.claimed(run) as again:
        assert again


def test_a_claim_is_released_when_the_training_fails(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(RuntimeError), _subnets.claimed(run) as mine:
        assert mine
        raise RuntimeError("trainer died")
    assert not (run / _subnets.CLAIM).exists()


HOLD = """
import sys, time
sys.path.insert(0, {bench!r})
import _subnets
from pathlib import Path
with _subnets.claimed(Path({run!r})) as mine:
    print(mine, flush=True)
    time.sleep(60)
"""


def test_another_process_holds_its_claim_until_it_dies(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = HOLD.format(bench=str(Path(_subnets.__file__).parent), run=str(run))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with _subnets.claimed(run) as mine:
            assert not mine
    finally:
        holder.kill()  # no clean-up runs: the claim file stays behind, its lock does not
        holder.wait()
    assert (run / _subnets.CLAIM).exists()
    with _subnets.claimed(run) as mine:
        assert mine


def test_of_processes_racing_for_a_leftover_claim_exactly_one_wins(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / _subnets.CLAIM).write_text(f"{socket.gethostname()} 1")  # a crashed trainer's
    code = HOLD.format(bench=str(Path(_subnets.__file__).parent), run=str(run))
    racers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    try:
        said = [r.stdout.readline().strip() for r in racers]  # each holds what it won for 60 s
    finally:
        for r in racers:
            r.kill()
            r.wait()
    assert sorted(said) == ["False"] * 5 + ["True"]


def test_a_leftover_claim_file_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / _subnets.CLAIM).write_text(f"{socket.gethostname()} 1")
    with _subnets.claimed(run) as mine:
        assert mine
    assert not (run / _subnets.CLAIM).exists()


@pytest.mark.parametrize("text", ["2", "a/b", "2/2", "-1/2", "1/2/3"])
def test_a_malformed_shard_exits_2(text: str) -> None:
    with pytest.raises(SystemExit) as e:
        _subnets.parse_shard(text)
    assert e.value.code == 2


def test_parse_shard() -> None:
    assert _subnets.parse_shard("1/3") == (1, 3)


def _rows(accs: dict[str, list[float]]) -> list[dict]:
    return [{"role": k, "standalone_acc": float(np.mean(v)), "standalone_accs": v} for k, v in accs.items()]


def test_the_verdict_gives_the_lead_in_standard_errors_of_the_seed_noise() -> None:
    rows = _rows(
        {
            "searched": [0.86, 0.87],
            "random 1": [0.85, 0.86],
            "random 2": [0.84, 0.85],
            "random 3": [0.83, 0.84],
            "baseline": [0.80, 0.81],
        }
    )
    v = search_quality.verdicts(rows)
    noise = np.std([0.86, 0.87], ddof=1)  # every architecture moves by 0.01 between its seeds
    assert v["seed_std"] == pytest.approx(noise)
    assert v["difference_se"] == pytest.approx(noise * np.sqrt(2 / 2))
    assert v["random_median_acc"] == pytest.approx(0.845)
    assert v["lead"]["random_median"] == pytest.approx(0.02)
    assert v["lead_in_se"]["random_median"] == pytest.approx(0.02 / noise)
    assert v["beats_random_median"] and v["beats_baseline"]


def test_one_seed_gives_no_noise_estimate() -> None:
    rows = _rows({"searched": [0.80], "random 1": [0.82], "baseline": [0.79]})
    v = search_quality.verdicts(rows)
    assert v["seed_std"] is None and v["lead_in_se"] is None
    assert not v["beats_random_median"] and v["beats_baseline"]


RECORDED = [
    _subnets.RESULTS / "supernet_ranking_e3.json",
    _subnets.RESULTS / "supernet_ranking_e3_set2_uniform.json",
]
E3 = _subnets.Recipe(epochs=3, train_limit=60000)


def test_recorded_rankings_pool_their_architectures_once_with_the_recorded_accuracies() -> None:
    import json

    archs, standalone, selection = supernet_ranking.recorded_architectures([str(p) for p in RECORDED], E3)
    records = [json.loads(p.read_text())["architectures"] for p in RECORDED]
    keys = {r["key"] for rows in records for r in rows}
    assert len(archs) == len(keys) == len(standalone) and {a["key"] for a in archs} == keys
    for key in keys:  # an architecture in both records: the mean of its two trainings
        recorded = [r["standalone_acc"] for rows in records for r in rows if r["key"] == key]
        assert standalone[key]["standalone_acc"] == pytest.approx(np.mean(recorded), abs=1e-12)
    assert selection["pool"] == "recorded" and selection["samples"] == len(keys)


def test_a_record_of_another_recipe_or_no_record_exits_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        supernet_ranking.recorded_architectures([str(RECORDED[0])], _subnets.Recipe(epochs=2, train_limit=60000))
    assert e.value.code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"settings": {}}')
    with pytest.raises(SystemExit) as e:
        supernet_ranking.recorded_architectures([str(bad)], E3)
    assert e.value.code == 2


def test_separability_splits_the_spread_of_the_means_into_architectures_and_noise() -> None:
    sep = _subnets.separability([0.0, 1.0, 2.0], noise_std=1.0, seeds=2)  # var of means 1, noise part 1/2
    assert sep["f_ratio"] == pytest.approx(2.0) and sep["reliability"] == pytest.approx(0.5)
    assert sep["architecture_std"] == pytest.approx(np.sqrt(0.5))
    assert sep["tau_ceiling"] == pytest.approx(0.5)  # 2/pi * arcsin(sqrt(1/2)) = 2/pi * pi/4
    noise_only = _subnets.separability([0.0, 1.0, 2.0], noise_std=2.0, seeds=1)  # less spread than noise gives
    assert noise_only["architecture_std"] == 0.0 and noise_only["tau_ceiling"] == 0.0
    assert _subnets.separability([0.0, 1.0], noise_std=None, seeds=1) is None


def test_two_pools_at_once_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        supernet_ranking.parse_args(["--full-width", "--width-levels"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--full-width and --width-levels" in err and len(err.splitlines()) == 1


def test_rescoring_a_recorded_ranking_recomputes_its_statistics(tmp_path: Path) -> None:
    import json

    src = RECORDED[0]
    supernet_ranking.main(["--rescore", str(src), "--results", str(tmp_path), "--tag", "again"])
    record, before = json.loads((tmp_path / "supernet_ranking_again.json").read_text()), json.loads(src.read_text())
    rows = record["architectures"]
    assert rows == before["architectures"] and record["command"] == before["command"]
    sup = record["stats"]["supernet"]
    want = supernet_ranking.kendall_tau([r["supernet_acc"] for r in rows], [r["standalone_acc"] for r in rows])
    assert sup["kendall_tau"] == pytest.approx(want) and sup["kendall_tau"] == pytest.approx(
        before["stats"]["supernet"]["kendall_tau"]
    )
    lo, hi = sup["kendall_tau_ci95"]
    assert lo < sup["kendall_tau"] < hi and 0 < sup["kendall_p"] <= 1
    assert record["stats"]["lead_over_best_proxy"]["proxy"] in supernet_ranking.PROXIES
    md = (tmp_path / "supernet_ranking_again.md").read_text()
    assert "95% interval" in md and "--rescore" in md and (tmp_path / "supernet_ranking_again.png").stat().st_size


def test_rescoring_something_else_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"architectures": [{"key": "x"}], "settings": {"args": {}}}')
    with pytest.raises(SystemExit) as e:
        supernet_ranking.main(["--rescore", str(bad), "--results", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a supernet_ranking result" in err[0]
    assert not list(tmp_path.glob("supernet_ranking*"))
