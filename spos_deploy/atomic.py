"""Files a user can rely on: written so that they are complete or absent, read with one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spos_deploy.errors import BadInputError

STAGING_TAG = ".spos-tmp-"
"""Staging files and folders are named ``.<target name>.spos-tmp-<pid>-<random>`` beside their target, so
that the next write of the same target can tell a killed run's leftovers (dead pid) from a live writer's."""

_LIVE: set[Path] = set()
"""This process's staging paths now in use: a hard exit (a signal inside a destructor, a second Ctrl-C), which
skips ``finally`` blocks, removes them through :func:`remove_live_staging`."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging files/folders of ``target`` left by processes that no longer run."""
    t = Path(target)
    removed = []
    if not t.parent.is_dir():
        return removed
    prefix = f".{t.name}{STAGING_TAG}"
    for p in t.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        try:
            pid = int(p.name[len(prefix) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            _remove(p)
            removed.append(p)
    return removed


def remove_live_staging() -> None:
    """Remove this process's staging files and folders (for exits that run no ``finally`` block)."""
    for p in list(_LIVE):
        _remove(p)
    _LIVE.clear()


def _remove(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


def _own_staging(target: Path) -> list[Path]:
    """This process's staging paths of ``target``, also one whose creation an interrupt cut short (made on
    disk, its name not yet returned to the caller)."""
    prefix = _staging_prefix(target)
    return [p for p in target.parent.iterdir() if p.name.startswith(prefix)] if target.parent.is_dir() else []


def _prepare_parent(target: Path) -> None:
    parent = target.parent
    for up in [parent, *parent.parents]:
        if up.exists():
            if not up.is_dir():
                raise BadInputError(f"{target}: {up} is a file, not a folder")
            break
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}{STAGING_TAG}{os.getpid()}-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    if target.is_dir():
        raise BadInputError(f"{target}: is a folder, expected a file name")
    _prepare_parent(target)
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(target), dir=target.parent)
        tmp_path = Path(tmp)
        _LIVE.add(tmp_path)
        os.close(fd)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        _LIVE.discard(tmp_path)
        for p in [tmp_path] if tmp_path is not None else _own_staging(target):
            _remove(p)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` only if the block succeeds.

    ``path`` must not exist yet: refusing to overwrite keeps a user's earlier output intact.
    """
    target = Path(path)
    _prepare_parent(target)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
        _LIVE.add(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        os.rename(tmp, target)
    finally:
        _LIVE.discard(tmp)
        for p in [tmp] if tmp is not None else _own_staging(target):
            _remove(p)


@contextlib.contextmanager
def scratch_dir(prefix: str = "spos-", beside: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a new folder for intermediate files; it is removed when the block ends, however it ends.

    Unlike ``tempfile.TemporaryDirectory`` it is also removed on an exit that runs no ``finally`` block (an
    interrupt landing in a destructor, a second Ctrl-C: :func:`remove_live_staging`), so a killed int8 export
    leaves no intermediate models in the temporary folder. With ``beside`` (a file about to be written) the
    folder is made next to that file and named like its staging entries, so that a later write of the same
    file removes it if a SIGKILL left it; otherwise it lives in the system's temporary folder, named
    ``prefix...``.
    """
    tmp = None
    try:
        if beside is None:
            tmp = Path(tempfile.mkdtemp(prefix=prefix))
        else:
            target = Path(beside)
            _prepare_parent(target)
            tmp = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
        _LIVE.add(tmp)
        yield tmp
    finally:
        _LIVE.discard(tmp)
        if tmp is not None:
            _remove(tmp)


MAX_JSON_BYTES = 512 * 1024 * 1024


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse a JSON file; every way it can be unreadable is a :class:`BadInputError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, expected a {what}")
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise BadInputError(f"{p}: larger than {MAX_JSON_BYTES >> 20} MiB, not a {what}")
        text = p.read_text()
    except UnicodeDecodeError:
        raise BadInputError(f"{p}: not a text file (expected a {what})") from None
    except OSError as e:
        raise BadInputError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise BadInputError(f"{p}: JSON nested too deeply to be a {what}") from None


LOCK_NAME = ".lock"


@contextlib.contextmanager
def output_lock(
    folder: str | os.PathLike[str], prog: str, *, name: str = LOCK_NAME, busy_ok: bool = False
) -> Iterator[Path | None]:
    """Hold an exclusive lock on an output folder for the life of a long job.

    A second job writing into the same folder is refused with a one-line error instead of mixing its
    results with the first one's. The lock is an ``flock`` on ``folder/.lock``: the kernel drops it when
    its process dies, so a killed run never leaves a stale lock behind.

    ``name``: lock ``folder/NAME`` instead, a lock of its own beside the folder's output lock (a claim on a
    folder that a job locking the folder itself then writes). ``busy_ok``: a lock another holder has yields
    ``None`` instead of raising, for a caller that leaves the folder to that holder.
    """
    import fcntl

    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise BadInputError(f"{d}: is a file, expected an output folder")
    path = d / name
    _prepare_parent(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        if not held:
            if busy_ok:
                yield None
                return
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise BadInputError(f"{d}: in use by {owner}; wait for it to finish or choose another output")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{prog} (pid {os.getpid()})\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock
