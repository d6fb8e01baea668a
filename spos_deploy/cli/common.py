"""What every command shares: logging to stderr, one-line errors, exit statuses and the signal policy.

Exit statuses: 0 success, 1 failure, 2 bad input (also argparse's own usage errors), 130 Ctrl-C,
143 SIGTERM. Command modules import only light modules at import time; the framework imports happen
inside ``body`` so that the signal handlers (installed first thing in :func:`run`) already cover them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from spos_deploy.cli import signals
from spos_deploy.cli.options import (
    add_common,  # noqa: F401  (re-exported: every command module uses it)
    add_version,
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


def setup_logging(verbose: bool = False) -> None:
    """Our own loggers at INFO (DEBUG with ``--verbose``); every other library's at WARNING, so that a command
    prints what it is doing and no library's chatter (matplotlib's font cache, say)."""
    root = logging.getLogger()
    for h in list(root.handlers):  # left by an earlier basicConfig (a library's bare logging.warning) on a
        if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):  # stream closed since
            root.removeHandler(h)
    if not root.handlers:  # as logging.basicConfig: a program that set up logging keeps its own
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


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

    Every command gets ``--version`` here (:func:`~spos_deploy.cli.options.add_version`), declared once.

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
    one_line_usage_errors(parser)
    try:
        args = parser.parse_args(argv)
        setup_logging(getattr(args, "verbose", False))
        status = int(body(args) or 0)
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


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")
    sys.stdout.flush()
