"""Nothing leaves the user's machine and nothing lands in the home folder: the commands run as a user runs them
(fresh interpreter, empty HOME, CI switches removed, empty working folder) under a socket-level guard that
refuses and records every attempt to reach another host, in the command's process and in every child of it.
Plus the signal policy: a child forked from a command dies quietly by SIGTERM."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spos_deploy import privacy

from .conftest import COMMAND_MODULES, ROOT, TINY_MODEL

LOG_VARIABLE = "SPOS_TEST_NET_LOG"

GUARD = """
# Loaded at start-up by every Python process of the test (first on PYTHONPATH); forked children inherit it.
import errno, ipaddress, os, socket

_LOG = os.environ.get("SPOS_TEST_NET_LOG")


def _local_host(host):
    if host is None or host in ("", "localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _local(family, address):
    if family == getattr(socket, "AF_UNIX", object()):
        return True
    return isinstance(address, (tuple, list)) and len(address) > 0 and _local_host(address[0])


def _record(what, target):
    with open(_LOG, "a") as f:
        f.write(f"{os.getpid()} {what} {target!r}\\n")


if _LOG:
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection
    _gethostbyname, _gethostbyname_ex = socket.gethostbyname, socket.gethostbyname_ex

    def connect(self, address):
        if not _local(self.family, address):
            _record("connect", address)
            raise PermissionError(errno.EACCES, f"refused by the test's network guard: {address!r}")
        return _connect(self, address)

    def connect_ex(self, address):
        if not _local(self.family, address):
            _record("connect_ex", address)
            return errno.EACCES
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _local_host(host):
            _record("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"refused by the test's network guard: {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        if not _local_host(address[0]):
            _record("create_connection", address)
            raise PermissionError(errno.EACCES, f"refused by the test's network guard: {address!r}")
        return _create_connection(address, *args, **kwargs)

    def gethostbyname(host):
        if not _local_host(host):
            _record("gethostbyname", host)
            raise socket.gaierror(socket.EAI_NONAME, f"refused by the test's network guard: {host!r}")
        return _gethostbyname(host)

    def gethostbyname_ex(host):
        if not _local_host(host):
            _record("gethostbyname_ex", host)
            raise socket.gaierror(socket.EAI_NONAME, f"refused by the test's network guard: {host!r}")
        return _gethostbyname_ex(host)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
    socket.gethostbyname, socket.gethostbyname_ex = gethostbyname, gethostbyname_ex
"""

REMOVED = (
    # the CI switches OpenVINO's telemetry and NNCF read: a user's machine has none of them
    "CI",
    "TF_BUILD",
    "JENKINS_URL",
    "NNCF_CI",
    "NNCF_DEV",
    privacy.OPT_IN_VARIABLE,
    # what spos_deploy sets for itself (this test process imported it): each child must set them on its own
    *privacy.ENVIRONMENT,
    "MPLCONFIGDIR",
    # would move matplotlib's folders out of HOME and hide a write there
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "SPOS_DEBUG",
)

OWN_LOG_LINE = re.compile(r"^(INFO|WARNING) spos_deploy(\.\w+)*: ")
FONT_CACHE_LINE = "INFO matplotlib.font_manager: generated new fontManager"
"""Matplotlib's first use on a machine (here: each fresh temporary folder) logs this at INFO, which the
commands' logging shows; it says the cache went to MPLCONFIGDIR, not HOME."""

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
needs_nncf = pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf not installed")


class Guarded:
    """A user's machine in miniature: empty HOME, empty working folder, own temporary folder, the guard."""

    def __init__(self, root: Path) -> None:
        self.home, self.cwd, self.tmp, site = (root / n for n in ("home", "cwd", "tmp", "site"))
        for folder in (self.home, self.cwd, self.tmp, site):
            folder.mkdir(parents=True)
        (site / "sitecustomize.py").write_text(GUARD)
        self.log = root / "connections.log"
        self.env = {k: v for k, v in os.environ.items() if k not in REMOVED}
        self.env.update(
            HOME=str(self.home),
            TMPDIR=str(self.tmp),
            PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
            **{LOG_VARIABLE: str(self.log)},
        )

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess:
        """``argv`` as a user types it: a command name from COMMAND_MODULES, or ``python ...``."""
        if argv[0] in COMMAND_MODULES:
            argv = [sys.executable, "-m", COMMAND_MODULES[argv[0]], *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        return subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd, env={**self.env, **env}, timeout=600)

    def connections(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def home_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.home)) for p in self.home.rglob("*"))

    def assert_kept_local(self, proc: subprocess.CompletedProcess) -> None:
        """Exit 0, no connection attempted, nothing in HOME, and stderr holds only the command's own log lines."""
        assert proc.returncode == 0, proc.stderr
        assert self.connections() == [], self.connections()
        assert self.home_files() == []
        assert "telemetry" not in proc.stderr.lower() and "Traceback" not in proc.stderr, proc.stderr
        foreign = [ln for ln in proc.stderr.splitlines() if not OWN_LOG_LINE.match(ln) and ln != FONT_CACHE_LINE]
        assert foreign == [], proc.stderr


def test_the_guard_refuses_and_records_every_remote_attempt(tmp_path):
    """The guard itself, so that an empty log means something: remote connections and look-ups are refused and
    recorded, in forked children too; loopback still works."""
    g = Guarded(tmp_path)
    code = textwrap.dedent(
        """
        import os, socket
        for attempt in (lambda: socket.create_connection(("192.0.2.1", 80), timeout=1),
                        lambda: socket.getaddrinfo("example.org", 443),
                        lambda: socket.socket().connect(("192.0.2.1", 80))):
            try:
                attempt()
            except OSError as e:
                print("refused", e.errno)
        server = socket.create_server(("127.0.0.1", 0))
        socket.create_connection(server.getsockname(), timeout=5).close()
        print("loopback ok")
        pid = os.fork()
        if pid == 0:
            try:
                socket.create_connection(("192.0.2.2", 443), timeout=1)
            except OSError:
                os._exit(7)
            os._exit(0)
        print("child", os.waitpid(pid, 0)[1] >> 8)
        """
    )
    p = g.run(["python", "-c", code])
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("refused") == 3 and "loopback ok" in p.stdout and "child 7" in p.stdout, p.stdout
    log = g.connections()
    assert len(log) == 4, log
    assert "192.0.2.1" in log[0] and "example.org" in log[1] and "192.0.2.1" in log[2] and "192.0.2.2" in log[3]
    assert log[3].split()[0] != log[0].split()[0]  # recorded by the forked child itself


@needs_openvino
def test_import_openvino_after_spos_deploy_stays_local(tmp_path):
    g = Guarded(tmp_path)
    code = "import sys, spos_deploy, openvino; print('openvino_telemetry' in sys.modules)"
    p = g.run(["python", "-c", code])
    g.assert_kept_local(p)
    assert p.stdout.strip() == "False" and p.stderr == ""
    assert list(g.cwd.iterdir()) == []


@needs_openvino
def test_opting_in_leaves_openvino_as_shipped(tmp_path):
    """SPOS_TELEMETRY=on changes nothing: OpenVINO's own telemetry then runs (and the guard catches it), which
    also shows that the guard sees what the other tests say is absent."""
    g = Guarded(tmp_path)
    p = g.run(["python", "-c", "import spos_deploy, openvino"], SPOS_TELEMETRY="on")
    assert p.returncode == 0, p.stderr
    assert len(g.connections()) >= 1
    assert "intel" in g.home_files()


_LATE = """
import os, sys, time
import openvino as ov   # before spos_deploy: its import-time event goes out (to the guard)

log = os.environ["SPOS_TEST_NET_LOG"]
count = lambda: len(open(log).read().splitlines()) if os.path.exists(log) else 0
deadline = time.time() + 30
while count() == 0 and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
print(count())
import spos_deploy  # noqa: E402
ov.save_model(ov.convert_model(sys.argv[1]), "model.xml")
"""


@needs_openvino
@pytest.mark.parametrize("opt_in", [False, True])
def test_telemetry_loaded_before_spos_deploy_goes_quiet(tmp_path, opt_in):
    """``import openvino`` before ``import spos_deploy`` (the block comes too late): converting a model afterwards
    sends nothing more; with the opt-in it does (so the check can fail)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    g = Guarded(tmp_path / "run")
    p = g.run(["python", "-c", _LATE, str(model)], **({"SPOS_TELEMETRY": "on"} if opt_in else {}))
    assert p.returncode == 0, p.stderr
    before = int(p.stdout.split()[0])
    assert before >= 1  # the import-time event of OpenVINO, refused by the guard
    after = len(g.connections())
    assert (after > before) if opt_in else (after == before), g.connections()
    assert (g.cwd / "model.xml").exists()


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory) -> tuple[Guarded, subprocess.CompletedProcess]:
    """spos-export of the tiny model to an OpenVINO IR plus int8 through NNCF, calibrated on real images."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    g = Guarded(tmp_path_factory.mktemp("export"))
    (g.cwd / "model.json").write_text(json.dumps(TINY_MODEL))
    argv = ["spos-export", "model.json", "--random-init", "-o", "ov", "--format", "openvino", "--int8"]
    argv += ["--calib", "fashion-mnist:train", "--calib-count", "16"]
    argv += ["--eval", "fashion-mnist:test", "--eval-count", "30", "--no-bench"]
    return g, g.run(argv)


@needs_openvino
@needs_nncf
def test_openvino_int8_export_stays_local(int8_export):
    g, p = int8_export
    g.assert_kept_local(p)
    assert (g.cwd / "ov" / "model.int8.xml").exists() and (g.cwd / "ov" / "model.xml").exists()


@needs_openvino
@needs_nncf
def test_bench_of_the_ir_stays_local(int8_export, tmp_path):
    exported, _ = int8_export
    g = Guarded(tmp_path)
    for name in ("model.int8.xml", "model.int8.bin"):
        (g.cwd / name).write_bytes((exported.cwd / "ov" / name).read_bytes())
    p = g.run(["spos-bench", "model.int8.xml", "--precision", "int8", "--warmup", "2", "--repeats", "20"])
    g.assert_kept_local(p)


def test_matplotlib_plot_stays_out_of_home(tmp_path):
    g = Guarded(tmp_path)
    p = g.run(["spos-profile", "oneshot-s+", "--plot", "x.png"])
    g.assert_kept_local(p)
    assert (g.cwd / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # matplotlib's cache went to the per-user folder under the temporary folder, as docs/privacy.md says
    mpl = g.tmp / f"spos-deploy-{os.getuid()}" / "matplotlib"
    assert any(mpl.glob("fontlist-*.json")) and (mpl.parent.stat().st_mode & 0o077) == 0


def test_users_own_settings_win(tmp_path):
    g = Guarded(tmp_path)
    mine = tmp_path / "mine"
    code = "import os, spos_deploy; print(os.environ['MPLCONFIGDIR'], os.environ['RAY_USAGE_STATS_ENABLED'])"
    p = g.run(["python", "-c", code], MPLCONFIGDIR=str(mine), RAY_USAGE_STATS_ENABLED="1")
    assert p.returncode == 0 and p.stdout.split() == [str(mine), "1"], p.stderr
    p = g.run(["python", "-c", code])
    assert p.stdout.split() == [str(g.tmp / f"spos-deploy-{os.getuid()}" / "matplotlib"), "0"], p.stderr


_FORKED_CHILD = """
import multiprocessing as mp, os, signal, time
from spos_deploy.cli import signals

def child(ready):
    ready.set()
    time.sleep(60)

signals.install("x")
ctx = mp.get_context("fork")
ready = ctx.Event()
p = ctx.Process(target=child, args=(ready,))
p.start()
assert ready.wait(30)
os.kill(p.pid, signal.SIGTERM)
p.join(30)
print(p.exitcode)
try:
    os.kill(os.getpid(), signal.SIGTERM)  # the command itself keeps its policy
    time.sleep(5)
except signals.Terminated:
    print("parent", signals.received())
"""

_RAW_FORK = """
import ctypes, os, signal, time
from spos_deploy.cli import signals

signals.install("x")
r, w = os.pipe()
pid = ctypes.CDLL(None, use_errno=True).fork()  # below Python: no fork hooks run in the child
if pid == 0:
    os.write(w, b"1")
    time.sleep(5)  # the signal lands within it; the handler runs when it returns
    os._exit(0)
os.read(r, 1)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
"""


def test_sigterm_to_a_forked_child_prints_nothing(tmp_path):
    """A child of a command (a multiprocessing worker, a library's helper) dies by SIGTERM without a traceback
    or the command's interrupt line; the command keeps its own policy."""
    p = Guarded(tmp_path).run(["python", "-c", _FORKED_CHILD])
    assert p.stderr == "" and p.returncode == 0, p.stderr
    assert p.stdout.split() == ["-15", "parent", "15"], p.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libc fork through ctypes")
def test_sigterm_to_a_child_forked_below_python_prints_nothing(tmp_path):
    """A child forked by C code keeps the handler; it notices the foreign pid and dies by the signal."""
    p = Guarded(tmp_path).run(["python", "-c", _RAW_FORK])
    assert p.stderr == "" and p.returncode == 0, p.stderr
    assert p.stdout.strip() == "15", p.stdout


def test_a_planted_cache_folder_is_not_used(tmp_path):
    """``<tmp>/spos-deploy-<uid>`` held by a link (another user's plant): a fresh private folder instead, gone at
    exit; matplotlib's folder is never one that someone else controls."""
    g = Guarded(tmp_path)
    planted = tmp_path / "planted"
    planted.mkdir()
    (g.tmp / f"spos-deploy-{os.getuid()}").symlink_to(planted)
    p = g.run(["python", "-c", "import os, spos_deploy; print(os.environ['MPLCONFIGDIR'])"])
    assert p.returncode == 0, p.stderr
    folder = Path(p.stdout.strip())
    assert folder.parent == g.tmp and folder.name.startswith("spos-deploy-matplotlib-"), folder
    assert not folder.exists() and list(planted.iterdir()) == []
