"""`fastrec pack --dask`: a cluster run gives the same bytes as a local pack, even when a worker
dies mid-run; an unreachable scheduler is a clear, prompt error."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from fastrec.formats.lists import ListOptions, make_lists  # noqa: E402
from fastrec.engine import PackError, PackOptions, pack_prefix  # noqa: E402
from fastrec.demo.samples import make_odd_files, make_tree  # noqa: E402
from test_resume import _small_tmpfs  # noqa: E402  (one size-limited tmpfs helper for the full-disk tests)
from conftest import subprocess_env  # noqa: E402

OUTPUTS = (".rec", ".idx", ".skipped.tsv", ".fingerprints")   # Dask and local sidecars are identical too
OPTS = dict(resize=96, quality=85, progress="off", max_skipped=1.0)   # the tree holds bad files on purpose


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
    pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(**OPTS))
    files = _read(out)
    assert {n for n in files if not n.endswith(".skipped.tsv")} == {
        "data_0.rec", "data_0.idx", "data_0.fingerprints", "data_1.rec", "data_1.idx", "data_1.fingerprints"} \
        and files["data_0.rec"]
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
    opts = PackOptions(**OPTS, dask=c.scheduler_address, shard_size=7)
    summary = pack_prefix(str(out / "data"), str(tree / "images"), opts)
    assert _read(out) == local
    assert summary.skipped == 2 and summary.images == sum(b.count(b"\n") for n, b in local.items() if n.endswith(".idx"))
    assert not any(p.name.endswith(".shards") for p in out.iterdir())


def test_shards_are_submitted_a_window_at_a_time(tree, local, cluster, monkeypatch):
    """The client keeps at most a window of shards (with their items) in flight and submits the
    next as each finishes: with a window of 1, a run of 15 shards never has two in flight, and
    still packs every image once."""
    from fastrec.engine import cluster as cl

    c, _ = cluster
    submitted, busy = [], []
    real_client = cl._client

    class Counting:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            return getattr(self.client, name)

        def submit(self, *args, **kwargs):
            busy.append(sum(not f.done() for f in submitted))
            submitted.append(self.client.submit(*args, **kwargs))
            return submitted[-1]

    monkeypatch.setattr(cl, "_client", lambda address: (Counting(real_client(address)[0]), None))
    monkeypatch.setattr(cl, "_window", lambda client: 1)
    out = tree / "window"
    _lists(tree, out)
    pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(**OPTS, dask=c.scheduler_address,
                                                                      shard_size=2))
    assert _read(out) == local
    assert len(submitted) >= 10 and max(busy) == 0


def test_local_cluster_address(tree, local):
    out = tree / "localcluster"
    _lists(tree, out)
    pack_prefix(str(out / "data"), str(tree / "images"),
                PackOptions(**OPTS, dask="local:2", shard_size=5))
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
    opts = PackOptions(**OPTS, dask=c.scheduler_address, shard_size=3)
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


def test_result_lost_after_its_shard_finished_is_recomputed(tree, local, cluster, monkeypatch):
    """The worker holding a finished shard's result dies before the client gathers it, while
    another client is the current one (as in a notebook inside `with Client(...)`): the shard is
    computed again and the bytes are the same. (CI found this: as_completed waited on the
    current client's loop, and the recompute then failed with 'bound to a different event loop'.)"""
    import dask.distributed

    c, client = cluster
    killed = []

    class KillingTheHolder(dask.distributed.as_completed):
        def __next__(self):
            fut = super().__next__()
            if not killed:
                (holder,) = fut.client.who_has(fut)[fut.key]
                killed.append(client.run(os.getpid, workers=[holder])[holder])
                os.kill(killed[0], signal.SIGKILL)
                deadline = time.monotonic() + 60
                while holder in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                    time.sleep(0.05)
            return fut

    monkeypatch.setattr(dask.distributed, "as_completed", KillingTheHolder)
    out = tree / "lost"
    _lists(tree, out)
    pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(**OPTS, dask=c.scheduler_address, shard_size=3))
    assert killed and _read(out) == local


def _dask_log_handlers() -> list[str]:
    import logging
    return sorted(f"{type(h).__name__}:{getattr(h, 'baseFilename', '')}" for h in logging.getLogger("distributed").handlers)


def test_a_long_lived_cluster_logs_as_before_after_each_run(tree, local, cluster):
    """Each run sends the workers' log to its shard folder; when it ends the workers log where they
    did before (their terminal), not to every earlier run's removed file, one more kept open a run."""
    c, client = cluster
    before = client.run(_dask_log_handlers)
    for name in ("logs_a", "logs_b"):
        _lists(tree, tree / name)
        _rerun(cluster, tree / name, tree, shard_size=7)
    assert client.run(_dask_log_handlers) == before


def test_unreachable_scheduler_is_a_prompt_clear_error(tree, monkeypatch):
    import fastrec.engine.cluster as dist

    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 3)   # 15 s in use; the message is the same
    out = tree / "nowhere"
    _lists(tree, out)
    start = time.perf_counter()
    with pytest.raises(PackError, match="cannot reach the Dask scheduler"):
        pack_prefix(str(out / "data"), str(tree / "images"),
                    PackOptions(progress="off", max_skipped=1.0, dask="tcp://127.0.0.1:9"))
    assert time.perf_counter() - start < 60


# ------------------------------------------------------------------ shard identity and reruns
def _manifests(out: Path) -> dict[str, dict]:
    """Each list's manifest, less the path of the list (which differs by folder)."""
    import json
    got = {}
    for p in sorted(out.glob("*.manifest.json")):
        m = json.loads(p.read_text())
        m.pop("list")
        got[p.name] = m
    return got


def _local_pack(tree: Path, name: str, lists=None, **opts) -> tuple[dict[str, bytes], dict]:
    """A clean local pack (the reference) of the tree's lists, or of given .lst texts."""
    out = tree / name
    if lists is None:
        _lists(tree, out)
    else:
        out.mkdir()
        for lst_name, text in lists.items():
            (out / lst_name).write_bytes(text)
    pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(**{**OPTS, **opts}))
    return _read(out), _manifests(out)


def _interrupted(tree: Path, name: str, shards: int = 3, shard_size: int = 5, **opts) -> Path:
    """The state an interrupted --dask run leaves: the lists, and the first shards of each."""
    from fastrec.engine.cluster import pack_shard, plan_shards
    from fastrec.engine.local import Job
    from fastrec.formats.lists import find_lists

    out = tree / name
    _lists(tree, out)
    o = PackOptions(**{**OPTS, **opts})
    for lst in find_lists(str(out / "data"))[1]:
        job = Job.for_list(lst, str(tree / "images"))
        os.makedirs(job.rec + ".shards")
        for start, stop, base in plan_shards(job, o, shard_size)[:shards]:
            pack_shard(job.items[start:stop], job.root, base, o)
    (out / "data_0.rec.shards" / "000000000099.tmp-dead.rec").write_bytes(b"orphan of a killed worker")
    return out


def _rerun(cluster, out: Path, tree: Path, shard_size: int = 5, **opts):
    c, _ = cluster
    return pack_prefix(str(out / "data"), str(tree / "images"),
                       PackOptions(**{**OPTS, **opts}, dask=c.scheduler_address, shard_size=shard_size))


def _relabelled(text: bytes) -> bytes:
    """The .lst with every label moved by one class (ids and paths unchanged)."""
    lines = []
    for line in text.decode().splitlines():
        f = line.split("\t")
        f[1] = "%f" % ((float(f[1]) + 1) % 4)
        lines.append("\t".join(f))
    return ("\n".join(lines) + "\n").encode()


def test_rerun_with_the_same_inputs_reuses_shards(tree, local, cluster):
    out = _interrupted(tree, "same", shards=2)
    summary = _rerun(cluster, out, tree)
    assert _read(out) == local
    assert _manifests(out) == _manifests(tree / "local")       # the same record of itself as a local pack
    full = _rerun(cluster, _interrupted(tree, "same_none", shards=0), tree)
    assert 0 < summary.bytes_in < full.bytes_in                # 2 shards per list were not packed again
    assert not list(out.glob("*.shards")) and not list(out.glob("*.joining.*"))


def test_a_shard_altered_on_disk_is_refused_at_the_join_and_packed_again(tree, local, cluster):
    """The join checks each shard's records against the shard's fingerprints: a kept shard whose
    record bytes changed is removed with a one-line DataError, and the rerun repacks it."""
    from fastrec.errors import DataError

    out = _interrupted(tree, "altered", shards=2)
    shard = sorted((out / "data_0.rec.shards").glob("*.rec"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its fingerprints"):
        _rerun(cluster, out, tree)
    assert not shard.exists()
    _rerun(cluster, out, tree)
    assert _read(out) == local


def test_shards_of_another_fastrec_are_not_reused(tree, monkeypatch):
    """The shard identity holds the fastrec version and pack format: another one plans other names."""
    from fastrec.engine import cluster as cluster_mod
    from fastrec.engine.local import Job

    out = tree / "versions"
    _lists(tree, out)
    job = Job.for_list(str(out / "data_0.lst"), str(tree / "images"))
    names = [b for _, _, b in cluster_mod.plan_shards(job, PackOptions(**OPTS), 5)]
    monkeypatch.setattr(cluster_mod, "__version__", "0.0.9")
    assert not set(names) & {b for _, _, b in cluster_mod.plan_shards(job, PackOptions(**OPTS), 5)}
    monkeypatch.undo()
    monkeypatch.setattr(cluster_mod, "FORMAT_VERSION", 1)
    assert not set(names) & {b for _, _, b in cluster_mod.plan_shards(job, PackOptions(**OPTS), 5)}


def test_rerun_with_another_resize_packs_everything_anew(tree, cluster):
    out = _interrupted(tree, "resize")
    _rerun(cluster, out, tree, resize=64)
    assert _read(out) == _local_pack(tree, "resize_ref", resize=64)[0]


def test_rerun_with_another_shard_size(tree, local, cluster):
    for size in (3, 10):
        out = _interrupted(tree, f"size{size}")
        _rerun(cluster, out, tree, shard_size=size)
        assert _read(out) == local, size


def test_rerun_with_an_edited_or_relisted_lst(tree, cluster):
    out = _interrupted(tree, "edited")
    edited = {p.name: _relabelled(p.read_bytes()) for p in out.glob("*.lst")}
    for name, text in edited.items():
        (out / name).write_bytes(text)
    _rerun(cluster, out, tree)
    want, want_manifests = _local_pack(tree, "edited_ref", lists=edited)
    assert _read(out) == want and _manifests(out) == want_manifests

    out = _interrupted(tree, "relisted")
    make_lists(str(out / "data"), str(tree / "images"), ListOptions(recursive=True, chunks=2, shuffle=False))
    relisted = {p.name: p.read_bytes() for p in out.glob("*.lst")}
    _rerun(cluster, out, tree)
    assert _read(out) == _local_pack(tree, "relisted_ref", lists=relisted)[0]


def test_negative_shard_size_is_a_clean_error(tree):
    from fastrec.errors import UsageError
    out = tree / "negative"
    _lists(tree, out)
    with pytest.raises(UsageError, match="--shard-size"):
        pack_prefix(str(out / "data"), str(tree / "images"),
                    PackOptions(**OPTS, dask="tcp://127.0.0.1:9", shard_size=-5))
    assert not list(out.glob("*.rec*"))
    from helpers_pack import fastrec_main
    assert fastrec_main(["pack", out / "data", tree / "images", "--dask", "local:1", "--shard-size", "-5"]) == 2
    assert not list(out.glob("*.rec*"))


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if ".tmp-" in p.name or ".joining" in p.name)


def test_full_disk_during_the_join_is_clean_and_rerun_completes(tree, local, cluster, monkeypatch):
    import errno
    import fastrec.engine.cluster as dist
    from fastrec.errors import EnvironmentFault

    out = tree / "joinfull"
    _lists(tree, out)
    real = dist._copy_checked      # copies (and checks) one shard into the joined files
    calls = {"n": 0}

    def copy_then_fail(*a):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a)

    monkeypatch.setattr(dist, "_copy_checked", copy_then_fail)
    with pytest.raises(EnvironmentFault, match="run the same command again") as err:
        _rerun(cluster, out, tree)
    assert "--resume" not in str(err.value)
    assert _leftovers(out) == []
    shards = sorted(p.name for p in out.rglob("*.shards/*"))
    assert shards                                   # kept for the rerun
    monkeypatch.undo()
    _rerun(cluster, out, tree)
    assert _read(out) == local


def test_full_disk_during_shards_is_clean_and_rerun_completes(tree, local, cluster):
    import subprocess
    from fastrec.errors import EnvironmentFault

    out = tree / "shardfull"
    total = sum(len(b) for b in local.values())
    if not _small_tmpfs(out, max(16384, total // 3 // 4096 * 4096)):
        pytest.skip("cannot mount a size-limited tmpfs here")
    try:
        _lists(tree, out)
        with pytest.raises(EnvironmentFault, match="run the same command again") as err:
            _rerun(cluster, out, tree, shard_size=3)
        assert "No space left" in str(err.value) and "--resume" not in str(err.value)
        assert _leftovers(out) == []
        subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)
        _rerun(cluster, out, tree, shard_size=3)
        assert _read(out) == local
        assert _leftovers(out) == [] and not list(out.glob("*.shards"))
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)   # lazy: a worker may still hold it


def test_full_disk_on_a_local_cluster_is_one_line_not_log_errors(tree, tmp_path):
    """The workers' log sits in the shard folder, on the disk that filled: each log line it cannot
    write is dropped, not a '--- Logging error ---' traceback on the terminal for every failed
    shard's retry; the run ends in fastrec's one line."""
    out = tmp_path / "full"
    if not _small_tmpfs(out, "64k"):
        pytest.skip("cannot mount a size-limited tmpfs here")
    try:
        _lists(tree, out)
        run = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(out / "data"), str(tree / "images"),
                              "--resize", "96", "--max-skipped", "1.0", "--dask", "local:2", "--shard-size", "3",
                              "--progress", "off"], env=subprocess_env(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 75, run.stderr[-3000:]
        assert "Traceback" not in run.stderr and "Logging error" not in run.stderr, run.stderr[-3000:]
        assert run.stderr.rstrip().splitlines()[-1].startswith("fastrec pack: error: packing the shard")
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)


def test_ctrl_c_on_a_local_cluster_is_quiet_and_the_rerun_completes(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while shards run: exit
    130 within seconds, no traceback from the worker processes, no process left; running the same
    command again completes byte-identically to a local pack."""
    from PIL import Image
    import numpy as np

    (tmp_path / "img" / "c").mkdir(parents=True)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(tmp_path / "img" / "c" / "x.jpg",
                                                                                quality=90)
    lst = "".join(f"{i}\t0.000000\tc/x.jpg\n" for i in range(300))
    for d in ("dask", "local"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "data.lst").write_text(lst)
    cmd = [sys.executable, "-m", "fastrec", "pack", str(tmp_path / "dask" / "data"), str(tmp_path / "img"),
           "--resize", "96", "--dask", "local:1", "--shard-size", "2", "--progress", "off"]
    run = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    shards = tmp_path / "dask" / "data.rec.shards"
    deadline = time.monotonic() + 120
    while not (shards.is_dir() and any(p.suffix == ".idx" for p in shards.iterdir())):
        assert run.poll() is None and time.monotonic() < deadline, "no shard finished"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-3000:]
    deadline = time.monotonic() + 15     # no process of the run left alive (a zombie awaiting init is dead)
    while (alive := [st for st in subprocess.run(["ps", "-o", "stat=", "-g", str(run.pid)], capture_output=True,
                                                   text=True).stdout.split() if not st.startswith("Z")]):
        assert time.monotonic() < deadline, alive
        time.sleep(0.2)
    assert subprocess.run(cmd, env=subprocess_env(), capture_output=True).returncode == 0
    pack_prefix(str(tmp_path / "local" / "data"), str(tmp_path / "img"), PackOptions(resize=96, progress="off"))
    assert _read(tmp_path / "dask") == _read(tmp_path / "local")


def test_a_list_edited_after_planning_is_refused(tree, cluster, monkeypatch):
    """Shards are planned from the list, then their items are read again as they are submitted:
    a label edited in between would pack a shard that its name does not describe. The run fails
    (DataError) instead of joining a mix of old and new items."""
    from fastrec.engine import cluster as cl
    from fastrec.errors import DataError

    c, _ = cluster
    out = tree / "edited-after-planning"
    _lists(tree, out)
    lst = out / "data_1.lst"
    real_client = cl._client

    def edit_then_connect(address):
        lines = lst.read_text().splitlines(keepends=True)
        key, label, path = lines[-1].split("\t")
        lines[-1] = f"{key}\t{float(label) + 1:f}\t{path}"
        lst.write_text("".join(lines))
        return real_client(address)

    monkeypatch.setattr(cl, "_client", edit_then_connect)
    with pytest.raises(DataError, match="changed while it was being packed"):
        pack_prefix(str(out / "data"), str(tree / "images"), PackOptions(**OPTS, dask=c.scheduler_address,
                                                                          shard_size=4))
    assert not (out / "data_1.rec").exists()
