"""One writer per output, outputs that are never inputs, all-or-nothing list sets, and errors that
stay errors on every channel (issue 21 items 2, 5, 7, 10; issue 22 item 8)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import subprocess_env
from fastrec.demo.samples import make_tree
from test_faults import shim  # noqa: F401  (the LD_PRELOAD fault shim, built once)


def fastrec(cwd: Path, *argv: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastrec", *argv], cwd=cwd, env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("writers")
    make_tree(base / "imgs", classes=3, per_class=(20, 30), seed=5)
    return base / "imgs"


@pytest.fixture
def work(images, tmp_path) -> Path:
    shutil.copytree(images, tmp_path / "imgs")
    (tmp_path / "lists").mkdir()
    return tmp_path


def test_a_second_pack_into_one_prefix_is_refused_and_the_first_verifies(work, shim):  # noqa: F811
    """Issue 21 case 2: two packs 30 ms apart (--resize 96 and 48): both exited 0 with a garbled pack.
    The first opens its images 300 ms slower (the fault shim's delay), so it is still running."""
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    env = subprocess_env()
    env.update(LD_PRELOAD=shim, FAULT_MATCH=str(work), FAULT_AT="0", FAULT_DELAY_MS="300", FAULT_DELAY_MATCH=".JPEG")
    first = subprocess.Popen([sys.executable, "-m", "fastrec", "pack", "lists/train", "imgs", "--resize", "96"],
                             cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = work / "lists" / ".train.lock"
    deadline = time.monotonic() + 20
    while not (lock.exists() and lock.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.03)
    second = fastrec(work, "pack", "lists/train", "imgs", "--resize", "48")
    assert first.wait(60) == 0, first.stderr
    assert second.returncode == 75
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("fastrec pack: error: another fastrec run is writing these outputs: pid ")
    assert f"pid {first.pid} on " in line and "pack lists/train imgs --resize 96" in line and "wait for it" in line
    assert not lock.exists()   # removed at the end of the first run
    verified = fastrec(work, "verify", "lists/train")
    assert verified.returncode == 0 and "records" in verified.stdout and "OK" in verified.stdout
    n = sum(1 for _ in (work / "lists" / "train.lst").open())
    assert (work / "lists" / "train.idx").read_text().count("\n") == n


def test_a_lock_left_by_a_killed_run_is_taken_over(work):
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    (work / "lists" / ".train.lock").write_text("pid 999999 on elsewhere: fastrec pack (killed)\n")
    assert fastrec(work, "pack", "lists/train", "imgs", "--resize", "32").returncode == 0


def test_a_lock_refuses_list_while_a_pack_of_the_prefix_runs(work):
    """list and pack of one prefix share the lock (a list rewritten under a pack would mix datasets)."""
    import fcntl
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    with open(work / "lists" / ".train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 1 on here: fastrec pack lists/train imgs\n")
        held.flush()
        got = fastrec(work, "list", "lists/train", "imgs", "--recursive", "--json")
    assert got.returncode == 75 and "fastrec pack lists/train imgs" in got.stderr
    assert json.loads(got.stdout)["exit"] == 75


def test_pack_over_its_own_archive_is_refused_and_the_archive_kept(work):
    """Issue 21 case 5: `pack t --from-tar t.rec` truncated the archive to 0 bytes."""
    with tarfile.open(work / "t.rec", "w") as t:
        t.add(work / "imgs", arcname="imgs")
    size = (work / "t.rec").stat().st_size
    assert fastrec(work, "list", "t", "--from-tar", "t.rec").returncode == 0
    got = fastrec(work, "pack", "t", "--from-tar", "t.rec", "--pass-through")
    assert got.returncode == 2 and "is the input" in got.stderr and "Traceback" not in got.stderr
    assert (work / "t.rec").stat().st_size == size
    os.link(work / "t.rec", work / "u.tar")    # a hard link to the output is the same file
    shutil.copy(work / "t.lst", work / "u.lst")
    os.rename(work / "t.rec", work / "u.rec")
    got = fastrec(work, "pack", "u", "--from-tar", "u.tar", "--pass-through")
    assert got.returncode == 2 and "is the input" in got.stderr and (work / "u.tar").stat().st_size == size


def test_pack_over_its_own_archive_as_the_sidecar_is_refused_and_the_archive_kept(work):
    """Review: the `.fingerprints` sidecar was left out of the outputs checked against the inputs, so
    `pack t --from-tar t.fingerprints` truncated the archive to the sidecar's 16-byte header."""
    with tarfile.open(work / "t.fingerprints", "w") as t:
        t.add(work / "imgs", arcname="imgs")
    before = (work / "t.fingerprints").read_bytes()
    assert fastrec(work, "list", "t", "--from-tar", "t.fingerprints").returncode == 0
    got = fastrec(work, "pack", "t", "--from-tar", "t.fingerprints", "--pass-through")
    assert got.returncode == 2 and "is the input" in got.stderr and "Traceback" not in got.stderr
    assert (work / "t.fingerprints").read_bytes() == before


def test_a_lock_planted_as_a_symlink_does_not_overwrite_what_it_names(work):
    """Review: the lock was opened following symlinks and truncated, so `.train.lock -> precious`
    replaced precious's bytes with the holder line."""
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    (work / "precious.txt").write_text("keep me\n")
    (work / "lists" / ".train.lock").symlink_to(work / "precious.txt")
    got = fastrec(work, "pack", "lists/train", "imgs", "--resize", "32")
    assert (work / "precious.txt").read_text() == "keep me\n"
    assert got.returncode != 0 and "Traceback" not in got.stderr and ".train.lock" in got.stderr


def test_an_output_linked_to_an_image_under_the_root_is_refused_and_the_image_kept(work):
    """Review: `d.idx -> imgs/<class>/<image>` passed the output-is-input check (it compared with the
    root folder only), so pack truncated the image, then packed it as an empty-file skip."""
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    image = sorted((work / "imgs").rglob("*.JPEG"))[0]
    before = image.read_bytes()
    for ext in (".idx", ".rec", ".fingerprints"):
        (work / "lists" / f"train{ext}").symlink_to(image)
        got = fastrec(work, "pack", "lists/train", "imgs")
        assert got.returncode == 2 and "under the image root" in got.stderr and "Traceback" not in got.stderr
        assert image.read_bytes() == before
        (work / "lists" / f"train{ext}").unlink()


def test_an_output_hard_linked_to_an_image_is_refused_and_the_image_kept(work):
    """Review: `ln imgs/<class>/<image> d.idx` (a hard link: same file, no link to see) let pack
    overwrite the image with .idx text, pack it as a skip, and exit 0 under --max-skipped."""
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    image = sorted((work / "imgs").rglob("*.JPEG"))[0]
    before = image.read_bytes()
    for ext in (".idx", ".rec", ".fingerprints", ".skipped.tsv"):
        os.link(image, work / "lists" / f"train{ext}")
        got = fastrec(work, "pack", "lists/train", "imgs", "--max-skipped", "100%")
        assert got.returncode == 2 and "hard link" in got.stderr and "Traceback" not in got.stderr, got.stderr
        assert image.read_bytes() == before
        (work / "lists" / f"train{ext}").unlink()
    assert fastrec(work, "pack", "lists/train", "imgs").returncode == 0


def test_list_from_tar_into_a_missing_folder_is_one_line(work):
    """Issue 22 item 8: a traceback, where plain list says 'create it first'."""
    with tarfile.open(work / "x.tar", "w") as t:
        t.add(work / "imgs", arcname=".")
    for argv in (["list", "nolists/train", "--from-tar", "x.tar", "--more-than", "25"],
                 ["list", "nolists/train", "imgs", "--recursive"],
                 ["pack", "nolists/train", "imgs"]):
        got = fastrec(work, *argv)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert len(got.stderr.strip().splitlines()) == 1 and ("create it first" in got.stderr
                                                              or "no .lst file" in got.stderr)


def test_list_on_a_full_disk_leaves_no_partial_set(work, shim):  # noqa: F811
    """Issue 21 case 7: _0.lst whole, _1.lst empty, _2.lst missing, and pack then packed a third."""
    env = subprocess_env()
    census = work / "census"
    env.update(LD_PRELOAD=shim, FAULT_MATCH=str(work), FAULT_AT="0", FAULT_COUNTS=str(census), FAULT_OPS="write")
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive", "--chunks", "3", env=env).returncode == 0
    writes = int(dict(line.split() for line in census.read_text().splitlines())["write"])
    for p in (work / "lists").iterdir():
        p.unlink()
    for n in range(3, writes + 1):   # 1, 2: the lock's details (a lock holds without them)
        env.update(FAULT_AT=str(n), FAULT_ERRNO=str(errno.ENOSPC), FAULT_COUNTS="")
        got = fastrec(work, "list", "lists/train", "imgs", "--recursive", "--chunks", "3", env=env)
        assert got.returncode == 75 and "Traceback" not in got.stderr, got.stderr
        assert "No space left on device" in got.stderr and "nothing was replaced" in got.stderr
        assert sorted(p.name for p in (work / "lists").iterdir()) == []    # no partial set, no temporaries


def test_damaged_prepare_state_is_one_line(work):
    (work / "w").mkdir()
    argv = ["prepare", "--work", "w", "--root", "imgs", "--val-root", "val", "--min-images", "0",
            "--val-per-class", "2", "--chunks", "1", "--resize", "32"]
    for damage in ('{"config": {"wo', "[1,2]", '{"done": 3}', "\xff\xfe"):
        (work / "w" / "prepare.state.json").write_text(damage, encoding="latin-1")
        got = fastrec(work, *argv)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert got.stderr.strip().splitlines() == [got.stderr.strip()] and "is damaged" in got.stderr
        assert "move it away and run again" in got.stderr


def test_json_failures_print_one_document(work):
    for argv, code in ((["pack", "nosuch", "imgs", "--json"], 2),
                       (["verify", "nosuch", "--json"], 2),
                       (["list", "lists/x", "--json"], 2),
                       (["pack", "--json", "--resize", "no"], 2)):
        got = fastrec(work, *argv)
        doc = json.loads(got.stdout)
        assert got.returncode == code and doc["exit"] == code and doc["error"], (argv, got.stdout, got.stderr)
        assert "error:" in got.stderr


def test_a_failed_dask_run_is_one_line_and_the_workers_log_goes_to_a_file(work, shim):  # noqa: F811
    """Issue 21 case 10: ~114 lines of Dask "Compute Failed" blocks came before fastrec's line. Every
    process's 3rd write fails with ENOSPC: each worker's shard (retried) and the client's join."""
    pytest.importorskip("distributed")
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    env = subprocess_env()
    env.update(LD_PRELOAD=shim, FAULT_MATCH=str(work), FAULT_AT="3", FAULT_OPS="write",
               FAULT_ERRNO=str(errno.ENOSPC))
    got = fastrec(work, "pack", "lists/train", "imgs", "--resize", "32", "--dask", "local:2", "--shard-size", "20",
                  env=env)
    assert got.returncode == 75 and "Traceback" not in got.stderr and "Compute Failed" not in got.stderr, got.stderr
    errors = [line for line in got.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and len(got.stderr.strip().splitlines()) <= 2, got.stderr
    logged = (work / "lists" / "train.rec.shards" / "workers.log").read_text()
    assert "Compute Failed" in logged and "No space left on device" in logged
    assert fastrec(work, "pack", "lists/train", "imgs", "--resize", "32", "--dask", "local:2",
                   "--shard-size", "20").returncode == 0
    assert fastrec(work, "verify", "lists/train").returncode == 0


@pytest.mark.parametrize("argv", [["list", "lists/train", "imgs", "--recursive"],
                                  ["pack", "lists/train", "imgs", "--resize", "32"],
                                  ["pack", "lists/train", "imgs", "--resize", "32", "--resume"]])
def test_read_only_outputs_are_one_line_and_leave_the_files(work, shim, argv):  # noqa: F811
    """Issue 21 case 10: re-pack, pack --resume and list into a read-only folder ended in tracebacks.
    Every open for writing and every rename fails with EROFS (the shim's FAULT_EVERY)."""
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    assert fastrec(work, "pack", "lists/train", "imgs", "--resize", "32").returncode == 0
    before = {p.name: p.read_bytes() for p in (work / "lists").iterdir()}
    env = subprocess_env()
    env.update(LD_PRELOAD=shim, FAULT_MATCH=str(work), FAULT_AT="1", FAULT_EVERY="1", FAULT_OPS="open_w,rename",
               FAULT_ERRNO=str(errno.EROFS))
    got = fastrec(work, *argv, env=env)
    assert got.returncode == 75 and "Traceback" not in got.stderr, got.stderr
    errors = [line for line in got.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Read-only file system" in errors[0], got.stderr
    assert {p.name: p.read_bytes() for p in (work / "lists").iterdir()} == before


def test_json_of_a_pack_with_too_many_skips_is_one_document(work):
    (work / "imgs" / "n0" ).mkdir()
    (work / "imgs" / "n0" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert fastrec(work, "list", "lists/train", "imgs", "--recursive").returncode == 0
    got = fastrec(work, "pack", "lists/train", "imgs", "--resize", "32", "--strict", "--json")
    doc = json.loads(got.stdout)    # one document, not two
    assert got.returncode == 1 and doc["exit"] == 1 and "--strict" in doc["error"] and doc["skipped"] == 1


def test_lists_left_by_an_earlier_listing_are_refused(tmp_path):
    """`list --chunks 3` then `--chunks 2` of one prefix: the old `_2.lst` would be packed with the
    new lists (pack takes every list of the prefix), so the second listing is refused, naming it,
    and writes nothing; the same listing again is fine."""
    from PIL import Image
    root = tmp_path / "images"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / f"c{c}" / f"{i}.jpg")
    lists = tmp_path / "lists"
    lists.mkdir()
    first = fastrec(tmp_path, "list", "lists/data", "images", "--recursive", "--chunks", "3")
    assert first.returncode == 0, first.stderr
    again = fastrec(tmp_path, "list", "lists/data", "images", "--recursive", "--chunks", "3")
    assert again.returncode == 0, again.stderr
    before = {p.name: p.read_bytes() for p in lists.iterdir()}
    fewer = fastrec(tmp_path, "list", "lists/data", "images", "--recursive", "--chunks", "2")
    assert fewer.returncode == 2 and "Traceback" not in fewer.stderr
    assert "data_2.lst" in fewer.stderr and "earlier listing" in fewer.stderr
    assert {p.name: p.read_bytes() for p in lists.iterdir()} == before
    (lists / "data_2.lst").unlink()
    assert fastrec(tmp_path, "list", "lists/data", "images", "--recursive", "--chunks", "2").returncode == 0
