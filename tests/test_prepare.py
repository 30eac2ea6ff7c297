"""`fastrec prepare`: an ImageNet-style archive to train/val .rec files in one resumable command."""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from fastrec.stages.prepare import PrepareConfig, prepare, report_lines
from fastrec.engine import PackOptions
from fastrec.formats.recordio import IndexedRecordReader, unpack
from fastrec.demo.samples import make_image

COUNTS = {f"n{2000 + i:08d}": n for i, n in enumerate((14, 9, 3, 12, 2, 10))}  # two classes too small
MIN_IMAGES, VAL = 5, 2


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    w, h = int(rng.integers(60, 130)), int(rng.integers(50, 110))
    make_image(rng, w, h).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 1_600_000_000
    tar.addfile(info, io.BytesIO(data))


def make_archive(path: Path, seed: int = 0) -> Path:
    """Outer tar of per-class tars of real JPEGs, plus a corrupt inner tar and a hostile member."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w") as outer:
        for cls, n in COUNTS.items():
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as t:
                for i in range(n):
                    _add(t, f"{cls}_{i}.JPEG", _jpeg(rng))
                if cls.endswith("3"):
                    _add(t, "../escape.JPEG", _jpeg(rng))       # refused by extract
            _add(outer, f"{cls}.tar", inner.getvalue())
        broken = io.BytesIO()
        with tarfile.open(fileobj=broken, mode="w") as t:
            for i in range(6):
                _add(t, f"n09999999_{i}.JPEG", _jpeg(rng))
        _add(outer, "n09999999.tar", broken.getvalue()[:3000])   # truncated inner tar
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("archive") / "imagenet.tar")


def _config(base: Path, archive: Path) -> PrepareConfig:
    return PrepareConfig(work=str(base / "work"), root=str(base / "train"), val_root=str(base / "val"),
                         archives=[str(archive)], small_root=str(base / "small"), min_images=MIN_IMAGES,
                         val_per_class=VAL, seed=1, chunks=2, val_chunks=1, extract_jobs=2,
                         pack=PackOptions(resize=48, quality=85), progress="off")


def _args(base: Path, archive: Path) -> list[str]:
    return [sys.executable, "-m", "fastrec", "prepare", "--work", str(base / "work"), "--root", str(base / "train"),
            "--val-root", str(base / "val"), "--archive", str(archive), "--small-root", str(base / "small"),
            "--min-images", str(MIN_IMAGES), "--val-per-class", str(VAL), "--seed", "1", "--chunks", "2",
            "--val-chunks", "1", "--extract-jobs", "2", "--resize", "48", "--quality", "85", "--progress", "off"]


def _recs(base: Path) -> dict[str, bytes]:
    work = base / "work"
    return {p.name: p.read_bytes() for p in sorted(work.iterdir()) if p.suffix in (".rec", ".idx", ".lst")}


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    base = tmp_path_factory.mktemp("ref")
    state = prepare(_config(base, archive))
    return base, state


def test_chain_counts_at_every_stage(reference):
    base, state = reference
    done = state["done"]
    kept = {c: n for c, n in COUNTS.items() if n >= MIN_IMAGES}
    assert done["extract"]["classes"] == len(COUNTS)
    assert len(done["extract"]["refused"]) == 1 and len(done["extract"]["corrupt"]) == 1
    assert sorted(c for c, _ in done["filter"]["moved"]) == sorted(set(COUNTS) - set(kept))
    assert done["split"]["moved"] == VAL * len(kept)
    assert done["list"]["train"]["images"] == sum(kept.values()) - VAL * len(kept)
    assert done["list"]["val"]["images"] == VAL * len(kept)
    assert done["pack"]["train"]["images"] == done["list"]["train"]["images"]
    assert done["pack"]["val"]["images"] == VAL * len(kept)
    assert sorted(p.name for p in (base / "small").iterdir()) == sorted(set(COUNTS) - set(kept))
    report = "\n".join(report_lines(state))
    assert "moved 2 classes" in report and "train_0.rec" in report


def test_train_and_val_labels_agree(reference):
    """The same class gets the same label in train and val (both lists see the same classes)."""
    base, _ = reference
    work = base / "work"
    train_labels, val_labels = {}, {}
    for lst, labels in ((work / "train_0.lst", train_labels), (work / "val.lst", val_labels)):
        for line in lst.read_text().splitlines():
            _, label, path = line.split("\t")
            labels[path.split("/")[0]] = label
    assert val_labels and all(train_labels[c] == label for c, label in val_labels.items())
    reader = IndexedRecordReader(str(work / "val.idx"), str(work / "val.rec"))
    header, image = unpack(reader.read_idx(reader.keys[0]))
    assert image[:2] == b"\xff\xd8"


def test_rerun_after_finish_changes_nothing(reference, archive):
    base, _ = reference
    before = _recs(base)
    state = prepare(_config(base, archive))
    assert _recs(base) == before and set(state["done"]) >= {"extract", "pack"}


def test_crash_mid_extract_then_resume(reference, archive, tmp_path):
    ref_base, _ = reference
    env = dict(os.environ, FASTREC_TEST_CRASH_AFTER="3")
    first = subprocess.run(_args(tmp_path, archive), env=env, capture_output=True)
    assert first.returncode == 137, first.stderr.decode()
    second = subprocess.run(_args(tmp_path, archive), capture_output=True)
    assert second.returncode == 0, second.stderr.decode()
    assert _recs(tmp_path) == _recs(ref_base)


def test_kill_mid_pack_then_resume(reference, archive, tmp_path):
    ref_base, _ = reference
    rng = random.Random(5)
    for attempt in range(3):
        proc = subprocess.Popen(_args(tmp_path, archive), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(_args(tmp_path, archive), capture_output=True)
    assert final.returncode == 0, final.stderr.decode()
    assert _recs(tmp_path) == _recs(ref_base)


def test_other_settings_are_refused_on_resume(reference, archive):
    base, _ = reference
    cfg = _config(base, archive)
    cfg.val_per_class = 3
    cfg.pack.resize = cfg.pack.resize + 7
    with pytest.raises(Exception, match="other settings") as err:
        prepare(cfg)
    # each difference named as pack --resume names it (issue 22 item 8)
    assert f"resize: {cfg.pack.resize - 7} -> {cfg.pack.resize}" in str(err.value)
    assert "val_per_class: " in str(err.value) and " -> 3" in str(err.value)


def test_from_tar_gives_the_same_files_without_extracting(reference, archive, tmp_path):
    """prepare --from-tar: no extraction, no moves, and the same train/val .lst/.rec/.idx."""
    ref_base, _ = reference
    cfg = _config(tmp_path, archive)
    cfg.from_tar = True
    state = prepare(cfg)
    assert not (tmp_path / "train").exists() and not (tmp_path / "val").exists()
    assert state["done"]["extract"] == {"on_index": True} and len(state["done"]["list"]["small_classes"]) == 2
    ours, theirs = _recs(tmp_path), _recs(ref_base)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name] == theirs[name], name


def test_toml_config(reference, archive, tmp_path):
    """The same chain from a small TOML file (flags given beside it would override it)."""
    ref_base, _ = reference
    config = tmp_path / "prepare.toml"
    config.write_text(f"""
work = "{tmp_path / 'work'}"
root = "{tmp_path / 'train'}"
val_root = "{tmp_path / 'val'}"
small_root = "{tmp_path / 'small'}"
archives = ["{archive}"]
min_images = {MIN_IMAGES}
val_per_class = {VAL}
seed = 1
chunks = 2
extract_jobs = 2

[pack]
resize = 48
quality = 85
""")
    r = subprocess.run([sys.executable, "-m", "fastrec", "prepare", "--config", str(config), "--progress", "off"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pack" in r.stdout and "train_0.rec" in r.stdout
    assert _recs(tmp_path) == _recs(ref_base)
    bad = tmp_path / "bad.toml"
    bad.write_text('work = "x"\nroot = "y"\nval_root = "z"\nmin_imgs = 3\n')
    r = subprocess.run([sys.executable, "-m", "fastrec", "prepare", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown setting(s) 'min_imgs' (did you mean 'min_images'?)" in r.stderr


def test_a_quietly_thin_dataset_fails_prepare_too(archive, tmp_path):
    """prepare packs through the same guard as pack: when (here) every image is skipped, the chain
    ends in DataError, not with a finished state over empty .rec files."""
    from fastrec.engine import TooManySkipped
    cfg = _config(tmp_path, archive)
    cfg.pack = PackOptions(resize=48, quality=85, max_pixels=100)   # every image is too large
    with pytest.raises(TooManySkipped, match="were skipped"):
        prepare(cfg)
