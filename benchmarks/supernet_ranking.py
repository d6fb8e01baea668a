"""Does the supernet rank architectures the way training them from scratch does? (issue 10, item 3)

Steps, each resumable (results cached under ``--out``, default runs/ranking/):

1. This machine's int8 latency table of the small space (``--lut``; built into ``--out`` when not given).
2. Architectures: 20,000 random ones, ``--archs`` of them stratified over predicted latency (equal-width bins
   between the 2% and 98% quantiles, one random architecture per bin) plus ``--band`` more within +-10% of
   the median latency (the narrow band a latency-budgeted search works in). Fixed seed. Or, with
   ``--archs-from``, the architectures of earlier results with their recorded stand-alone top-1 (steps 1-3
   skipped).
3. Every architecture trained from scratch with one short recipe (``benchmarks/_subnets.py``, shared with
   ``benchmarks.search_quality``): the stand-alone top-1 on the Fashion-MNIST test set. One after the other,
   or with ``--ray [ADDRESS]`` as Ray tasks (one per architecture, retried when a worker dies) on a local
   instance sized to this machine or on a cluster.
4. The supernet of the small space (``--supernet RUN``; trained there with spos-train's small recipe when it
   has no supernet.params).
5. Every architecture evaluated as a supernet path, BN statistics computed exactly for the path.
6. Zero-cost proxies of every architecture (``spos_deploy.search.proxies``: SynFlow, NASWOT, jacob_cov of the
   untrained network, each the mean over 3 random inits, on the first 64 Fashion-MNIST training images).
7. Kendall tau / Spearman rho of supernet vs stand-alone accuracy, beside the tau of the trivial proxies (FLOPs,
   params, predicted latency) and the zero-cost ones, and the supernet's paired bootstrap lead over the best
   proxy; the same inside the narrow band; top-5 overlap; a scatter plot.

    python -m benchmarks.supernet_ranking [--supernet runs/ranking/supernet] [--lut TABLE] [--archs 24]
    python -m benchmarks.supernet_ranking --ray       # the stand-alone trainings on every core of this machine
    python -m benchmarks.supernet_ranking --quick     # smoke run: tiny everything, results under runs/
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks._subnets import (
    RUNS,
    SPACE,
    TABLE_NAME,
    ZERO_COST,
    ZERO_COST_SEEDS,
    Recipe,
    StepTimes,
    add_ray_arg,
    add_recipe_args,
    add_supernet_args,
    check_data,
    check_ray,
    describe_archs,
    ensure_supernet,
    ensure_table,
    fail,
    finite_or_none,
    flops_table,
    load_table,
    log,
    recipe_from_args,
    resolve_supernet_args,
    separability_text,
    setup_logging,
    supernet_channels,
    supernet_training,
    supernet_training_text,
    table_record,
    train_all,
    zero_cost_proxies,
    zero_cost_settings,
)
from benchmarks.record import Provenance, provenance, rescoring, results_dir, write_record
from spos_deploy.atomic import atomic_path, write_json
from spos_deploy.cli.common import run_script
from spos_deploy.errors import BadInputError
from spos_deploy.nets import engine
from spos_deploy.space import BLOCK_NAMES
from spos_deploy.stats import kendall_tau, kendall_tau_bootstrap, kendall_tau_pvalue
from spos_deploy.studies import pooled_seed_std, separability
from spos_deploy.tables.core import random_architectures, width_level_architectures

STUDY = "supernet_ranking"
BAND = 0.10  # the narrow band: +-10% of the median predicted latency
EVAL_BATCH = 128


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="cache of every step (default runs/ranking, --quick: runs/ranking-quick)")
    ap.add_argument(
        "--results", help="where the .md/.json/.png go (default benchmarks/results/supernet_ranking; --quick: OUT)"
    )
    ap.add_argument("--lut", help="latency table of the small space for this machine (default: built into OUT)")
    ap.add_argument("--archs", type=int, help="stratified architectures (default 24, --quick 3)")
    ap.add_argument("--band", type=int, help="extra architectures within +-10%% of the median (default 8, --quick 1)")
    ap.add_argument("--samples", type=int, default=20000, help="random architectures the picks are drawn from")
    ap.add_argument("--seed", type=int, default=0, help="seed of the architecture picks")
    ap.add_argument(
        "--bn-images",
        type=int,
        help="BN images per supernet path (default 2000, --quick 256; 0: the running statistics, a diagnostic)",
    )
    ap.add_argument(
        "--full-width",
        action="store_true",
        help="block choices only, every position at its widest channel choice (all 4^5 = 1024 such architectures\n"
        "are the pool): the ranking a supernet trained at full width can be asked for",
    )
    ap.add_argument(
        "--width-levels",
        action="store_true",
        help="draw the pool with one random width level per architecture (every position within one channel\n"
        "choice of it) instead of uniform channel choices, which crowd around the middle latency: the picks\n"
        "then span the space from its narrowest architectures to its widest",
    )
    ap.add_argument(
        "--noise-archs",
        type=int,
        default=0,
        help="also train this many of the architectures again with the next seed: the tau of the stand-alone\n"
        "recipe against itself, the ceiling any proxy can reach against it (default 0: not measured)",
    )
    ap.add_argument(
        "--noise-seeds",
        type=int,
        default=1,
        help="how many more seeds the --noise-archs architectures are trained with (seed + 1 ... seed + N,\n"
        "default 1): the supernet and the proxies are also ranked against the mean of all the seeds, a ground\n"
        "truth whose ceiling rises with N",
    )
    ap.add_argument(
        "--archs-from",
        nargs="+",
        metavar="RESULT",
        help="rank the architectures of earlier results (supernet_ranking*.json, pooled, repeats once) against\n"
        "the stand-alone top-1 recorded there, instead of choosing and training them: a new supernet is then\n"
        "ranked in minutes. The stand-alone recipe options must match the records'. With --noise-seeds, the\n"
        "further seeds recorded there are read back too, and only the missing ones trained",
    )
    ap.add_argument(
        "--rescore",
        metavar="RESULT",
        help="recompute the statistics, report and plot of a recorded result (supernet_ranking*.json) from the\n"
        "accuracies recorded there, nothing trained or evaluated: for results recorded before a statistic\n"
        "was added. Zero-cost proxies the record lacks are computed (cheap: untrained networks, a few seconds\n"
        "per architecture; cached in --out when given) and kept beside its rows, under zero_cost_proxies.\n"
        "Writes under the record's own tag unless --tag is given",
    )
    ap.add_argument(
        "--few-shot",
        nargs="+",
        metavar="DIR",
        help="sub-supernets (spos-train supernet --init-from ONE_SHOT --constraint random --flops-range LO HI) in\n"
        "place of --supernet: each architecture is evaluated on the first one whose FLOPs range holds it",
    )
    ap.add_argument(
        "--supernet-scores",
        metavar="RESULT",
        help="take the supernet's path top-1 of each architecture from a recorded result (supernet_ranking*.json,\n"
        "with --archs-from) instead of evaluating a supernet: a recorded supernet ranked against a ground truth\n"
        "of more seeds, without its run folder",
    )
    ap.add_argument("--tag", help="suffix of the result files (supernet_ranking_TAG.md/.json/.png)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny supernet, 4 architectures, 512 images")
    add_ray_arg(ap)
    add_recipe_args(ap)
    add_supernet_args(ap, "OUT/supernet")
    args = ap.parse_args(argv)
    resolve_supernet_args(args)
    quick = {"archs": 3, "band": 1, "bn_images": 256} if args.quick else {"archs": 24, "band": 8, "bn_images": 2000}
    for k, v in quick.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.supernet_scores and (args.supernet or args.few_shot or not args.archs_from):
        fail("--supernet-scores ranks a recorded supernet on recorded architectures: give --archs-from, no --supernet")
    if not args.rescore:  # a rescore caches (its zero-cost proxies) only where --out says
        args.out = args.out or str(RUNS / ("ranking-quick" if args.quick else "ranking"))
        args.supernet = args.supernet or str(Path(args.out) / "supernet")
    args.results = args.results or (str(Path(args.out) / "results") if args.quick else str(results_dir(STUDY)))
    if args.archs_from and args.ray is not None and not args.noise_archs:
        fail("--archs-from trains nothing: drop --ray")
    if args.rescore and (args.archs_from or args.ray is not None or args.quick):
        fail("--rescore only recomputes a recorded result: drop --archs-from, --ray and --quick")
    if args.full_width and args.width_levels:
        fail("--full-width and --width-levels are two different pools: give one")
    if args.archs < 2 or args.band < 0 or args.bn_images < 0 or args.noise_seeds < 1:
        fail("--archs must be >= 2, --band >= 0, --bn-images >= 0 and --noise-seeds >= 1")
    return args


# ---- step 3: which architectures ------------------------------------------------------------------------
POOLS = {
    "full_width": "all block choices at full width",
    "width_levels": "uniform random blocks, channels near one random width level per architecture",
    "random": "uniform random blocks and channels",
}


def stratified_picks(pred: np.ndarray, n: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """One random index per equal-width latency bin between the 2% and 98% quantiles (and the empty bins):
    equal-width bins spread the picks over the whole range, where random picks crowd around the median."""
    lo, hi = np.quantile(pred, [0.02, 0.98])
    edges = np.linspace(lo, hi, n + 1)
    inside = (pred >= lo) & (pred <= hi)
    bins = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, n - 1)
    picks, empty = [], []
    for i in range(n):
        members = np.flatnonzero(inside & (bins == i))
        if len(members):
            picks.append(int(rng.choice(members)))
        else:
            empty.append(i)
    return picks, empty


def band_picks(pred: np.ndarray, n: int, rng: np.random.Generator, taken: list[int]) -> list[int]:
    """``n`` random indices within +-10% of the median latency, none already taken."""
    med = float(np.median(pred))
    members = np.setdiff1d(np.flatnonzero(np.abs(pred - med) <= BAND * med), taken)
    return [int(i) for i in rng.choice(members, size=min(n, len(members)), replace=False)]


def choose_architectures(table: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stratified and band architectures with their predicted latency, FLOPs and params."""
    if args.full_width:  # the whole block-only pool: 4^5 architectures
        blocks = np.array(list(itertools.product(range(SPACE.num_blocks), repeat=SPACE.num_positions)))
        channels = np.full_like(blocks, SPACE.widest_choice)
    elif args.width_levels:
        blocks, channels = width_level_architectures(SPACE, args.samples, args.seed)
    else:
        blocks, channels = random_architectures(SPACE, args.samples, args.seed)
    pred = table.predict(blocks, channels)
    rng = np.random.default_rng([args.seed, 3])
    strat, empty = stratified_picks(pred, args.archs, rng)
    band = band_picks(pred, args.band, rng, strat)
    med = float(np.median(pred))
    idx = strat + band
    archs = describe_archs(table, flops_table(), blocks[idx], channels[idx])
    seen: set[str] = set()
    unique = []
    for a, i in zip(archs, idx):
        a["group"] = "stratified" if i in strat else "band"
        a["in_band"] = bool(abs(a["predicted_ms"] - med) <= BAND * med)
        if a["key"] not in seen:  # a repeat only from --full-width's bins
            seen.add(a["key"])
            unique.append(a)
    info = {
        "pool": POOLS["full_width" if args.full_width else "width_levels" if args.width_levels else "random"],
        "samples": len(blocks),
        "latency_q02_ms": float(np.quantile(pred, 0.02)),
        "latency_q98_ms": float(np.quantile(pred, 0.98)),
        "median_ms": med,
        "band_ms": [med * (1 - BAND), med * (1 + BAND)],
        "empty_bins": empty,
    }
    if empty:
        log.info("%d of %d latency bins were empty: %d stratified architectures", len(empty), args.archs, len(strat))
    return unique, info


RECORDED_KEYS = ("key", "blocks", "channels", "predicted_ms", "flops", "params", "group", "in_band")


def recorded_architectures(
    paths: list[str], recipe: Recipe
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """The architectures of earlier ranking results with the stand-alone results recorded there, pooled: an
    architecture in two records appears once, with the mean of its recorded top-1 (the same recipe and seed give
    slightly different results on another machine). Each record must have trained with ``recipe``; its
    predicted latencies and band come from its own machine's table."""
    archs: dict[str, dict[str, Any]] = {}
    standalone: dict[str, dict[str, Any]] = {}
    medians = []
    want = asdict(recipe) | {"tag": recipe.tag}
    for p in paths:
        try:
            record = json.loads(Path(p).read_text())
            got, rows = record["settings"]["recipe"], record["architectures"]
            medians.append(float(record["selection"]["median_ms"]))
            if got != want:
                fail(f"--archs-from {p}: its stand-alone recipe is {got.get('tag')}, this run's {recipe.tag}")
            for r in rows:
                archs.setdefault(r["key"], {k: r[k] for k in RECORDED_KEYS})
                times = {"wall_seconds": r["train_wall_s"], "train_seconds": r["train_steps_s"]}
                seen = standalone.setdefault(r["key"], {"standalone_accs": [], **times})
                seen["standalone_accs"].append(float(r["standalone_acc"]))
                seen["standalone_acc"] = float(np.mean(seen["standalone_accs"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            fail(f"--archs-from {p}: not a supernet_ranking result ({type(e).__name__}: {e})")
    selection = {"pool": "recorded", "from": list(paths), "samples": len(archs), "median_ms": float(np.mean(medians))}
    return list(archs.values()), standalone, selection


def recorded_seed_accuracies(paths: list[str], recipe: Recipe) -> dict[int, dict[str, float]]:
    """The further seeds' stand-alone top-1 recorded in earlier ranking results (their ``seed_noise``), by seed
    offset (1 is ``recipe.seed + 1``) and architecture, the mean where two records hold the same one. Why: an
    extra seed of 28 architectures is about 1.6 hours of both cores; a ground truth of more seeds is built a seed
    at a time, each run reading back what the records before it trained."""
    seen: dict[int, dict[str, list[float]]] = {}
    want = asdict(recipe) | {"tag": recipe.tag}
    for p in paths:
        try:
            record = json.loads(Path(p).read_text())
            if record["settings"]["recipe"] != want:
                continue  # recorded_architectures has refused it already
            noise = record.get("stats", {}).get("seed_noise") or {}
            extra = noise.get("extra_seed_accs") or ([noise["second_seed_acc"]] if "second_seed_acc" in noise else [])
            for k, accs in enumerate(extra, start=1):
                for key, acc in zip(noise["keys"], accs, strict=True):
                    seen.setdefault(k, {}).setdefault(key, []).append(float(acc))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            fail(f"--archs-from {p}: its seed-noise part is not readable ({type(e).__name__}: {e})")
    return {k: {key: float(np.mean(v)) for key, v in by_key.items()} for k, by_key in seen.items()}


# ---- step 5: supernet accuracy ----------------------------------------------------------------------------
def supernet_accuracies(
    supernet: Path, archs: list[dict[str, Any]], recipe: Recipe, bn_images: int, out: Path, cache_prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """Top-1 of every architecture as a supernet path (exact per-path BN), cached in OUT/supernet_acc.json
    (``cache_prefix`` before the name) under the supernet's hash and the evaluation settings (another supernet
    or setting starts over)."""
    from spos_deploy.search.evaluator import PathEvaluator, prepare_data, resolve_supernet

    try:
        run = resolve_supernet(str(supernet), SPACE)
    except BadInputError as e:
        fail(str(e))
    name = "supernet_acc.json" if bn_images else "supernet_acc_running_bn.json"  # either kept
    path = out / f"{cache_prefix}{name}"
    settings = {"supernet_sha1": run.sha1, "bn_images": bn_images, "val_limit": recipe.val_limit, "batch": EVAL_BATCH}
    cache = json.loads(path.read_text()) if path.exists() else {}
    if cache.get("settings") != settings:
        cache = {"settings": settings, "acc": {}}
    todo = [a for a in archs if a["key"] not in cache["acc"]]
    if todo:
        data_limit = max(5000, bn_images)  # BN batches come from the first images of the training split
        batches = max(bn_images, EVAL_BATCH)
        data = prepare_data(
            SPACE, "fashion-mnist:train", "fashion-mnist:test", batches, EVAL_BATCH, recipe.val_limit, data_limit
        )
        evaluate = PathEvaluator(run, data, EVAL_BATCH)
        if bn_images == 0:
            evaluate = _running_bn(evaluate)
    for i, a in enumerate(todo):
        t0 = time.time()
        acc = evaluate(a["blocks"], a["channels"])
        cache["acc"][a["key"]] = {"supernet_acc": float(acc), "seconds": time.time() - t0}
        write_json(path, cache)
        log.info("supernet path %d/%d %s: top-1 %.4f (%.1f s)", i + 1, len(todo), a["key"], acc, time.time() - t0)
    return cache["acc"]


def flops_region(folder: Path) -> tuple[float, float]:
    """The FLOPs range a sub-supernet was trained on (its config's ``bounds``), refused when it has none."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
        lo, hi = cfg["bounds"]["flops"]
        return float(lo), float(hi)
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"--few-shot {folder}: not a sub-supernet trained with --flops-range ({type(e).__name__}: {e})")


def few_shot_accuracies(
    folders: list[Path], archs: list[dict[str, Any]], recipe: Recipe, bn_images: int, out: Path
) -> dict[str, dict[str, Any]]:
    """Few-shot NAS: every architecture as a path of the first sub-supernet whose FLOPs range holds it; each
    result names the sub-supernet that scored it."""
    regions = [(f, *flops_region(f)) for f in folders]
    groups: dict[Path, list[dict[str, Any]]] = {f: [] for f in folders}
    for a in archs:
        home = next((f for f, lo, hi in regions if lo <= a["flops"] <= hi), None)
        if home is None:
            fail(f"--few-shot: no sub-supernet's FLOPs range holds {a['key']} ({a['flops']:,} FLOPs)")
        groups[home].append(a)
    acc: dict[str, dict[str, Any]] = {}
    for folder, group in groups.items():
        for key, r in supernet_accuracies(folder, group, recipe, bn_images, out, f"{folder.name}_").items():
            if any(a["key"] == key for a in group):
                acc[key] = {**r, "sub_supernet": folder.name}
    return acc


def recorded_supernet_scores(
    path: str, archs: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    """``--supernet-scores``: each architecture's supernet top-1 as recorded in an earlier result, that result's
    supernet settings (the supernet's own, which the report names) and its exact-BN image count. Refused in one
    line when the record is unreadable or lacks one of ``archs``."""
    try:
        record = json.loads(Path(path).read_text())
        rows = {r["key"]: r for r in record["architectures"]}
        settings = dict(record["settings"]["supernet"])
        bn_images = int(record["settings"]["args"]["bn_images"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"--supernet-scores {path}: not a supernet_ranking result ({type(e).__name__}: {e})")
    missing = [a["key"] for a in archs if a["key"] not in rows]
    if missing:
        fail(f"--supernet-scores {path}: no supernet score for {len(missing)} of the architectures ({missing[0]}, ...)")
    scores = {
        a["key"]: {
            "supernet_acc": float(rows[a["key"]]["supernet_acc"]),
            "seconds": float(rows[a["key"]].get("supernet_eval_s", 0.0)),  # as that record timed it
        }
        for a in archs
    }
    return scores, settings | {"scores_from": str(path)}, bn_images


def _running_bn(ev: Any) -> Any:
    """Path top-1 with the BN statistics the supernet's training accumulated (mixtures over every path that used
    a block): set against exact per-path BN, it shows what the recalibration does to the ranking."""
    from spos_deploy.nets.evaluate import accuracy

    def evaluate(blocks: Any, channels: Any) -> float:
        b, c = [int(v) for v in blocks], [int(v) for v in channels]
        return accuracy(lambda x: ev.net(x, b, c), ev.data.val_images, ev.data.val_labels, ev.batch_size, ev.ctx)

    return evaluate


# ---- step 6: zero-cost proxies --------------------------------------------------------------------------
def with_zero_cost(record: dict[str, Any], rows: list[dict[str, Any]], out: Path | None) -> list[dict[str, Any]]:
    """The recorded rows with their zero-cost proxies: as recorded, else from the record's ``zero_cost_proxies``
    (an earlier rescore's), else computed now and kept there. The recorded rows are not rewritten; without
    Fashion-MNIST the rows stay without them (a warning) and only the trivial proxies are ranked."""
    if all(k in r for r in rows for k in ZERO_COST):
        return rows
    kept = record.get("zero_cost_proxies") or {}
    scores = dict(kept.get("scores", {})) if kept.get("settings") == zero_cost_settings() else {}
    todo = [r for r in rows if r["key"] not in scores]
    if todo:
        try:
            scores |= zero_cost_proxies(todo, out)
        except BadInputError as e:
            log.warning("zero-cost proxies not computed (%s): only the trivial proxies are ranked", e)
            return rows
    record["zero_cost_proxies"] = {
        "settings": zero_cost_settings(),
        "scores": {r["key"]: scores[r["key"]] for r in rows},
    }
    return [{**r, **_zero_cost_fields(scores[r["key"]])} for r in rows]


def _zero_cost_fields(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores[k] for k in ZERO_COST} | {"zero_cost_s": scores["seconds"]}


# ---- step 7: statistics, plot, report ------------------------------------------------------------------------
def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (what Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho: Pearson correlation of the (average) ranks; NaN when undefined."""
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


TRIVIAL = ("flops", "params", "predicted_ms")
PROXIES = TRIVIAL + ZERO_COST
PROXY_LABELS = {
    "flops": "FLOPs",
    "params": "params",
    "predicted_ms": "predicted latency",
    "synflow": "SynFlow (zero-cost)",
    "naswot": "NASWOT (zero-cost)",
    "jacob_cov": "jacob_cov (zero-cost)",
}


def available_proxies(rows: list[dict[str, Any]]) -> list[str]:
    """The proxies every row has a value of: an older record lacks the zero-cost ones, and a proxy that is
    undefined for one architecture (recorded as null) cannot rank the set."""
    return [k for k in PROXIES if all(r.get(k) is not None for r in rows)]


def correlations(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Kendall tau (with its one-sided permutation p-value) and Spearman rho of ``key`` against the stand-alone
    accuracy."""
    x, y = [r[key] for r in rows], [r["standalone_acc"] for r in rows]
    return {
        "n": len(rows),
        "kendall_tau": finite_or_none(kendall_tau(x, y)),
        "kendall_p": finite_or_none(kendall_tau_pvalue(x, y)) if len(rows) > 2 else None,
        "spearman_rho": finite_or_none(spearman(x, y)),
    }


def best_proxy(proxies: dict[str, dict[str, Any]], among: tuple[str, ...] = PROXIES) -> str:
    """The proxy (of ``among`` that were ranked) with the largest |tau| on the whole set: one that ranks
    backwards counts, read reversed."""
    return max((k for k in among if k in proxies), key=lambda k: abs(proxies[k]["kendall_tau"] or 0))


def ranked_correlations(rows: list[dict[str, Any]], proxies: list[str] | None = None) -> dict[str, Any]:
    """The supernet and every proxy against stand-alone accuracy, each with a 95 % bootstrap interval of its
    tau, and how often (on the same resamples) the supernet ranks above the proxy that is best on the whole set
    (in either direction: a proxy that ranks backwards is read reversed):
    with 24-50 architectures a tau carries +-0.2 of sampling error, so a lead needs its own interval.
    ``proxies``: default, every proxy all rows have."""
    keys = ("supernet_acc", *(available_proxies(rows) if proxies is None else proxies))
    out = {k: correlations(rows, k) for k in keys}
    if len(rows) > 2:
        boot = kendall_tau_bootstrap({k: [r[k] for r in rows] for k in keys}, [r["standalone_acc"] for r in rows])
        for k in keys:
            lo, hi = np.nanpercentile(boot[k], [2.5, 97.5])
            out[k]["kendall_tau_ci95"] = [finite_or_none(float(lo)), finite_or_none(float(hi))]
        best = best_proxy(out)
        sign = 1.0 if (out[best]["kendall_tau"] or 0) >= 0 else -1.0
        lead = boot["supernet_acc"] - sign * boot[best]
        out["lead_over_best_proxy"] = {
            "proxy": best,
            "ci95": [finite_or_none(float(v)) for v in np.nanpercentile(lead, [2.5, 97.5])],
            "share_above": float(np.nanmean(lead > 0)),
        }
    return out


def top_overlap(rows: list[dict[str, Any]], k: int = 5) -> float:
    """Share of the stand-alone top k that is also in the supernet's top k."""
    k = min(k, len(rows))
    best = {r["key"] for r in sorted(rows, key=lambda r: -r["standalone_acc"])[:k]}
    found = {r["key"] for r in sorted(rows, key=lambda r: -r["supernet_acc"])[:k]}
    return len(best & found) / k


def block_count_correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per block type, Pearson r of how many positions use it against each accuracy: where a supernet's
    preference differs from training from scratch (a bias), not only how well it ranks overall."""
    counts = np.array([[list(r["blocks"]).count(b) for b in range(len(BLOCK_NAMES))] for r in rows], float)
    out: dict[str, dict[str, float | None]] = {}
    for b, name in enumerate(BLOCK_NAMES):
        c = counts[:, b]
        out[name] = {
            k: finite_or_none(float(np.corrcoef(c, [r[k] for r in rows])[0, 1])) if len(rows) > 2 and c.std() else None
            for k in ("standalone_acc", "supernet_acc")
        }
    return out


def block_table(stats: dict[str, Any]) -> str:
    rows = [[k, fmt(v["standalone_acc"], ".2f"), fmt(v["supernet_acc"], ".2f")] for k, v in stats.items()]
    headers = ["block type", "r: positions using it vs stand-alone top-1", "r: vs supernet top-1"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def ranking_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    band = [r for r in rows if r["in_band"]]
    full, in_band = split_correlations(ranked_correlations(rows)), ranked_correlations(band, ["predicted_ms"])
    return {
        "block_counts": block_count_correlations(rows),
        **full,
        "proxies_missing": [k for k in PROXIES if k not in full["proxies"]],
        "top5_overlap": top_overlap(rows),
        "band": {"supernet": in_band["supernet_acc"], "predicted_ms": in_band["predicted_ms"]},
    }


def noise_picks(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` architectures trained again with the next seed: evenly spread over the stand-alone ranking."""
    order = sorted(rows, key=lambda r: r["standalone_acc"])
    return [order[int(i)] for i in np.linspace(0, len(order) - 1, min(n, len(order)))]


def seed_noise(
    rows: list[dict[str, Any]],
    recipe: Recipe,
    cache: Path,
    n: int,
    ray: str | None,
    seeds: int = 1,
    recorded: dict[int, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """``n`` architectures (evenly spread over the stand-alone ranking) trained again with ``seeds`` more seeds
    (``seed + 1`` ...): how well the stand-alone recipe ranks against itself, beside the supernet on the same
    architectures, and every ranking against the mean of all the seeds. ``recorded``: top-1 of further seeds
    recorded earlier (:func:`recorded_seed_accuracies`), read back instead of trained."""
    picks = noise_picks(rows, n)
    extra, read_back = [], {}
    for k in range(1, seeds + 1):
        known = (recorded or {}).get(k, {})
        todo = [r for r in picks if r["key"] not in known]
        again = train_all(todo, replace(recipe, seed=recipe.seed + k), cache, ray) if todo else {}
        extra.append([known[r["key"]] if r["key"] in known else again[r["key"]]["standalone_acc"] for r in picks])
        read_back[str(recipe.seed + k)] = n_read = len(picks) - len(todo)
        if n_read:
            log.info("seed %d: %d of %d read back from the records", recipe.seed + k, n_read, len(picks))
    return noise_stats(rows, picks, extra) | {"read_from_records": read_back}


def noise_stats(rows: list[dict[str, Any]], picks: list[dict[str, Any]], extra: list[list[float]]) -> dict[str, Any]:
    """:func:`seed_noise`'s statistics: ``picks`` (some of ``rows``) with their seed-0 top-1, ``extra`` the top-1
    of the same architectures under each further seed."""
    a = [r["standalone_acc"] for r in picks]
    b = extra[0]
    sup = [r["supernet_acc"] for r in picks]
    accs = np.asarray([a, *extra])  # (seeds, architectures)
    mean = accs.mean(axis=0)
    diff = np.asarray(b) - np.asarray(a)
    # one training's std across seeds, pooled over architectures; a seed's offset shared by all architectures
    # moves no ranking, so each seed's own mean is taken out first
    pooled = pooled_seed_std((accs - accs.mean(axis=1, keepdims=True)).T) if len(picks) > 1 else None
    noise_std = pooled[0] if pooled else None
    pairs = list(itertools.combinations(range(len(accs)), 2))
    return {
        "n": len(picks),
        "seeds": len(accs),
        "keys": [r["key"] for r in picks],
        "second_seed_acc": b,
        "extra_seed_accs": extra,
        "seed_vs_seed_tau": finite_or_none(kendall_tau(a, b)),
        "pairwise_seed_tau": finite_or_none(float(np.mean([kendall_tau(accs[i], accs[j]) for i, j in pairs]))),
        "supernet_vs_seed0_tau": finite_or_none(kendall_tau(sup, a)),
        "supernet_vs_seed1_tau": finite_or_none(kendall_tau(sup, b)),
        "supernet_vs_mean_tau": finite_or_none(kendall_tau(sup, mean)),
        "seed_diff_std_pts": float(100 * diff.std(ddof=1)) if len(diff) > 1 else None,
        "standalone_range_pts": float(100 * (max(a) - min(a))),
        "separability": separability([r["standalone_acc"] for r in rows], noise_std, 1),
        # the same, for the mean of all the seeds of these architectures: the ground truth more seeds buy
        "mean_separability": separability(list(mean), noise_std, len(accs)),
        "against_mean": against_mean(picks, list(mean)) if len(picks) > 2 else None,
    }


def against_mean(picks: list[dict[str, Any]], mean: list[float]) -> dict[str, Any]:
    """The supernet and every proxy ranked against ``mean``, the seeds' mean top-1 of ``picks`` (intervals and
    the lead over the best proxy as for one seed): a ground truth with a fraction of one seed's noise."""
    rows = [{**r, "standalone_acc": m} for r, m in zip(picks, mean)]
    return split_correlations(ranked_correlations(rows))


def split_correlations(full: dict[str, Any]) -> dict[str, Any]:
    """:func:`ranked_correlations` as the reports read it: the supernet, its lead, and the proxies."""
    full = dict(full)
    return {
        "supernet": full.pop("supernet_acc"),
        "lead_over_best_proxy": full.pop("lead_over_best_proxy", None),
        "proxies": full,
    }


def noise_text(st: dict[str, Any]) -> str:
    z = st.get("seed_noise")
    if not z:
        return ""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    seeds = z.get("seeds", 2)  # records before --noise-seeds have two
    again = "the next seed" if seeds == 2 else f"{seeds - 1} more seeds"
    word = "two" if seeds == 2 else str(seeds)
    pairs = f"; over all pairs of the {seeds} seeds {f(z.get('pairwise_seed_tau'))}" if seeds > 2 else ""
    read = {k: v for k, v in (z.get("read_from_records") or {}).items() if v}
    read_text = (
        " Read back from the earlier records, not trained again: "
        + ", ".join(f"seed {k} for {v} of {z['n']}" for k, v in read.items())
        + "."
        if read
        else ""
    )
    return (
        f"\n\n**Noise ceiling.** {z['n']} of the architectures (spread over the stand-alone ranking) trained again "
        f"with {again}: stand-alone vs stand-alone Kendall tau {f(z['seed_vs_seed_tau'])} (seed 0 against seed 1"
        f"{pairs}; the seed changes "
        f"top-1 by {z['seed_diff_std_pts']:.2f} points std, against a {z['standalone_range_pts']:.2f}-point range of "
        f"stand-alone accuracies); on the same architectures the supernet's tau is {f(z['supernet_vs_seed0_tau'])} "
        f"against seed 0, {f(z['supernet_vs_seed1_tau'])} against seed 1, {f(z['supernet_vs_mean_tau'])} against "
        f"the mean of {'both' if seeds == 2 else f'all {seeds}'}."
        + read_text
        + separability_text(z.get("separability"), 1)
        + _mean_text(z.get("mean_separability"), seeds)
    ) + (
        f"\n\n**Against the {word} seeds' mean** ({z['n']} architectures): " + verdict(z["against_mean"])
        if z.get("against_mean")
        else ""
    )


def _mean_text(sep: dict[str, float] | None, seeds: int) -> str:
    if sep is None:
        return ""
    return (
        f" Against the {'two' if seeds == 2 else seeds} seeds' mean of these architectures the ceiling is "
        f"about {sep['tau_ceiling']:.2f} "
        f"(the means' variance {sep['f_ratio']:.2f} times what the noise alone gives)."
    )


def scatter_plot(rows: list[dict[str, Any]], stats: dict[str, Any], path: Path) -> None:
    """Supernet vs stand-alone accuracy, band architectures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for in_band, style in ((False, dict(marker="o", c="tab:blue")), (True, dict(marker="^", c="tab:red"))):
        pts = [r for r in rows if r["in_band"] == in_band]
        label = f"within +-{BAND:.0%} of the median latency" if in_band else "outside the band"
        ax.scatter([r["standalone_acc"] for r in pts], [r["supernet_acc"] for r in pts], label=label, **style)
    ax.set_title(f"Supernet vs stand-alone top-1 (Kendall tau {fmt(stats['supernet']['kendall_tau'])})")
    ax.set_xlabel("stand-alone top-1 (trained from scratch)")
    ax.set_ylabel("supernet path top-1 (exact per-path BN)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def stats_table(stats: dict[str, Any]) -> str:
    rows = [["supernet accuracy (all)", *_corr_cells(stats["supernet"])]]
    rows += [[f"{PROXY_LABELS.get(k, k)} (all)", *_corr_cells(v)] for k, v in stats["proxies"].items()]
    rows += [[f"supernet accuracy (band +-{BAND:.0%})", *_corr_cells(stats["band"]["supernet"])]]
    rows += [[f"predicted latency (band +-{BAND:.0%})", *_corr_cells(stats["band"]["predicted_ms"])]]
    headers = ["vs stand-alone top-1", "n", "Kendall tau", "95% interval (bootstrap)", "p (tau <= 0)", "Spearman rho"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _corr_cells(c: dict[str, Any]) -> list[str]:
    ci = c.get("kendall_tau_ci95")
    interval = "n/a" if not ci or None in ci else f"{ci[0]:.3f} to {ci[1]:.3f}"
    return [str(c["n"]), fmt(c["kendall_tau"]), interval, fmt(c.get("kendall_p")), fmt(c["spearman_rho"])]


def arch_table(rows: list[dict[str, Any]]) -> str:
    """Every architecture's proxies and accuracies; a zero-cost column where any row has it (n/a where not)."""
    zc = [k for k in ZERO_COST if any(k in r for r in rows)]
    body = [
        [
            r["key"],
            r["group"] + (" (in band)" if r["in_band"] and r["group"] != "band" else ""),
            f"{r['predicted_ms']:.3f}",
            f"{r['flops']:,}",
            f"{r['params']:,}",
            *(fmt(r.get(k), ".2f") for k in zc),
            f"{r['standalone_acc']:.4f}",
            f"{r['supernet_acc']:.4f}",
        ]
        for r in sorted(rows, key=lambda r: r["predicted_ms"])
    ]
    headers = ["architecture (blocks_channels)", "group", "predicted ms", "FLOPs", "params"]
    headers += [PROXY_LABELS[k].removesuffix(" (zero-cost)") for k in zc] + ["stand-alone", "supernet"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def timings(steps: StepTimes, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "steps_s": steps.times,
        "per_arch_train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in rows])),
        "per_arch_train_steps_s_mean": float(np.mean([r["train_steps_s"] for r in rows])),
        "per_path_eval_s_mean": float(np.mean([r["supernet_eval_s"] for r in rows])),
        "per_arch_zero_cost_s_mean": zero_cost_seconds(rows),
    }


def zero_cost_seconds(rows: list[dict[str, Any]]) -> float | None:
    """Mean seconds per architecture for the three zero-cost proxies (their 3 inits), None where not computed."""
    s = [r["zero_cost_s"] for r in rows if r.get("zero_cost_s") is not None]
    return float(np.mean(s)) if s else None


def verdict(stats: dict[str, Any]) -> str:
    """Does the supernet rank better than the best proxy (trivial or zero-cost), and how sure is that?"""
    tau = stats["supernet"]["kendall_tau"]
    best = best_proxy(stats["proxies"])
    ptau = stats["proxies"][best]["kendall_tau"]
    if tau is None or ptau is None:
        return "Kendall tau is undefined here (ties or too few architectures)."
    word = "better" if tau > abs(ptau) else "no better"
    kind = "zero-cost" if best in ZERO_COST else "trivial"
    text = f"The supernet (tau {tau:.3f}) ranks {word} than the best proxy, the {kind} {best} (tau {ptau:.3f}"
    text += f", read reversed: {-ptau:.3f})." if ptau < 0 else ")."
    lead = stats.get("lead_over_best_proxy")
    if lead and None not in lead["ci95"]:
        text += (
            f" On the same bootstrap resamples of the architectures its tau minus the proxy's lies in "
            f"{lead['ci95'][0]:.3f} to {lead['ci95'][1]:.3f} (95%), above zero in {lead['share_above']:.0%} of them."
        )
    zc = [k for k in ZERO_COST if k in stats["proxies"]]
    if zc and best not in ZERO_COST:
        z = best_proxy(stats["proxies"], ZERO_COST)
        text += f" The best zero-cost proxy, {z}, has tau {fmt(stats['proxies'][z]['kendall_tau'])}."
    missing = stats.get("proxies_missing")
    if missing:
        text += f" Not ranked (not computed for every architecture): {', '.join(missing)}."
    return text


def result_stem(args: argparse.Namespace) -> str:
    """The name of the .md/.json/.png results: supernet_ranking, or supernet_ranking_TAG."""
    return "supernet_ranking" + (f"_{args.tag}" if args.tag else "")


def rescore(args: argparse.Namespace, argv: list[str] | None) -> None:
    """Statistics, report and plot of a recorded result, recomputed from its recorded accuracies. The seed-noise
    part is kept as recorded (its second-seed trainings are not in the record's rows); so are the record's command,
    date and machine, the rescoring's own under ``rescored``."""
    try:
        record = json.loads(Path(args.rescore).read_text())
        rows, saved = record["architectures"], record["settings"]["args"]
        for r in rows:
            float(r["standalone_acc"]), float(r["supernet_acc"]), bool(r["in_band"]), list(r["blocks"])
            float(r["flops"]), float(r["params"]), float(r["predicted_ms"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"--rescore {args.rescore}: not a supernet_ranking result ({type(e).__name__}: {e})")
    if len(rows) < 2:
        fail(f"--rescore {args.rescore}: {len(rows)} architecture(s), a ranking needs at least 2")
    rows = with_zero_cost(record, rows, Path(args.out) if args.out else None)  # record["architectures"] as recorded
    stats = ranking_stats(rows)
    if record["stats"].get("seed_noise"):
        stats["seed_noise"] = record["stats"]["seed_noise"]
    old = argparse.Namespace(**saved)
    old.results, old.tag = args.results, saved.get("tag") if args.tag is None else args.tag
    png = Path(old.results) / f"{result_stem(old)}.png"
    scatter_plot(rows, stats, png)
    record |= {"stats": stats, "plot": png.name}
    original = rescoring(STUDY, record, argv)
    write_report(old, record, rows, png, original)


def _selection_text(args: argparse.Namespace, selection: dict[str, Any], n: int) -> str:
    if selection["pool"] == "recorded":
        names = ", ".join(Path(p).name for p in selection["from"])
        return (
            f"{n} architectures of earlier results ({names}), with the stand-alone top-1 recorded there (each "
            "record's own latency table gave its predicted latencies and band)."
        )
    return (
        f"{n} architectures of a pool of {selection['pool']}: {args.archs} stratified over predicted int8 "
        f"latency ({selection['latency_q02_ms']:.3f}-{selection['latency_q98_ms']:.3f} ms), {args.band} within "
        f"+-{BAND:.0%} of the median ({selection['median_ms']:.3f} ms)."
    )


def write_report(
    args: argparse.Namespace, record: dict[str, Any], rows: list[dict[str, Any]], png: Path, prov: Provenance
) -> None:
    """benchmarks/results/supernet_ranking/supernet_ranking[_TAG].md and .json (under OUT/results for --quick)."""
    m, st, s, t = prov.machine, record["stats"], record["settings"], record["timings"]
    zc_s = zero_cost_seconds(rows)
    steps = "\n".join(f"| {k} | {v / 60:.1f} |" for k, v in t["steps_s"].items())
    text = (
        f"# Supernet ranking vs training from scratch (small space, Fashion-MNIST)\n\n"
        f"{prov.date} on {m['cpu']} ({m['usable_cores']} cores){' -- QUICK SMOKE RUN' if args.quick else ''}. "
        f"{_selection_text(args, record['selection'], len(rows))} Stand-alone: {s['recipe']['epochs']} "
        f"epochs on {s['recipe']['train_limit']} images (batch {s['recipe']['batch_size']}, lr {s['recipe']['lr']}, "
        f"warm-up {s['recipe']['warmup_epochs']} epoch, seed {s['recipe']['seed']}); supernet: path top-1 "
        + (
            f"after exact BN on {args.bn_images} training images"
            if args.bn_images
            else "with the running BN statistics"
        )
        + f"; both on the first {s['recipe']['val_limit']} test images. "
        + (
            f"Supernet scores as recorded in {Path(s['supernet']['scores_from']).name}. "
            if "scores_from" in s["supernet"]
            else ""
        )
        + f"Supernet channel choices trained in its last epoch: {s['supernet']['last_epoch_channels']}"
        + (
            f"; trained with {supernet_training_text(s['supernet']['training'])} (other options at their defaults).\n\n"
            if s["supernet"].get("training")
            else ".\n\n"
        )
        + f"{stats_table(st)}\n\nStand-alone top 5 found in the supernet's top 5: {st['top5_overlap']:.0%}. "
        f"{verdict(st)}{noise_text(st)}\n\n{block_table(st['block_counts'])}\n\n"
        f"![supernet vs stand-alone]({png.name})\n\n{arch_table(rows)}\n\n"
        f"| step | minutes |\n|---|---|\n{steps}\n\nPer architecture: {t['per_arch_train_wall_s_mean']:.0f} s "
        f"training from scratch, {t['per_path_eval_s_mean']:.1f} s as a supernet path"
        + (f", {zc_s:.1f} s for the three zero-cost proxies ({len(ZERO_COST_SEEDS)} inits each).\n" if zc_s else ".\n")
    )
    if record.get("rescored"):
        r = record["rescored"]
        text += f"\nStatistics recomputed from the recorded accuracies ({r['date']}):\n\n    {r['command']}\n"
    write_record(STUDY, result_stem(args), record, text, folder=args.results, prov=prov)
    print(text)


def merge_rows(
    archs: list[dict[str, Any]],
    standalone: dict[str, dict[str, Any]],
    supernet: dict[str, dict[str, Any]],
    zero_cost: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    return [
        {
            **a,
            "standalone_acc": standalone[a["key"]]["standalone_acc"],
            "supernet_acc": supernet[a["key"]]["supernet_acc"],
            "train_wall_s": standalone[a["key"]]["wall_seconds"],
            "train_steps_s": standalone[a["key"]]["train_seconds"],
            "supernet_eval_s": supernet[a["key"]]["seconds"],
            **_zero_cost_fields(zero_cost[a["key"]]),
        }
        for a in archs
    ]


def architectures_and_standalone(
    args: argparse.Namespace, recipe: Recipe, out: Path, steps: StepTimes
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """Steps 1-3: the architectures with their stand-alone results and how they were picked (and the table
    record), or taken from earlier records with ``--archs-from``."""
    if args.archs_from:
        archs, standalone, selection = recorded_architectures(args.archs_from, recipe)
        args.archs, args.band = len(archs), sum(a["group"] == "band" for a in archs)
        return archs, standalone, selection, None
    with steps.step("latency table"):
        lut = ensure_table(args.lut, out / TABLE_NAME, args.quick)
        table = load_table(lut)
        table_info = table_record(lut, table)
    with steps.step("architectures"):
        archs, selection = choose_architectures(table, args)
        write_json(out / "architectures.json", {"selection": selection, "architectures": archs})
    with steps.step("stand-alone training"):
        standalone = train_all(archs, recipe, Path(args.subnet_cache), args.ray)
    return archs, standalone, selection, table_info


def supernet_settings(path: Path) -> dict[str, Any]:
    """What a record says of the supernet it ranked: where it was, the channels of its last epoch, its training."""
    return {"path": str(path), "last_epoch_channels": supernet_channels(path), "training": supernet_training(path)}


def supernet_rows(
    args: argparse.Namespace, recipe: Recipe, out: Path, steps: StepTimes, archs: list[dict[str, Any]], standalone: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Steps 4-7: the supernet (trained if missing; or its scores as recorded), every architecture as its path and
    by its zero-cost proxies, and the statistics; first the record's settings of the supernet."""
    if args.supernet_scores:
        with steps.step("supernet evaluation"):
            supernet_acc, supernet, args.bn_images = recorded_supernet_scores(args.supernet_scores, archs)
    elif args.few_shot:
        with steps.step("supernet evaluation"):
            supernet_acc = few_shot_accuracies([Path(d) for d in args.few_shot], archs, recipe, args.bn_images, out)
        supernet = supernet_settings(Path(args.few_shot[0]))
        supernet["few_shot"] = {str(d): flops_region(Path(d)) for d in args.few_shot}
    else:
        with steps.step("supernet"):
            folder = ensure_supernet(Path(args.supernet), args)
        with steps.step("supernet evaluation"):
            supernet_acc = supernet_accuracies(folder, archs, recipe, args.bn_images, out)
        supernet = supernet_settings(folder)
    with steps.step("zero-cost proxies"):
        try:
            zero_cost = zero_cost_proxies(archs, out)
        except BadInputError as e:
            fail(str(e))
    rows = merge_rows(archs, standalone, supernet_acc, zero_cost)
    stats = ranking_stats(rows)
    if args.noise_archs:
        with steps.step("seed-noise training"):
            recorded = recorded_seed_accuracies(args.archs_from, recipe) if args.archs_from else None
            stats["seed_noise"] = seed_noise(
                rows, recipe, Path(args.subnet_cache), args.noise_archs, args.ray, args.noise_seeds, recorded
            )
    return supernet, rows, stats


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    if args.rescore:
        rescore(args, argv)
        return
    check_data()
    check_ray(args)
    out, recipe = Path(args.out), recipe_from_args(args)
    out.mkdir(parents=True, exist_ok=True)
    steps = StepTimes(out)
    archs, standalone, selection, table_info = architectures_and_standalone(args, recipe, out, steps)
    supernet, rows, stats = supernet_rows(args, recipe, out, steps, archs, standalone)
    prov = provenance(STUDY, argv)
    png = Path(args.results) / f"{result_stem(args)}.png"
    scatter_plot(rows, stats, png)
    settings = {
        "args": vars(args),
        "recipe": asdict(recipe) | {"tag": recipe.tag},
        "supernet": supernet,
        "table": table_info,
    }
    record = {
        "settings": settings,
        "selection": selection,
        "architectures": rows,
        "stats": stats,
        "timings": timings(steps, rows),
        "plot": png.name,
    }
    write_report(args, record, rows, png, prov)


if __name__ == "__main__":
    engine.prefer_serial()  # before MXNet loads: the stand-alone trainings run here without --ray
    run_script("supernet_ranking", main)
