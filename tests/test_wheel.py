"""The README's install lines install this project, and `make wheel`, as a user types it, gives one
wheel for glibc 2.17+ (manylinux2014) with libjpeg-turbo linked inside, which installs into a
fresh venv by the README's own line and lists, packs and verifies with an empty LD_LIBRARY_PATH."""
from __future__ import annotations

import os
import re
import subprocess
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from conftest import REPO
from fastrec.demo.samples import make_tree

DIST = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
WHEEL_GLOB = f"wheelhouse/{DIST.replace('-', '_')}-*.whl"   # the wheel file's name for DIST


def readme_install_lines() -> list[str]:
    """Every `pip install` line of the README's ```sh blocks (comments dropped)."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if "pip install" in line]


def install_targets(line: str) -> list[str]:
    """What a `pip install` line installs: its arguments, less options, `$(ls X)` read as X and
    extras (`[dask]`) dropped."""
    args = line.split("pip install", 1)[1]
    args = re.sub(r"\$\(ls ([^)]*)\)", r"\1", args)
    return [re.sub(r"\[[\w,-]+\]$", "", a.strip("'\"")) for a in args.split() if not a.startswith("-")]


def test_readme_install_lines_name_this_project():
    """Not a bare name someone else could publish (`fastrec` on the public index is another
    project): the source folder, or the wheel `make wheel` writes."""
    lines = readme_install_lines()
    assert any(WHEEL_GLOB in line for line in lines), lines
    for line in lines:
        targets = install_targets(line)
        assert targets, line
        for target in targets:
            assert target in (".", WHEEL_GLOB), f"{line!r} installs {target!r}, not this project"
    assert DIST != "fastrec"   # the name must stay one no other project holds


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.wheel
def test_make_wheel_installs_and_packs_without_system_libjpeg(tmp_path):
    user_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheelhouse = REPO / "wheelhouse"
    wheelhouse.mkdir(exist_ok=True)
    for stale in ("fastrec-0.1.0-cp311-cp311-linux_x86_64.whl", f"{DIST.replace('-', '_')}-0.0.1-py3-none-any.whl"):
        (wheelhouse / stale).write_bytes(b"an older build")   # what earlier builds left
    _run(["make", "wheel"], cwd=REPO, env=user_env)            # as the README types it
    [wheel] = [w for w in wheelhouse.glob("*.whl") if w.name.startswith(("fastrec-", "fastrec_"))]
    assert wheel.name.endswith("-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"), wheel.name
    shown = " ".join(_run([REPO / ".venv/bin/python", "-m", "auditwheel", "show", wheel], env=user_env).stdout.split())
    consistent = re.search(r'is consistent with the following platform tag: "manylinux_2_(\d+)_x86_64"', shown)
    assert consistent and int(consistent.group(1)) <= 17, shown

    env = dict(user_env, LD_LIBRARY_PATH="")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    [line] = [line for line in readme_install_lines() if WHEEL_GLOB in line]
    # the README's line, by this venv's pip; its dependencies come from this test's environment
    _run(["bash", "-c", f"{python} -m pip {line.split('pip ', 1)[1]} --no-deps --no-index -q"], cwd=REPO, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=env, cwd=tmp_path).stdout.strip())
    # numpy, Pillow and rich come after the venv's own packages (a path added by a .pth file is
    # not scanned for .pth files, so no editable fastrec leaks in)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run([python, "-c", "import fastrec._native.core as c; print(c.__file__)"], env=env, cwd=tmp_path)
    core = Path(where.stdout.strip())
    assert core.is_relative_to(env_dir), core
    assert "libjpeg" not in _run(["ldd", core], env=env).stdout     # linked inside, not loaded
    assert b"libjpeg-turbo version 2." in core.read_bytes()

    make_tree(tmp_path / "images", classes=2, per_class=(3, 4), seed=1)
    fastrec = env_dir / "bin" / "fastrec"
    _run([fastrec, "list", tmp_path / "data", tmp_path / "images", "--recursive"], env=env, cwd=tmp_path)
    _run([fastrec, "pack", tmp_path / "data", tmp_path / "images", "--resize", "32"], env=env, cwd=tmp_path)
    verified = _run([fastrec, "verify", tmp_path / "data", "--decode"], env=env, cwd=tmp_path)
    assert ": OK" in verified.stdout
