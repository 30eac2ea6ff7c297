"""NVIDIA DALI (the pinned `nvidia-dali-cuda120` of the test extra) reads every kind of pack fastrec
makes, in CPU-only pipelines (`device_id=None`): `fn.readers.mxnet` + `fn.decoders.image`.

For each pack: DALI's i-th sample is the i-th record (its encoded bytes equal the record's, whose
header id is the i-th .lst id), its label is the .lst's (with --pack-label, all of them), its
decoded shape is im2rec's geometry of the source image, and its pixels equal cv2.imdecode of the
same bytes; `shard_id`/`num_shards` readers together yield every record exactly once. The packs
are small and made once for the module. DALI is part of the test extra: without it this module
fails to import (an error in CI), it does not skip.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def   # no importorskip: a missing DALI must fail the suite

import nvidia.dali
from conftest import REPO, subprocess_env
from helpers_pack import fastrec_main, im2rec_geometry, write_lst
from fastrec.demo.samples import make_tree
from fastrec.formats.lists import read_list
from fastrec.formats.recordio import IndexedRecordReader, unpack

DALI_VERSION = "2.4.0"   # pyproject.toml's test extra pins it; the README names it
RESIZE = 40


def test_the_pinned_dali_is_the_one_tested():
    assert nvidia.dali.__version__ == DALI_VERSION
    assert f"nvidia-dali-cuda120=={DALI_VERSION}" in (REPO / "pyproject.toml").read_text()


# ------------------------------------------------------------------ reading a pack with DALI
def dali_read(recs: list[Path], index: Path, shard_id: int = 0, num_shards: int = 1,
              count: int | None = None) -> list[tuple[bytes, np.ndarray, np.ndarray]]:
    """(encoded bytes, decoded RGB pixels, label) of each sample a CPU-only DALI pipeline reads,
    in order; `count` samples (default: the reader's whole epoch), one per batch."""
    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe():
        encoded, labels = fn.readers.mxnet(path=[str(r) for r in recs], index_path=[str(index)],
                                           shard_id=shard_id, num_shards=num_shards, stick_to_shard=True,
                                           random_shuffle=False, name="reader")
        return encoded, fn.decoders.image(encoded, device="cpu"), labels

    p = pipe()
    p.build()
    if count is None:
        count = p.reader_meta("reader")["epoch_size"]
    out = []
    for _ in range(count):
        encoded, images, labels = p.run()
        out.append((encoded.at(0).tobytes(), np.array(images.at(0)), np.array(labels.at(0))))
    return out


def records(rec: Path) -> list[tuple[int, object, bytes]]:
    """(id, label, image bytes) of each record of REC in .idx order, read by fastrec's reader."""
    reader = IndexedRecordReader(rec.with_suffix(".idx"), rec)
    out = []
    for key in reader.keys:
        header, image = unpack(reader.read_idx(key))
        assert header.id == key
        out.append((header.id, header.label, image))
    return out


def check_pack(lst: Path, root: Path, *, resize: int = 0, center_crop: bool = False, upscale: bool = True,
               label_width: int = 1, skipped: set[str] = frozenset()) -> int:
    """DALI reads the pack of LST exactly as listed (see the module docstring); returns its size."""
    rec = lst.with_suffix(".rec")
    items = [it for it in read_list(str(lst)) if it.path not in skipped]
    packed = records(rec)
    read = dali_read([rec], rec.with_suffix(".idx"))
    assert len(read) == len(packed) == len(items) > 0
    for item, (rid, _, image), (encoded, pixels, label) in zip(items, packed, read):
        assert rid == item.id and encoded == image, item
        assert label.shape == (label_width,) and label.tolist() == list(item.labels[:label_width]), item
        h, w = cv2.imread(str(root / item.path), cv2.IMREAD_COLOR).shape[:2]
        if resize and (upscale or min(h, w) > resize):
            h, w = im2rec_geometry(h, w, resize, center_crop)
        elif center_crop:
            h = w = min(h, w)
        assert pixels.shape == (h, w, 3), item
        reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(pixels, reference), item
    return len(items)


# ------------------------------------------------------------------ the packs (made once)
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dali") / "images"
    make_tree(root, classes=3, per_class=(3, 4), seed=3)
    return root


def _pack(tree: Path, name: str, *flags: str, list_flags: tuple = ()) -> Path:
    prefix = tree.parent / name / "data"
    prefix.parent.mkdir()
    assert fastrec_main(["list", prefix, tree, "--recursive", *list_flags]) == 0
    assert fastrec_main(["pack", prefix, tree, *flags]) == 0
    return prefix.with_suffix(".lst")


@pytest.mark.parametrize("name, flags, geometry", [
    ("resized", ["--resize", str(RESIZE)], dict(resize=RESIZE)),
    ("no-upscale", ["--resize", "380", "--no-upscale"], dict(resize=380, upscale=False)),
    ("center-crop", ["--resize", str(RESIZE), "--center-crop"], dict(resize=RESIZE, center_crop=True)),
    ("center-crop-only", ["--center-crop"], dict(center_crop=True)),
    ("png", ["--resize", "24", "--encoding", ".png"], dict(resize=24)),
    ("pass-through", ["--pass-through"], {}),
])
def test_dali_reads_the_pack(tree, name, flags, geometry):
    check_pack(_pack(tree, name, *flags), tree, **geometry)


def test_dali_reads_a_no_upscale_pack_with_both_kinds_of_image(tree):
    """380 lies between the tree's shorter edges, so the pack above holds kept and shrunk images."""
    edges = {min(cv2.imread(str(p)).shape[:2]) for p in tree.rglob("*.JPEG")}
    assert min(edges) < 380 < max(edges), edges


def test_dali_reads_pack_label_with_its_label_width(tree):
    prefix = tree.parent / "pack-label" / "data"
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.JPEG"))
    write_lst(prefix.with_suffix(".lst"),
              [f"{i}\t{i % 3}\t{i * 0.5}\t{-i}\t{path}" for i, path in enumerate(files)])
    assert fastrec_main(["pack", prefix, tree, "--resize", str(RESIZE), "--pack-label"]) == 0
    check_pack(prefix.with_suffix(".lst"), tree, resize=RESIZE, label_width=3)


def test_dali_reads_a_pack_made_from_tar(tree):
    archive = tree.parent / "images.tar"
    with tarfile.open(archive, "w") as t:   # a tar of class folders
        for path in sorted(tree.rglob("*.JPEG")):
            t.add(path, arcname=path.relative_to(tree).as_posix())
    prefix = tree.parent / "from-tar" / "data"
    prefix.parent.mkdir()
    assert fastrec_main(["list", prefix, "--from-tar", archive, "--recursive"]) == 0
    assert fastrec_main(["pack", prefix, "--from-tar", archive, "--resize", str(RESIZE)]) == 0
    check_pack(prefix.with_suffix(".lst"), tree, resize=RESIZE)


def test_dali_reads_a_dask_made_pack(tree):
    prefix = tree.parent / "dask" / "data"
    prefix.parent.mkdir()
    assert fastrec_main(["list", prefix, tree, "--recursive"]) == 0
    r = subprocess.run([sys.executable, "-m", "fastrec", "pack", str(prefix), str(tree), "--resize", str(RESIZE),
                        "--dask", "local:1"], capture_output=True, text=True, env=subprocess_env(), timeout=180)
    assert r.returncode == 0, r.stderr
    check_pack(prefix.with_suffix(".lst"), tree, resize=RESIZE)


def test_dali_reads_a_pass_through_pack_of_a_tree_with_a_truncated_jpeg(tree):
    """--pass-through checks each file is a whole image: the truncated JPEG is a skip (im2rec stores
    it, and DALI's decoder then stops the whole pipeline at it), and DALI reads every record."""
    broken_tree = tree.parent / "broken-images"
    shutil.copytree(tree, broken_tree)
    victim = sorted(broken_tree.rglob("*.JPEG"))[2]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    lst = _pack(broken_tree, "pass-through-broken", "--pass-through", "--max-skipped", "100%")
    skipped = {victim.relative_to(broken_tree).as_posix()}
    assert check_pack(lst, broken_tree, skipped=skipped) == len(list(read_list(str(lst)))) - 1


# ------------------------------------------------------------------ sharding
def test_shards_cover_every_record_exactly_once(tree):
    lst = tree.parent / "resized" / "data.lst"
    if not lst.exists():
        lst = _pack(tree, "resized", "--resize", str(RESIZE))
    rec = lst.with_suffix(".rec")
    images = [image for _, _, image in records(rec)]
    for shards in (2, 3, len(images)):
        seen = []
        for shard in range(shards):
            # DALI's shard k of N records is [N*k//S, N*(k+1)//S); reading one sample past it wraps
            # to the shard's first (stick_to_shard), which proves the shard ends there
            size = len(images) * (shard + 1) // shards - len(images) * shard // shards
            read = dali_read([rec], rec.with_suffix(".idx"), shard, shards, count=size + 1)
            assert read[-1][0] == read[0][0]
            seen += [encoded for encoded, _, _ in read[:-1]]
        assert seen == images, shards


# ------------------------------------------------------------------ a chunked pack, one index
def readme_block(marker: str, lang: str) -> str:
    """The README block that follows `<!-- test_dali: MARKER -->`."""
    m = re.search(rf"<!-- test_dali: {marker} -->\s*```{lang}\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert m, f"README.md lost the marker of its {marker!r} block"
    return m.group(1)


def test_readme_dali_snippet_reads_a_chunked_pack(tmp_path, monkeypatch):
    """The README's commands (list --chunks 8, pack, index) and its DALI pipeline, as typed, in a
    folder laid out as they say; then every record of every chunk, in list order, through the
    combined index, and `fastrec verify` checks that index. (Two images or more per chunk: DALI
    cannot map the empty .rec of an empty chunk.)"""
    work = tmp_path
    make_tree(work / "images", classes=4, per_class=(5, 6), seed=4)
    commands = readme_block("chunked pack commands", "sh")
    assert "fastrec index data/train" in commands
    env = dict(subprocess_env(), PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}")
    r = subprocess.run(["bash", "-e", "-c", commands], cwd=work, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    lists = sorted(work.glob("data/train_*.lst"))
    assert len(lists) == 8
    items = [it for lst in lists for it in read_list(str(lst))]

    monkeypatch.chdir(work)
    scope: dict = {}
    exec(compile(readme_block("chunked pack pipeline", "python"), "README.md (DALI snippet)", "exec"), scope)
    assert [Path(p).resolve() for p in scope["recs"]] == [lst.with_suffix(".rec").resolve() for lst in lists]
    assert scope["pipe"].reader_meta("train")["epoch_size"] == len(items)
    images, labels = scope["outputs"]
    assert all(min(images.at(i).shape[:2]) == 224 for i in range(len(images)))
    assert {float(labels.at(i)[0]) for i in range(len(labels))} <= {it.labels[0] for it in items}

    # the same files and index, read in order: each record once, with its bytes and label
    read = dali_read([lst.with_suffix(".rec") for lst in lists], work / "data" / "train.idx")
    packed = [rec for lst in lists for rec in records(lst.with_suffix(".rec"))]
    assert [encoded for encoded, _, _ in read] == [image for _, _, image in packed]
    assert [rid for rid, _, _ in packed] == [it.id for it in items]
    assert [float(label[0]) for _, _, label in read] == [it.labels[0] for it in items]
    verified = subprocess.run([sys.executable, "-m", "fastrec", "verify", "data/train"], cwd=work,
                              capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert verified.returncode == 0 and "data/train.idx: " in verified.stdout, verified.stdout
