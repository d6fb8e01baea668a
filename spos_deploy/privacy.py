"""Nothing leaves the user's machine, and nothing is written into the user's home folder.

Some of the libraries spos-deploy drives phone home or keep state under ``~`` as they are shipped:

* OpenVINO's model converter (imported by ``import openvino`` itself) and NNCF send usage events to an
  analytics service through the ``openvino_telemetry`` package, each from a forked child process, and keep a
  client id and a usage counter under ``~/intel/``. A missing consent file counts as consent, and the package
  has no switch in the environment except ``CI=true`` (which means more than "no telemetry" to other tools).
  Both OpenVINO and NNCF fall back to their own built-in stubs when ``openvino_telemetry`` cannot be imported,
  so :func:`keep_local` hides that package from the process; NNCF's own switch (``NNCF_CI``, which in NNCF
  2.14 turns off its telemetry and nothing else) is set as well.
* Ray collects usage statistics unless ``RAY_USAGE_STATS_ENABLED=0``.
* Matplotlib keeps its font cache and configuration under ``~/.cache`` and ``~/.config``; ``MPLCONFIGDIR``
  moves them to a private per-user folder under the system's temporary folder.

:func:`keep_local` runs when :mod:`spos_deploy` is imported, so every command, the Python API, the tests and
the benchmarks pass through it before any of those libraries is imported. Environment variables reach spawned
children (which import spos_deploy again when they unpickle its functions); the import block reaches forked
children. Settings the user made in the environment win (``os.environ.setdefault``).

Opt-in: with ``SPOS_TELEMETRY=on`` spos-deploy changes nothing, and the libraries behave as their vendors ship
them (their own consent files and switches then apply). See ``docs/privacy.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

OPT_IN_VARIABLE = "SPOS_TELEMETRY"
"""Set to ``on`` to leave every library as its vendor ships it (telemetry included)."""

HIDDEN_MODULES = ("openvino_telemetry",)
"""Packages hidden from the process, with their submodules: the ones that send usage data."""

ENVIRONMENT = {"NNCF_CI": "1", "RAY_USAGE_STATS_ENABLED": "0"}
"""Switches set (unless the user set them) for libraries that read one; ``MPLCONFIGDIR`` is added at run time."""

_state = {"done": False}


class HiddenModuleFinder:
    """A ``sys.meta_path`` finder that makes the named packages (and their submodules) fail to import.

    OpenVINO and NNCF catch that ImportError and use their own stubs, exactly as when the package is not
    installed; uninstalling it is not an option, because ``openvino`` depends on it.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (spos-deploy keeps usage data local; {OPT_IN_VARIABLE}=on allows it)",
                name=fullname,
            )
        return None


def opted_in() -> bool:
    """Whether the user asked for the libraries as shipped (``SPOS_TELEMETRY=on``)."""
    return os.environ.get(OPT_IN_VARIABLE, "").strip().lower() in {"on", "1", "true", "yes"}


def keep_local() -> bool:
    """Turn off what would send data off the machine or write into the home folder (idempotent; cheap).

    Returns whether the settings are in force (False when the user opted in with ``SPOS_TELEMETRY=on``).
    """
    if opted_in():
        return False
    if _state["done"]:
        return True
    if not any(isinstance(f, HiddenModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, HiddenModuleFinder(HIDDEN_MODULES))
    _decline_loaded_telemetry()
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not os.environ.get("MPLCONFIGDIR"):
        folder = private_folder("matplotlib")
        if folder is not None:
            os.environ["MPLCONFIGDIR"] = folder
    _state["done"] = True
    return True


def _decline_loaded_telemetry() -> None:
    """``openvino_telemetry`` was imported before spos_deploy (``import openvino`` first): the import block comes
    too late for it, and the package has no in-process switch (its ``opt_out`` writes into ``~/intel`` and sends
    an event). Make its consent check answer "declined", as it does under ``CI=true``, and withdraw the consent
    its live instance already holds, so that no further event is sent and no further file is written."""
    checker: ModuleType | None = sys.modules.get("openvino_telemetry.utils.opt_in_checker")
    main: ModuleType | None = sys.modules.get("openvino_telemetry.main")
    try:
        if checker is not None:
            declined = checker.ConsentCheckResult.DECLINED
            checker.OptInChecker.check = lambda self, *args, **kwargs: declined
        if main is not None:
            instance = getattr(main.Telemetry, "_SingletonMetaClass__single_instance", None)
            if instance is not None:
                instance.consent = False
    except AttributeError:  # another release of the package: nothing known to switch off
        pass


def private_folder(name: str) -> str | None:
    """``<tempdir>/spos-deploy-<uid>/<name>``, created if missing; the parent is the user's own and mode 0700,
    so that no other user can plant a configuration file in it (if another user holds that name, a fresh folder
    for this process instead). None when no temporary folder is writable (the library then picks its own place)."""
    import stat
    import tempfile

    try:
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        base = os.path.join(tempfile.gettempdir(), f"spos-deploy-{user}")
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
        if hasattr(os, "getuid"):
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                return _fresh_folder(name)  # someone else's, or a link: not ours to use
            if info.st_mode & 0o077:
                os.chmod(base, 0o700)
        folder = os.path.join(base, name)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return folder
    except OSError:  # no writable temporary folder
        return None


def _fresh_folder(name: str) -> str | None:
    """A new private folder for this process and its children, removed at exit (the shared one is taken)."""
    import atexit
    import shutil
    import tempfile

    try:
        folder = tempfile.mkdtemp(prefix=f"spos-deploy-{name}-")
    except OSError:
        return None
    atexit.register(shutil.rmtree, folder, True)
    return folder
