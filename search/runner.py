"""A whole ``spos-search`` job: check every input, search, write the outputs.

Order matters for the contract "bad input: one line, exit 2, nothing half-written": the supernet run, the
tables, the constraints (are they achievable at all?) and the output folder are all checked before data
is loaded, and nothing is written before the first generation has been evaluated.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace

from .constraints import Constraint, metric_functions
from .deployed import Candidate, Form, check_form, close_loop, table_for_form, table_measure
from .driver import SearchConfig, best_key, run_search
from .evaluator import SupernetRun, check_gpus, load_supernet, make_evaluator, prepare_data, resolve_supernet
from .feasible import ConstrainedSampler
from .genes import GeneSpace, parse_key
from .pareto import pareto_front
from .report import candidate_entry, candidates_plot, write_model_files
from .run_folder import check_output_folder, clean_stale, locked_output, read_object, user_files
from .state import ResultCache, SearchState, Store, settings_diff

log = logging.getLogger(__name__)

LABELS = {
    "flops": "--flops-range",
    "params": "--params-range",
    "score": "--score-max",
    "latency_ms": "--latency-max-ms",
}


@dataclass
class SearchJob:
    """Everything ``spos-search`` takes (see :mod:`spos_deploy.search.cli` for the flags)."""

    supernet: str
    out: str
    config: SearchConfig = field(default_factory=SearchConfig)
    space: SearchSpace | None = None  # from the space options; required with a bare .params file
    data: str = "fashion-mnist:train"
    val_data: str = "fashion-mnist:test"
    val_limit: int | None = None
    data_limit: int | None = None
    bn_images: int = 2000
    batch_size: int = 128
    flops_range: tuple[float, float] | None = None
    params_range: tuple[float, float] | None = None
    score_max: float | None = None
    score_bits: int = 32
    lut: str | None = None
    latency_max_ms: float | None = None
    form: Form = field(default_factory=Form)  # the deployed form the latency table must be measured in
    target: str | None = None  # "auto": the form spos-export --target auto ships here, and its table
    auto_runtimes: list[str] | None = None
    auto_rounds: int = 5
    auto_repeats: int = 20
    closed_loop: bool = True  # measure the chosen architecture deployed and re-rank when over budget
    rerank: bool = True
    allow_table_mismatch: bool = False
    reanchor: bool = True  # re-measure the latency table's anchors and scale its predictions (--no-reanchor)
    flops_table: str | None = None
    micronet_table: str | None = None
    workers: int | None = 1  # None with --ray: one actor per CPU of the cluster
    ray: str | None = None  # --ray: "local" (an instance sized to this machine) or the cluster's address
    gpus: list[int] = field(default_factory=list)
    resume: bool = False
    plot: bool | str = True  # True: candidates.png in the output folder; a path: there; False: none
    progress: bool = True
    target_form: Any = field(default=None, init=False)  # what --target auto decided (TargetForm)


def _file_sha1(path: str | None) -> str | None:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest() if path else None


def constraints_as_given(job: SearchJob) -> dict[str, Any]:
    return {
        "flops_range": list(job.flops_range) if job.flops_range else None,
        "params_range": list(job.params_range) if job.params_range else None,
        "score_max": job.score_max,
        "score_bits": job.score_bits,
        "latency_max_ms": job.latency_max_ms,
        "lut": job.lut,
        "form": job.form.describe() or None,
        "target": job.target,
    }


def _bounds(job: SearchJob) -> dict[str, tuple[float, float]]:
    bounds: dict[str, tuple[float, float]] = {}
    for key, rng in (("flops", job.flops_range), ("params", job.params_range)):
        if rng is not None:
            lo, hi = float(rng[0]), float(rng[1])
            if lo > hi:
                raise BadInputError(f"{LABELS[key]}: low {lo:g} is above high {hi:g}")
            bounds[key] = (lo, hi)
    if job.score_max is not None:
        bounds["score"] = (-math.inf, float(job.score_max))
    if job.latency_max_ms is not None:
        if not job.lut and not job.form.given() and job.target is None:
            raise BadInputError(
                "--latency-max-ms needs a latency table: --lut TABLE, --target auto, or the deployed form "
                "(--runtime, --precision)"
            )
        bounds["latency_ms"] = (-math.inf, float(job.latency_max_ms))
    return bounds


def _latency_table(job: SearchJob, space: SearchSpace) -> Any:
    """The --lut table (or, with a latency budget and a deployed form but no --lut, the table of that form,
    found or built here), checked against the search space, the form and (unless allowed) this machine's
    fingerprint."""
    if job.target == "auto":
        job.form = _decide_form(job, space)
    if not job.lut and (job.target == "auto" or (job.latency_max_ms is not None and job.form.given())):
        job.lut = str(table_for_form(space, job.form, job.progress))
    if not job.lut:
        return None
    from spos_deploy.tables.latency.table import LatencyTable
    from spos_deploy.tables.latency.validate import use_table

    check_form(LatencyTable.load(job.lut).fingerprint, job.form, job.lut)  # before re-anchoring measures anything
    hint = "pass --allow-table-mismatch to search for that device anyway"
    table, note, elsewhere = use_table(job.lut, space, job.allow_table_mismatch, job.reanchor, hint)
    (log.warning if elsewhere else log.info)("%s", note)
    if table.predictor == "additive":
        log.warning(
            "%s: the additive predictor only (an older table): small networks' latency is predicted worse; "
            "rebuild it (spos-lut build --kind latency ...) for the fitted one (docs/latency.md)",
            job.lut,
        )
    return table


def _decide_form(job: SearchJob, space: SearchSpace) -> Form:
    """``--target auto``: the runtime and precision ``spos-export --target auto`` ships for this space here
    (:func:`spos_deploy.tables.latency.target.decide_target`), as the form the latency table must have."""
    from spos_deploy.tables.latency.target import decide_target

    if job.form.runtime is not None:
        raise BadInputError(
            "--target auto chooses the runtime (on the cpu): drop --runtime and --device, or narrow with "
            "--auto-runtimes"
        )
    job.target_form = decide_target(
        space, job.form.threads, job.auto_runtimes, job.auto_rounds, job.auto_repeats, job.form.precision
    )
    t = job.target_form
    return Form(t.runtime, t.precision, t.threads, job.form.batch or 1)


def _check_out(job: SearchJob, settings: dict[str, Any]) -> None:
    """Refuse an output that is a file, or a folder holding something else than this search (naming the
    setting that differs when it holds another search); ``--resume`` continues only the same search."""
    out = Path(job.out)
    check_output_folder(out)
    held = user_files(out)
    if not held:
        return
    saved = Store(out, settings).saved_settings()
    if saved is not None:
        diff = settings_diff(saved, settings)
        if diff:
            raise BadInputError(
                f"-o {out}: holds a search with other settings ({'; '.join(diff)}); "
                "choose another output folder (--resume continues only the same search)"
            )
    if not job.resume:
        raise BadInputError(f"-o {out}: exists and is not empty; pass --resume to continue it or choose another")


def evaluation_settings(job: SearchJob) -> dict[str, Any]:
    """The data and sizes that decide a candidate's accuracy."""
    return {
        "data": job.data,
        "val_data": job.val_data,
        "val_limit": job.val_limit,
        "data_limit": job.data_limit,
        "bn_images": job.bn_images,
        "batch_size": job.batch_size,
    }


def job_settings(job: SearchJob, run: SupernetRun) -> dict[str, Any]:
    """What must be equal for --resume: search, evaluation and constraint settings."""
    return {
        **job.config.to_json(),
        "supernet_sha1": run.sha1,
        "space": run.space.to_config(),
        **evaluation_settings(job),
        **constraints_as_given(job),
        "lut": _file_sha1(job.lut),
        "flops_table": _file_sha1(job.flops_table),
        "micronet_table": _file_sha1(job.micronet_table),
    }


@dataclass
class _Checked:
    """A job whose inputs all passed: the supernet (loaded), metrics, sampler and settings."""

    run: SupernetRun
    net: Any
    metrics: dict[str, Any]
    latency: Any  # the latency table, or None
    gs: GeneSpace
    sampler: ConstrainedSampler
    settings: dict[str, Any]


def _check_job(job: SearchJob) -> _Checked:
    """Every input, before anything is written: options, supernet, tables, constraints, output folder."""
    cfg = job.config
    cfg.check()
    if job.workers is not None and job.workers < 1:
        raise BadInputError(f"--workers {job.workers}: must be >= 1")
    if job.ray is not None:
        from spos_deploy.cluster import LOCAL, check_address, require_ray

        require_ray()
        if job.ray != LOCAL:
            check_address(job.ray)  # before the supernet and data load
    if job.auto_runtimes and job.target != "auto":
        raise BadInputError("--auto-runtimes narrows --target auto's candidates: add --target auto")
    check_output_folder(Path(job.out))
    check_gpus(job.gpus)
    run = resolve_supernet(job.supernet, job.space)
    space = run.space
    bounds = _bounds(job)  # the cheap checks first: bounds and tables are refused before the weights load
    latency = _latency_table(job, space)
    net = load_supernet(run)  # the weights must fit the space before any evaluation
    metrics = metric_functions(
        space, job.flops_table, None, job.micronet_table, job.score_bits, latency=latency, with_score=True
    )
    if latency is not None and "latency_ms" in bounds:
        # candidates are filtered on the predicted budget latency (a quantile of fresh sessions), not the median
        bounds["latency_ms"] = (-math.inf, bounds["latency_ms"][1] / latency.budget_ratio)
    gs = GeneSpace.from_space(space)
    sampler = ConstrainedSampler(gs, Constraint(metrics, bounds), LABELS)
    sampler.check_bounds()
    sampler.sample(np.random.default_rng([cfg.seed, 2]), 1)  # can anything meet all constraints together?
    settings = job_settings(job, run)
    _check_out(job, settings)
    return _Checked(run, net, metrics, latency, gs, sampler, settings)


def run_job(
    job: SearchJob,
    on_generation: Callable[[SearchState, ResultCache], None] | None = None,
    on_evaluate: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Check the inputs, search, write the outputs; returns the results.json object.

    The output folder is locked for the whole job: a second search into it is refused while this one runs.
    ``on_evaluate(blocks, channels)`` sees every batch of candidates just before it is evaluated.
    """
    t_start = time.perf_counter()
    checked = _check_job(job)
    with locked_output(Path(job.out), "spos-search"):
        store = Store(Path(job.out), checked.settings)
        if job.resume:
            clean_stale(Path(job.out))  # staging files of a killed run
        loaded = store.load() if job.resume else None  # refuses other settings before the expensive part
        if loaded is not None and loaded[0].done:
            log.info("%s: search already finished; writing its outputs again", job.out)
            return finish(job, checked, *loaded, time.perf_counter() - t_start)
        state, cache = _search(job, checked, store, on_generation, on_evaluate)
        return finish(job, checked, state, cache, time.perf_counter() - t_start)


def _search(
    job: SearchJob,
    checked: _Checked,
    store: Store,
    on_generation: Callable[[SearchState, ResultCache], None] | None,
    on_evaluate: Callable[[np.ndarray, np.ndarray], None] | None,
) -> tuple[SearchState, ResultCache]:
    """Load the evaluation data, start the evaluators and run the generation loop."""
    cfg, run, sampler, gs = job.config, checked.run, checked.sampler, checked.gs
    space = run.space
    data = prepare_data(space, job.data, job.val_data, job.bn_images, job.batch_size, job.val_limit, job.data_limit)
    evaluator = make_evaluator(run, data, job.batch_size, job.workers, job.gpus, net=checked.net, ray=job.ray)
    if job.ray is not None:
        job.workers = len(evaluator.actors)  # what the cluster gave, for the record
    log.info(
        "evaluation: %d BN batches of %d, %d validation images; %d worker(s)",
        len(data.bn),
        job.batch_size,
        len(data.val_labels),
        job.workers,
    )
    checked.net = None

    def evaluate_keys(keys: list[str]):
        if not keys:
            return iter(())
        blocks = np.array([parse_key(k)[0] for k in keys])
        channels = np.array([parse_key(k)[1] for k in keys])
        if not sampler.inside(blocks, channels).all():  # the strategies never produce one; this keeps it so
            raise RuntimeError("a candidate outside the constraints reached evaluation")
        if on_evaluate is not None:
            on_evaluate(blocks, channels)
        return evaluator.evaluate(blocks, channels)

    if cfg.method == "evolution":
        from .evolution import Evolution

        strategy = Evolution(gs, sampler, cfg.population, cfg.n_parents, cfg.mutation, cfg.p_channel, cfg.n_crossover)
    else:
        from .random_search import RandomSearch

        strategy = RandomSearch(sampler, cfg.population)
    try:
        return run_search(
            cfg,
            strategy,
            gs,
            sampler,
            space.channel_scales,
            evaluate_keys,
            store=store,
            resume=job.resume,
            on_generation=on_generation,
            progress=job.progress,
        )
    finally:
        evaluator.close()


def finish(job: SearchJob, checked: _Checked, state: SearchState, cache: ResultCache, seconds: float) -> dict[str, Any]:
    """Pareto front, best architecture (measured deployed under a latency budget) and every output file."""
    out = Path(job.out)
    run, metrics = checked.run, checked.metrics
    space = run.space
    keys = cache.keys()
    if not keys:
        raise BadInputError("nothing was evaluated (is --budget 0?)")
    blocks = np.array([parse_key(k)[0] for k in keys])
    channels = np.array([parse_key(k)[1] for k in keys])
    names = ["flops", "params", "score"] + (["latency_ms"] if "latency_ms" in metrics else [])
    values = {n: np.asarray(metrics[n](blocks, channels), float) for n in names}
    acc = np.array([cache.entries[k].accuracy for k in keys])
    cost_name = "latency_ms" if "latency_ms" in values else "flops"
    front = pareto_front(acc, values[cost_name])

    def entry(i: int, name: str) -> dict[str, Any]:
        return candidate_entry(space, keys[i], acc[i], {n: v[i] for n, v in values.items()}, name)

    best_i = keys.index(best_key(cache))
    deployed = None
    if job.closed_loop and checked.latency is not None and job.latency_max_ms is not None:
        deployed = _close_loop(job, checked.latency, keys, acc, values["latency_ms"], best_i)
        best_i = keys.index(deployed["chosen"])
    best = entry(best_i, "search-best")
    if deployed is not None:
        best["measured_latency_ms"] = deployed["measured_ms"]
        best["measured_budget_latency_ms"] = deployed["measured_budget_ms"]
    pareto = [entry(int(i), f"pareto-{k}") for k, i in enumerate(front)]
    files = write_model_files(out, best, pareto)
    if job.plot:
        files["plot"] = _plot(job, space, acc, values[cost_name], front, cost_name)
    evaluations = sum(h["evaluated"] for h in state.history)
    eval_seconds = sum(h["seconds"] for h in state.history)
    results: dict[str, Any] = {
        "method": job.config.method,
        "mode": job.config.mode,
        "seed": job.config.seed,
        "best": best,
        "pareto": pareto,
        "pareto_cost": cost_name,
        "evaluated": len(cache),
        "generations": state.generation,
        "constraints": constraints_as_given(job),
        "settings": job.config.to_json(),
        "supernet": {"path": str(run.params), "sha1": run.sha1, "config": space.to_config()},
        "evaluation": evaluation_settings(job),
        "history": state.history,
        "timing": {
            "seconds": state.seconds if state.seconds else seconds,
            "this_session_seconds": seconds,
            "seconds_per_evaluation": eval_seconds / evaluations if evaluations else None,
            "workers": job.workers,
        },
        "files": files,
    }
    if deployed is not None:
        results["deployed"] = deployed
    if job.target_form is not None:
        results["target"] = {**job.target_form.as_dict(), "ship": ship_commands(job)}
    if job.lut:
        from spos_deploy.tables.latency.table import LatencyTable

        results["latency_table"] = {
            "path": job.lut,
            "fingerprint": LatencyTable.load(job.lut).fingerprint,
            # the machine's speed against the table when this search ran (its anchors re-measured; 1: as built),
            # so a later measurement of the shipped file can tell a changed machine from a wrong prediction
            "speed_factor": checked.latency.speed_factor if checked.latency is not None else None,
        }
    write_json(out / "results.json", results)
    return results


def ship_commands(job: SearchJob) -> dict[str, str]:
    """How to export and benchmark the chosen architecture in the form the search's table measured (its
    weights: ``spos-train subnet`` on best.json, or the supernet's with ``--random-init`` for a speed check)."""
    from spos_deploy.deploy.auto import SHIPPED_FILE

    t = job.target_form
    best = Path(job.out) / "best.json"
    shipped = SHIPPED_FILE[t.auto_runtime][t.precision == "int8"]
    return {
        "export": f"spos-export {best} --params MODEL.params {' '.join(t.export_flags())} -o DEPLOY",
        "bench": f"spos-bench DEPLOY/{shipped} {' '.join(t.bench_flags())}",
    }


def _close_loop(
    job: SearchJob, table: Any, keys: list[str], acc: np.ndarray, predicted: np.ndarray, best_i: int
) -> dict[str, Any]:
    """:func:`search.deployed.close_loop` over the evaluated candidates, the search's best first, then by accuracy."""
    order = [best_i] + [int(i) for i in np.argsort(-acc, kind="stable") if i != best_i]
    ranked = []
    for i in order:
        blocks, channels = parse_key(keys[i])
        ranked.append(
            Candidate(keys[i], [int(b) for b in blocks], [int(c) for c in channels], float(acc[i]), float(predicted[i]))
        )
    return close_loop(ranked, float(job.latency_max_ms), table_measure(table), rerank=job.rerank)


def _plot(job: SearchJob, space: SearchSpace, acc: np.ndarray, cost: np.ndarray, front, cost_name: str) -> str:
    """Draw the candidates (``--plot PNG``, default ``candidates.png`` in the output folder)."""
    path = Path(job.out) / "candidates.png" if job.plot is True else Path(str(job.plot))
    budget_line = job.latency_max_ms if cost_name == "latency_ms" else (job.flops_range or (None, None))[1]
    title = f"{job.config.method} search, {len(acc)} candidates ({space.describe()})"
    candidates_plot(path, acc, cost, front, cost_name, budget_line, title)
    return "candidates.png" if job.plot is True else str(path)


def load_results(out: str | Path) -> dict[str, Any]:
    return read_object(Path(out) / "results.json", "search results", ("best", "pareto"))
