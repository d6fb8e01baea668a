"""Work across machines on Ray: connecting, checking the cluster, and running many retried jobs.

Two places outgrow one machine: evaluating a search's candidates on the supernet
(:mod:`spos_deploy.search.ray_evaluator`) and training many architectures from scratch
(:mod:`spos_deploy.training.subnets`). Both go through :func:`ray_cluster`, which

* starts a local Ray instance sized to this machine (no address) or joins a running cluster (``ADDRESS``);
* keeps Ray quiet and local: no dashboard, no usage statistics (set by :mod:`spos_deploy.privacy`), and for
  a local instance token authentication with a token held in this process's environment instead of the
  ``~/.ray/auth_token`` file Ray would write (its session files go under the temp folder, as always);
* refuses in one line, never hangs, when the address does not answer or the cluster's workers cannot import
  this project (every node needs ``pip install spos-deploy[ray]`` and the data paths the job reads).

Ray is an optional extra (``pip install 'spos-deploy[ray]'``); without it ``--ray`` is one line and exit 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from typing import Any

from spos_deploy.errors import BadInputError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""How long a cluster address may take to answer before it is refused."""
CHECK_TIMEOUT_S = 120.0
"""How long the cluster's workers may take to import the project (a cold node starts its Python)."""
LOCAL = "local"
"""``--ray`` without an address: a local Ray instance sized to this machine."""


def require_ray(flag: str = "--ray") -> None:
    """One line naming the extra to install when Ray is not (checked without loading it: Ray reads its
    authentication settings when it loads, which :func:`ray_cluster` sets first)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken install or an import hook that refuses it
        found = False
    if not found:
        raise BadInputError(f"{flag} needs Ray: pip install 'spos-deploy[ray]'")


def check_address(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) that accepts no TCP connection within
    :data:`CONNECT_TIMEOUT_S` is refused here: ``ray.init`` would retry it for minutes."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInputError(f"--ray {address}: expected HOST:PORT (the head's address), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise BadInputError(f"--ray {address}: the Ray head does not answer ({e.strerror or e})") from None


def _project_version() -> str:
    import spos_deploy

    return spos_deploy.__version__


def _check_workers(ray: Any, address: str) -> None:
    """Every worker must import this project at our version: a task that does so, with a timeout."""
    import spos_deploy

    task = ray.remote(num_cpus=0, max_retries=0)(_project_version)
    try:
        theirs = ray.get(task.remote(), timeout=CHECK_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise BadInputError(f"--ray {address}: no worker started within {CHECK_TIMEOUT_S:.0f} s") from None
    except ray.exceptions.RayError as e:
        raise BadInputError(
            f"--ray {address}: the cluster's workers cannot import spos-deploy (install spos-deploy[ray] on every "
            f"node): {str(e).strip().splitlines()[-1]}"
        ) from None
    if theirs != spos_deploy.__version__:
        ours = spos_deploy.__version__
        raise BadInputError(f"--ray {address}: the cluster runs spos-deploy {theirs}, this is {ours}")


def _local_auth() -> None:
    """Token authentication for the local instance without a token file under the user's home: a token kept
    in the environment, which Ray's own processes inherit (the user's settings win). Its workers run at
    normal priority: Ray lowers them to niceness 15, and the evaluations and trainings they run are the job
    itself, which then loses its cores to anything else on the machine."""
    os.environ.setdefault("RAY_worker_niceness", "0")
    if os.environ.get("RAY_AUTH_MODE") is None and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


@contextlib.contextmanager
def ray_cluster(address: str | None = LOCAL, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray connected for the ``with`` block (``address``: :data:`LOCAL` or None for a local instance, else the
    cluster's). An instance already running in this process (a test's, a notebook's) is used as it is."""
    local = address in (None, LOCAL)
    if local and "ray" not in sys.modules:
        _local_auth()  # before Ray loads: it reads its authentication settings once
    require_ray()
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        "logging_level": logging.WARNING,
    }
    if local:
        kwargs["num_cpus"] = num_cpus or len(os.sched_getaffinity(0))
    else:
        check_address(address)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BadInputError(f"--ray {address or LOCAL}: {str(e).strip().splitlines()[0]}") from None
    try:
        if not local:
            _check_workers(ray, address)
        log.info("ray: %s, %s CPUs", "local instance" if local else address, int(ray.cluster_resources().get("CPU", 0)))
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """The CPUs the cluster offers now (a node added later is used by the next job)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
