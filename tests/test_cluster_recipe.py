"""The README's SLURM recipe uses each core once: one shard task per worker (Dask threads 1),
the node's cores booked for it and used by that task's packing threads (num_thread)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _call_kwargs(source: str, name: str) -> dict:
    """The keyword arguments of the first call to `name` in `source`, as Python values."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords
                    if not isinstance(k.value, ast.Attribute)}
    raise AssertionError(f"no {name}(...) call in the README's recipe")


def recipe() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Running on a cluster"):]
    return next(b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "SLURMCluster" in b)


def test_slurm_recipe_uses_each_core_once():
    jobqueue = pytest.importorskip("dask_jobqueue")
    slurm = _call_kwargs(recipe(), "SLURMCluster")
    num_thread = _call_kwargs(recipe(), "PackOptions")["num_thread"]
    cluster = jobqueue.SLURMCluster(**slurm)   # starts a scheduler only; no SLURM needed
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert re.search(r"--nthreads 1\b", script), script            # one shard task at a time
    assert f"--cpus-per-task={num_thread}" in script, script       # the cores its threads use
    assert "--nworkers" not in script                              # one worker per job


def test_local_cluster_runs_one_shard_per_worker():
    pytest.importorskip("distributed")
    from fastrec.engine.cluster import _client
    client, cluster = _client("local:2")
    try:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [1, 1]
    finally:
        client.close()
        cluster.close()
