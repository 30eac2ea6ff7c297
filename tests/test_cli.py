"""The command line's edges (issues 14 and 15): every flag of every command refuses hostile
values with one line and exit 2, never a traceback or a hang; options that do not apply and
empty results are errors; help shows defaults; the pack flags are one declaration."""
from __future__ import annotations

import argparse
import contextlib
import io
import signal

import pytest

from helpers_pack import fastrec_subprocess, write_lst
from fastrec import cli
from fastrec.demo.samples import make_tree
from fastrec.engine.options import PACK_FLAGS, PackOptions

HOSTILE = ["-1", "0", "99999999999", "x", "", "nan", "local:0"]
# positionals that let each command parse (the flag under test goes after them)
BASE = {"list": ["P", "ROOT", "--recursive"], "pack": ["P", "ROOT"], "im2rec": ["P", "ROOT"], "verify": ["P.rec"],
        "index": ["P"], "inspect": ["P.rec"], "bench": ["MISSING"], "prepare": ["--work", "W", "--from-tar", "MISSING.tar"],
        "raid": ["/dev/fastrec-none", "--mount", "M"], "extract": ["MISSING.tar", "D"],
        "filter": ["MISSING", "--move-to", "M"], "split": ["MISSING", "--val-root", "V"]}
# commands whose accepted values are also run end to end here (raid is a dry run that probes
# the machine's block devices, so it is only parsed)
RUN = set(BASE) - {"raid"}


def _commands():
    parser = cli.build_parser()
    return parser, parser.commands


def _value_flags(sub: argparse.ArgumentParser):
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.help != argparse.SUPPRESS:
            yield action.option_strings[0]


def _main(argv: list[str]) -> tuple[int, str]:
    """cli.main in this process, with a hang guard; (exit status, stderr)."""
    err = io.StringIO()

    def hang(*_):
        raise TimeoutError(f"fastrec {' '.join(argv)} hung")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli.main(argv)
            except SystemExit as e:
                status = e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return status, err.getvalue()


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A tiny tree, its list and pack, so that commands given valid values have work to do."""
    base = tmp_path_factory.mktemp("cli")
    make_tree(base / "ROOT", classes=2, per_class=(2, 2), seed=2)
    paths = sorted(p.relative_to(base / "ROOT").as_posix() for p in (base / "ROOT").rglob("*.JPEG"))
    write_lst(base / "P.lst", [f"{i}\t{i % 2}\t{p}" for i, p in enumerate(paths)])
    assert cli.main(["pack", str(base / "P"), str(base / "ROOT"), "--progress", "off"]) == 0
    return base


def test_every_flag_refuses_hostile_values_in_one_line(place, monkeypatch):
    """Each value is refused by the parser with exit 2 and one line, or it is a valid value and the
    command runs with it (in this process) to an exit status: never a traceback, never a hang."""
    monkeypatch.chdir(place)
    _, commands = _commands()
    refused = accepted = 0
    for name, sub in commands.items():
        for flag in _value_flags(sub):
            for value in HOSTILE:
                argv = [name, *BASE[name], flag, value]
                try:
                    with contextlib.redirect_stderr(io.StringIO()):
                        sub.parse_args(argv[1:])
                    ok = True
                except SystemExit:
                    ok = False
                if not ok:
                    status, err = _main(argv)
                    lines = err.strip().splitlines()
                    assert status == 2 and len(lines) == 1, (argv, err)
                    assert lines[0].startswith(f"fastrec {name}: error: argument {flag}"), (argv, err)
                    refused += 1
                elif name in RUN:
                    status, err = _main(argv)
                    assert status in (0, 1, 2) and "Traceback" not in err, (argv, status, err)
                    accepted += 1
    assert refused > 200 and accepted > 50


@pytest.mark.parametrize("argv, message", [
    (["pack", "P", "R", "--max-bytes", "-1"], "argument --max-bytes: must be in 1..9223372036854775807, got -1"),
    (["pack", "P", "R", "--max-pixels", "-1"], "argument --max-pixels: must be in 1.."),
    (["pack", "P", "R", "--resize", "99999999999"], "argument --resize: must be in 0..65500, got 99999999999"),
    (["pack", "P", "R", "--max-scans", "99999999999"], "argument --max-scans: must be in 1..100000"),
    (["pack", "P", "R", "--dask", "local:x"], "argument --dask: expected local, local:N (N >= 1 workers)"),
    (["pack", "P", "R", "--dask", "local:0"], "argument --dask: expected local, local:N (N >= 1 workers)"),
    (["im2rec", "P", "R", "--dask", "local:0"], "argument --dask"),
])
def test_issue_14_flags_in_a_real_process(argv, message):
    r = fastrec_subprocess(argv)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_local_zero_workers_cannot_hang_the_python_api():
    from fastrec.engine.cluster import _client
    from fastrec.engine.options import PackError
    for address in ("local:0", "local:x"):
        with pytest.raises(PackError, match="N >= 1"):
            _client(address)


def test_help_of_every_command_shows_defaults():
    """Every flag with a default shows it; prepare (whose absent flags leave a TOML file's settings
    alone) writes its own defaults into the help: its settings' and its pack defaults 480/q90."""
    import dataclasses
    from fastrec.stages.prepare import PrepareConfig
    _, commands = _commands()
    prepare_defaults = {f.name for f in dataclasses.fields(PrepareConfig)
                        if f.default not in (dataclasses.MISSING, "", None, False)}
    prepare_defaults |= {f.field for f in PACK_FLAGS} - set(cli.PREPARE_LEAVES_OUT)
    checked = 0
    for name, sub in commands.items():
        fmt = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            has_default = action.default not in (None, argparse.SUPPRESS) or (
                name == "prepare" and action.dest in prepare_defaults)
            if has_default:
                assert "(default: " in fmt._get_help_string(action), f"fastrec {name} {action.option_strings[0]}"
                checked += 1
    assert checked > 100
    prepare = commands["prepare"].format_help()
    assert "(default: 480)" in prepare and "(default: 90)" in prepare   # its own, not pack's 0/95


@pytest.mark.parametrize("command, old, new, dest", [
    ("extract", "--jobs", "--num-thread", "jobs"),
    ("bench", "--threads", "--num-thread", "num_thread"),
    ("split", "--per-class", "--val-per-class", "per_class"),
    ("prepare", "--extract-jobs", "--extract-num-thread", "extract_jobs"),
])
def test_one_name_per_idea_old_names_still_work_unseen(command, old, new, dest):
    _, commands = _commands()
    sub = commands[command]
    base = {"extract": ["A", "D"], "bench": ["R"], "split": ["R"], "prepare": []}[command]
    assert getattr(sub.parse_args([*base, old, "3"]), dest) == 3
    assert getattr(sub.parse_args([*base, new, "3"]), dest) == 3
    assert new in sub.format_help() and old not in sub.format_help()


def test_pack_flags_are_one_declaration():
    """pack, im2rec and prepare declare every flag of the table (prepare: all but its own three)."""
    _, commands = _commands()
    for name in ("pack", "im2rec", "prepare"):
        options = {o for a in commands[name]._actions for o in a.option_strings}
        for flag in PACK_FLAGS:
            if name == "prepare" and flag.field in cli.PREPARE_LEAVES_OUT:
                continue
            assert flag.option in options, (name, flag.option)


@pytest.mark.parametrize("opts", [
    PackOptions(resize=480, quality=90, subsampling=444, fast_dct=True, filter="lanczos", no_upscale=True),
    PackOptions(resize=256, quality=80, subsampling=422, color=0, encoding=".jpg", dask="local:2", shard_size=9),
])
def test_command_flags_round_trip(opts):
    _, commands = _commands()
    a = commands["pack"].parse_args(["P", "R", *opts.command_flags()])
    assert PackOptions.from_args(a) == opts


def test_bench_advice_is_a_pack_command_that_works():
    from fastrec.reports.bench import Setting
    _, commands = _commands()
    for setting in (Setting(90, 444, "fast", "lanczos", False), Setting(95, 420, "accurate", "auto", True)):
        words = setting.pack_command(480).split()
        assert words[:4] == ["fastrec", "pack", "PREFIX", "ROOT"]
        opts = PackOptions.from_args(commands["pack"].parse_args(words[2:]))
        assert (opts.quality, opts.subsampling, opts.fast_dct, opts.filter, opts.no_upscale, opts.resize) == \
               (setting.quality, setting.subsampling, setting.dct == "fast", setting.filter, not setting.upscale, 480)


# ---------------------------------------------------------------- no silent wrong datasets
@pytest.mark.parametrize("flags, named", [
    (["--min-images", "3"], "--min-images acts only with --from-tar"),
    (["--val-per-class", "1", "--val-prefix", "V"], "--val-per-class, --val-prefix act only with --from-tar"),
    (["--val-prefix", "V"], "--val-prefix acts only with --from-tar"),
    (["--more-than", "3"], "--more-than acts only with --from-tar"),
    (["--classes", "ROOT"], "--classes, --ids and --partial-labels go with --labels"),
    (["--partial-labels"], "--classes, --ids and --partial-labels go with --labels"),
])
def test_list_options_that_do_not_apply_are_errors(place, monkeypatch, flags, named):
    monkeypatch.chdir(place)
    status, err = _main(["list", "L", "ROOT", "--recursive", *flags])
    assert status == 2 and named in err
    assert not (place / "L.lst").exists()


def test_list_of_class_folders_without_recursive_names_the_cause(place, tmp_path):
    status, err = _main(["list", str(tmp_path / "L"), str(place / "ROOT")])
    assert status == 2 and "add --recursive" in err and not list(tmp_path.iterdir())
    (tmp_path / "empty").mkdir()
    status, err = _main(["list", str(tmp_path / "L"), str(tmp_path / "empty"), "--recursive"])
    assert status == 2 and "no image (.jpeg, .jpg, .png) under" in err


def test_pack_of_an_empty_list_is_an_error(place, tmp_path):
    (tmp_path / "E.lst").write_text("")
    status, err = _main(["pack", str(tmp_path / "E"), str(place / "ROOT"), "--progress", "off"])
    assert status == 2 and "hold no image line" in err and "--recursive" in err
    assert not (tmp_path / "E.rec").exists()


def test_shard_size_without_dask_is_an_error(place):
    status, err = _main(["pack", str(place / "P"), str(place / "ROOT"), "--shard-size", "5"])
    assert status == 2 and "--shard-size applies to --dask runs only" in err


def test_positionals_may_follow_flags(place, tmp_path):
    """`pack P --progress off ROOT`: plain argparse refuses an optional positional after flags."""
    import shutil
    shutil.copyfile(place / "P.lst", tmp_path / "Q.lst")
    status, err = _main(["pack", str(tmp_path / "Q"), "--progress", "off", str(place / "ROOT")])
    assert status == 0, err
    assert (tmp_path / "Q.rec").read_bytes() == (place / "P.rec").read_bytes()


# ---------------------------------------------------------------- --help says what happens (issue 22)
def test_help_defaults_say_what_happens():
    """No "default: None" (a required flag says so; one without a default shows none), a switch
    reads as off or on unless given (`--no-shuffle` is not "default: True", `--shuffle` is on),
    and a value is named after its own flag, not an old alias's dest."""
    import re
    _, commands = _commands()
    helps = {name: re.sub(r"\s+", " ", sub.format_help()) for name, sub in commands.items()}
    for name, text in helps.items():
        for wrong in ("default: None", "default: True", "default: False", "default: []", "default: ["):
            assert wrong not in text, (name, wrong)
    assert "--move-to MOVE_TO folder the small classes are moved into (required)" in helps["filter"]
    assert re.search(r"--no-shuffle keep the sorted order [^(]*\(default: off\)", helps["list"])
    assert re.search(r"--shuffle older im2rec.py's form[^(]*\(default: on\)", helps["list"])
    assert "--num-thread NUM_THREAD" in helps["extract"] and "JOBS" not in helps["extract"]
    assert "--val-per-class VAL_PER_CLASS" in helps["split"]
    assert re.search(r"--pass-through store the file bytes unchanged [^(]*\([^)]*\) \(default: off\)", helps["prepare"])
