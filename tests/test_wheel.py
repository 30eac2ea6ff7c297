"""`make wheel`: a wheel that carries libjpeg-turbo inside it installs into a fresh venv and packs
with an empty LD_LIBRARY_PATH, its extensions resolving libjpeg from the wheel's fastrec.libs/."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO
from fastrec.demo.samples import make_tree

pytestmark = pytest.mark.wheel


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"
    return r


def test_wheel_installs_and_packs_without_system_libjpeg(tmp_path):
    wheels = tmp_path / "wheelhouse"
    _run(["make", "-s", "wheel-build", f"PY={sys.executable}", f"WHEEL_DIR={wheels}"], cwd=REPO)
    [wheel] = wheels.glob("fastrec-*.whl")
    assert "manylinux" in wheel.name

    # the fresh venv sees nothing of this checkout or this environment but what is added below
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LD_LIBRARY_PATH"] = ""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=env, cwd=tmp_path).stdout.strip())
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], env=env, cwd=tmp_path)
    # numpy, Pillow and rich come from this test's environment, after the venv's own packages (a
    # path added by a .pth file is not scanned for .pth files, so no editable fastrec leaks in)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run([python, "-c", "import fastrec._native.core as c; print(c.__file__)"], env=env, cwd=tmp_path)
    core = Path(where.stdout.strip())
    assert core.is_relative_to(env_dir), core
    libjpeg = [line.split("=>")[1].split("(")[0].strip()
               for line in _run(["ldd", core], env=env).stdout.splitlines() if "libjpeg" in line]
    assert libjpeg and all(Path(p).resolve().parent == site / "fastrec.libs" for p in libjpeg), libjpeg

    make_tree(tmp_path / "images", classes=2, per_class=(3, 4), seed=1)
    fastrec = env_dir / "bin" / "fastrec"
    _run([fastrec, "list", tmp_path / "data", tmp_path / "images", "--recursive"], env=env, cwd=tmp_path)
    _run([fastrec, "pack", tmp_path / "data", tmp_path / "images", "--resize", "32"], env=env, cwd=tmp_path)
    verified = _run([fastrec, "verify", tmp_path / "data", "--decode"], env=env, cwd=tmp_path)
    assert ": OK" in verified.stdout
