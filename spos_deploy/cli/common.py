"""What every command shares: logging to stderr, one-line errors, exit statuses and the signal policy.

Exit statuses: 0 success, 1 failure, 2 bad input (also argparse's own usage errors), 130 Ctrl-C,
143 SIGTERM. Command modules import only light modules at import time; the framework imports happen
inside ``body`` so that the signal handlers (installed first thing in :func:`run`) already cover them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from spos_deploy.cli import signals
from spos_deploy.cli.options import (
    add_common,  # noqa: F401  (re-exported: every command module uses it)
    add_version,
    check_force,
    take_aliases_used,
    use_help_formatter,
)
from spos_deploy.errors import BadInputError, SposError, short_message

log = logging.getLogger("spos_deploy")


class _CurrentStderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record, not as it was when the handler was made: a command
    run again in one process (tests, a notebook) never writes into a stream closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Our own loggers at INFO (DEBUG with ``--verbose``, WARNING with ``--quiet``); every other library's at
    WARNING, so that a command prints what it is doing and no library's chatter (matplotlib's font cache, say)."""
    root = logging.getLogger()
    for h in list(root.handlers):  # left by an earlier basicConfig (a library's bare logging.warning) on a
        if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):  # stream closed since
            root.removeHandler(h)
    if not root.handlers:  # as logging.basicConfig: a program that set up logging keeps its own
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


class UsageError(Exception):
    """An argparse usage error, reported as one line (argparse itself prints the usage block too)."""


def _raise_usage(message: str) -> None:
    raise UsageError(message)


def one_line_usage_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and all its sub-command parsers raise :class:`UsageError` instead of printing usage."""
    parser.error = _raise_usage  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                one_line_usage_errors(sub)


def _interrupted() -> int:
    sig = signals.received()
    print(signals.message(sig), file=sys.stderr)
    return signals.exit_status(sig)


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, run ``body`` and map failures to one line on stderr (statuses in the module docstring).

    Every command gets ``--version`` here (:func:`~spos_deploy.cli.options.add_version`), declared once, and
    the option policy: hidden aliases left out of ``--help`` and warned about when used, ``--quiet`` (which
    implies ``--no-progress``), and ``--force`` refused together with ``--resume``.

    Called for the process's own command line (``argv`` None), it also ends the process, so that a Ctrl-C
    during the interpreter's teardown is still one line and 130 (:func:`signals.exit_process`); not in the
    workers and servers of a dist job (``DMLC_ROLE``), whose kvstore says goodbye to the scheduler there.
    """
    status = _run(prog, parser, body, argv)
    if argv is None and "DMLC_ROLE" not in os.environ:
        signals.exit_process(status)
    return status


def _run(
    prog: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    signals.install(prog)
    add_version(parser)
    use_help_formatter(parser)
    one_line_usage_errors(parser)

    def call() -> int:
        take_aliases_used()  # what an earlier parse in this process met is not this command's
        args = parser.parse_args(argv)
        quiet = getattr(args, "quiet", False)
        if quiet and hasattr(args, "no_progress"):
            args.no_progress = True
        setup_logging(getattr(args, "verbose", False), quiet)
        for old, new in take_aliases_used():
            log.warning("%s is an old spelling of %s; it goes in the next release", old, new)
        check_force(args)
        return int(body(args) or 0)

    return _guarded(prog, call)


def _guarded(prog: str, call: Callable[[], int | None]) -> int:
    """``call()``'s status, its failures mapped to one line on stderr and the statuses of the module docstring."""
    try:
        status = int(call() or 0)
    except UsageError as e:
        print(f"{prog}: error: {e} (see {prog} --help)", file=sys.stderr)
        return 2
    except BadInputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SposError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:  # noqa: BLE001 - the contract: one line, never a traceback
        if os.environ.get("SPOS_DEBUG"):
            raise
        print(
            f"{prog}: error: {type(e).__name__}: {short_message(e)} (set SPOS_DEBUG=1 for a traceback)", file=sys.stderr
        )
        return 1
    if signals.received() is not None:  # swallowed on its way up (a library caught it): never exit 0 after it
        return _interrupted()
    return status


def run_script(prog: str, main: Callable[[], int | None]) -> NoReturn:
    """The commands' policy for a script that parses its own options (the benchmarks): signals, one-line
    errors and exit statuses as in :func:`run`, then the process ends. ``main`` may exit by ``SystemExit``."""
    signals.install(prog)
    signals.exit_process(_guarded(prog, main))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")
    sys.stdout.flush()


# ---- --force: an output replaced only once its successor is complete ------------------------------------------


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str], force: bool, prog: str, lock: bool = False) -> Iterator[Path]:
    """The folder a command writes its output ``target`` to, honouring ``--force``.

    Without ``force``, or when ``target`` does not exist: ``target`` itself (the command refuses an existing
    output as it always has). With ``force`` and an existing folder ``target``: a new folder inside a staging
    folder beside it (``.NAME.spos-tmp-PID-...``, removed if the command fails or is interrupted, the old
    output untouched). When the block succeeds, the new folder takes ``target``'s place
    (:func:`_swap_into_place`), and only then is the old one removed. The paths the new output records in its
    top-level JSON files (a run's ``out``, the commands in search results) are pointed at ``target``.
    ``lock``: hold ``target``'s output lock meanwhile, so that no ``--resume`` of the old run starts while it
    is being replaced (and a run still writing it is not replaced).
    """
    from spos_deploy.atomic import output_lock, scratch_dir

    t = Path(target)
    if not force or not (t.exists() or t.is_symlink()):
        yield t
        return
    if not t.is_dir():
        raise BadInputError(f"{t}: exists and is not a folder; --force replaces an earlier output folder only")
    with contextlib.ExitStack() as stack:
        if lock:
            stack.enter_context(output_lock(t, prog))
        new = stack.enter_context(scratch_dir(beside=t)) / t.name
        log.info("--force: writing the new output beside %s; it takes its place once complete", t)
        yield new
        if not new.exists():  # the command wrote nothing: the old output stays
            return
        _repoint_json(new, str(new), str(t))
        _swap_into_place(new, t)
        log.info("--force: replaced %s", t)


def _repoint_json(folder: Path, old: str, new: str) -> None:
    """Replace the path ``old`` by ``new`` in the top-level JSON files of ``folder`` that name it."""
    from spos_deploy.atomic import write_text

    needle, repl = json.dumps(old)[1:-1], json.dumps(new)[1:-1]
    for f in sorted(folder.glob("*.json")):
        text = f.read_text()
        if needle in text:
            write_text(f, text.replace(needle, repl))


def _exchange(a: Path, b: Path) -> bool:
    """Swap the entries ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(new: Path, target: Path) -> None:
    """Put ``new`` where ``target`` is; the old ``target`` ends at ``new``'s path (inside the staging folder,
    removed with it). Atomic where :func:`_exchange` works; otherwise two renames, the old output put back if
    the second one fails or is interrupted."""
    if _exchange(new, target):
        return
    aside = new.with_name(new.name + ".replaced")
    try:
        os.rename(target, aside)
        os.rename(new, target)
    except BaseException:
        if not (target.exists() or target.is_symlink()) and aside.exists():
            os.rename(aside, target)
        raise
