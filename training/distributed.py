"""Run a training command as an MXNet parameter-server job on this machine (or print how to on many).

MXNet's ``dist_sync`` kvstore needs a scheduler, servers and workers, told apart by ``DMLC_*``
environment variables. :func:`launch_local` starts them all on loopback; on several machines, run the
same command on each with ``DMLC_ROLE``/``DMLC_PS_ROOT_URI``/``DMLC_PS_ROOT_PORT``/``DMLC_NUM_SERVER``/
``DMLC_NUM_WORKER`` set as :func:`role_env` shows (MXNet's ``tools/launch.py`` automates that over ssh).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_env(role: str, root_uri: str, port: int, servers: int, workers: int) -> dict[str, str]:
    return {
        "DMLC_ROLE": role,
        "DMLC_PS_ROOT_URI": root_uri,
        "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_SERVER": str(servers),
        "DMLC_NUM_WORKER": str(workers),
        "DMLC_NODE_HOST": root_uri,
        "PS_VERBOSE": "0",
    }


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child between fork and exec: ask the kernel for SIGKILL when the launcher dies (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def launch_local(
    worker_cmd: Sequence[str],
    workers: int = 2,
    servers: int = 1,
    timeout: float | None = None,
    log_dir: str | None = None,
) -> list[int]:
    """Start scheduler, servers and workers as separate processes on 127.0.0.1; returns the workers' exit codes.

    Scheduler and servers run the same Python with ``import mxnet`` only: MXNet turns a process whose
    ``DMLC_ROLE`` is scheduler or server into that role when it creates the kvstore on import. ``timeout``
    (seconds for the workers to finish; None: no limit) exists for tests: a real job runs as long as it needs.
    On Linux every process it starts dies with the launcher, even when the launcher is killed with SIGKILL;
    otherwise a worker would wait forever inside a kvstore call for peers that are gone.
    """
    port = free_port()
    base = dict(os.environ)
    procs: list[subprocess.Popen] = []
    role_cmd = [sys.executable, "-c", "import mxnet as mx; mx.kv.create('dist_sync')"]

    def start(role: str, cmd: Sequence[str], i: int) -> subprocess.Popen:
        env = dict(base, **role_env(role, "127.0.0.1", port, servers, workers), OMP_NUM_THREADS="1")
        out = subprocess.DEVNULL
        if log_dir:
            out = open(os.path.join(log_dir, f"{role}{i}.log"), "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    try:
        procs.append(start("scheduler", role_cmd, 0))
        procs += [start("server", role_cmd, i) for i in range(servers)]
        worker_procs = [start("worker", worker_cmd, i) for i in range(workers)]
        deadline = None if timeout is None else time.time() + timeout
        codes = []
        for p in worker_procs:
            codes.append(p.wait(timeout=None if deadline is None else max(1.0, deadline - time.time())))
        for p in procs:
            p.wait(timeout=60)
        return codes
    finally:
        for p in procs + locals().get("worker_procs", []):
            if p.poll() is None:
                p.kill()
