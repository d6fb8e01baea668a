"""The installed package is the whole product.

A wheel of the repository is installed, not editable, into a fresh virtual environment, and every command
runs from an empty folder with an empty home, as a user who did ``pip install .`` would run it: the
shipped tables are found by name, builds go to the per-user table folder, ``--version`` works everywhere,
nothing claims a generic top-level import name, and nothing is written where it was not asked for.

The new environment gets its dependencies from the test interpreter's site-packages through a ``.pth``
file (a plain path line). Site-packages folders added that way do not have their own ``.pth`` files
processed, so the repository's editable install there stays inactive: ``spos_deploy`` imports from the
new environment only (checked below).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from spos_deploy._version import __version__

from .conftest import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "spos_deploy", "search", "training")
"""What the wheel is built from (a copy: a build writes build/ and *.egg-info into its source folder), with
whatever of :data:`EXTRA_SOURCES` the repository has."""
EXTRA_SOURCES = ("LICENSE*", "NOTICE*", "MANIFEST.in", "setup.cfg", "setup.py")
SHIPPED = "flops_OneShot_se_lcap_224"
BUILT = "flops_OneShot_se_lcap_32_c10"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _local_backend() -> bool:
    """Whether this interpreter can build the wheel itself (no package index): setuptools >= 70.1 has
    bdist_wheel built in; older ones need the ``wheel`` package."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 64


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("installed")
    src = work / "src"
    src.mkdir()
    for name in [*SOURCES, *(p.name for pattern in EXTRA_SOURCES for p in ROOT.glob(pattern))]:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    isolation = ["--no-build-isolation"] if _local_backend() else []  # else setuptools comes from the index
    _run([*pip, "wheel", "-q", "--no-deps", *isolation, "-w", str(work / "dist"), str(src)])
    (wheel,) = (work / "dist").glob("spos_deploy-*.whl")

    env = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = env / "bin" / "python"
    # installed before the dependencies are visible, so that pip sees no other spos-deploy to replace
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_spos_test_dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    return env


@pytest.fixture
def user(tmp_path: Path, venv: Path) -> dict:
    """An empty current folder and an empty home, and the environment of a user's shell there."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPOS_DEBUG", "SPOS_TABLES_DIR", "XDG_DATA_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("XDG_")}
    env.update(
        HOME=str(home),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONDONTWRITEBYTECODE="1",  # the shared dependencies' folders are not this test's to write
    )
    return {"cwd": cwd, "home": home, "env": env, "bin": venv / "bin"}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_installed_commands_from_an_empty_folder(user: dict) -> None:
    cwd, home, env, bin_ = user["cwd"], user["home"], user["env"], user["bin"]

    def cmd(*args: str, status: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(bin_ / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=env)
        assert proc.returncode == status, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    for prog in COMMAND_MODULES:
        assert cmd(prog, "--version").stdout.strip() == f"spos-deploy {__version__}", prog

    shown = cmd("spos-lut", "show", SHIPPED).stdout
    assert str(bin_.parent) in shown.splitlines()[0] and "FLOPs/params table" in shown
    assert "FLOPs/params table" in cmd("spos-lut", "show", f"lookup_tables/{SHIPPED}.json").stdout  # README spelling
    err = cmd("spos-lut", "show", "no_such_table", status=2).stderr.strip().splitlines()
    assert len(err) == 1 and "no_such_table" in err[0] and "shipped" in err[0], err

    profile = json.loads(cmd("spos-profile", "oneshot-s+", "--json").stdout)
    assert profile["flops"] > 0

    built = json.loads(
        cmd("spos-lut", "build", "--input-size", "32", "--num-classes", "10", "--no-progress", "--json").stdout
    )
    tables = home / ".local" / "share" / "spos-deploy" / "tables"
    assert Path(built["table"]) == tables / f"{BUILT}.json"
    listed = json.loads(cmd("spos-lut", "list", "--json").stdout)
    by_source = {(t["source"], t["name"]): t for t in listed["tables"]}
    assert by_source[("user", BUILT)]["kind"] == "flops" and by_source[("shipped", BUILT)]["shadowed"]
    assert by_source[("shipped", SHIPPED)]["config"] == "OneShot_se_lcap_224"
    assert str(tables) in cmd("spos-lut", "show", BUILT).stdout.splitlines()[0]  # the user's table comes first

    assert _tree(cwd) == [], "a command wrote into the current folder"
    assert _tree(home) == [str(Path(".local/share/spos-deploy/tables") / f"{BUILT}.json")], _tree(home)


_CHECKS = """
import importlib, importlib.metadata as md, json, sys
from pathlib import Path
import spos_deploy, spos_deploy.search, spos_deploy.training
site = Path(sys.prefix).resolve()
out = {
    "file": str(Path(spos_deploy.__file__).resolve()),
    "inside": all(site in Path(m.__file__).resolve().parents for m in (spos_deploy, spos_deploy.search,
                                                                          spos_deploy.training)),
    "version": spos_deploy.__version__,
    "typed": (Path(spos_deploy.__file__).parent / "py.typed").is_file(),
    "dist": str(md.distribution("spos-deploy").locate_file("")),
    "license": md.metadata("spos-deploy")["License"],
    "author": md.metadata("spos-deploy")["Author"] or md.metadata("spos-deploy")["Author-email"],
    "editable_finder": any("editable" in m for m in sys.modules),
}
for name in ("search", "training"):
    try:
        importlib.import_module(name)
        out[name] = "imported"
    except ModuleNotFoundError:
        out[name] = "absent"
print(json.dumps(out))
"""


def test_installed_package_imports_only_from_the_environment(user: dict) -> None:
    proc = _run([str(user["bin"] / "python"), "-c", _CHECKS], cwd=user["cwd"], env=user["env"])
    got = json.loads(proc.stdout)
    assert got["inside"], f"spos_deploy imported from {got['file']}, not the new environment"
    assert not got["editable_finder"], "the repository's editable install was active"
    assert Path(got["dist"]).resolve().is_relative_to(user["bin"].parent.resolve()), got["dist"]
    assert got["version"] == __version__
    assert got["typed"], "py.typed is not installed"
    assert got["license"] == "Apache-2.0" and got["author"], got
    assert got["search"] == "absent" and got["training"] == "absent", "a generic top-level name is installed"
    assert _tree(user["cwd"]) == [] and _tree(user["home"]) == []
