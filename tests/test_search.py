"""Search: MicroNet table, genes, Pareto front, constraint checks, evolution/random search, resume, workers,
outputs and bad inputs of ``spos-search``. Real supernets (randomly initialised, reduced space) on
real Fashion-MNIST images; nothing is mocked."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from spos_deploy.search.cli import main as search_main
from spos_deploy.search.constraints import Constraint, metric_functions
from spos_deploy.search.driver import SearchConfig
from spos_deploy.search.feasible import ConstrainedSampler, additive_form
from spos_deploy.search.genes import GeneSpace, Phase, arch_keys, crossover, mutate, parse_key
from spos_deploy.search.pareto import pareto_front
from spos_deploy.search.runner import SearchJob, run_job
from spos_deploy.search.sampling import UniformSampler

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec, load_spec
from spos_deploy.space import SearchSpace

from .conftest import ROOT, TEST_SPACE_CONFIG, supernet_folder

SMALL = SearchSpace(**TEST_SPACE_CONFIG)
FLOPS_RANGE = (4.0e6, 5.5e6)
# Tiny evaluation: 1 BN batch of 64 images, 128 validation images, 4096 training images loaded.
EVAL = dict(bn_images=64, batch_size=64, val_limit=128, data_limit=4096, progress=False)
EVO = SearchConfig(population=6, parents=3, generations=4, seed=1)
EVO_FLAGS = ["--population", "6", "--parents", "3", "--generations", "4", "--seed", "1"]
EVAL_FLAGS = ["--bn-images", "64", "--batch-size", "64", "--val-limit", "128", "--train-limit", "4096", "--no-progress"]


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    """A spos-train-style run folder of a randomly initialised supernet of SMALL."""
    return supernet_folder(tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def metrics() -> dict:
    return metric_functions(SMALL, None, None, with_score=True)


def comparable(results: dict) -> dict:
    """results.json without what legitimately differs between runs (wall-clock times)."""
    r = copy.deepcopy(results)
    r.pop("timing")
    for h in r["history"]:
        h.pop("seconds")
    return r


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SPOS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "spos_deploy.search.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
    )


# ---- MicroNet table ---------------------------------------------------------------------------------------
def test_micronet_table_equals_graph_profile(tmp_path):
    from spos_deploy.counting.profile import profile_spec
    from spos_deploy.tables.micronet.build import build_micronet_table
    from spos_deploy.tables.micronet.table import MicroNetTable

    table = build_micronet_table(SMALL, progress=False)
    table.save(tmp_path / "micronet.json")
    loaded = MicroNetTable.load(tmp_path / "micronet.json", expect=SMALL)
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 4, (4, SMALL.num_positions))
    channels = rng.integers(0, 10, (4, SMALL.num_positions))
    score_fn = metric_functions(SMALL, None, None, micronet_table=str(tmp_path / "micronet.json"), score_bits=8)[
        "score"
    ]
    for bits in (32, 8):
        table_scores = loaded.score(blocks, channels, bits)
        for i in range(len(blocks)):
            spec = ModelSpec(SMALL, tuple(map(int, blocks[i])), tuple(map(int, channels[i])))
            graph = profile_spec(spec).micronet(bits)
            assert math.isclose(table_scores[i], graph["score"], rel_tol=1e-9), (bits, i)
            assert math.isclose(loaded.counts(blocks[i], channels[i], bits)["params"], graph["params"], rel_tol=1e-9)
            if bits == 8:
                assert math.isclose(score_fn(blocks[i : i + 1], channels[i : i + 1])[0], graph["score"], rel_tol=1e-9)
    assert table_scores[0] < loaded.score(blocks, channels, 32)[0]  # 8 bits cost less than 32
    assert set(metric_functions(SMALL, None, None)) == {"flops", "params"}  # the score is opt-in
    with pytest.raises(BadInputError, match="another configuration"):
        MicroNetTable.load(tmp_path / "micronet.json", expect=SearchSpace(input_size=32, num_classes=10))


# ---- genes, Pareto, constraint forms (pure numpy) ---------------------------------------------------------
def test_mutation_and_crossover_keep_genes_valid():
    valid = np.ones((6, 4, 5), bool)
    valid[0, :, :2] = False  # channel ids 0 and 1 do not exist at position 0, id 4 not at position 3
    valid[3, :, 4] = False
    gs = GeneSpace.from_valid(valid)
    rng = np.random.default_rng(0)
    b, c = UniformSampler(gs).draw(rng, 3000)
    assert gs.is_valid(b, c).all()
    assert set(np.unique(c[:, 0])) == {2, 3, 4} and set(np.unique(b)) == {0, 1, 2, 3}
    mb, mc = mutate(rng, gs, b, c, 0.5, 0.5)
    assert gs.is_valid(mb, mc).all() and 0.3 < (mb != b).mean() < 0.45  # 0.5 * 3/4 of block genes change
    xb, xc = crossover(rng, b[:1500], c[:1500], b[1500:], c[1500:])
    assert gs.is_valid(xb, xc).all()
    from_a = (xb == b[:1500]) | (xb == b[1500:])
    assert from_a.all()
    # a phase's fixed genes never move
    phase = Phase("blocks", fixed_channels=np.array([2, 3, 4, 0, 1, 2]))
    pb, pc = mutate(rng, gs, *phase.apply(b, c), 1.0, 1.0, phase)
    assert (pc == phase.fixed_channels).all() and gs.is_valid(pb, pc).all()
    assert not gs.is_valid(b[:1], np.array([[0, 0, 0, 0, 0, 0]]))[0]
    key = arch_keys(b[:1], c[:1])[0]
    assert [x.tolist() for x in parse_key(key)] == [b[0].tolist(), c[0].tolist()]


def test_pareto_front_on_a_known_set():
    #            0    1    2    3    4    5    6    7
    acc = np.array([0.5, 0.7, 0.6, 0.7, 0.9, 0.9, 0.4, 0.7])
    cost = np.array([1.0, 2.0, 2.0, 2.0, 5.0, 4.0, 0.5, 3.0])
    # 6 is cheapest; 0 better at 1.0; 1 and 3 tie (first kept), 2 dominated by 1, 7 dominated by 1,
    # 5 beats 4 (same accuracy, cheaper)
    assert pareto_front(acc, cost).tolist() == [6, 0, 1, 5]
    rng = np.random.default_rng(1)
    a, c = rng.integers(0, 20, 300) / 20, rng.integers(0, 20, 300).astype(float)
    front = set(pareto_front(a, c).tolist())
    for i in range(300):
        dominated = ((a >= a[i]) & (c <= c[i]) & ((a > a[i]) | (c < c[i]))).any()
        duplicate_of_earlier = ((a[:i] == a[i]) & (c[:i] == c[i])).any()
        assert (i in front) == (not dominated and not duplicate_of_earlier), i
    assert pareto_front(np.array([]), np.array([])).tolist() == []


def test_additive_forms_give_exact_extremes(metrics):
    gs = GeneSpace.from_space(SMALL)
    rng = np.random.default_rng(2)
    b, c = UniformSampler(gs).draw(rng, 2000)
    for name in ("flops", "params", "score"):
        form = additive_form(metrics[name], gs)
        direct = np.asarray(metrics[name](b, c), float)
        via_form = form.const + form.entries[np.arange(gs.num_positions)[None, :], b, c].sum(axis=1)
        np.testing.assert_allclose(via_form, direct, rtol=1e-12)
        lo, hi = form.range()
        flat = form.entries.reshape(gs.num_positions, -1)
        arg = np.nanargmin(flat, axis=1)
        smallest = float(metrics[name](arg[None] // gs.num_scales, arg[None] % gs.num_scales)[0])
        assert math.isclose(lo, smallest, rel_tol=1e-12) and lo <= direct.min() and direct.max() <= hi


def test_constraints_met_only_jointly_impossible_are_reported(metrics):
    gs = GeneSpace.from_space(SMALL)
    sampler = ConstrainedSampler(gs, Constraint(metrics, {}), cap=20_000)
    (f_lo, _), (_, p_hi) = sampler.form("flops").range(), sampler.form("params").range()
    # each bound alone is achievable (the cheapest and the largest architecture), together they are not
    bounds = {"flops": (0, f_lo * 1.0005), "params": (p_hi * 0.999, math.inf)}
    joint = ConstrainedSampler(gs, Constraint(metrics, bounds), {"flops": "--flops-range"}, cap=20_000)
    joint.check_bounds()
    with pytest.raises(BadInputError, match="no architecture meets all constraints together"):
        joint.sample(np.random.default_rng(0), 5)
    # a narrow box near the cheapest architecture: uniform draws miss it, the guided sampler finds it
    narrow = ConstrainedSampler(gs, Constraint(metrics, {"flops": (0, f_lo * 1.02)}), cap=20_000)
    b, c = narrow.sample(np.random.default_rng(0), 5)
    assert len(b) == 5 and (metrics["flops"](b, c) <= f_lo * 1.02).all()


def test_crash_in_the_middle_of_a_generation_resumes_to_the_same_search(metrics, tmp_path):
    """Driver level, with an accuracy that is a fixed function of the architecture (as a supernet's is)."""
    import hashlib

    from spos_deploy.search.driver import run_search
    from spos_deploy.search.evolution import Evolution
    from spos_deploy.search.state import Store

    gs = GeneSpace.from_space(SMALL)
    sampler = ConstrainedSampler(gs, Constraint(metrics, {"flops": FLOPS_RANGE}))
    cfg = SearchConfig(population=8, parents=3, generations=4, budget=27, seed=4)
    calls = {"n": 0, "crash_at": None}

    def evaluate(keys):
        for key in keys:
            calls["n"] += 1
            if calls["n"] == calls["crash_at"]:
                raise Interrupt
            yield int(hashlib.sha1(key.encode()).hexdigest()[:6], 16) / 16**6

    def search(out: Path, resume: bool = False):
        store = Store(out, {"seed": cfg.seed}, cache_every_s=0.0)  # the cache file follows every result
        strategy = Evolution(gs, sampler, 8, 3, 0.2, 0.2, 4)
        return run_search(cfg, strategy, gs, sampler, SMALL.channel_scales, evaluate, store, resume, progress=False)

    ref_state, ref_cache = search(tmp_path / "ref")
    calls.update(n=0, crash_at=13)  # in generation 1, after 4 of its 8 new candidates
    with pytest.raises(Interrupt):
        search(tmp_path / "crashed")
    saved = json.loads((tmp_path / "crashed" / "cache.json").read_text())["results"]
    assert (
        len(saved) == 12 and json.loads((tmp_path / "crashed" / "state.json").read_text())["state"]["generation"] == 1
    )
    calls.update(n=0, crash_at=None)
    state, cache = search(tmp_path / "crashed", resume=True)
    assert calls["n"] == 27 - 12  # nothing evaluated twice
    assert cache.to_json() == ref_cache.to_json() and len(cache) == 27  # the budget, not population x generations
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in state.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in ref_state.history]
    assert [h["evaluated"] for h in strip] == [8, 8, 8, 3]


# ---- BN recalibration ---------------------------------------------------------------------------------------
def test_precise_bn_sets_exact_statistics_independent_of_history():
    import mxnet as mx
    from spos_deploy.search.bn_recalibration import batchnorms, precise_bn

    from spos_deploy.nets.supernet import build_supernet

    net = build_supernet(SMALL, seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((16, 3, 32, 32)).astype(np.float32) for _ in range(3)]

    def recalibrate(blocks, channels):
        layers = batchnorms(net.stem, *[net.choice_block(i, b) for i, b in enumerate(blocks)], net.head)
        precise_bn(lambda x: net(x, blocks, channels), layers, batches, mx.cpu())
        return [(bn.running_mean.data().asnumpy().copy(), bn.running_var.data().asnumpy().copy()) for bn in layers]

    first = recalibrate([0, 1, 2, 3, 0], [9, 5, 3, 2, 1])
    conv = net.stem.conv.conv(mx.nd.array(np.concatenate(batches))).asnumpy()  # what the stem BN normalises
    np.testing.assert_allclose(first[0][0], conv.mean(axis=(0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(first[0][1], conv.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    recalibrate([3, 3, 3, 3, 3], [0, 0, 0, 0, 0])  # another path moves the shared stem and head statistics
    again = recalibrate([0, 1, 2, 3, 0], [9, 5, 3, 2, 1])
    for (m1, v1), (m2, v2) in zip(first, again):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(v1, v2)


# ---- searches on a real supernet --------------------------------------------------------------------------
def test_constraints_are_checked_before_every_evaluation(supernet, tmp_path, metrics):
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    bounds = {"flops": FLOPS_RANGE, "params": (1.4e6, 1.9e6), "score": (-math.inf, 0.26)}
    job = SearchJob(
        supernet=str(supernet),
        out=str(tmp_path / "out"),
        config=SearchConfig(population=6, parents=2, generations=3, mutation=0.5, seed=3),
        flops_range=bounds["flops"],
        params_range=bounds["params"],
        score_max=0.26,
        **EVAL,
    )
    results = run_job(job, on_evaluate=lambda b, c: seen.append((b.copy(), c.copy())))
    blocks = np.concatenate([b for b, _ in seen])
    channels = np.concatenate([c for _, c in seen])
    assert len(blocks) == results["evaluated"] >= 12
    for name, (lo, hi) in bounds.items():
        v = np.asarray(metrics[name](blocks, channels), float)
        assert ((v >= lo) & (v <= hi)).all(), name
    # uniform samples would often be outside: the checks matter
    rb, rc = UniformSampler(SMALL).draw(np.random.default_rng(0), 500)
    assert not Constraint(metrics, bounds).inside(rb, rc).all()
    assert results["constraints"]["score_max"] == 0.26 and results["best"]["score"] <= 0.26


@pytest.fixture(scope="module")
def reference(supernet, tmp_path_factory) -> dict:
    """An uninterrupted evolutionary search every other run is compared with."""
    out = tmp_path_factory.mktemp("ref") / "out"
    return run_job(SearchJob(supernet=str(supernet), out=str(out), config=EVO, flops_range=FLOPS_RANGE, **EVAL))


class Interrupt(Exception):
    pass


def test_resume_gives_the_uninterrupted_result(supernet, tmp_path, reference):
    out = tmp_path / "out"
    job = SearchJob(supernet=str(supernet), out=str(out), config=EVO, flops_range=FLOPS_RANGE, **EVAL)

    def stop_after_generation_2(state, cache):
        if state.generation == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(job, on_generation=stop_after_generation_2)
    saved = json.loads((out / "state.json").read_text())
    assert saved["state"]["generation"] == 2 and not (out / "results.json").exists()
    # a resume with other settings is refused (one line naming the difference)
    changed = SearchJob(
        supernet=str(supernet), out=str(out), config=EVO, flops_range=(4.0e6, 5.4e6), resume=True, **EVAL
    )
    with pytest.raises(BadInputError, match="other settings.*flops_range"):
        run_job(changed)
    job.resume = True
    resumed = run_job(job)
    assert comparable(resumed) == comparable(reference)  # same seed, interrupted or not: the same search
    assert reference["evaluated"] == 24 and len(reference["history"]) == 4
    assert reference["history"][-1]["best_accuracy"] == reference["best"]["accuracy"]
    other_seed = run_job(
        SearchJob(
            supernet=str(supernet),
            out=str(tmp_path / "seed2"),
            config=SearchConfig(population=6, parents=3, generations=2, seed=2),
            flops_range=FLOPS_RANGE,
            **EVAL,
        )
    )
    assert {e["key"] for e in other_seed["pareto"]} != {e["key"] for e in reference["pareto"]}


@pytest.mark.slow
def test_results_do_not_depend_on_workers(supernet, tmp_path, reference):
    job = SearchJob(
        supernet=str(supernet), out=str(tmp_path / "out"), config=EVO, flops_range=FLOPS_RANGE, workers=2, **EVAL
    )
    results = run_job(job)
    assert results["timing"]["workers"] == 2
    assert comparable(results) == comparable(reference)


def test_blocks_first_searches_blocks_then_channels(supernet, tmp_path):
    seen = []
    job = SearchJob(
        supernet=str(supernet),
        out=str(tmp_path / "out"),
        config=SearchConfig(mode="blocks-first", population=4, parents=2, generations=2, seed=0),
        flops_range=(0, 4.5e6),
        **EVAL,
    )
    results = run_job(job, on_evaluate=lambda b, c: seen.append((b.copy(), c.copy())))
    (b1, c1), (b2, c2) = seen
    flops = metric_functions(SMALL, None, None)["flops"]
    form = additive_form(flops, GeneSpace.from_space(SMALL))
    # phase 1: one uniform channel choice, the widest that can meet the bound: with every channel at 2.0x the
    # cheapest blocks still need 4.64 MFLOPs here, at 1.8x 4.18 MFLOPs
    assert (
        form.range(Phase(fixed_channels=np.full(5, 9)))[0] > 4.5e6 > form.range(Phase(fixed_channels=np.full(5, 8)))[0]
    )
    assert (c1 == 8).all() and (np.asarray(flops(b1, c1)) <= 4.5e6).all()
    best_phase1 = max(
        (e for e in json.loads((tmp_path / "out" / "cache.json").read_text())["results"] if e["phase"] == 0),
        key=lambda e: e["accuracy"],
    )
    assert (b2 == parse_key(best_phase1["key"])[0]).all()  # phase 2 keeps the best blocks of phase 1
    assert len({tuple(r) for r in c2}) == len(c2)
    assert [h["phase"] for h in results["history"]] == ["blocks", "channels"]


def test_blocks_mode_searches_blocks_only_at_one_width(supernet, tmp_path):
    seen = []
    job = SearchJob(
        supernet=str(supernet),
        out=str(tmp_path / "out"),
        config=SearchConfig(mode="blocks", population=4, parents=2, generations=3, seed=0),
        flops_range=(0, 4.5e6),
        **EVAL,
    )
    results = run_job(job, on_evaluate=lambda b, c: seen.append((b.copy(), c.copy())))
    flops = metric_functions(SMALL, None, None)["flops"]
    assert len(seen) >= 2
    for b, c in seen:  # every generation: the widest uniform width that can meet the bound (1.8x here)
        assert (c == 8).all() and (np.asarray(flops(b, c)) <= 4.5e6).all()
    assert {h["phase"] for h in results["history"]} == {"blocks"}
    assert results["best"]["channel_choices"] == [8] * 5


def _synthetic_latency_table(path: Path, cpu: str | None = None) -> None:
    """A latency table of the small space with this machine's fingerprint (entries from FLOPs, not timed)."""
    from spos_deploy.tables.flops.build import build_flops_table
    from spos_deploy.tables.flops.table import FlopsTable  # noqa: F401 - documents where the entries come from
    from spos_deploy.tables.latency.build import LatencySetup, fingerprint
    from spos_deploy.tables.latency.table import LatencyTable

    ft = build_flops_table(SMALL, progress=False)
    entries = np.where(
        ft.flops >= 0, ft.flops * 1e-7 + 0.01 * (np.arange(ft.flops.size).reshape(ft.flops.shape) % 7), 0
    )
    fp = fingerprint(LatencySetup(runtime="ort-cpu", threads=2), SMALL)
    if cpu:
        fp["cpu"] = cpu
    LatencyTable(SMALL, fp, 0.05, 0.05, entries.astype(float), np.zeros(entries.shape)).save(path)


@pytest.mark.timing  # its closed loop measures the deployed network against the budget
def test_cli_latency_budget_outputs_and_json(supernet, tmp_path, capsys):
    from spos_deploy.tables.latency.table import LatencyTable

    lut = tmp_path / "lut.json"
    _synthetic_latency_table(lut)
    out = tmp_path / "out"
    args = ["--supernet", str(supernet), "-o", str(out), "--method", "random", "--population", "5"]
    args += ["--generations", "2", "--budget", "8", "--latency-table", str(lut), "--latency-max-ms", "0.45"]
    args += EVAL_FLAGS
    assert search_main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "results.json").read_text())
    assert printed["evaluated"] == 8 and printed["method"] == "random"  # budget: 5 + 3
    assert [h["evaluated"] for h in printed["history"]] == [5, 3]
    table = LatencyTable.load(lut)
    for entry in [printed["best"], *printed["pareto"]]:
        for key in ("accuracy", "flops", "params", "score", "latency_ms"):
            assert key in entry
        assert entry["latency_ms"] <= 0.45
        assert math.isclose(entry["latency_ms"], table.predict(entry["block_choices"], entry["channel_choices"]))
    assert printed["pareto_cost"] == "latency_ms"
    lat = [e["latency_ms"] for e in printed["pareto"]]
    acc = [e["accuracy"] for e in printed["pareto"]]
    assert lat == sorted(lat) and acc == sorted(acc) and len(set(acc)) == len(acc)
    for k in range(len(printed["pareto"])):
        spec = load_spec(out / f"pareto_{k}.json")
        assert list(spec.block_choices) == printed["pareto"][k]["block_choices"] and spec.space == SMALL
    assert load_spec(out / "best.json").extra["accuracy"] == printed["best"]["accuracy"]
    assert (out / "candidates.png").stat().st_size > 10_000
    assert printed["constraints"]["latency_max_ms"] == 0.45
    # the closed loop measured the chosen architecture deployed (this machine, the table's form)
    dep = printed["deployed"]
    assert dep["chosen"] == printed["best"]["key"] and dep["budget_ms"] == 0.45
    assert dep["predicted_ms"] == pytest.approx(printed["best"]["latency_ms"])
    assert printed["best"]["measured_latency_ms"] == dep["measured_ms"] > 0
    keys = [m["key"] for m in dep["measured"]]  # the first choice, then what a re-ranking measured after it
    assert dep["met"] == (dep["measured_budget_ms"] <= 0.45) and dep["chosen"] in keys
    assert dep["reranked"] == (keys[0] != dep["chosen"])
    # a table from other hardware is refused unless allowed
    other = tmp_path / "other.json"
    _synthetic_latency_table(other, cpu="some other CPU")
    bad = ["--supernet", str(supernet), "-o", str(tmp_path / "o2"), "--latency-table", str(other), *EVAL_FLAGS]
    assert search_main([*bad, "--latency-max-ms", "0.75"]) == 2
    err = capsys.readouterr().err.strip()
    assert "other hardware" in err and "--allow-table-mismatch" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o2").exists()


def test_impossible_constraints_exit_2_with_one_line(supernet, tmp_path):
    out = tmp_path / "out"
    r = run_cli("--supernet", str(supernet), "-o", str(out), "--flops-range", "1e5", "1e6", *EVAL_FLAGS)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--flops-range" in lines[0] and "smallest achievable is 1,417,066" in lines[0]  # spos-profile agrees
    assert r.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    "case",
    ["missing", "corrupt", "other-space", "exists", "table-config", "latency-without-table", "bad-range"],
)
def test_bad_inputs_give_one_line_and_exit_2(case, supernet, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--supernet", str(supernet), "-o", str(out), *EVAL_FLAGS]
    expect = {
        "missing": "no such run folder",
        "corrupt": "not a readable MXNet .params file",
        "other-space": "weights do not fit the search space",
        "exists": "exists and is not empty",
        "table-config": "another configuration",
        "latency-without-table": "needs a latency table",
        "bad-range": "low 9e+06 is above high 1e+06",
    }[case]
    if case == "missing":
        args[1] = str(tmp_path / "nope")
    elif case == "corrupt":
        bad = tmp_path / "bad.params"
        bad.write_bytes((supernet / "supernet.params").read_bytes()[:5000])
        args[1] = str(bad)
        args += ["--input-size", "32", "--num-classes", "10", "--stage-repeats", "1", "1", "2", "1"]
    elif case == "other-space":
        args[1] = str(supernet / "supernet.params")
        args += ["--input-size", "32", "--num-classes", "10"]  # the full 20-position space
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "table-config":
        args += [
            "--latency-table",
            str(
                ROOT
                / "spos_deploy"
                / "lookup_tables"
                / "latency_OneShot_se_lcap_224_ort-cpu_fp32_b1_t2_intel-xeon-processor.json"
            ),
        ]
        args += ["--latency-max-ms", "3"]
    elif case == "latency-without-table":
        args += ["--latency-max-ms", "3"]
    elif case == "bad-range":
        args += ["--flops-range", "9e6", "1e6"]
    assert search_main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spos-search: error:") and expect in lines[0], captured.err
    assert captured.out == ""
    if case == "exists":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()
