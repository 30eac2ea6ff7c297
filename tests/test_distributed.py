"""`fastrec pack --dask`: a cluster run gives the same bytes as a local pack, even when a worker
dies mid-run; an unreachable scheduler is a clear, prompt error."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from fastrec.formats.lists import ListOptions, make_lists  # noqa: E402
from fastrec.engine import PackError, PackOptions, pack_prefix  # noqa: E402
from fastrec.demo.samples import make_odd_files, make_tree  # noqa: E402

OUTPUTS = (".rec", ".idx", ".skipped.tsv")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("dask")
    root = base / "images"
    make_tree(root, classes=3, per_class=(8, 10), sizes="mixed", seed=11)
    odd = make_odd_files(base / "odd")
    (root / "zz").mkdir()
    for key in ("truncated", "png_as_jpeg", "empty"):
        shutil.copy(odd[key], root / "zz" / f"{key}.jpg")
    return base


def _lists(base: Path, out: Path) -> None:
    out.mkdir(exist_ok=True)
    make_lists(str(out / "data"), str(base / "images"), ListOptions(recursive=True, chunks=2))


def _read(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.endswith(OUTPUTS)}


@pytest.fixture(scope="module")
def local(tree) -> dict[str, bytes]:
    out = tree / "local"
    _lists(tree, out)
    pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(resize=96, quality=85, progress="off"))
    files = _read(out)
    assert {n for n in files if not n.endswith(".skipped.tsv")} == {"data_0.rec", "data_0.idx", "data_1.rec",
                                                                    "data_1.idx"} and files["data_0.rec"]
    return files


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            Client(c) as client:
        yield c, client


def test_cluster_run_matches_local_bytes(tree, local, cluster):
    c, _ = cluster
    out = tree / "cluster"
    _lists(tree, out)
    opts = PackOptions(resize=96, quality=85, progress="off", dask=c.scheduler_address, shard_size=7)
    summary = pack_prefix(str(out / "data"), str(tree / "images"), opts)
    assert _read(out) == local
    assert summary.skipped == 2 and summary.images == sum(b.count(b"\n") for n, b in local.items() if n.endswith(".idx"))
    assert not any(p.name.endswith(".shards") for p in out.iterdir())


def test_local_cluster_address(tree, local):
    out = tree / "localcluster"
    _lists(tree, out)
    pack_prefix(str(out / "data"), str(tree / "images"),
                PackOptions(resize=96, quality=85, progress="off", dask="local:2", shard_size=5))
    assert _read(out) == local


def _slow_shard(*args):
    """pack_shard, slowed down so a worker can be killed while shards are in flight."""
    from fastrec.engine.cluster import pack_shard
    time.sleep(0.4)
    return pack_shard(*args)


def test_killed_worker_still_gives_the_same_bytes(tree, local, cluster, monkeypatch):
    c, client = cluster
    import fastrec.engine.cluster as dist

    monkeypatch.setattr(dist, "pack_shard", _slow_shard)
    out = tree / "killed"
    _lists(tree, out)
    opts = PackOptions(resize=96, quality=85, progress="off", dask=c.scheduler_address, shard_size=3)
    import threading

    def kill_one_worker():
        time.sleep(1.0)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    pack_prefix(str(out / "data"), str(tree / "images"), opts)
    killer.join()
    assert _read(out) == local


def test_unreachable_scheduler_is_a_prompt_clear_error(tree):
    out = tree / "nowhere"
    _lists(tree, out)
    start = time.perf_counter()
    with pytest.raises(PackError, match="cannot reach the Dask scheduler"):
        pack_prefix(str(out / "data"), str(tree / "images"),
                    PackOptions(progress="off", dask="tcp://127.0.0.1:9"))
    assert time.perf_counter() - start < 60
