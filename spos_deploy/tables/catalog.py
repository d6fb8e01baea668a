"""Where lookup tables live, and how a name finds one.

Two folders hold tables a user can name without a path:

* the per-user folder, where ``spos-lut build`` writes when not given ``-o``: ``$SPOS_TABLES_DIR`` when set,
  else ``$XDG_DATA_HOME/spos-deploy/tables`` (``~/.local/share/spos-deploy/tables`` by the XDG default). A
  build never writes into the folder the user happens to stand in, and never into the installed package;
* the tables shipped with the package (package data in :mod:`spos_deploy.lookup_tables`), read-only.

:func:`resolve_table` is the one place a command turns what the user typed into a file: an existing path
wins, then a table of that name in the user folder (a table built here, for this machine, shadows a
shipped one of the same name), then a shipped table. Pure standard library, so that option parsing can
call it before any framework loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spos_deploy.errors import BadInputError

TABLES_ENV = "SPOS_TABLES_DIR"
"""Environment variable naming the per-user table folder (overrides the XDG location)."""

SUFFIX = ".json"
LEGACY_FOLDER = "lookup_tables"
"""The folder the shipped tables used to be read from (``lookup_tables/NAME.json`` in older docs and
scripts): such a path, when it does not exist, is looked up by its name."""

NOT_TABLES = (".validation.json", ".partial.jsonl")
"""Files beside the tables that are not tables (validation reports, interrupted builds)."""
DECISIONS_PREFIX = "target-auto_"
"""Files beside the tables that keep a ``--target auto`` decision (:mod:`spos_deploy.tables.latency.target`)."""


def user_tables_dir() -> Path:
    """The per-user table folder (it need not exist yet: only a build creates it)."""
    env = os.environ.get(TABLES_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # the XDG spec: a relative value is invalid and must be ignored
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "spos-deploy" / "tables"


def shipped_tables_dir() -> Path:
    """The folder of the tables shipped with the package (inside the installed package: never written to)."""
    return Path(__file__).resolve().parents[1] / "lookup_tables"


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is one of the shipped tables (whose folder belongs to the installation, not the user)."""
    return Path(path).resolve().parent == shipped_tables_dir()


def _name_of(spec: str) -> str | None:
    """The table name ``spec`` stands for (with ``.json``), or None when it is a path with folders.

    ``lookup_tables/NAME.json`` (the old spelling of a shipped table) counts as ``NAME.json``.
    """
    parts = Path(spec).parts
    if len(parts) == 2 and parts[0] == LEGACY_FOLDER:
        parts = parts[1:]
    if len(parts) != 1 or parts[0] in (".", ".."):
        return None
    name = parts[0]
    return name if name.endswith(SUFFIX) else name + SUFFIX


def resolve_table(spec: str | Path) -> Path:
    """The file a table argument means: an existing path, else a table of that name (with or without
    ``.json``) in :func:`user_tables_dir`, else among the shipped tables.

    Anything else is a :class:`BadInputError` (exit 2) that names what was searched, so that a user who
    mistyped a name sees where tables are looked for.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if text and path.exists():
        return path
    name = _name_of(text) if text else None
    if name is None:
        raise BadInputError(
            f"{text or repr(text)}: no such file (a built or shipped table is found by its name alone; "
            "spos-lut list shows them)"
        )
    user, shipped = user_tables_dir(), shipped_tables_dir()
    for folder in (user, shipped):
        if (folder / name).is_file():
            return folder / name
    raise BadInputError(
        f"{text}: no such file, and no table {name} in the user folder {user} (${TABLES_ENV}) nor among the shipped "
        f"tables in {shipped} (spos-lut list shows them)"
    )


def find_table(name: str) -> Path | None:
    """The built (user folder) or else shipped table of this file name, or None: a lookup by name only,
    never in the current folder."""
    for folder in (user_tables_dir(), shipped_tables_dir()):
        if (folder / name).is_file():
            return folder / name
    return None


# ---- listing ---------------------------------------------------------------------------------------------------


@dataclass
class TableEntry:
    """One table file of a folder, as ``spos-lut list`` shows it."""

    name: str
    path: Path
    source: str  # "user" or "shipped"
    kind: str | None = None
    config: str | None = None  # the search-space configuration's short name (SearchSpace.describe)
    setup: str | None = None  # latency tables: runtime, precision, batch, threads and the machine
    error: str | None = None  # the one-line reason a file in the folder is not a readable table
    shadowed: bool = False  # a shipped table hidden by a user table of the same name
    space: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "kind": self.kind,
            "config": self.config,
            "space": self.space or None,
            "setup": self.setup,
            "shadowed": self.shadowed,
            "error": self.error,
        }


def _table_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob("*" + SUFFIX)
        if p.is_file() and not p.name.endswith(NOT_TABLES) and not p.name.startswith(DECISIONS_PREFIX)
    )


def _entry(path: Path, source: str) -> TableEntry:
    from spos_deploy.tables.files import kind_of, load_table
    from spos_deploy.tables.latency.table import LatencyTable

    entry = TableEntry(path.name.removesuffix(SUFFIX), path, source)
    try:
        table = load_table(path)
    except BadInputError as e:
        entry.error = str(e).removeprefix(f"{path}: ")
        return entry
    entry.kind, entry.config, entry.space = kind_of(table), table.space.describe(), table.space.to_config()
    if isinstance(table, LatencyTable):
        fp = table.fingerprint
        entry.setup = (
            f"{runtime_label(fp)} {fp.get('precision')}, batch {fp.get('batch')}, "
            f"{fp.get('threads')} threads, {fp.get('gpu') or fp.get('cpu')}"
        )
    return entry


def runtime_label(fp: dict[str, Any]) -> str:
    """A fingerprint's runtime as users spell it (``onnxruntime on cpu``): its latency runtime's label, or the
    engine alone where the fingerprint names no latency runtime this release knows."""
    from spos_deploy.runtime.registry import RUNTIMES

    rt = RUNTIMES.get(fp.get("runtime_option") or "")
    return rt.label if rt is not None else str(fp.get("runtime"))


def list_tables() -> list[TableEntry]:
    """Every table a name can find: the user folder's first (they take precedence), then the shipped ones."""
    user = [_entry(p, "user") for p in _table_files(user_tables_dir())]
    mine = {e.name for e in user}
    shipped = [_entry(p, "shipped") for p in _table_files(shipped_tables_dir())]
    for e in shipped:
        e.shadowed = e.name in mine
    return user + shipped
