"""The terminal: one progress bar per pack, numbers intact at 80 columns, on stderr; Dask quiet on a
good run; -v adds fastrec's debug lines; no empty .skipped.tsv files."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from fastrec.demo.samples import make_tree
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.progress import NullProgress, PackProgress, make_progress
from stage_fixtures import run_cli

CHUNKS = 3


@pytest.fixture(scope="module")
def lists(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("progress")
    make_tree(base / "images", classes=3, per_class=(4, 6), sizes="imagenet", seed=5)
    cls = sorted(p for p in (base / "images").iterdir())[0]
    (cls / "zz_broken.jpg").write_bytes(b"not a jpeg")
    make_lists(str(base / "data"), str(base / "images"), ListOptions(recursive=True, chunks=CHUNKS, shuffle=False))
    return base


def test_pack_bar_fits_80_columns_with_imagenet_numbers():
    """A 1.28 M image pack at 2100 img/s and 120 MB/s: every number whole, the line within 80."""
    now = [1000.0]
    out = io.StringIO()
    console = Console(file=out, width=80, get_time=lambda: now[0])
    with PackProgress("on", console=console) as bar:
        bar.start(1281167)
        for _ in range(20):
            now[0] += 5.0
            bar.advance(10500, 600_000_000, 1)
    line = out.getvalue().rstrip("\n")
    assert len(line) <= 80 and "…" not in line, line
    for number in ("210000/1281167", "16%", "2100 img/s", "120.0 MB/s", "skip 20", "0:08:"):
        assert number in line, line


def test_one_bar_for_the_whole_pack_on_stderr(lists):
    r = run_cli("pack", str(lists / "data"), str(lists / "images"), "--resize", "32", "--progress", "on", "--max-skipped", "100%")
    assert r.returncode == 0, r.stderr
    bars = [line for line in r.stderr.splitlines() if "img/s" in line]
    total = sum(1 for n in range(CHUNKS) for _ in open(lists / f"data_{n}.lst"))
    assert len(bars) == 1 and f"{total}/{total}" in bars[0] and "skip 1" in bars[0], r.stderr
    assert r.stdout == ""


def test_no_empty_skip_files(lists):
    """Only the chunk holding the broken file has a .skipped.tsv; a re-pack removes a stale one."""
    (lists / "data_2.skipped.tsv").write_text("stale\tdecode-error\told\n")
    r = run_cli("pack", str(lists / "data"), str(lists / "images"), "--resize", "32", "--progress", "off", "--max-skipped", "100%")
    assert r.returncode == 0, r.stderr
    skips = sorted(p.name for p in lists.glob("*.skipped.tsv"))
    assert skips == ["data_0.skipped.tsv"] and (lists / "data_0.skipped.tsv").read_text().count("\n") == 1


def test_verbose_adds_debug_lines(lists):
    quiet = run_cli("pack", str(lists / "data"), str(lists / "images"), "--resize", "32", "--progress", "off", "--max-skipped", "100%")
    loud = run_cli("-v", "pack", str(lists / "data"), str(lists / "images"), "--resize", "32", "--progress", "off", "--max-skipped", "100%")
    assert quiet.returncode == loud.returncode == 0
    assert "skipped" not in quiet.stderr.split("packed")[0]
    assert "zz_broken.jpg" in loud.stderr and "records, 1 skipped in" in loud.stderr, loud.stderr


def test_dask_run_is_quiet(lists):
    """A good `--dask local:2` run prints fastrec's lines only, not the cluster's start and stop."""
    r = run_cli("pack", str(lists / "data"), str(lists / "images"), "--resize", "32", "--progress", "off", "--max-skipped", "100%",
                "--dask", "local:2", timeout=180)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert all(line.startswith(("Creating .rec file", "packed ", "skipped ")) for line in lines), r.stderr


def test_one_wrapper_for_every_stage():
    assert isinstance(make_progress("off"), NullProgress) and isinstance(make_progress("off", "bytes"), NullProgress)
    out = io.StringIO()
    with make_progress("on", "bytes", console=Console(file=out, width=80)) as bar:
        task = bar.add_task("extract: archives read", total=2_000_000)
        bar.update(task, advance=1_000_000)
    assert "1.0/2.0 MB" in out.getvalue()
    with pytest.raises(ValueError):
        make_progress("on", "sideways")
