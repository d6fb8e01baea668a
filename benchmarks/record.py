"""Every benchmark record is written here, the same way: ``benchmarks/results/<study>/<name>.json`` and ``.md``.

Each record carries the exact command that produced it (``python -m benchmarks.<study>`` and its arguments), the
date in UTC, the machine (:func:`spos_deploy.machine.machine_record`: CPU model, flags, cores, library versions)
and, where the study timed something, the load of the machine during the run (:mod:`spos_deploy.runtime.load`).
Both files are written atomically: a killed run leaves the previous record, never half of one.
"""

from __future__ import annotations

import datetime
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spos_deploy.atomic import write_json, write_text
from spos_deploy.machine import machine_record
from spos_deploy.runtime.load import LoadRecord, summary_line

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROVENANCE_KEYS = ("date", "machine", "command")


def results_dir(study: str) -> Path:
    """The folder of one study's records (every variant of it): ``benchmarks/results/<study>/``."""
    return RESULTS / study


def command_line(study: str, argv: Sequence[str] | None = None) -> str:
    """``python -m benchmarks.<study>`` with this process's arguments, or ``argv`` when a caller passed its own
    to the study's ``main``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", f"benchmarks.{study}", *args])


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Provenance:
    """Where a record comes from: its command, its UTC date and the machine."""

    command: str
    date: str
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``<date> on <CPU> (<N> cores)``, the opening of a record's text."""
        m = self.machine
        return f"{self.date} on {m.get('cpu', '?')} ({m.get('usable_cores', '?')} cores)"


def provenance(study: str, argv: Sequence[str] | None = None) -> Provenance:
    """This run's provenance, taken now: build the record's text with it and hand it to :func:`write_record`."""
    return Provenance(command_line(study, argv), utc_now(), machine_record())


def rescoring(study: str, record: dict[str, Any], argv: Sequence[str] | None = None) -> Provenance:
    """A recorded result being recomputed from what it recorded: this run's date and command go into
    ``record["rescored"]``; returned is the original run's provenance, which the rewritten record keeps."""
    now = provenance(study, argv)
    record["rescored"] = {"date": now.date, "command": now.command}
    return Provenance(record.get("command"), record.get("date"), record.get("machine", {}))


def load_dict(load: LoadRecord | dict[str, Any] | None) -> dict[str, Any] | None:
    """A load record as JSON, with its warning (``None`` on a quiet machine)."""
    if load is None or isinstance(load, dict):
        return load
    return {**load.as_dict(), "warning": load.warning()}


def footer(prov: Provenance, text: str, load: dict[str, Any] | None) -> str:
    """What every Markdown record ends with: the date and machine (unless the text already gives them), the
    load during the run (where measured) and the command."""
    out = ""
    if prov.date not in text:
        out += f"\nRecorded {prov.where}.\n"
    if load is not None:
        warning = f" -- WARNING: {load['warning']}" if load.get("warning") else ""
        out += f"\nMachine during the run: {summary_line(load)}{warning}.\n"
    return out + f"\nCommand (from the repository root):\n\n    {prov.command}\n"


def write_record(
    study: str,
    name: str,
    result: dict[str, Any],
    markdown: str,
    argv: Sequence[str] | None = None,
    *,
    folder: str | Path | None = None,
    prov: Provenance | None = None,
    load: LoadRecord | dict[str, Any] | None = None,
) -> Path:
    """Write ``<folder>/<name>.json`` (``result`` with ``date``, ``machine``, ``command`` and, if given, ``load``)
    and ``<name>.md`` (``markdown`` and :func:`footer`); returns the Markdown file's path.

    ``folder``: default ``benchmarks/results/<study>/``. ``prov``: the provenance the text was built with
    (:func:`provenance`; taken now if not given; a rescored record passes its original run's).
    """
    prov = prov or provenance(study, argv)
    out = Path(folder) if folder is not None else results_dir(study)
    load_d = load_dict(load)
    record = {"date": prov.date, "machine": prov.machine, "command": prov.command}
    record |= {k: v for k, v in result.items() if k not in PROVENANCE_KEYS}
    if load_d is not None:
        record["load"] = load_d
    text = markdown.rstrip("\n") + "\n"
    write_json(out / f"{name}.json", record)
    write_text(out / f"{name}.md", text + footer(prov, text, load_d))
    return out / f"{name}.md"
