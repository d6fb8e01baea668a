"""Run folders of ``spos-train`` and ``spos-search``: validated JSON files, the output lock, clean failures.

* :func:`read_object`: a run folder's JSON file as an object, with one-line errors naming the file (and
  the field) for every way it can be wrong: missing, not JSON, ``[]`` instead of an object, a field of the
  wrong type.
* :func:`space_from_config`: a saved search-space configuration validated exactly like a model.json
  (:func:`spos_deploy.model_spec.spec_from_dict`), so ``"layout": "Bogus"`` is reported as that field.
* :func:`locked_output`: :func:`spos_deploy.atomic.output_lock` for a whole job; a folder the job created
  and left without output (it failed) is removed again, so bad input never leaves an empty folder behind.
* :func:`user_files`: what a folder holds besides the lock and the staging leftovers of killed runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spos_deploy.atomic import LOCK_NAME, STAGING_TAG, output_lock, read_json, remove_stale_staging
from spos_deploy.errors import BadInputError
from spos_deploy.space import DEFAULT_REPEATS, SearchSpace


def read_object(path: str | os.PathLike[str], what: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON object in ``path``; anything else (or a missing ``required`` field) is a one-line error."""
    d = read_json(path, what)
    if not isinstance(d, dict):
        raise BadInputError(f"{path}: expected a JSON object ({what}), got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    if missing:
        raise BadInputError(f"{path}: field '{missing[0]}' is missing (not a complete {what})")
    return d


def expect_type(path: str | os.PathLike[str], d: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    """``d[field]`` when it has type ``kind`` (bool is not an int here), else a one-line error naming it."""
    v = d.get(field)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadInputError(f"{path}: field '{field}' must be {names}, got {type(v).__name__}")
    return v


def space_from_config(config: Any, source: str) -> SearchSpace:
    """A saved ``space`` object, validated like a model.json (errors read ``SOURCE: field 'layout' ...``)."""
    from spos_deploy.model_spec import spec_from_dict

    if not isinstance(config, dict):
        raise BadInputError(f"{source}: must be a JSON object, got {type(config).__name__}")
    repeats = config.get("stage_repeats", DEFAULT_REPEATS)
    scales = config.get("channel_scales", range(10))
    n = sum(repeats) if isinstance(repeats, list) and all(type(r) is int for r in repeats) else 0
    widest = len(scales) - 1 if isinstance(scales, list | range) else 0
    d = {**config, "block_choices": [0] * n, "channel_choices": [max(widest, 0)] * n}
    return spec_from_dict(d, source).space


def user_files(folder: Path) -> list[Path]:
    """Entries of ``folder`` other than the lock file and staging files/folders of the atomic writers."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name != LOCK_NAME and STAGING_TAG not in p.name)


def clean_stale(folder: Path) -> list[Path]:
    """Remove every staging leftover of a killed run inside ``folder`` (``--resume`` starts with this)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    targets = {p.name.split(STAGING_TAG, 1)[0][1:] for p in folder.iterdir() if STAGING_TAG in p.name}
    for name in sorted(targets):
        removed += remove_stale_staging(folder / name)
    return removed


def check_output_folder(folder: Path, flag: str = "-o") -> None:
    """Refuse an output that is a file (or lies under one) before anything is created."""
    for up in [folder, *folder.parents]:
        if up.exists():
            if not up.is_dir():
                what = "exists and is not a folder" if up == folder else f"{up} is a file, not a folder"
                raise BadInputError(f"{flag} {folder}: {what}")
            return


@contextlib.contextmanager
def locked_output(folder: Path, prog: str) -> Iterator[Path]:
    """Hold the output lock of ``folder`` for a whole job; if the job fails and the folder was created for
    it and holds no output, remove it (a failed start leaves nothing behind)."""
    existed = folder.exists()
    try:
        with output_lock(folder, prog) as lock:
            yield lock
    except BaseException:
        if not existed and folder.is_dir() and not user_files(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise
