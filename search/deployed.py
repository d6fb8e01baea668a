"""A latency budget held on the deployed network: the table of the shipping form, and the closed loop.

A search under ``--latency-max-ms`` filters candidates by a table's predictions, which are cheap but only
predictions. Two things make what the user gets meet the budget when deployed:

* **the table is for the form that ships**: runtime, precision, threads and batch of the table must be
  those of the export (:func:`check_form`); without ``--lut`` the table of that form is found by its
  default name, or built here with a progress bar (:func:`table_for_form`);
* **the closed loop** (:func:`close_loop`): the chosen architecture is exported in that form and measured
  here (:mod:`spos_deploy.runtime.deployed`: fresh sessions, the budget checked on the budget quantile of
  their medians). When it is over the budget, the most accurate candidates are measured side by side and
  the most accurate one that meets the budget measured is handed over instead.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spos_deploy.errors import BadInputError
from spos_deploy.runtime.deployed import BUDGET_QUANTILE, DeployedLatency
from spos_deploy.runtime.registry import DEFAULT_RUNTIME, RUNTIMES
from spos_deploy.space import SearchSpace

log = logging.getLogger(__name__)

RERANK_CANDIDATES = 8
"""How many of the most accurate candidates the closed loop measures when the first choice is over budget."""


@dataclass(frozen=True)
class Form:
    """The deployed form a search targets: what its latency table must have been measured with (None: any)."""

    runtime: str | None = None  # a latency runtime's name, as fingerprints record it (runtime_option): ort-cpu
    precision: str | None = None
    threads: int | None = None
    batch: int | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.runtime, self.precision, self.threads, self.batch))

    def describe(self) -> str:
        """The form as results.json and the ``--resume`` check record it (the runtime by its name, as tables do:
        a search started before the runtime's spelling changed still resumes)."""
        return ", ".join(
            f"{k} {v}"
            for k, v in (
                ("runtime", self.runtime),
                ("precision", self.precision),
                ("threads", self.threads),
                ("batch", self.batch),
            )
            if v is not None
        )


def table_form(fingerprint: dict[str, Any]) -> Form:
    """The form a latency table was measured in, from its fingerprint."""
    return Form(
        fingerprint.get("runtime_option"),
        fingerprint.get("precision"),
        fingerprint.get("threads"),
        fingerprint.get("batch"),
    )


def check_form(fingerprint: dict[str, Any], form: Form, source: str) -> None:
    """Refuse, in one line, a table measured for another form than the one the search targets."""
    have = table_form(fingerprint)
    diff = [
        f"{k} {_shown(k, getattr(have, k))} (targeted: {_shown(k, getattr(form, k))})"
        for k in ("runtime", "precision", "threads", "batch")
        if getattr(form, k) is not None and getattr(have, k) != getattr(form, k)
    ]
    if diff:
        raise BadInputError(
            f"{source}: latency table for another deployed form ({'; '.join(diff)}); use the table of the form "
            "that ships, or build it: spos-lut build --kind latency --runtime R --device D --precision P --threads T "
            "--batch B"
        )


def _shown(key: str, value: Any) -> Any:
    """A form's field as messages show it: a runtime as users spell it (``onnxruntime on cpu``)."""
    return RUNTIMES[value].label if key == "runtime" and value in RUNTIMES else value


def table_for_form(space: SearchSpace, form: Form, progress: bool = True) -> Path:
    """The latency table of ``form`` for ``space`` on this machine: found by its default name (user folder,
    then shipped), else built into the user folder (minutes; checkpointed, so an interrupted build resumes)."""
    from spos_deploy.tables.catalog import find_table, user_tables_dir
    from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, default_latency_name

    setup = LatencySetup(
        runtime=form.runtime or DEFAULT_RUNTIME,
        precision=form.precision or "fp32",
        threads=form.threads,
        batch=form.batch or 1,
    )
    setup.check()
    name = default_latency_name(space, setup)
    found = find_table(name)
    if found is not None:
        return found
    out = user_tables_dir() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("no latency table for %s %s here: building %s", setup.runtime_record.label, setup.precision, out)
    partial = out.with_name(out.name + ".partial.jsonl")
    build_latency_table(space, setup, out, resume=partial.exists(), progress=progress)
    return out


# ---- the closed loop ---------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """An evaluated architecture the closed loop may hand over."""

    key: str
    blocks: list[int]
    channels: list[int]
    accuracy: float
    predicted_ms: float


Measure = Callable[[Sequence[Candidate]], list[DeployedLatency]]


def close_loop(
    ranked: Sequence[Candidate], budget_ms: float, measure: Measure, rerank: bool = True, top: int = RERANK_CANDIDATES
) -> dict[str, Any]:
    """Measure the first of ``ranked`` (most accurate first); when over ``budget_ms`` and ``rerank``, measure
    the ``top`` most accurate side by side and choose the most accurate one within the budget measured.

    Returns the record ``results.json`` keeps under ``deployed``: the chosen key, its predicted and measured
    latency, whether the budget is met, and every candidate measured.
    """
    if not ranked:
        raise ValueError("close_loop needs at least one candidate")
    first = ranked[0]
    lat = measure([first])[0]
    measured = {first.key: lat}
    chosen = first
    if lat.budget_ms > budget_ms:
        log.warning(
            "the chosen architecture measures %.4f ms (%d %% of fresh sessions within) against the budget %.4f ms "
            "(predicted %.4f ms)",
            lat.budget_ms,
            round(BUDGET_QUANTILE * 100),
            budget_ms,
            first.predicted_ms,
        )
        if rerank and len(ranked) > 1:
            pool = list(ranked[:top])
            for c, m in zip(pool, measure(pool)):
                measured[c.key] = m  # measured again side by side, the first choice too: one machine state
            within = [c for c in pool if measured[c.key].budget_ms <= budget_ms]
            if within:
                chosen = within[0]
                log.info("closed loop: handing over %s instead (measured %.4f ms)", chosen.key, measured[chosen.key].ms)
    met = measured[chosen.key].budget_ms <= budget_ms
    if not met:
        log.warning(
            "no candidate measured within the budget %.4f ms: the most accurate is handed over as chosen; "
            "raise the budget or search with a table measured now",
            budget_ms,
        )
    by_key = {c.key: c for c in ranked}
    return {
        "budget_ms": budget_ms,
        "budget_quantile": BUDGET_QUANTILE,
        "chosen": chosen.key,
        "reranked": chosen.key != first.key,
        "met": bool(met),
        "predicted_ms": chosen.predicted_ms,
        "measured_ms": measured[chosen.key].ms,
        "measured_budget_ms": measured[chosen.key].budget_ms,
        "prediction_error_pct": 100 * (chosen.predicted_ms - measured[chosen.key].ms) / measured[chosen.key].ms,
        "measured": [
            {"key": k, "accuracy": by_key[k].accuracy, "predicted_ms": by_key[k].predicted_ms, **m.as_dict()}
            for k, m in measured.items()
        ],
    }


def table_measure(table: Any, progress: bool = False) -> Measure:
    """A :data:`Measure` for ``close_loop``: candidates exported in ``table``'s deployed form (random weights:
    latency does not depend on their values) and measured with its settings here."""
    from spos_deploy.tables.latency.build import measure_deployed_specs
    from spos_deploy.tables.latency.validate import setup_of, specs_of

    setup = setup_of(table)
    if not setup.onnx_runtime:
        raise BadInputError("the closed loop measures onnxruntime and OpenVINO forms; MXNet tables: --no-closed-loop")

    def measure(cands: Sequence[Candidate]) -> list[DeployedLatency]:
        specs = specs_of(table, [c.blocks for c in cands], [c.channels for c in cands], "candidate")
        with tempfile.TemporaryDirectory() as tmp:
            return measure_deployed_specs(specs, setup, Path(tmp))

    return measure
