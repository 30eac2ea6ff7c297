"""`fastrec list` against the real `im2rec.py --list` of MXNet 1.9.1 (shared/SPEC.md §3, §7.1.5).

Every comparison runs both tools on the same generated tree and compares the written .lst
files and stdout byte for byte. To keep the suite fast, im2rec runs in batches: one child
interpreter executes the unmodified script as `__main__` (runpy) once per argument vector, so
MXNet is imported once per batch instead of once per run. fastrec runs as its real CLI.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import Phase, given, settings, strategies as st

from conftest import IM2REC, PYTHON, REPO, run_im2rec, subprocess_env
from fastrec import cli
from fastrec.formats.lists import (LENIENT, DEFAULT_EXTS, ListError, ListItem, ListOptions, list_images, make_lists,
                                   read_list)

# ------------------------------------------------------------------ running the tools
class Run:
    """One tool run: exit status, stdout bytes, stderr text, and the .lst files it wrote."""

    def __init__(self, status: int, stdout: bytes, out_dir: Path, stderr: str = ""):
        self.status, self.stdout, self.stderr = status, stdout, stderr
        # the .lst files; fastrec also writes PREFIX.synset.txt, which im2rec does not (test_results.py)
        self.files = {p.name: p.read_bytes() for p in sorted(out_dir.iterdir()) if not p.name.endswith(".synset.txt")}

    def __repr__(self) -> str:
        return f"Run(status={self.status}, files={sorted(self.files)}, stderr={self.stderr[-300:]!r})"


def run_im2rec_batch(jobs: list[tuple[Path, Path, list[str]]]) -> list[Run]:
    """Run `im2rec.py PREFIX ROOT --list FLAGS` for each (out_dir, root, flags); prefix is
    out_dir/data. Flags go last, since im2rec's nargs='+' --exts would swallow positionals."""
    runs = []
    for out_dir, root, flags in jobs:
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.append((None, [str(out_dir / "data"), str(root), "--list", *flags]))
    return [Run(status, out, out_dir) for (status, out), (out_dir, _, _) in zip(run_im2rec(runs, 300), jobs)]


def run_fastrec(out_dir: Path, root: Path | str, flags: list[str], prefix: Path | None = None,
                wrapper: list[str] = ()) -> Run:
    """Run the real CLI `fastrec list PREFIX ROOT FLAGS` (prefix defaults to out_dir/data)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [*wrapper, PYTHON, "-m", "fastrec", "list", str(prefix or out_dir / "data"), str(root), *flags]
    r = subprocess.run(argv, capture_output=True, env=subprocess_env(), cwd=REPO, timeout=120)
    return Run(r.returncode, r.stdout, out_dir, r.stderr.decode("utf-8", "replace"))


def assert_same_output(ours: Run, theirs: Run) -> None:
    """Same exit status, same stdout bytes, same .lst file names and bytes."""
    assert theirs.status == 0, theirs
    if not any(theirs.files.values()):
        # im2rec writes empty lists; fastrec refuses, names the likely cause and writes none
        assert ours.status == 2 and "no image" in ours.stderr and not ours.files, ours
        return
    assert ours.status == 0, ours
    assert ours.stdout == theirs.stdout
    assert sorted(ours.files) == sorted(theirs.files)
    for name, data in theirs.files.items():
        assert ours.files[name] == data, f"{name} differs"


# ------------------------------------------------------------------ the generated tree
TREE_FILES = [
    # root: mixed extension case, non-images, dotfiles, spaces, non-ASCII, code-point order
    "a.jpg", "a-b.jpg", "a b.JPG", "Zeta.PNG", "beta.Jpeg", "UPPER.JPEG", "notes.txt",
    "image.jpg.txt", "archive.tar.gz", "no_ext", ".hidden.jpg", "café.jpg", "日本.png",
    "trail.jpg ", "x.jpgx",
    # folders that sort differently by code point and by path: a, a b, a-b, a.d, a0, A, a_b
    "a/x.jpg", "a/y.png", "a/ lead.jpg", "a/sub/z.jpg", "a/sub/deeper/w.JPG",
    "a b/s.jpg", "a-b/q.jpg", "a.d/m.png", "a0/k.jpeg", "A/Q.jpg", "a_b/j.jpg",
    "B/readme.txt", ".dotdir/h.png", "dir with space/f 1.jpg", "ünï/é.png", "trail /t.png",
    "Z/deep/er/est/v.png", "a/sub/deeper/v.jpeg",
]  # 10 images at the top, 35 in all (with linkdir): --chunks 3 and 4 leave a shorter last chunk
TREE_DIRS = ["empty", "nested/empty/again"]
TREE_LINKS = {  # name -> target (relative to the link's folder)
    "link.jpg": "a.jpg",              # a symlinked file: listed (isfile follows links)
    "broken.jpg": "missing.jpg",      # a broken symlink: not listed
    "linkdir": "a",                   # a symlinked folder: walked again under its own name
    "broken_dir": "nowhere",          # a broken folder link
    "a/sub/up.png": "../../Zeta.PNG",  # a symlinked file in a sub-folder
}


def build_tree(root: Path, files=TREE_FILES, dirs=TREE_DIRS, links=TREE_LINKS) -> Path:
    """Create empty files (list mode never reads them), folders and symlinks under root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, target in links.items():
        os.symlink(target, root / rel)
    return root


COMBOS = {  # id -> flags; each is run by both tools on TREE
    "default": [],
    "no-shuffle": ["--no-shuffle"],
    "recursive": ["--recursive"],
    "recursive-no-shuffle": ["--recursive", "--no-shuffle"],
    "chunks-3": ["--recursive", "--chunks", "3"],
    "chunks-4-flat": ["--chunks", "4", "--no-shuffle"],
    "train-0.6-test-0.2": ["--recursive", "--train-ratio", "0.6", "--test-ratio", "0.2"],
    "train-1.0-test-0.3": ["--recursive", "--train-ratio", "1.0", "--test-ratio", "0.3"],
    "ratios-sum-over-1": ["--recursive", "--train-ratio", "0.7", "--test-ratio", "0.5"],
    "ratios-sum-1": ["--recursive", "--train-ratio", "0.5", "--test-ratio", "0.5"],
    "chunks-with-split": ["--recursive", "--chunks", "3", "--train-ratio", "0.5", "--test-ratio", "0.25"],
    "exts-case-sensitive": ["--recursive", "--exts", ".JPG"],
    "exts-custom": ["--recursive", "--exts", ".png", ".txt", ".gz", ""],
}
EMPTY_COMBOS = {  # id -> flags; run on an empty tree (N = 0)
    "empty-default": [],
    "empty-recursive-split": ["--recursive", "--chunks", "2", "--train-ratio", "0.5", "--test-ratio", "0.2"],
}


@pytest.fixture(scope="module")
def im2rec_runs(tmp_path_factory, im2rec_script):
    """The tree, the empty tree, and im2rec's Run for every combo, from one batch."""
    base = tmp_path_factory.mktemp("lists")
    tree, empty = build_tree(base / "tree"), base / "empty"
    empty.mkdir()
    jobs = {cid: (base / "im2rec" / cid, tree, flags) for cid, flags in COMBOS.items()}
    jobs |= {cid: (base / "im2rec" / cid, empty, flags) for cid, flags in EMPTY_COMBOS.items()}
    runs = dict(zip(jobs, run_im2rec_batch(list(jobs.values()))))
    return base, jobs, runs


@pytest.mark.parametrize("combo", [*COMBOS, *EMPTY_COMBOS])
def test_list_matches_im2rec(im2rec_runs, combo):
    """`fastrec list` writes the same .lst files (names and bytes) and prints the same folder ->
    label mapping as `im2rec.py --list`, for each flag combination."""
    base, jobs, runs = im2rec_runs
    _, root, flags = jobs[combo]
    ours = run_fastrec(base / "fastrec" / combo, root, flags)
    assert_same_output(ours, runs[combo])


def test_tree_exercises_the_edge_cases(im2rec_runs):
    """Self-check of the fixture: im2rec's recursive listing contains the symlinked file and
    folder, non-ASCII and spaced names, and skips the broken link, non-images and
    case-mismatched custom extensions; the empty tree gives empty files."""
    _, _, runs = im2rec_runs
    listing = runs["recursive-no-shuffle"].files["data.lst"].decode()
    for name in ("link.jpg", "linkdir/x.jpg", "a/sub/up.png", "café.jpg", "dir with space/f 1.jpg",
                 "a/ lead.jpg", "trail /t.png", ".hidden.jpg", "Zeta.PNG"):
        assert f"\t{name}\n" in listing, name
    for name in ("broken.jpg", "notes.txt", "trail.jpg ", "x.jpgx"):
        assert f"\t{name}\n" not in listing, name
    assert runs["exts-case-sensitive"].files["data.lst"] == b""
    assert set(runs["empty-recursive-split"].files) == {
        "data_0_test.lst", "data_0_val.lst", "data_0_train.lst",
        "data_1_test.lst", "data_1_val.lst", "data_1_train.lst"}
    assert all(not data for data in runs["empty-recursive-split"].files.values())


# ------------------------------------------------------------------ Hypothesis trees
_name = st.text(alphabet="aAbZz09-_. é", min_size=1, max_size=4).filter(
    lambda s: s.strip() == s and s not in (".", ".."))
_ext = st.sampled_from([".jpg", ".JPG", ".png", ".Jpeg", ".jpeg", ".txt", ""])
_paths = st.lists(st.tuples(st.lists(_name, max_size=2), _name, _ext), min_size=4, max_size=16)


def build_random_tree(root: Path, paths) -> None:
    """Create each folders/name+ext file; a path clashing with an existing file or folder is
    skipped."""
    root.mkdir()
    for folders, name, ext in paths:
        target = root.joinpath(*folders, name + ext)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.touch()
        except (FileExistsError, NotADirectoryError):
            pass


# The first example is Hypothesis's minimal tree; each costs ~1 s, so no shrinking either.
@settings(max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(_paths)
def test_list_matches_im2rec_on_random_trees(paths):
    """Random trees of code-point-tricky names: both tools agree for the default listing, a
    recursive one, and a recursive chunked train/val/test split."""
    flag_sets = [[], ["--recursive"],
                 ["--recursive", "--no-shuffle", "--chunks", "2", "--train-ratio", "0.5", "--test-ratio", "0.3"]]
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        build_random_tree(base / "root", paths)
        theirs = run_im2rec_batch([(base / "im2rec" / str(i), base / "root", f) for i, f in enumerate(flag_sets)])
        for i, flags in enumerate(flag_sets):
            assert_same_output(run_fastrec(base / "fastrec" / str(i), base / "root", flags), theirs[i])


# ------------------------------------------------------------------ reading lists back
def test_read_list_round_trip(tmp_path):
    """`read_list` on the files `make_lists` wrote gives back exactly the enumerated entries:
    in order for an unsplit unshuffled list, and as the same multiset across a shuffled split."""
    root = build_tree(tmp_path / "tree")
    entries, _ = list_images(str(root), True, DEFAULT_EXTS)
    want = [ListItem(e.index, e.path, e.labels) for e in entries]
    assert len(want) == 35
    res = make_lists(str(tmp_path / "plain"), str(root), ListOptions(recursive=True, shuffle=False))
    assert res.files == [str(tmp_path / "plain.lst")]
    assert list(read_list(res.files[0])) == want
    res = make_lists(str(tmp_path / "split"), str(root),
                     ListOptions(recursive=True, chunks=3, train_ratio=0.5, test_ratio=0.2))
    got = [item for path in res.files for item in read_list(path)]
    assert sorted(got) == sorted(want)
    assert sum(res.counts.values()) == len(want)


def test_read_list_parses_like_im2rec(tmp_path):
    """`read_list` keeps and skips the same lines as im2rec's read_list and parses them to the
    same (id, path, labels): short and blank lines, a non-int id, a non-float label, spaces
    around fields, several labels, CRLF endings and inf labels."""
    lst = tmp_path / "x.lst"
    lst.write_bytes("\n".join([
        "0\t1.000000\ta.jpg", "", "1\t2.0", "2.0\t1\tb.jpg", "3\tone\tc.jpg",
        " 4 \t 5.5 \t d e.jpg \t", "5\t1\t2\t3\tmulti/f.png", "6\tinf\t-inf\tg.jpg\r",
        "7\t0\tcafé.jpg", "\t\t", "8\t-0.25\tlast.jpg"]).encode() + b"\n")
    script = "import runpy, json, sys\n" \
             "m = runpy.run_path(sys.argv[1], run_name='im2rec')\n" \
             "print(json.dumps([[i[0], i[1], i[2:]] for i in m['read_list'](sys.argv[2])]))\n"
    r = subprocess.run([PYTHON, "-c", script, str(IM2REC), str(lst)], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    theirs = [(i, p, tuple(labels)) for i, p, labels in json.loads(r.stdout.splitlines()[-1])]
    assert [tuple(item) for item in read_list(str(lst), LENIENT) if isinstance(item, ListItem)] == theirs
    assert [i for i, _, _ in theirs] == [0, 4, 5, 6, 7, 8]


# ------------------------------------------------------------------ bad input
def assert_user_error(run: Run, *needles: str) -> None:
    """Exit status 2, a one-message `fastrec list: error:` naming the problem, no traceback,
    and no .lst file left behind."""
    assert run.status == 2, run
    assert run.stderr.startswith("fastrec list: error: "), run.stderr
    assert "Traceback" not in run.stderr
    for needle in needles:
        assert needle in run.stderr, (needle, run.stderr)
    assert not [n for n in run.files if n.endswith(".lst")], run.files


@pytest.mark.parametrize("recursive", [False, True], ids=["flat", "recursive"])
def test_missing_root(tmp_path, recursive):
    """A ROOT that does not exist is an error naming it (im2rec crashes, or silently writes an
    empty list when recursive)."""
    run = run_fastrec(tmp_path / "out", tmp_path / "no such root", ["--recursive"] if recursive else [])
    assert_user_error(run, "no such root")


def test_missing_output_folder(tmp_path):
    """A PREFIX whose folder does not exist is an error naming that folder; nothing is written."""
    build_tree(tmp_path / "tree", ["a.jpg"], [], {})
    run = run_fastrec(tmp_path / "out", tmp_path / "tree", [], prefix=tmp_path / "out" / "missing" / "data")
    assert_user_error(run, str(tmp_path / "out" / "missing"))


BAD_NAMES = [  # (path in the tree, --recursive?)
    ("tab\there.jpg", False), ("new\nline.jpg", False), ("cr\rhere.png", False),
    (" leading.jpg", False), ("\u00a0nbsp.jpg", False),
    ("sub/tab\there.jpg", True), ("sub/new\nline.jpg", True), (" lead dir/x.jpg", True),
    ("tab\tdir/x.jpg", True),
]


@pytest.mark.parametrize("rel,recursive", BAD_NAMES, ids=[repr(r) for r, _ in BAD_NAMES])
def test_unlistable_name(tmp_path, rel, recursive):
    """A matching file whose relative path has a tab, a line break, or leading whitespace (which
    im2rec would write into a .lst that reads back wrong) is an error naming the file; no
    partial .lst files are written."""
    build_tree(tmp_path / "tree", ["good.jpg", "sub/also_good.png", rel], [], {})
    run = run_fastrec(tmp_path / "out", tmp_path / "tree", ["--recursive"] if recursive else [])
    assert_user_error(run)
    assert rel in run.stderr or repr(rel)[1:-1] in run.stderr, run.stderr


def _unreadable_dir_error(tmp_path: Path, monkeypatch, capsys, recursive: bool) -> tuple[int, str]:
    """Run cli.main in-process with the listing of one folder failing with EACCES."""
    root = build_tree(tmp_path / "tree", ["ok.jpg", "locked/x.jpg", "z/y.jpg"], [], {})
    locked = str(root / "locked") if recursive else str(root)
    real_scandir, real_listdir = os.scandir, os.listdir

    def deny(real):
        def fake(path="."):
            if os.fspath(path) == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path)
        return fake

    monkeypatch.setattr(cli.logging, "basicConfig", lambda **kw: None)  # keep the runner's logging
    monkeypatch.setattr(os, "scandir", deny(real_scandir))
    monkeypatch.setattr(os, "listdir", deny(real_listdir))
    (tmp_path / "out").mkdir()
    argv = ["list", str(tmp_path / "out" / "data"), str(root)] + (["--recursive"] if recursive else [])
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert not list((tmp_path / "out").iterdir())
    return status, err


@pytest.mark.parametrize("recursive", [False, True], ids=["flat-root", "recursive-subfolder"])
def test_unreadable_folder_in_process(tmp_path, monkeypatch, capsys, recursive):
    """A folder that cannot be listed (simulated EACCES) is an error naming it, exit status 2,
    no traceback, no .lst written (im2rec's os.walk silently skips it)."""
    status, err = _unreadable_dir_error(tmp_path, monkeypatch, capsys, recursive)
    assert status == 2
    assert err.startswith("fastrec list: error: ") and "Traceback" not in err
    assert ("locked" if recursive else "tree") in err and "Permission denied" in err


def _as_nobody() -> list[str] | None:
    """A command prefix that runs as an unprivileged user, or None if there is none to use."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"] if setpriv else None


def test_unreadable_folder_for_real():
    """The same with a real chmod-000 folder, run as an unprivileged user (root reads anything,
    so as root the CLI runs under setpriv as `nobody`)."""
    wrapper = _as_nobody()
    if wrapper is None:
        pytest.skip("running as root without setpriv: cannot make a folder unreadable")
    with tempfile.TemporaryDirectory() as d:  # outside pytest's 0700 tmp root: nobody must reach it
        base = Path(d)
        base.chmod(0o755)
        root = build_tree(base / "tree", ["ok.jpg", "locked/x.jpg"], [], {})
        (base / "out").mkdir()
        (base / "out").chmod(0o777)
        (root / "locked").chmod(0)
        try:
            probe = subprocess.run([*wrapper, "ls", str(root / "locked")], capture_output=True)
            if probe.returncode == 0:
                pytest.skip("the chmod-000 folder is still readable (privileges not dropped)")
            run = run_fastrec(base / "out", root, ["--recursive"], wrapper=wrapper)
        finally:
            (root / "locked").chmod(0o755)
    assert_user_error(run, "locked")


def test_pack_of_a_prefix_that_is_the_image_folder_says_where_the_lists_are(tmp_path):
    """`list data/val data/val` writes data/val.lst beside the folder; `pack data/val` then reads
    the folder prefix as im2rec does (the lists inside it) and found none: the error said to run
    `fastrec list` first, which had been run (found by review22)."""
    root = tmp_path / "val" / "c0"
    root.mkdir(parents=True)
    from PIL import Image
    from helpers_pack import fastrec_subprocess
    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    r = fastrec_subprocess(["list", tmp_path / "val", tmp_path / "val", "--recursive"])
    assert r.returncode == 0 and (tmp_path / "val.lst").exists(), r.stderr
    r = fastrec_subprocess(["pack", tmp_path / "val", tmp_path / "val"])
    assert r.returncode != 0 and "is a folder, so the prefix means the .lst files inside it" in r.stderr


def test_bad_chunks(tmp_path):
    """--chunks 0 is a clear error (im2rec dies with ZeroDivisionError)."""
    build_tree(tmp_path / "tree", ["a.jpg"], [], {})
    assert_user_error(run_fastrec(tmp_path / "out", tmp_path / "tree", ["--chunks", "0"]), "--chunks")


# ------------------------------------------------------------------ symbolic link loops (issue 22 item 4)
FOLDERS = [".", "c0", "c1", "c0/s", "c1/t"]


def _linked_tree(root: Path, links) -> Path:
    """An image in each of FOLDERS, and a link `lN` in folder A to folder B for each (A, B)."""
    for folder in FOLDERS[1:]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "i.jpg").touch()
    for n, (where, target) in enumerate(links):
        os.symlink(os.path.relpath(root / target, root / where), root / where / f"l{n}")
    return root


def _im2rec_walk(root: Path, limit: int) -> list[str] | None:
    """im2rec's recursive enumeration (os.walk following links, sorted), or None where it goes
    deeper than the tree has real folders: only a loop takes it there (then it goes on until
    the path is too long)."""
    out = []
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        if len(Path(dirpath).relative_to(root).parts) > limit:
            return None
        dirs.sort()
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(files)
                if os.path.isfile(os.path.join(dirpath, f)) and f.endswith(".jpg")]
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FOLDERS), st.sampled_from(FOLDERS)), max_size=3))
def test_link_loops_are_errors_other_links_are_followed(links):
    """A folder link that leads back to a folder it lies in is an error naming the link; every
    other link is followed as im2rec's walk follows it (the same entries, in the same order)."""
    with tempfile.TemporaryDirectory() as d:
        root = _linked_tree(Path(d), links)
        theirs = _im2rec_walk(root, len(FOLDERS) + 1)
        if theirs is None:
            with pytest.raises(ListError, match=f"symbolic link loop: '{re.escape(str(root))}/(.*/)?l[0-9]'"):
                list_images(str(root), True, (".jpg",))
        else:
            assert [e.path for e in list_images(str(root), True, (".jpg",))[0]] == theirs


LINK_CASES = {
    "issue: c0/up -> ..": [("c0", ".")],      # im2rec: 164 lines for 4 images
    "own folder": [("c0/s", "c0/s")],
    "two links to each other": [("c0", "c1"), ("c1", "c0")],
    "links elsewhere": [("c0", "c1/t"), (".", "c0/s"), ("c1", "c0/s")],   # followed, as im2rec does
}


def test_link_cases_against_the_real_im2rec(tmp_path):
    """The real im2rec.py on the same trees: byte-identical lists where there is no loop; where
    there is one, it writes the tree again and again (fastrec: exit 2 naming the link, no list)."""
    roots = {name: _linked_tree(tmp_path / str(i), links) for i, (name, links) in enumerate(LINK_CASES.items())}
    flags = ["--recursive", "--no-shuffle"]
    theirs = run_im2rec_batch([(tmp_path / "im2rec" / str(i), root, flags) for i, root in enumerate(roots.values())])
    for (name, root), their in zip(roots.items(), theirs):
        ours = run_fastrec(tmp_path / "fastrec" / name, root, flags)
        lines = their.files["data.lst"].count(b"\n")
        if name == "links elsewhere":
            assert_same_output(ours, their)
        else:
            assert lines > 20, (name, lines)
            assert ours.status == 2 and "symbolic link loop" in ours.stderr and not ours.files, ours
    assert theirs[0].files["data.lst"].count(b"\n") == 164
