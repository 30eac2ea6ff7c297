"""Hard edges found by a hostile review after issues 13-16: a damaged or odd manifest, output and
side-file names taken by FIFOs or folders, TOML values of the wrong type or range, and help that
printed a default twice. Each case ends with one line and a status, never a traceback or a hang."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import re
import resource
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, subprocess_env
from helpers_pack import fastrec_main, fastrec_subprocess
from fastrec import cli
from fastrec.demo.samples import make_tree
from fastrec.engine.options import PackError, PackOptions


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    """A small tree and a finished pack of it: (root, prefix)."""
    base = tmp_path_factory.mktemp("packed")
    root = base / "root"
    make_tree(root, classes=2, per_class=(3, 4), sizes="imagenet", seed=1)
    prefix = base / "out" / "p"
    prefix.parent.mkdir()
    assert fastrec_main(["list", "--recursive", prefix, root]) == 0
    assert fastrec_main(["pack", "--progress", "off", prefix, root]) == 0
    return root, prefix


def _run(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = fastrec_main(argv)
    return status, err.getvalue()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("text", ["{bad", "", "[]", '{"settings": 5}', '{"expected": "x"}'])
def test_damaged_manifest_is_one_error_not_a_traceback(packed, tmp_path, text):
    root, prefix = packed
    work = tmp_path / "out"
    work.mkdir()
    for p in prefix.parent.iterdir():
        (work / p.name).write_bytes(p.read_bytes())
    (work / "p.manifest.json").write_text(text)
    before = _digests(work)
    status, err = _run(["pack", "--resume", "--progress", "off", work / "p", root])
    assert status == 1 and "p.manifest.json cannot be read" in err
    assert _digests(work) == before   # refused before anything was cut
    status, err = _run(["verify", work / "p.rec"])
    assert status == 1
    status, _ = _run(["inspect", work / "p.rec"])
    assert status == 0   # inspect reads the class names elsewhere


def test_manifest_that_is_a_device_is_never_read(packed, tmp_path):
    root, prefix = packed
    work = tmp_path / "out"
    work.mkdir()
    for p in prefix.parent.iterdir():
        (work / p.name).write_bytes(p.read_bytes())
    (work / "p.manifest.json").unlink()
    (work / "p.manifest.json").symlink_to("/dev/zero")
    r = _bounded(["pack", "--resume", "--progress", "off", work / "p", root])
    assert r.returncode == 2 and "p.manifest.json: it is there but is not a regular file" in r.stderr
    r = _bounded(["verify", work / "p.rec"])
    assert r.returncode == 1 and "p.manifest.json is a device, not a regular file" in r.stdout


def _bounded(argv) -> subprocess.CompletedProcess:
    """fastrec in a child held to 2 GiB and 120 s: reading /dev/zero must end in a refusal, not
    in a machine out of memory."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    return subprocess.run([PYTHON, "-m", "fastrec", *map(str, argv)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=REPO, timeout=120, preexec_fn=limit)


@pytest.mark.parametrize("name, kind", [("p.rec", "fifo"), ("p.idx", "dir"), ("p.skipped.tsv", "dir"),
                                        ("p.manifest.json", "fifo")])
@pytest.mark.parametrize("resume", [False, True])
def test_output_name_taken_by_a_fifo_or_folder_is_refused(packed, tmp_path, name, kind, resume):
    root, prefix = packed
    (tmp_path / "p.lst").write_bytes(prefix.with_suffix(".lst").read_bytes())
    target = tmp_path / name
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    # a child with a timeout: opening a FIFO for writing used to block forever
    r = fastrec_subprocess(["pack", "--progress", "off", *(["--resume"] if resume else []), tmp_path / "p", root])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"cannot write {target}: it is there but is not a regular file" in r.stderr


@pytest.mark.parametrize("name, kind", [("p.idx", "fifo"), ("p.idx", "dir"), ("p.lst", "dir"),
                                        ("p.skipped.tsv", "fifo"), ("p.idx", "binary")])
def test_verify_faults_an_odd_side_file_without_opening_it(packed, tmp_path, name, kind):
    _, prefix = packed
    for p in prefix.parent.iterdir():
        if p.name != name:
            (tmp_path / p.name).write_bytes(p.read_bytes())
    target = tmp_path / name
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    else:
        target.write_bytes(b"\xff\xfe\x00 not an index\n")
    r = fastrec_subprocess(["verify", tmp_path / "p.rec"])
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (f"{target} is not a regular file" if kind != "binary" else "not a 'key<TAB>offset' line") in r.stdout
    if name == "p.idx":   # inspect reads the .idx for record offsets
        r = fastrec_subprocess(["inspect", "--contact-sheet", tmp_path / "s.png", tmp_path / "p.rec"])
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


TOML_BASE = 'work = "{w}"\nroot = "{w}/r"\nval_root = "{w}/v"\n'


@pytest.mark.parametrize("body, message", [
    ('[pack]\nresize = "big"\n', "[pack] resize must be a whole number, got 'big'"),
    ("[pack]\nresize = 1e3\n", "[pack] resize must be a whole number, got 1000.0"),
    ("[pack]\nquality = true\n", "[pack] quality must be a whole number, got True"),
    ("[pack]\nfilter = 3\n", "[pack] filter must be a string, got 3"),
    ('[pack]\nmax_skipped = "5%"\n', "[pack] max_skipped must be a number"),
    ("[pack]\ncolor = 7\n", "[pack] --color: expected one of 1, 0, -1, got '7'"),
    ('[pack]\nfilter = "nearest"\n', "[pack] --filter: expected one of"),
    ("[pack]\nsubsampling = 411\n", "[pack] --subsampling: expected one of 420, 422, 444"),
    ("[pack]\nmax_pixels = 0\n", "[pack] --max-pixels: must be in 1.."),
    ("[pack]\nresize = 70000\n", "[pack] --resize: must be in 0..65500, got 70000"),
    ('val_per_class = "x"\n', "val_per_class must be a whole number, got 'x'"),
    ('archives = "x.tar"\n', "archives must be a list of strings, got 'x.tar'"),
    ('from_tar = "yes"\n', "from_tar must be true or false, got 'yes'"),
])
def test_prepare_toml_values_of_the_wrong_type_or_range_are_named(tmp_path, body, message):
    config = tmp_path / "c.toml"
    head, _, pack = body.partition("[pack]")
    config.write_text(TOML_BASE.format(w=tmp_path) + head + ("[pack]" + pack if pack else ""))
    status, err = _run(["prepare", "--progress", "off", "--config", config])
    assert status == 2 and message in err, err
    assert not (tmp_path / "w").exists()   # refused before anything ran


def test_pack_options_validate_checks_the_command_lines_ranges():
    for bad in ({"color": 7}, {"filter": "nearest"}, {"resize": 70000}, {"max_scans": 0}, {"dask": "local:0"}):
        with pytest.raises(PackError):
            PackOptions(**bad).validate()
    PackOptions(fast_dct=True, max_skipped=1, dask="local:2").validate()


def test_help_shows_each_default_once():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        text = " ".join(command.format_help().split())
        assert not re.search(r"\(default: [^)]*\) \(default:", text), name
