"""One signal policy for every command: Ctrl-C ends with exit 130, SIGTERM with 143, one line each.

Installed when :mod:`spos_deploy.cli` is imported, before any command module imports MXNet or
onnxruntime, so an interrupt during those imports is as clean as one later. The first signal raises
:class:`KeyboardInterrupt` in the main thread (``finally`` blocks and atomic writers clean up); a
signal that lands inside a destructor, where Python would swallow the exception, ends the process at
once with the same line and status. A second signal ends it at once too.

The policy belongs to the command's own process only. A child forked from it (a multiprocessing worker, a data
loader, a library's helper process) gets Python's defaults back as soon as it is forked: Ctrl-C raises
:class:`KeyboardInterrupt` there, SIGTERM ends it silently by the signal (what ``Process.terminate`` expects),
and its exceptions print as usual, never as this command's one line. A child forked below Python (no fork hooks
run) that still holds the handler notices the foreign process id, puts the defaults back and takes the signal
as the default would.
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

_state: dict[str, Any] = {
    "prog": os.path.basename(sys.argv[0]) if sys.argv else "spos",
    "signal": None,
    "pid": None,  # the process the handlers were installed in
    "fork_hook": False,
}


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


def _ours() -> bool:
    """Whether this is the process the policy was installed in (not a child forked from it)."""
    return _state["pid"] == os.getpid()


def restore_defaults() -> None:
    """Put Python's default signal handlers and exception hooks back where this module's are installed.

    Run in every child forked from a command (``os.register_at_fork``): the policy's line and exit status
    belong to the command, and a child that raised :class:`Terminated` on ``Process.terminate`` printed a
    traceback ending in it instead of dying quietly by SIGTERM.
    """
    with contextlib.suppress(ValueError):  # not the main thread: signal handlers cannot be changed there
        if signal.getsignal(signal.SIGINT) is _handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.getsignal(signal.SIGTERM) is _handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.excepthook is _excepthook:
        sys.excepthook = sys.__excepthook__
    if sys.unraisablehook is _unraisable:
        sys.unraisablehook = sys.__unraisablehook__
    _state["signal"] = None


def _handler(signum: int, frame: Any) -> None:
    if not _ours():  # a child forked without Python's fork hooks: behave as if the policy was never installed
        restore_defaults()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        signal.raise_signal(signum)
        return
    if _state["signal"] is not None:
        hard_exit(_state["signal"])
    _state["signal"] = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """An interrupt that escapes ``run`` (it landed in an import's C code, or after ``run`` returned) still
    ends with one line and 130/143, not a traceback or death by signal."""
    if issubclass(kind, KeyboardInterrupt) and _ours():
        hard_exit(_state["signal"] if _state["signal"] is not None else signal.SIGINT)
    sys.__excepthook__(kind, value, tb)


def _unraisable(info: Any) -> None:
    """An interrupt inside a destructor ends the process with its line. Once a signal has been taken, what a
    destructor raises is left unsaid: objects the interrupt stopped half-built (an MXNet ``Symbol`` without
    its handle) fail as they are collected, after the command's one line."""
    if _ours():
        if isinstance(info.exc_value, KeyboardInterrupt):
            hard_exit(_state["signal"])
        if _state["signal"] is not None:
            return
    sys.__unraisablehook__(info)


def install(prog: str) -> None:
    """Install the handlers for command ``prog`` and forget earlier signals (main thread only; elsewhere,
    e.g. in worker threads, a no-op). Children forked later get Python's defaults back (:func:`restore_defaults`)."""
    _state.update(prog=prog, signal=None)
    try:
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)
    except ValueError:  # not the main thread
        return
    _state["pid"] = os.getpid()
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=restore_defaults)
        _state["fork_hook"] = True
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
