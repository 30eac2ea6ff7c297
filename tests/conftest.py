"""Shared test settings: the interpreter and scripts the compatibility tests run, and Hypothesis.

The compatibility oracle is the real MXNet 1.9.1 installed next to fastrec (shared/SPEC.md).
Hypothesis runs derandomized by default so that every run checks the same examples; set
HYPOTHESIS_PROFILE=explore to let it search new ones.
"""
from __future__ import annotations

import importlib.util
import os
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
