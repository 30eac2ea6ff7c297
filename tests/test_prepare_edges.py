"""`fastrec prepare` at its edges (issue 15 item 5, item 6): messages instead of tracebacks, a
--from-tar that agrees with list/pack's, a summary that says what ran, and the tutorial's
strict `count > N` filter."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers_pack import fastrec_subprocess
from test_prepare import COUNTS, MIN_IMAGES, VAL, make_archive
from fastrec.demo.samples import make_tree


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("edges") / "imagenet.tar")


def _prepare(*flags) -> tuple[int, str, str]:
    r = fastrec_subprocess(["prepare", "--progress", "off", "--resize", "32", *map(str, flags)])
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


def test_from_tar_takes_the_archives_and_needs_no_roots(archive, tmp_path):
    status, out, err = _prepare("--work", tmp_path / "w", "--from-tar", archive,
                                "--min-images", MIN_IMAGES, "--val-per-class", VAL, "--chunks", 2)
    assert status == 0, err
    assert (tmp_path / "w" / "train_0.rec").exists() and (tmp_path / "w" / "val.rec").exists()
    assert not [x for x in out.splitlines() if x.startswith(("filter", "split")) and "not configured" in x]
    assert "extract  " in out and "not needed: the images are read from the archives" in out
    assert out.count("done on the archive index") == 2      # filter and split ran, on the index
    assert "done earlier" not in out
    # a rerun does nothing and says so instead of reprinting old timings as new
    status, again, err = _prepare("--work", tmp_path / "w", "--from-tar", archive,
                                  "--min-images", MIN_IMAGES, "--val-per-class", VAL, "--chunks", 2)
    assert status == 0, err
    for stage in ("extract", "filter", "split", "list", "pack"):
        line = next(x for x in again.splitlines() if x.startswith(stage))
        assert "earlier" in line and "(done earlier)" in line, line


def test_roots_inside_work_named_like_the_lists(archive, tmp_path):
    """--work W --root W/train --val-root W/val: the lists are W/train_*.lst, but the pack stage
    took the prefix W/train for the image folder and packed nothing, exit 0 (found by review22)."""
    w = tmp_path / "w"
    status, out, err = _prepare("--work", w, "--archive", archive, "--root", w / "train", "--val-root", w / "val",
                                "--small-root", w / "small", "--min-images", MIN_IMAGES, "--val-per-class", VAL,
                                "--chunks", 2)
    assert (w / "train_0.rec").exists() and (w / "train_1.rec").exists() and (w / "val.rec").exists(), (out, err)
    assert "train: 0 packed" not in out


def test_from_tar_switch_with_archive_still_works(archive, tmp_path):
    status, _, err = _prepare("--work", tmp_path / "w", "--archive", archive, "--from-tar",
                              "--min-images", MIN_IMAGES, "--val-per-class", 0)
    assert status == 0, err
    status, _, err = _prepare("--work", tmp_path / "w2", "--from-tar")
    assert status == 2 and "--from-tar needs the archives" in err
    status, _, err = _prepare("--work", tmp_path / "w3")      # without --from-tar the roots are needed
    assert status == 2 and "missing --root, --val-root" in err


def test_pack_table_typo_names_the_key(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(f'work = "{tmp_path}/w"\nroot = "{tmp_path}"\nval_root = "{tmp_path}/v"\n'
                      '[pack]\nresise = 480\n')
    status, _, err = _prepare("--config", config)
    assert status == 2 and "unknown [pack] setting(s) 'resise' (did you mean 'resize'?)" in err
    config.write_text(f'work = "{tmp_path}/w"\nroot = "{tmp_path}"\nval_root = "{tmp_path}/v"\n'
                      '[pack]\nquality = 500\n')
    status, _, err = _prepare("--config", config)
    assert status == 2 and "[pack] --quality must be in 1..100" in err
    config.write_text("work = \n")
    status, _, err = _prepare("--config", config)
    assert status == 2 and "not valid TOML" in err


def test_reused_split_names_prepares_own_flags(tmp_path):
    make_tree(tmp_path / "train", classes=2, per_class=(6, 6), seed=5)
    r = fastrec_subprocess(["split", tmp_path / "train", "--val-root", tmp_path / "val",
                            "--val-per-class", "2", "--seed", "5"])
    assert r.returncode == 0, r.stderr
    status, _, err = _prepare("--work", tmp_path / "w", "--root", tmp_path / "train", "--val-root",
                              tmp_path / "val", "--min-images", 0, "--val-per-class", 2, "--seed", 1)
    assert status == 2 and "was written with other arguments" in err
    assert "--manifest" not in err and "give prepare another --val-root" in err


def test_more_than_is_the_tutorials_strict_filter(tmp_path):
    """`--min-images N` keeps a class of exactly N images; `--more-than N` (count > N) moves it."""
    make_tree(tmp_path / "t", classes=3, per_class=(4, 6), seed=8)
    counts = {p.name: len(list(p.iterdir())) for p in (tmp_path / "t").iterdir()}
    n = sorted(counts.values())[1]
    r = fastrec_subprocess(["filter", tmp_path / "t", "--min-images", n, "--move-to", tmp_path / "s", "--dry-run"])
    kept_min = {c for c, k in counts.items() if k >= n}
    assert r.returncode == 0 and f"{len(kept_min)} classes kept" in r.stdout
    r = fastrec_subprocess(["filter", tmp_path / "t", "--more-than", n, "--move-to", tmp_path / "s", "--dry-run"])
    kept_strict = {c for c, k in counts.items() if k > n}
    assert r.returncode == 0 and f"{len(kept_strict)} classes kept" in r.stdout
    assert len(kept_strict) < len(kept_min)


def test_list_from_tar_more_than(archive, tmp_path):
    n = sorted(COUNTS.values())[2]           # a count some class has exactly
    r = fastrec_subprocess(["list", tmp_path / "a", "--from-tar", archive, "--more-than", n, "--no-shuffle"])
    assert r.returncode == 0, r.stderr
    classes = {line.split("\t")[2].split("/")[0] for line in (tmp_path / "a.lst").read_text().splitlines()}
    assert classes == {c for c, k in COUNTS.items() if k > n}
