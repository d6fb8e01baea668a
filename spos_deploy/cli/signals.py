"""One signal policy for every command: Ctrl-C ends with exit 130, SIGTERM with 143, one line each.

Installed when :mod:`spos_deploy.cli` is imported, before any command module imports MXNet or
onnxruntime, so an interrupt during those imports is as clean as one later. The first signal raises
:class:`KeyboardInterrupt` in the main thread (``finally`` blocks and atomic writers clean up); a
signal that lands inside a destructor, where Python would swallow the exception, ends the process at
once with the same line and status. A second signal ends it at once too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_state: dict[str, Any] = {"prog": os.path.basename(sys.argv[0]) if sys.argv else "spos", "signal": None}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs, ending with status 143."""


def received() -> int | None:
    """The signal number received so far, if any (``run`` never exits 0 after one)."""
    return _state["signal"]


def exit_status(sig: int | None) -> int:
    return EXIT_TERMINATED if sig == signal.SIGTERM else EXIT_INTERRUPTED


def message(sig: int | None) -> str:
    return f"{_state['prog']}: {'terminated' if sig == signal.SIGTERM else 'interrupted'}"


def hard_exit(sig: int | None) -> None:
    """End at once, without ``finally`` blocks: only the atomic writers' staging files are removed first."""
    from spos_deploy.atomic import remove_live_staging

    try:
        remove_live_staging()
        sys.stderr.write(message(sig) + "\n")
        sys.stderr.flush()
    finally:
        os._exit(exit_status(sig))


def _handler(signum: int, frame: Any) -> None:
    if _state["signal"] is not None:
        hard_exit(_state["signal"])
    _state["signal"] = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """An interrupt that escapes ``run`` (it landed in an import's C code, or after ``run`` returned) still
    ends with one line and 130/143, not a traceback or death by signal."""
    if issubclass(kind, KeyboardInterrupt):
        hard_exit(_state["signal"] if _state["signal"] is not None else signal.SIGINT)
    sys.__excepthook__(kind, value, tb)


def _unraisable(info: Any) -> None:
    if isinstance(info.exc_value, KeyboardInterrupt):
        hard_exit(_state["signal"])
    sys.__unraisablehook__(info)


def install(prog: str) -> None:
    """Install the handlers for command ``prog`` and forget earlier signals (main thread only; elsewhere,
    e.g. in worker threads, a no-op)."""
    _state.update(prog=prog, signal=None)
    try:
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)
    except ValueError:  # not the main thread
        return
    sys.unraisablehook = _unraisable
    sys.excepthook = _excepthook


def exit_process(status: int) -> NoReturn:
    """End a command's process once its work is done, without the interpreter's teardown.

    Python puts the default signal actions back before it unloads its modules and MXNet, which takes about
    half a second here: a Ctrl-C in that window killed the process by the signal, with no line (status
    -2). The exit functions (MXNet's shutdown, logging, temporary files) still run, under the policy; a
    signal that arrives during them or after gives the interrupt line and status, as any other.
    """
    earlier = _state["signal"]
    atexit._run_exitfuncs()  # noqa: SLF001 - the exit functions, then no teardown (os._exit)
    with contextlib.suppress(ValueError):  # not the main thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    if earlier is None and _state["signal"] is not None:
        sys.stderr.write(message(_state["signal"]) + "\n")
        status = exit_status(_state["signal"])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe
            stream.flush()
    os._exit(status)
