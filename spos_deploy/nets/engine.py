"""Which MXNet engine a training process runs, chosen before MXNet loads.

MXNet reads ``MXNET_ENGINE_TYPE`` once, when it is imported. Training processes (``spos-train``, its dist_sync
workers, the Ray tasks that train stand-alone subnets) run the serial engine (``NaiveEngine``): it trains
as the threaded one (the same loss and top-1; tested) and as fast on the CPUs measured
(docs/supernet.md, "Measured facts about speed"), and it is the only engine under which the opt-in rewritten
depthwise backward (:mod:`spos_deploy.nets.dwconv`, withdrawn: its trainings validate wrongly) can run at
all. This module does not import MXNet, so a command can make the choice first. A user's own
``MXNET_ENGINE_TYPE`` always wins.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

VARIABLE = "MXNET_ENGINE_TYPE"
SERIAL = "NaiveEngine"
REWRITE_VARIABLE = "SPOS_DEPTHWISE_BACKWARD"
"""``rewritten`` opts a process in to :mod:`spos_deploy.nets.dwconv`'s backward (withdrawn: see there)."""


def prefer_serial() -> bool:
    """Make this process run the serial engine unless MXNet is already loaded or the user chose one; returns
    whether the serial engine is (or will be) the one MXNet runs."""
    if "mxnet" not in sys.modules:
        os.environ.setdefault(VARIABLE, SERIAL)
    return is_serial()


def is_serial() -> bool:
    """Whether the environment names the serial engine (what MXNet runs if it loads, or loaded, with it)."""
    return os.environ.get(VARIABLE, "").strip() == SERIAL


def training_env() -> dict[str, str]:
    """The engine setting for a training process started elsewhere (a Ray task, a dist worker): the user's
    choice if they made one, else the serial engine."""
    return {VARIABLE: os.environ.get(VARIABLE) or SERIAL}


def start_serial() -> bool:
    """:func:`prefer_serial`, then start MXNet's engine now when it is the serial one, keeping the notice MXNet
    writes to stderr whenever the variable is set ("MXNet start using engine") off the command's output: MXNet
    writes it when the engine starts, at the first operation or at exit, after a command's one-line error.
    Returns whether the serial engine runs."""
    if not prefer_serial():
        return False
    import mxnet as mx

    with _stderr_to_devnull():
        mx.nd.waitall()  # creates the engine
    return True


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 (what C++ code writes to) sent to the null device inside the block."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
