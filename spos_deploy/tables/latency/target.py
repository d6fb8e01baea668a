"""``--target auto`` for latency tables: the deployed form that ships for a search space on this machine.

``spos-export --target auto`` times every deployed form of the network it exports and ships the fastest
verified one. A search has no network yet, and its latency table must be measured in the form that will ship,
so the same decision is made once per (space, threads, machine) on a reference network of the space
(:func:`reference_spec`), among the forms a latency table is measured in (:data:`TABLE_FORMS`, what
:func:`spos_deploy.deploy.timing_forms.export_deployed` writes). The decision is kept in the per-user table
folder beside the tables it selects, so a second search, a resumed one and ``spos-lut build --target auto``
all use the same form and so the same table. Delete the file (its path is logged and recorded) to decide
again, for instance after installing OpenVINO.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.registry import engine_named, runtime_for, runtime_named
from spos_deploy.space import SearchSpace

log = logging.getLogger(__name__)

TABLE_FORMS: dict[str, dict[str, str]] = {
    "onnxruntime": {"shuffle": "reshape", "hswish": "mul", "scales": "per-channel", "layout": "qdq"},
    "openvino": {"shuffle": "reshape", "hswish": "op", "batch": "static"},
}
"""The graph forms of each runtime's latency tables: only these candidates of ``--target auto`` can have a
table, so only these compete when the target is decided for a search. ``--target auto``'s runtime names are
engines; a table names the runtime on the CPU (:func:`spos_deploy.runtime.registry.runtime_for`)."""

DECISION_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TargetForm:
    """What ``--target auto`` decided: the table's runtime and precision, and how to export exactly that form."""

    runtime: str  # the latency runtime's name (data, as tables name it): ort-cpu or openvino-cpu
    precision: str
    threads: int
    auto_runtime: str  # an engine: onnxruntime or openvino
    path: Path  # the decision file
    section: dict[str, Any]  # the auto section of the decision (every candidate and its times)

    @classmethod
    def of(cls, forms: dict[str, Any], threads: int, path: Path, section: dict[str, Any]) -> TargetForm:
        """The target of a winner's forms (its engine's table runtime on the CPU)."""
        engine = forms["runtime"]
        return cls(runtime_for(engine).name, forms["precision"], threads, engine, path, section)

    @property
    def label(self) -> str:
        """How messages name its runtime (``onnxruntime on cpu``)."""
        return runtime_named(self.runtime).label

    def export_flags(self) -> list[str]:
        """``spos-export`` flags that write the form the table measures (int8 with no conv kept in float, as
        the table's networks are quantized; ``--keep-float`` trades that latency for accuracy)."""
        engine = engine_named(self.auto_runtime)
        flags = ["--format", engine.export_format]
        if self.precision == "int8":
            flags += ["--int8"] + (["--keep-float", "0"] if engine.keeps_float else [])
        if TABLE_FORMS[engine.name].get("batch") == "static":
            flags += ["--static-batch", "1"]
        return flags

    def bench_flags(self) -> list[str]:
        """``spos-bench`` flags that run the exported file as the table measured it (an engine that takes the
        precision when compiling is told it)."""
        flags = ["--threads", str(self.threads)]
        engine = engine_named(self.auto_runtime)
        if engine.precision_at_compile:
            flags += ["--runtime", engine.name, "--precision", self.precision]
        return flags

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "threads": self.threads,
            "decision": str(self.path),
            "winner": self.section.get("winner"),
            "why": self.section.get("why"),
            "threads_why": (self.section.get("threads") or {}).get("why", "as asked"),
            "export_flags": self.export_flags(),
            "bench_flags": self.bench_flags(),
        }


def reference_spec(space: SearchSpace) -> ModelSpec:
    """The network the form is decided on: the first block choice at the middle channel choice everywhere,
    a network of the middle of the space (the forms' order rarely changes across a space, and where it
    does the closed loop of the search measures the chosen architecture in the form decided here)."""
    from spos_deploy.tables.build_common import uniform_spec

    order = sorted(range(space.num_scales), key=lambda c: space.channel_scales[c])
    spec, _ = uniform_spec(space, 0, order[len(order) // 2], name="target-reference")
    return spec


def table_forms(space: SearchSpace) -> dict[str, dict[str, str]]:
    """:data:`TABLE_FORMS` for ``space``: without hard-swish (no SE) OpenVINO's op form is the mul graph, and
    ``--target auto`` builds that one under the name mul."""
    forms = {r: dict(f) for r, f in TABLE_FORMS.items()}
    if not space.use_se:
        forms["openvino"]["hswish"] = "mul"
    return forms


def table_auto_space(space: SearchSpace, runtimes: Sequence[str] | None = None, precision: str | None = None) -> Any:
    """The ``--target auto`` candidates a latency table can be measured in (``runtimes``: narrowed by
    ``--auto-runtimes``, ``precision`` by ``--precision``); the hard-swish axis still pairs each runtime with
    every form listed, so :func:`is_table_form` keeps the right pairs."""
    from spos_deploy.deploy.auto import AUTO_PRECISIONS, AutoSpace

    forms = table_forms(space)
    keep = tuple(r for r in forms if not runtimes or r in runtimes)
    return AutoSpace(
        runtimes=keep,
        precisions=(precision,) if precision else AUTO_PRECISIONS,
        shuffles=("reshape",),
        hswish=tuple(dict.fromkeys(forms[r]["hswish"] for r in keep)),
        scales=("per-channel",),
        layouts=("qdq",),
        batches=("static",),
    )


def is_table_form(space: SearchSpace, forms: dict[str, Any]) -> bool:
    """Whether an auto candidate's forms are those of its runtime's latency tables."""
    want = table_forms(space)[forms["runtime"]]
    return all(forms.get(k) in (None, v) for k, v in want.items())  # None: an axis of other precisions


def decision_path(
    space: SearchSpace, threads: int | None, runtimes: Sequence[str] | None = None, precision: str | None = None
) -> Path:
    """Where the decision is kept: one file per space, threads asked (``tauto``: decided too), machine and
    narrowing of the candidates."""
    from spos_deploy.tables.catalog import DECISIONS_PREFIX, user_tables_dir
    from spos_deploy.tables.latency.build import host_tag

    narrowed = "".join(f"_{r}" for r in sorted(set(runtimes or ()))) + (f"_{precision}" if precision else "")
    t = "auto" if threads is None else threads
    return user_tables_dir() / f"{DECISIONS_PREFIX}{space.describe()}_t{t}{narrowed}_{host_tag('cpu')}.json"


def _from_file(path: Path, space: SearchSpace, asked: int | None) -> TargetForm | None:
    try:
        d = json.loads(path.read_text())
        ok = d.get("version") == DECISION_VERSION and d["space"] == space.to_config() and d["asked_threads"] == asked
        if not ok:
            return None
        return TargetForm.of(d["section"]["winner_forms"], int(d["threads"]), path, d["section"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable --target auto decision; deciding again", path)
        return None


def thread_networks(space: SearchSpace) -> list[ModelSpec]:
    """The networks the threads are decided on: the reference, and the narrowest and widest uniform networks
    (small networks are where one thread can win)."""
    from spos_deploy.tables.build_common import uniform_spec

    order = sorted(range(space.num_scales), key=lambda c: space.channel_scales[c])
    narrow, _ = uniform_spec(space, 0, order[0], name="threads-narrowest")
    wide, _ = uniform_spec(space, space.num_blocks - 1, order[-1], name="threads-widest")
    return [reference_spec(space), narrow, wide]


def decide_threads(space: SearchSpace, forms: dict[str, Any], counts: Sequence[int]) -> dict[str, Any]:
    """:func:`spos_deploy.runtime.deployed.decide_threads` on :func:`thread_networks` in the decided form."""
    import tempfile

    from spos_deploy.deploy.timing_forms import export_deployed
    from spos_deploy.runtime import deployed
    from spos_deploy.tables.latency.build import LatencySetup, network_shape

    runtime, precision = runtime_for(forms["runtime"]).name, forms["precision"]
    specs = thread_networks(space)
    shape = network_shape(space, LatencySetup(runtime=runtime, precision=precision))
    with tempfile.TemporaryDirectory(prefix="spos-threads-") as tmp:
        paths = [export_deployed(s, Path(tmp), precision, 0, runtime) for s in specs]

        def makers_at(threads: int) -> list[Any]:
            setup = LatencySetup(runtime=runtime, precision=precision, threads=threads)
            return [lambda p=p: setup.runner(p, shape) for p in paths]

        return {"networks": [s.name for s in specs], **deployed.decide_threads(makers_at, counts)}


def decide_target(
    space: SearchSpace,
    threads: int | None = None,
    runtimes: Sequence[str] | None = None,
    rounds: int = 5,
    repeats: int = 20,
    precision: str | None = None,
) -> TargetForm:
    """The form ``--target auto`` ships for ``space`` here: the kept decision, or decided now (a minute:
    the reference network built, checked and timed in every table form at ``threads``, default every core)
    and kept. Without ``threads`` the thread count is decided too (:func:`decide_threads`): one thread
    against every core, in the winning form, by the deployed-latency definition."""
    from spos_deploy.deploy import auto
    from spos_deploy.deploy.pipeline import ExportOptions
    from spos_deploy.deploy.quantize import OrtQuantConfig
    from spos_deploy.machine import cpu_info

    asked = threads
    cores = int(cpu_info()["usable_cores"] or 1)
    threads = threads or cores
    path = decision_path(space, asked, runtimes, precision)
    if path.exists():
        kept = _from_file(path, space, asked)
        if kept is not None:
            log.info("--target auto: %s %s (decided %s; delete it to decide again)", kept.label, kept.precision, path)
            return kept
    log.info("--target auto: timing the deployed forms of a reference network of the space (about a minute)")
    opts = ExportOptions(random_init=True, bench=False, ort_quant=OrtQuantConfig(keep_float=0))  # as tables quantize
    options = auto.AutoOptions(
        table_auto_space(space, runtimes, precision),
        rounds,
        repeats,
        threads,
        keep=lambda c: is_table_form(space, c.forms()),
    )
    section = auto.search(reference_spec(space), opts, options)
    if section["winner"] is None:
        raise BadInputError(
            "--target auto: no deployed form passed its checks here: "
            + "; ".join(f"{c['candidate']}: {c['reason']}" for c in section["candidates"][:3])
        )
    if asked is None and cores > 1:  # threads are part of the form: one may be faster or steadier
        section["threads"] = decide_threads(space, section["winner_forms"], [1, cores])
        threads = section["threads"]["chosen"]
        log.info("--target auto: %d thread(s) (%s)", threads, section["threads"]["why"])
    write_json(
        path,
        {
            "version": DECISION_VERSION,
            "decided": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "space": space.to_config(),
            "asked_threads": asked,
            "threads": threads,
            "section": section,
        },
    )
    target = TargetForm.of(section["winner_forms"], threads, path, section)
    log.info(
        "--target auto: %s %s on this machine (%s); kept in %s", target.label, target.precision, section["why"], path
    )
    return target


def setup_for(target: TargetForm, batch: int = 1) -> Any:
    """The :class:`~spos_deploy.tables.latency.build.LatencySetup` of the decided form."""
    from spos_deploy.tables.latency.build import LatencySetup

    return LatencySetup(runtime=target.runtime, precision=target.precision, threads=target.threads, batch=batch)
