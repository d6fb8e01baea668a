"""Table files of any kind: read one by its ``kind``, show it, validate it (the library side of ``spos-lut``).

FLOPs/params and MicroNet tables are checked against graph counts (exact); latency tables against whole
networks measured end to end on this machine. Reading stays pure numpy; validating imports the framework
only for the kind asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spos_deploy.tables.catalog import resolve_table
from spos_deploy.tables.core import read_table
from spos_deploy.tables.flops.table import FlopsTable
from spos_deploy.tables.latency.table import LatencyTable
from spos_deploy.tables.micronet.table import MicroNetTable

Table = FlopsTable | MicroNetTable | LatencyTable
CLASSES: dict[str, type] = {"flops": FlopsTable, "micronet": MicroNetTable, "latency": LatencyTable}


def load_table(path: str | Path) -> Table:
    """The table in ``path`` (a file, or the name of a built or shipped table:
    :func:`~spos_deploy.tables.catalog.resolve_table`), whatever its kind (a one-line error naming the file
    and the problem)."""
    path = resolve_table(path)
    d = read_table(path)
    return CLASSES[d["kind"]].from_json(d, str(path))


def kind_of(table: Table) -> str:
    return next(k for k, cls in CLASSES.items() if isinstance(table, cls))


def validate_any(
    table: Table,
    samples: int,
    seed: int = 0,
    progress: bool = True,
    rounds: int = 5,
    allow_mismatch: bool = False,
    source: str = "table",
) -> dict[str, Any]:
    """Validate a table of any kind; the result has the contract keys of ``spos-lut validate --json``."""
    if isinstance(table, FlopsTable):
        from spos_deploy.tables.flops.validate import validate_flops_table

        return validate_flops_table(table, samples, seed, progress)
    if isinstance(table, MicroNetTable):
        from spos_deploy.tables.micronet.validate import validate_micronet_table

        return validate_micronet_table(table, samples, seed, progress)
    from spos_deploy.tables.latency.validate import validate_table

    stats = validate_table(table, samples, seed, allow_mismatch, progress, rounds, source)
    return {"kind": "latency", "fingerprint": table.fingerprint, **stats}
