"""Shared test settings: the interpreter and scripts the compatibility tests run, and Hypothesis.

The compatibility oracle is the real MXNet 1.9.1 installed next to fastrec (shared/SPEC.md).
Hypothesis runs derandomized by default so that every run checks the same examples; set
HYPOTHESIS_PROFILE=explore to let it search new ones.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the virtualenv's python: it has fastrec, mxnet and cv2
_MXNET = importlib.util.find_spec("mxnet")  # located, not imported: importing takes ~1 s
IM2REC = Path(_MXNET.origin).parent / "tools" / "im2rec.py" if _MXNET else Path("im2rec.py")

settings.register_profile(
    "fastrec", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("explore", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastrec"))


def subprocess_env() -> dict[str, str]:
    """The environment for tool subprocesses: UTF-8 I/O and file names on every platform."""
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture(scope="session")
def im2rec_script() -> Path:
    if not IM2REC.is_file():
        pytest.skip(f"mxnet's tools/im2rec.py is not installed at {IM2REC}")
    return IM2REC


# A child that runs the unmodified im2rec.py as __main__ (runpy) once per argument vector, each
# in its own working directory, so MXNet is imported once per batch instead of once per run;
# it reports each run's exit status and stdout bytes (hex) as JSON on the real stdout.
_IM2REC_BATCH = r"""
import io, json, os, runpy, sys, traceback
script, runs, real_stdout = sys.argv[1], json.load(sys.stdin), sys.stdout
results = []
for run in runs:
    if run["cwd"]:
        os.chdir(run["cwd"])
    buf = io.BytesIO()
    sys.stdout = io.TextIOWrapper(buf, encoding="utf-8", newline="\n", write_through=True)
    sys.argv = [script] + run["argv"]
    status = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        status = 1
        traceback.print_exc()
    sys.stdout.flush()
    results.append({"status": status, "stdout": buf.getvalue().hex()})
    sys.stdout = real_stdout
json.dump(results, real_stdout)
"""


def run_im2rec(runs: list[tuple[Path | None, list[str]]], timeout: float = 600) -> list[tuple[int, bytes]]:
    """Run `im2rec.py ARGV` for each (cwd or None, argv) in one child: [(exit status, stdout)]."""
    payload = [{"cwd": str(cwd) if cwd else None, "argv": [str(a) for a in argv]} for cwd, argv in runs]
    r = subprocess.run([PYTHON, "-c", _IM2REC_BATCH, str(IM2REC)], input=json.dumps(payload),
                       capture_output=True, text=True, env=subprocess_env(), timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return [(res["status"], bytes.fromhex(res["stdout"])) for res in json.loads(r.stdout)]
