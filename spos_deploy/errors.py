"""Errors a user can act on. Commands turn them into one line on stderr and an exit status."""

from __future__ import annotations


class SposError(Exception):
    """A failure with a one-line, user-facing message.

    ``exit_code`` is 2 for bad input (the user must change something) and 1 for other failures.
    """

    exit_code = 1


class BadInputError(SposError):
    """Malformed or inconsistent input: model.json, weights, tables, data, constraints."""

    exit_code = 2


_NOISE = (
    "[bt]",
    "File ",
    "Traceback",
    "Stack trace",
    "During handling",
    "The above exception",
    "Exception from src/",  # OpenVINO's banner: the source file that raised, before the message
)


def short_message(exc: BaseException, limit: int = 300) -> str:
    """The one informative line of an exception, for messages that quote a library's error.

    MXNet, onnxruntime and OpenVINO put a C++ backtrace, a Python traceback or a banner before the line that says
    what went wrong; this keeps that line (the last one that names an error, else the first real line),
    drops the ``MXNetError:`` style prefix and cuts it to ``limit`` characters.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(_NOISE) and not ln.startswith(("^", "~"))]
    named = [ln for ln in lines if "Error" in ln or "error" in ln or "Check failed" in ln]
    line = (named[-1] if named else lines[0]) if lines else type(exc).__name__
    for prefix in ("MXNetError: ", "mxnet.base.MXNetError: "):
        line = line.removeprefix(prefix)
    return line if len(line) <= limit else line[: limit - 3] + "..."
