"""The benchmarks' shared helpers that decide what is trained and what a result says (``spos_deploy.studies``,
``benchmarks._subnets``, ``benchmarks.search_quality``, ``benchmarks.supernet_ranking``): the stand-alone
trainings and their cache, --ray parsing, the search-quality verdict with its seed noise, rescoring a recorded
ranking, and the one writer of every benchmark record (``benchmarks.record``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import record as records
from benchmarks import search_quality, supernet_ranking
from benchmarks._subnets import Recipe, train_all, train_standalone
from spos_deploy.cluster import LOCAL
from spos_deploy.stats import kendall_tau
from spos_deploy.studies import lead_test, median_lead_pvalue, pooled_seed_std, separability

ROOT = Path(__file__).resolve().parents[1]
TINY = Recipe(epochs=1, train_limit=256, val_limit=128)
TINY_ARCHS = [
    {"key": "b00000_c00000", "blocks": [0] * 5, "channels": [0] * 5},
    {"key": "b12301_c00000", "blocks": [1, 2, 3, 0, 1], "channels": [0] * 5},
]
"""Two of the narrowest architectures of the small space: seconds to train on 256 images."""
RESULT_KEYS = {"key", "recipe", "standalone_acc", "train_seconds", "wall_seconds", "run"}


def test_stand_alone_runs_are_trained_once_then_read_back(tmp_path: Path) -> None:
    first = train_all(TINY_ARCHS, TINY, tmp_path)
    assert list(first) == [a["key"] for a in TINY_ARCHS]
    done = {}
    for arch in TINY_ARCHS:
        res = first[arch["key"]]
        assert set(res) == RESULT_KEYS and res["key"] == arch["key"]
        assert 0 < res["standalone_acc"] <= 1 and res["train_seconds"] > 0
        assert Path(res["run"]) == tmp_path / TINY.tag / arch["key"]
        done[arch["key"]] = Path(res["run"]) / "result.json"
    stamps = {k: f.stat().st_mtime_ns for k, f in done.items()}
    assert train_all(TINY_ARCHS, TINY, tmp_path) == first  # nothing trained again
    assert {k: f.stat().st_mtime_ns for k, f in done.items()} == stamps
    assert train_standalone(TINY_ARCHS[1], TINY, tmp_path) == first[TINY_ARCHS[1]["key"]]


def test_a_run_finished_by_the_older_benchmark_code_is_read_back_as_it_is(tmp_path: Path) -> None:
    arch = {"key": "b33333_c99999", "blocks": [3] * 5, "channels": [9] * 5}
    folder = tmp_path / TINY.tag / arch["key"]
    folder.mkdir(parents=True)
    old = {"key": arch["key"], "standalone_acc": 0.5, "train_seconds": 2.0, "wall_seconds": 3.0, "run": str(folder)}
    (folder / "result.json").write_text(json.dumps(old | {"recipe": {}}))
    res = train_all([arch], TINY, tmp_path)[arch["key"]]
    assert res == old | {"recipe": res["recipe"]} and res["recipe"]["epochs"] == TINY.epochs
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]  # not trained


@pytest.mark.parametrize("study", [supernet_ranking, search_quality])
def test_ray_is_off_by_default_local_without_an_address(study) -> None:
    assert study.parse_args([]).ray is None
    assert study.parse_args(["--ray"]).ray == LOCAL
    assert study.parse_args(["--ray", "10.0.0.1:6379"]).ray == "10.0.0.1:6379"


def test_ray_with_rescore_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        supernet_ranking.parse_args(["--rescore", "x.json", "--ray"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--ray" in err and len(err.splitlines()) == 1


def _rows(accs: dict[str, list[float]]) -> list[dict]:
    return [
        {"role": k, "key": f"arch-{i}", "standalone_acc": float(np.mean(v)), "standalone_accs": v}
        for i, (k, v) in enumerate(accs.items())
    ]


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


def test_the_verdict_tests_the_lead_over_the_median_random_the_proxy_pick_and_the_baseline() -> None:
    rows = _rows(
        {
            "searched": [0.870, 0.872, 0.868],
            "random 1": [0.860, 0.862, 0.858],
            "random 2": [0.850, 0.852, 0.848],
            "random 3": [0.840, 0.842, 0.838],
            "baseline": [0.869, 0.871, 0.867],
            "synflow pick": [0.866, 0.868, 0.864],
        }
    )
    sig = search_quality.verdicts(rows)["significance"]
    assert sig["median_random_architecture"]["key"] == "arch-2"  # random 2: the middle of the three means
    assert sig["median_random_architecture"]["lead"] == pytest.approx(0.02)
    assert sig["median_random_architecture"]["p"] < 1e-4  # 10 seed-stds ahead
    assert sig["random_population_median"]["p"] < 0.05
    assert sig["baseline"]["p"] > 0.2  # 0.5 seed-stds: no evidence
    assert 0.001 < sig["synflow pick"]["p"] < 0.2
    assert search_quality.verdicts(rows)["beats_proxy_pick"]


def test_one_seed_gives_no_noise_estimate() -> None:
    rows = _rows({"searched": [0.80], "random 1": [0.82], "baseline": [0.79]})
    v = search_quality.verdicts(rows)
    assert v["seed_std"] is None and v["lead_in_se"] is None
    assert not v["beats_random_median"] and v["beats_baseline"]


RECORDED = [
    records.results_dir("supernet_ranking") / "supernet_ranking_e3.json",
    records.results_dir("supernet_ranking") / "supernet_ranking_e3_set2_uniform.json",
]
E3 = Recipe(epochs=3, train_limit=60000)


def test_recorded_rankings_pool_their_architectures_once_with_the_recorded_accuracies() -> None:
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
        supernet_ranking.recorded_architectures([str(RECORDED[0])], Recipe(epochs=2, train_limit=60000))
    assert e.value.code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"settings": {}}')
    with pytest.raises(SystemExit) as e:
        supernet_ranking.recorded_architectures([str(bad)], E3)
    assert e.value.code == 2


def test_separability_splits_the_spread_of_the_means_into_architectures_and_noise() -> None:
    sep = separability([0.0, 1.0, 2.0], noise_std=1.0, seeds=2)  # var of means 1, noise part 1/2
    assert sep["f_ratio"] == pytest.approx(2.0) and sep["reliability"] == pytest.approx(0.5)
    assert sep["architecture_std"] == pytest.approx(np.sqrt(0.5))
    assert sep["tau_ceiling"] == pytest.approx(0.5)  # 2/pi * arcsin(sqrt(1/2)) = 2/pi * pi/4
    noise_only = separability([0.0, 1.0, 2.0], noise_std=2.0, seeds=1)  # less spread than noise gives
    assert noise_only["architecture_std"] == 0.0 and noise_only["tau_ceiling"] == 0.0
    assert separability([0.0, 1.0], noise_std=None, seeds=1) is None


def test_the_ranking_against_two_seeds_mean_uses_the_mean_as_ground_truth() -> None:
    """A supernet that orders the architectures exactly as the two seeds' mean does reaches tau 1 against it,
    although it disagrees with each seed alone; FLOPs, ordered like seed 0 only, ranks worse."""
    seed0 = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85]
    seed1 = [0.86, 0.83, 0.84, 0.85, 0.82, 0.87]
    mean = [(a + b) / 2 for a, b in zip(seed0, seed1)]
    picks = [
        {"key": f"a{i}", "standalone_acc": a, "supernet_acc": m, "flops": float(i)}
        for i, (a, m) in enumerate(zip(seed0, mean))
    ]
    out = supernet_ranking.against_mean(picks, mean)
    assert out["supernet"]["kendall_tau"] == pytest.approx(1.0)
    assert out["proxies"]["flops"]["kendall_tau"] < 1.0
    assert out["lead_over_best_proxy"]["proxy"] == "flops" and out["lead_over_best_proxy"]["share_above"] > 0.5
    assert picks[0]["standalone_acc"] == 0.80  # the rows given are left as they were
    z = {
        "n": 6, "seed_vs_seed_tau": 0.2, "seed_diff_std_pts": 2.0, "standalone_range_pts": 5.0,
        "supernet_vs_seed0_tau": 0.3, "supernet_vs_seed1_tau": 0.4, "supernet_vs_mean_tau": 1.0,
        "mean_separability": separability(mean, noise_std=0.01, seeds=2), "against_mean": out,
    }  # fmt: skip
    text = supernet_ranking.noise_text({"seed_noise": z})
    assert "Against the two seeds' mean** (6 architectures): The supernet (tau 1.000) ranks better" in text
    assert f"the ceiling is about {z['mean_separability']['tau_ceiling']:.2f}" in text


def test_more_seeds_make_their_mean_the_ground_truth() -> None:
    """With three seeds the ranking is judged against the mean of all three, whose ceiling is that of a 3-seed
    mean; a seed's offset shared by every architecture is not counted as noise."""
    rng = np.random.default_rng(3)
    own = np.linspace(0.80, 0.86, 12)
    seeds = [own + rng.normal(0, 0.01, 12) + offset for offset in (0.0, 0.02, -0.01)]
    mean = np.mean(seeds, axis=0)
    rows = [
        {"key": f"a{i}", "standalone_acc": float(seeds[0][i]), "supernet_acc": float(mean[i]), "flops": float(i)}
        for i in range(12)
    ]
    z = supernet_ranking.noise_stats(rows, rows, [list(seeds[1]), list(seeds[2])])
    assert z["seeds"] == 3 and z["against_mean"]["supernet"]["kendall_tau"] == pytest.approx(1.0)
    assert z["supernet_vs_mean_tau"] == pytest.approx(1.0)
    centered = np.asarray(seeds) - np.asarray(seeds).mean(axis=1, keepdims=True)
    noise = pooled_seed_std(centered.T)[0]
    assert noise < 0.015  # the offsets (0.02, -0.01) are not in it
    assert z["mean_separability"] == separability(list(mean), noise, 3)
    assert z["mean_separability"]["tau_ceiling"] > z["separability"]["tau_ceiling"]
    taus = [kendall_tau(seeds[i], seeds[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert z["pairwise_seed_tau"] == pytest.approx(np.mean(taus))
    text = supernet_ranking.noise_text({"seed_noise": z})
    assert "trained again with 2 more seeds" in text and "Against the 3 seeds' mean** (12 architectures)" in text


def test_the_lead_test_is_scipys_pooled_t_test_when_the_pool_is_the_two_architectures() -> None:
    from scipy.stats import ttest_ind

    a, b = [0.871, 0.866, 0.874, 0.869], [0.862, 0.868, 0.860]
    noise = pooled_seed_std([a, b, [0.85]])  # one seed adds no degree of freedom
    assert noise[1] == 5
    assert noise[0] ** 2 == pytest.approx((np.var(a, ddof=1) * 3 + np.var(b, ddof=1) * 2) / 5)
    t = lead_test(a, b, noise)
    ref = ttest_ind(a, b, equal_var=True, alternative="greater")
    assert t["t"] == pytest.approx(ref.statistic) and t["p"] == pytest.approx(ref.pvalue)
    assert lead_test(b, a, noise)["p"] == pytest.approx(1 - ref.pvalue)
    assert pooled_seed_std([[0.8], [0.9]]) is None and lead_test(a, b, None) is None


def test_the_median_bootstrap_is_sure_only_when_the_lead_is_far_beyond_the_noise() -> None:
    rng = np.random.default_rng(0)
    randoms = [list(m + 0.005 * rng.standard_normal(3)) for m in (0.850, 0.855, 0.860, 0.865, 0.870)]
    far = median_lead_pvalue([0.90, 0.901, 0.899], randoms)
    assert (
        far["p"] == 0.0
        and far["low"] > 0.03
        and far["lead"] == pytest.approx(0.90 - np.median([np.mean(r) for r in randoms]))
    )
    level = median_lead_pvalue(randoms[2], randoms)  # the median architecture itself: no lead
    assert 0.2 < level["p"] < 0.8 and level["low"] < 0 < level["high"]
    assert median_lead_pvalue(randoms[2], randoms, seed=1)["p"] != level["p"]  # resampled, not computed


def test_two_pools_at_once_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        supernet_ranking.parse_args(["--full-width", "--width-levels"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--full-width and --width-levels" in err and len(err.splitlines()) == 1


def test_rescoring_a_recorded_ranking_recomputes_its_statistics(tmp_path: Path) -> None:
    # a record with its zero-cost proxies (computing them for an older one is test_proxies')
    src = records.results_dir("supernet_ranking") / "supernet_ranking_e3_width_levels_noise28.json"
    assert all(r.get("synflow") is not None for r in json.loads(src.read_text())["architectures"])
    argv = ["--rescore", str(src), "--results", str(tmp_path), "--tag", "again"]
    supernet_ranking.main(argv)
    record, before = json.loads((tmp_path / "supernet_ranking_again.json").read_text()), json.loads(src.read_text())
    rows = record["architectures"]
    assert rows == before["architectures"] and record["command"] == before["command"]
    assert record["date"] == before["date"] and record["machine"] == before["machine"]
    assert record["rescored"]["command"] == records.command_line("supernet_ranking", argv)
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
    assert md.rstrip().endswith(before["command"])  # the record's own command closes its text


def test_rescoring_something_else_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"architectures": [{"key": "x"}], "settings": {"args": {}}}')
    with pytest.raises(SystemExit) as e:
        supernet_ranking.main(["--rescore", str(bad), "--results", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a supernet_ranking result" in err[0]
    assert not list(tmp_path.glob("supernet_ranking*"))


# ---- the records --------------------------------------------------------------------------------------------
def test_a_record_names_its_command_date_and_machine_in_both_files(tmp_path: Path) -> None:
    argv = ["--tag", "x y", "--rounds", "3"]
    md = records.write_record(
        "deploy_latency", "probe", {"rows": [1, 2], "date": "old"}, "# Title\n", argv, folder=tmp_path
    )
    rec = json.loads((tmp_path / "probe.json").read_text())
    assert rec["command"] == "python -m benchmarks.deploy_latency --tag 'x y' --rounds 3"
    assert rec["date"].endswith("+00:00") and rec["date"] != "old"  # UTC, and the helper's, not the caller's
    assert rec["machine"]["cpu"] and rec["machine"]["usable_cores"] >= 1 and rec["rows"] == [1, 2]
    assert "load" not in rec
    text = md.read_text()
    assert text.startswith("# Title\n") and rec["date"] in text and rec["machine"]["cpu"] in text
    assert text.rstrip().endswith(rec["command"])
    assert not [p for p in tmp_path.iterdir() if p.name not in ("probe.json", "probe.md")]  # no staging left


def test_a_record_of_a_timed_run_carries_the_load(tmp_path: Path) -> None:
    from spos_deploy.runtime import load

    with load.probe() as probe:
        sum(range(10000))
    records.write_record("train_throughput", "t", {}, "# T\n", [], folder=tmp_path, load=probe.record())
    rec = json.loads((tmp_path / "t.json").read_text())
    assert set(rec["load"]) >= {"busy", "wall_s", "warning"}
    assert "Machine during the run: " in (tmp_path / "t.md").read_text()


def test_the_default_folder_is_the_study_s(tmp_path: Path) -> None:
    assert records.results_dir("supernet_small") == ROOT / "benchmarks" / "results" / "supernet_small"


def test_every_recorded_result_lies_in_its_study_folder_and_names_its_command() -> None:
    results = ROOT / "benchmarks" / "results"
    assert not [p for p in results.iterdir() if p.is_file()]  # nothing left in the flat folder
    studies = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")} - {"record"}
    for folder in results.iterdir():
        assert folder.name in studies, f"{folder.name}: no benchmarks/{folder.name}.py"
        for p in folder.glob("*.json"):
            rec = json.loads(p.read_text())
            assert "command" in rec, p
            assert rec["command"] is not None or rec.get("command_note", "").startswith("not recorded"), p


@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "benchmarks").glob("[a-z]*.py") if p.stem != "record"))
def test_every_study_runs_as_a_module(study: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{study}", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr


def test_few_shot_routes_by_the_sub_supernets_flops_ranges(tmp_path: Path, capsys) -> None:
    narrow, wide, plain = tmp_path / "narrow", tmp_path / "wide", tmp_path / "plain"
    for folder, bounds in ((narrow, {"flops": [0, 4.8e6]}), (wide, {"flops": [4.8e6, 1e9]}), (plain, {})):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"mode": "supernet", "bounds": bounds}))
    assert supernet_ranking.flops_region(narrow) == (0.0, 4.8e6)
    with pytest.raises(SystemExit) as e:
        supernet_ranking.flops_region(plain)
    assert e.value.code == 2 and "not a sub-supernet trained with --flops-range" in capsys.readouterr().err
    outside = [{"key": "b0_c0", "flops": 2e9}]
    with pytest.raises(SystemExit) as e:  # refused before any evaluation
        supernet_ranking.few_shot_accuracies([narrow, wide], outside, E3, 0, tmp_path)
    assert e.value.code == 2
    assert "no sub-supernet's FLOPs range holds b0_c0 (2,000,000,000.0 FLOPs)" in capsys.readouterr().err


def test_an_interrupted_benchmark_says_so_in_one_line():
    """Ctrl-C while a benchmark waits on its measurement processes: one line and status 130, as a command."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.train_throughput", "--rounds", "1", "--steps", "5000", "--forms", "subnet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)  # inside the measurement (its child process imports MXNet and trains)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["train_throughput: interrupted"], err


def test_a_finished_case_is_reused_unless_it_had_other_sessions_or_is_remeasured(tmp_path) -> None:
    from benchmarks.latency_prediction import finished_report

    assert finished_report(tmp_path, 5) is None  # nothing measured yet
    (tmp_path / "report.json").write_text(json.dumps({"truth_sessions": 5, "measured_at": "then"}))
    assert finished_report(tmp_path, 5) == {"truth_sessions": 5, "measured_at": "then"}
    assert finished_report(tmp_path, 15) is None  # a steadier ground truth is a new measurement
    assert finished_report(tmp_path, 5, remeasure=True) is None
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency_prediction", "--remeasure", "--keep-recorded"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "drop --keep-recorded" in proc.stderr, proc.stderr


def test_extending_a_latency_record_keeps_only_the_cases_it_holds_for_the_same_form_batch_and_threads() -> None:
    from benchmarks.latency_prediction import recorded_case

    record = json.loads((records.results_dir("latency_prediction") / "latency_prediction_imagenet_b8.json").read_text())
    kept = recorded_case(record, "imagenet", "ort-cpu", "int8", 8, threads=2)  # recorded on both cores of 2
    assert kept is not None and kept["first_ms"] == record["cases"][0]["first_ms"]
    assert kept["command"] == record["command"]  # the command it was measured by stays with it
    assert recorded_case(record, "imagenet", "ort-cpu", "int8", 1, threads=2) is None  # another batch
    assert recorded_case(record, "imagenet", "ort-cpu", "int8", 8, threads=1) is None  # another thread count
    assert recorded_case(record, "imagenet", "openvino-cpu", "bf16", 8) is None  # a form it does not hold
    assert recorded_case(None, "imagenet", "ort-cpu", "int8", 8) is None
    # measured with 5 sessions per held-out network: not what a 15-session measurement asks for
    assert recorded_case(record, "imagenet", "ort-cpu", "int8", 8, truth_sessions=15, threads=2) is None


def test_further_seeds_recorded_earlier_are_read_back_not_trained(tmp_path: Path) -> None:
    path = records.results_dir("supernet_ranking") / "supernet_ranking_e3_width_levels_noise28.json"
    record = json.loads(path.read_text())
    recorded = supernet_ranking.recorded_seed_accuracies([str(path)], E3)
    noise = record["stats"]["seed_noise"]
    assert recorded == {1: dict(zip(noise["keys"], noise["second_seed_acc"]))}
    cache = tmp_path / "subnets"
    z = supernet_ranking.seed_noise(record["architectures"], E3, cache, 28, None, 1, recorded)
    assert not cache.exists()  # nothing trained
    assert z["read_from_records"] == {"1": 28} and z["keys"] == noise["keys"]
    assert z["seed_vs_seed_tau"] == pytest.approx(noise["seed_vs_seed_tau"])
    assert "seed 1 for 28 of 28" in supernet_ranking.noise_text({"seed_noise": z})
    assert supernet_ranking.recorded_seed_accuracies([str(path)], Recipe(epochs=2, train_limit=60000)) == {}


def test_session_length_measures_each_length_twice_on_the_same_networks(tmp_path: Path) -> None:
    from benchmarks import session_length

    argv = ["--space", "small", "--form", "onnxruntime:fp32", "--batch", "1", "--networks", "3"]
    session_length.main([*argv, "--sessions", "1", "2", "--calls", "1", "3", "--out", str(tmp_path)])
    rec = json.loads((tmp_path / "session_length.json").read_text())
    assert [(r["sessions"], r["calls"]) for r in rec["lengths"]] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    assert rec["runtime"] == "ort-cpu"
    for r in rec["lengths"]:
        assert len(r["first_ms"]) == len(r["second_ms"]) == 3 and min(r["first_ms"] + r["second_ms"]) > 0
        assert r["repeat"]["samples"] == 3 and r["seconds"] > 0
        assert [len(m) for m in r["session_ms"]] == [r["sessions"]] * 2  # both measurements, every session kept
    # the 2-session run judged on its first 1 and 2 sessions; all 2 of them is the run itself
    assert [(r["sessions"], r["calls"]) for r in rec["fewer"]] == [(1, 1), (2, 1), (1, 3), (2, 3)]
    assert rec["fewer"][-1]["repeat"] == rec["lengths"][-1]["repeat"]
    assert session_length.session_counts(16) == [1, 2, 3, 5, 7, 10, 15, 16]
    table = [line for line in (tmp_path / "session_length.md").read_text().splitlines() if line.startswith("|")]
    assert len(table) == 6 + 6, table
    assert [c.strip() for c in table[-1].split("|")[1:3]] == ["2", "3"] and rec["load"] is not None
    # rescoring recomputes the same statistics from the kept session medians, keeps the run's provenance
    before = (tmp_path / "session_length.json").read_text()
    session_length.main(["--rescore", str(tmp_path / "session_length.json")])
    again = json.loads((tmp_path / "session_length.json").read_text())
    assert again["rescored"]["command"].endswith("session_length.json") and again["date"] == rec["date"]
    assert {k: again[k] for k in ("lengths", "fewer", "load", "command")} == {
        k: json.loads(before)[k] for k in ("lengths", "fewer", "load", "command")
    }
    (tmp_path / "bad.json").write_text('{"lengths": [{"sessions": 2}]}')
    with pytest.raises(SystemExit) as e:
        session_length.main(["--rescore", str(tmp_path / "bad.json")])
    assert e.value.code == 2


def test_session_agreement_takes_out_the_speed_the_networks_share() -> None:
    from benchmarks.session_length import agreement

    first = [1.0, 2.0, 4.0, 3.0]
    shared = agreement(first, [1.5 * v for v in first])  # the machine 1.5x slower for every network
    assert shared["speed_ratio"] == pytest.approx(1.5) and shared["repeat"]["mape"] == pytest.approx(50)
    assert shared["repeat_same_speed"]["mape"] == pytest.approx(0) and shared["repeat_same_speed"]["kendall_tau"] == 1
    own = agreement(first, [1.0, 2.0, 4.0, 3.3])  # one network's own 10 %: not a shared speed
    assert own["speed_ratio"] == pytest.approx(1.0) and own["repeat_same_speed"]["mape"] == pytest.approx(2.5)


def test_a_latency_record_prints_its_fit_curve_and_statistics_only_where_it_measured_them() -> None:
    from benchmarks.latency_prediction import markdown

    folder = records.results_dir("latency_prediction")
    new = json.loads((folder / "latency_prediction_small_b1_t1_fit480.json").read_text())["cases"]
    old = json.loads((folder / "latency_prediction_small_b1.json").read_text())["cases"]
    text = markdown(new)
    curve = [line for line in text.splitlines() if line.startswith("| small ") and line.count("|") == 10]
    assert len(curve) == sum(len(c["fit_curve"]) for c in new) == 12  # 40 ... 480 networks, two forms
    assert "fp32, 1 thread" in text and "lower quartile" in text
    assert "fitted on" not in markdown(old) and "lower quartile" not in markdown(old)  # recorded before both


def test_a_ranking_record_names_the_recipe_of_its_supernet(tmp_path: Path) -> None:
    """The record keeps what the supernet was trained with, so that the ranking can be reproduced after the run
    folder is gone; the report's line names the schedule and what differs from the defaults."""
    from spos_deploy.training.trainer import SupernetConfig

    from benchmarks._subnets import SPACE, supernet_training, supernet_training_text

    cfg = SupernetConfig(out=str(tmp_path), space=SPACE, epochs=4, lr=0.2, train_limit=60000, path_rule="sandwich")
    cfg.cs_start_epoch, cfg.cs_warmup = 1, False
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_json()))
    training = supernet_training(tmp_path)
    assert (training["epochs"], training["path_rule"], training["cs_start_epoch"]) == (4, "sandwich", 1)
    assert "space" not in training and "out" not in training
    assert supernet_training_text(training) == (
        "epochs 4, train_limit 60000, batch_size 128, lr 0.2, seed 0, path_rule sandwich, cs_start_epoch 1, "
        "cs_warmup False"
    )


RANKINGS = ROOT / "benchmarks" / "results" / "supernet_ranking"


def test_a_recorded_supernet_is_ranked_by_its_recorded_scores(tmp_path: Path, capsys) -> None:
    """``--supernet-scores``: the path top-1 of every architecture as an earlier record has it, refused in one
    line where the record is not one or lacks an architecture."""
    record = RANKINGS / "supernet_ranking_e3_width_levels_progressive.json"
    rows = json.loads(record.read_text())["architectures"]
    archs = [{"key": r["key"]} for r in rows[::-1]]
    scores, settings, bn_images = supernet_ranking.recorded_supernet_scores(str(record), archs)
    assert {k: v["supernet_acc"] for k, v in scores.items()} == {r["key"]: r["supernet_acc"] for r in rows}
    assert settings["scores_from"] == str(record) and settings["path"] == "runs/ablation/progressive"
    assert bn_images == 2000
    (tmp_path / "other.json").write_text(json.dumps({"architectures": [{"key": "b00000_c00000"}]}))
    for path, why in (
        (record, "no supernet score for 1 of the architectures (b00000_c00000, ...)"),
        (tmp_path / "none.json", "not a supernet_ranking result (FileNotFoundError"),
        (tmp_path / "other.json", "not a supernet_ranking result (KeyError"),
    ):
        with pytest.raises(SystemExit) as e:
            supernet_ranking.recorded_supernet_scores(str(path), [*archs, {"key": "b00000_c00000"}])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and why in err and len(err.splitlines()) == 1, err
    for argv in (
        ["--supernet-scores", str(record)],
        ["--supernet-scores", str(record), "--archs-from", "x", "--supernet", "d"],
    ):
        with pytest.raises(SystemExit) as e:
            supernet_ranking.parse_args(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and "give --archs-from, no --supernet" in err, err


def test_the_end_to_end_record_renders_with_and_without_the_machine_s_speed() -> None:
    """The shipped file measured while the machine runs 1.6x slower than when the search ran reads, at the
    search's speed, as 1/1.6 of its time; a record from before the anchors were measured renders without the
    rows."""
    from benchmarks.end_to_end_fashion_mnist import at_search_speed, summary_tables

    assert at_search_speed([0.2, 0.13], [1.6, 1.0], 1.0) == pytest.approx([0.125, 0.13])
    assert at_search_speed([0.2], [], 1.0) is None and at_search_speed([0.2], [1.2], None) is None
    with pytest.raises(ValueError):
        at_search_speed([0.2, 0.13], [1.6], 1.0)
    path = ROOT / "benchmarks/results/end_to_end_fashion_mnist/end_to_end_fashion_mnist.json"
    summary = json.loads(path.read_text())
    side = summary["side_by_side"]
    old = {k: v for k, v in side.items() if not k.startswith(("speed_factor", "shipped_at"))}
    text, steps = summary_tables({**summary, "side_by_side": old})
    assert "machine speed" not in text and "total time" in text and "train subnet" in steps
    speeds = [1.6] + [1.0] * (len(old["shipped_round_ms"]) - 1)
    new = {**old, "speed_factor_round": speeds, "speed_factor_search": 1.0}
    new["shipped_at_search_speed_round_ms"] = at_search_speed(old["shipped_round_ms"], speeds, 1.0)
    text, _ = summary_tables({**summary, "side_by_side": new})
    assert "1.00 / 1.60, 1.00" in text and f"{old['shipped_round_ms'][0] / 1.6:.3f}" in text
