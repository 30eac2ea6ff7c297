"""Command line: parses arguments and calls the stage functions; no work is done here."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from fastrec._version import __version__
from fastrec.errors import FastrecError, UsageError
from fastrec.stages.args import FRACTION, PATH, checked, hidden_alias, whole

log = logging.getLogger("fastrec")


# ---------------------------------------------------------------- the parser
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def _bool_word(text: str) -> bool | None:
    low = text.lower()
    return True if low in TRUE_WORDS else False if low in FALSE_WORDS else None


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each flag's default once, as what happens: not again where the help already
    words it; a required flag says so (not "default: None"); a switch is "off" unless given
    (`--no-shuffle`: not "default: True"); a flag without a default shows none (its help says
    what happens without it); a value is named after its own flag, not an older alias's dest."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default: " in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.required:
            return text + " (required)"
        if action.nargs == 0:   # store_true / store_false: on when the default is what it stores
            return text + f" (default: {'on' if action.default == action.const else 'off'})"
        if action.default is None:
            return text
        if isinstance(action.default, (list, tuple)):
            return text + f" (default: {' '.join(map(str, action.default)) or 'none'})"
        return super()._get_help_string(action)

    def _get_default_metavar_for_optional(self, action):
        longs = [o for o in action.option_strings if o.startswith("--")]
        return longs[0][2:].upper().replace("-", "_") if longs else super()._get_default_metavar_for_optional(action)


class Parser(argparse.ArgumentParser):
    """argparse with fastrec's manners: help shows defaults; errors are one line naming the command
    and a hint (the usage too when the shape of the command line is wrong); and im2rec's switches
    also take the value older im2rec.py's `type=bool` flags took (`--list True`, `--recursive no`)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _DefaultsHelp)
        super().__init__(*args, **kw)
        self.word_switches: dict[str, str] = {}   # option -> dest
        self._intermixing = False

    def add_switch(self, group, option: str, help: str, dest: str | None = None, words: bool = False):
        """A store_true flag; with `words`, `OPTION True|False|1|0|yes|no` (any case) works too."""
        action = group.add_argument(option, action="store_true", dest=dest, help=help)
        if words:
            self.word_switches[option] = action.dest
        return action

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        rest, given = [], {}
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--":
                rest += args[i:]
                break
            option, eq, value = tok.partition("=")
            if option in self.word_switches:
                dest = self.word_switches[option]
                if eq:
                    word = _bool_word(value)
                    if word is None:
                        self.error(f"argument {option}: expected True/False/1/0/yes/no, got {value!r}")
                    given[dest] = word
                    i += 1
                    continue
                word = _bool_word(args[i + 1]) if i + 1 < len(args) else None
                given[dest] = True if word is None else word
                if word is not None:
                    i += 2
                    continue
            rest.append(tok)
            i += 1
        if self._subparsers is None and not self._intermixing:
            # a command's positionals may come after its flags (`pack P --resize 480 ROOT`), which
            # plain argparse refuses when a positional is optional
            self._intermixing = True
            try:
                ns, extras = super().parse_known_intermixed_args(rest, namespace)
            finally:
                self._intermixing = False
        else:
            ns, extras = super().parse_known_args(rest, namespace)
        for dest, value in given.items():   # the last one written wins, as argparse does
            setattr(ns, dest, value)
        return ns, extras

    def error(self, message: str):
        hint = f"(see `{self.prog} --help`)"
        if not message.startswith("argument "):   # a wrong shape, not a wrong value: show the usage
            self.print_usage(sys.stderr)
            if message.startswith("unrecognized arguments") and self.word_switches:
                hint = (f"(switches take no value, or one of True/False/1/0/yes/no; "
                        f"see `{self.prog} --help`)")
        self.exit(2, f"{self.prog}: error: {message} {hint}\n")


# ---------------------------------------------------------------- im2rec-compatible flags
def add_list_flags(p: Parser) -> None:
    g = p.add_argument_group("list options (as im2rec.py --list)")
    g.add_argument("--exts", nargs="+", default=[".jpeg", ".jpg", ".png"],
                   help="file extensions to list (compared with the lower-cased extension)")
    g.add_argument("--chunks", type=whole(1, 1 << 20), default=1, help="number of chunks")
    g.add_argument("--train-ratio", type=FRACTION, default=1.0, help="ratio of images for training")
    g.add_argument("--test-ratio", type=FRACTION, default=0.0, help="ratio of images for testing")
    p.add_switch(g, "--recursive", "walk sub-folders; each folder with images gets its own label", words=True)
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep the sorted order instead of im2rec's seeded shuffle")
    p.add_switch(g, "--shuffle", "older im2rec.py's form: `--shuffle False` is --no-shuffle", words=True)
    p.set_defaults(shuffle=True)


PREPARE_LEAVES_OUT = ("strict", "resume", "progress")   # prepare resumes always and has its own --progress


def add_pack_flags(p: Parser, defaults: dict | None = None) -> None:
    """The pack flags of engine.options.PACK_FLAGS. With `defaults` (prepare), an absent flag stays out
    of the namespace, so a TOML file's setting is not overridden, and help shows those defaults."""
    from fastrec.engine.options import PACK_FLAGS, PackOptions
    im2rec = p.add_argument_group("pack options (as im2rec.py)")
    own = p.add_argument_group("fastrec pack options")
    for flag in PACK_FLAGS:
        if defaults is not None and flag.field in PREPARE_LEAVES_OUT:
            continue
        group = im2rec if flag.im2rec else own
        default = getattr(PackOptions, flag.field) if defaults is None else defaults.get(flag.field,
                                                                                      getattr(PackOptions, flag.field))
        if flag.parse is None:
            action = p.add_switch(group, flag.option, flag.help, dest=flag.field, words=flag.im2rec)
        else:
            shown = "none" if default is None else flag.text(default)
            metavar = "{" + ",".join(flag.parse.values) + "}" if hasattr(flag.parse, "values") else None
            action = group.add_argument(flag.option, dest=flag.field, type=checked(flag.parse), metavar=metavar,
                                        default=None if default is None else shown, help=flag.help.replace("%", "%%"))
        if defaults is not None:
            action.default = argparse.SUPPRESS
            action.help += f" (default: {('on' if default else 'off') if flag.parse is None else shown})"


def _pack_args_to_options(a: argparse.Namespace):
    from fastrec.engine.options import PackOptions
    return PackOptions.from_args(a)


# ---------------------------------------------------------------- commands
FROM_TAR_ONLY = (("min_images", 0), ("more_than", None), ("val_per_class", 0), ("val_prefix", None),
                 ("val_chunks", 1), ("seed", 0))


def cmd_list(a: argparse.Namespace) -> int:
    import contextlib
    from fastrec.formats.lists import ListOptions
    from fastrec.fsutil import command_line, output_lock
    opts = ListOptions(recursive=a.recursive, exts=tuple(a.exts), chunks=a.chunks,
                       train_ratio=a.train_ratio, test_ratio=a.test_ratio, shuffle=a.shuffle)
    prefixes = [a.prefix, *([a.val_prefix] if getattr(a, "val_prefix", None) else [])]
    _refuse_list_over_input(a, prefixes, opts)
    with contextlib.ExitStack() as locks:   # one writer per output; a missing output folder is refused here
        for prefix in prefixes:
            locks.enter_context(output_lock(prefix, command_line()))
        return _list(a, opts)


def _refuse_list_over_input(a: argparse.Namespace, prefixes: list[str], opts) -> None:
    """A list, synset or index file that would overwrite an input (the archive, the labels) is refused."""
    from fastrec.formats.lists import split_outputs, synset_path
    from fastrec.fsutil import refuse_output_is_input
    outputs = [path for prefix in prefixes for path, _ in split_outputs(os.path.abspath(prefix), [], opts)]
    outputs += [synset_path(prefix) for prefix in prefixes]
    inputs = [*(getattr(a, "from_tar", None) or []), *(getattr(a, k, None) or "" for k in ("labels", "classes", "ids"))]
    refuse_output_is_input(outputs, [p for p in inputs if p], "choose another PREFIX")


def _list(a: argparse.Namespace, opts) -> int:
    from fastrec.formats.lists import make_lists
    if getattr(a, "labels", None):
        return _list_labelled(a, opts)
    if getattr(a, "from_tar", None):
        return _list_from_tar(a, opts)
    wrong = [f"--{k.replace('_', '-')}" for k, default in FROM_TAR_ONLY if getattr(a, k, default) != default]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} {'acts' if len(wrong) == 1 else 'act'} only with --from-tar (on a folder, run `fastrec filter` and "
                         f"`fastrec split` first, then list the train and val trees)")
    if getattr(a, "classes", None) or getattr(a, "ids", None) or getattr(a, "partial_labels", False):
        raise UsageError("--classes, --ids and --partial-labels go with --labels FILE (the labels of a flat set)")
    if a.root is None:
        raise UsageError("give the image ROOT (or --from-tar ARCHIVE)")
    result = make_lists(a.prefix, a.root, opts, allow_empty=False)
    _print_lists(a, {"train": result})
    return 0


def _min_images(a: argparse.Namespace) -> int:
    if a.more_than is not None:
        if a.min_images:
            raise UsageError("give --min-images N or --more-than N, not both")
        return a.more_than + 1
    return a.min_images


def _print_lists(a: argparse.Namespace, results: dict) -> None:
    if getattr(a, "json", False):
        from fastrec.reports.results import dumps, list_document
        print(dumps(list_document(results)))
    else:
        for rel, label in results["train"].label_map:  # im2rec prints the folder -> label mapping
            print(rel, label)
    for result in filter(None, results.values()):
        for path in result.files:
            log.info("wrote %s (%d images)", path, result.counts[path])
        if result.synset:
            log.info("wrote %s (class folder of each label)", result.synset)


def _list_from_tar(a: argparse.Namespace, opts) -> int:
    from fastrec.stages.tarlists import make_lists_from_tar
    if a.root is not None:
        raise UsageError(f"ROOT {a.root!r} is not used with --from-tar (the lists are relative to the archive)")
    made = make_lists_from_tar(a.prefix, a.from_tar, opts, _min_images(a), a.val_per_class, a.seed,
                               a.val_prefix, a.val_chunks)
    _print_lists(a, {"train": made.train, "val": made.val})
    if made.split.small_classes:
        log.info("left out %d classes with fewer than %d images", len(made.split.small_classes), _min_images(a))
    if made.rejected:
        log.info("left out %d archive members (see the warnings above)", len(made.rejected))
    return 0


def _list_labelled(a: argparse.Namespace, opts) -> int:
    from fastrec.stages.tarlists import make_labelled_lists
    if not a.classes:
        raise UsageError("--labels needs --classes: the train tree (its sorted class folders) or a synset "
                         "file, so the labels are numbered like the train lists")
    wrong = [f"--{k.replace('_', '-')}" for k, default in FROM_TAR_ONLY if getattr(a, k, default) != default]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} do not apply to --labels lists")
    if bool(a.root) == bool(a.from_tar):
        raise UsageError("give the flat validation folder ROOT, or --from-tar ARCHIVE, with --labels")
    result = make_labelled_lists(a.prefix, a.root, a.from_tar, a.labels, a.classes, opts, a.ids, a.partial_labels)
    _print_lists(a, {"train": result})
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from fastrec.engine import pack_prefix
    if a.shard_size and not a.dask:
        raise UsageError("--shard-size applies to --dask runs only; add --dask ADDRESS or leave it out")
    from fastrec.engine import TooManySkipped
    failed = None
    try:
        summary = pack_prefix(a.prefix, a.root, _pack_args_to_options(a), archives=getattr(a, "from_tar", None) or ())
    except TooManySkipped as err:   # the outputs are whole: --json still describes them
        summary, failed = err.summary, err
    if getattr(a, "json", False):
        from fastrec.reports.results import dumps, pack_document
        doc = pack_document(summary)
        if failed is not None:   # one document: the outputs it describes, and the failure
            doc.update(error=str(failed), exit=failed.exit_code)
            failed.json_printed = True
        print(dumps(doc))
    if failed is not None:
        raise failed
    return 0


def cmd_im2rec(a: argparse.Namespace) -> int:
    """`fastrec im2rec ARGS` takes exactly im2rec.py's argument vector."""
    return cmd_list(a) if a.list else cmd_pack(a)


def cmd_verify(a: argparse.Namespace) -> int:
    from fastrec.reports.verify import verify
    from fastrec.reports.verify_combined import default_combined_index, verify_combined_index
    reports = verify(a.prefix, decode=a.decode, resize=a.resize, require_fingerprints=a.require_fingerprints)
    if not reports:
        raise UsageError(f"no .rec file matches {a.prefix!r}")
    if a.sources:
        from fastrec.stages.provenance import check_sources
        for report in reports:
            check_sources(report)
    combined = a.index or default_combined_index(a.prefix)
    if combined:
        reports.append(verify_combined_index(a.prefix, combined))
    if a.json:
        from fastrec.reports.results import dumps, verify_document
        print(dumps(verify_document(reports)))
    else:
        print("\n".join(line for report in reports for line in report.lines()))
    return 0 if all(r.ok for r in reports) else 1


def cmd_index(a: argparse.Namespace) -> int:
    from fastrec.formats.combined_index import write_combined_index
    path, recs, records = write_combined_index(a.prefix, a.output)
    print(f"wrote {path}: {records} records of {len(recs)} .rec file(s), in this order: "
          + " ".join(os.path.basename(r) for r in recs))
    for rec in recs:
        if os.path.getsize(rec) == 0:   # its list packed nothing (a chunk of fewer images than --chunks)
            log.warning("note: %s is empty: leave it out of DALI's path (DALI cannot map an empty file)", rec)
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    from fastrec.formats.recordio import RecordIOError
    from fastrec.reports.inspect import Stats, class_names, collect, contact_sheet, report_lines, total_lines
    from fastrec.reports.verify import find_recs
    recs = find_recs(a.prefix)
    if not recs:
        raise UsageError(f"no .rec file matches {a.prefix!r}")
    try:
        files, total, lines, sheet = [], Stats(), [], None
        for rec in recs:
            first, stats = collect(rec, a.head)
            files.append((rec, stats))
            total.add(stats)
            lines += report_lines(rec, first, stats)
        names = class_names(recs)
        lines += total_lines(recs, total, names)
        if a.contact_sheet:
            drawn = contact_sheet(recs, a.contact_sheet, a.sample, names=names)
            sheet = {"path": a.contact_sheet, "images": len(drawn), "files": len({d.rec for d in drawn}),
                     "captions": [" ".join(d.caption) for d in drawn]}
            lines.append(f"contact sheet of {len(drawn)} images from {sheet['files']} of {len(recs)} files: "
                         f"{a.contact_sheet}")
        if a.json:
            from fastrec.reports.results import dumps, inspect_document
            print(dumps(inspect_document(files, total, names, sheet)))
        else:
            print("\n".join(lines))
    except RecordIOError as err:
        raise UsageError(f"{err} (run `fastrec verify` for a full report)") from err
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from fastrec.reports.bench import run
    run(a.root, sample=a.sample, seed=a.seed, quality=a.quality, subsampling=a.subsampling,
        dct=a.dct, filter=a.filter, resize=a.resize, upscale=a.upscale, threads=a.num_thread,
        passes=a.passes, metric_sample=a.metric_sample, reference=a.reference,
        out=a.out or None, progress=a.progress)
    return 0


PREPARE_FIELDS = ("work", "root", "val_root", "archives", "small_root", "min_images", "val_per_class", "seed",
                  "chunks", "val_chunks", "extract_jobs", "raid_devices", "raid_mount", "raid_execute")


def cmd_prepare(a: argparse.Namespace) -> int:
    import dataclasses
    from fastrec.engine.options import PACK_FLAGS
    from fastrec.stages.prepare import PrepareConfig, prepare, report_lines
    given = {k: getattr(a, k) for k in PREPARE_FIELDS if getattr(a, k, None) is not None}
    if getattr(a, "more_than", None) is not None:
        if "min_images" in given:
            raise UsageError("give --min-images N or --more-than N, not both")
        given["min_images"] = a.more_than + 1
    if a.from_tar:    # the archives to list and pack from (or --archive's, as before)
        given["archives"] = [*given.get("archives", []), *(t for t in a.from_tar if t is not True)]
        given["from_tar"] = True
    pack_given = {f.field: getattr(a, f.field) for f in PACK_FLAGS if hasattr(a, f.field)}
    if a.config:
        cfg = PrepareConfig.from_toml(a.config, **given)
    else:
        needed = ("work",) if given.get("from_tar") else ("work", "root", "val_root")
        missing = [f"--{k.replace('_', '-')}" for k in needed if k not in given]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or give --config)")
        cfg = PrepareConfig(**given)
    cfg.pack = dataclasses.replace(cfg.pack, **pack_given)
    cfg.progress = a.progress
    state = prepare(cfg)
    print("\n".join(report_lines(state)))
    return 0


class _TarSwitch(argparse.Action):
    """prepare's --from-tar: bare (read --archive's tars) or with archives, as list/pack's --from-tar."""

    def __call__(self, parser, namespace, values, option_string=None):
        got = getattr(namespace, self.dest, None) or []
        setattr(namespace, self.dest, [*got, *(values or [True])])


# ---------------------------------------------------------------- parser
def _add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")


def build_parser() -> argparse.ArgumentParser:
    import fastrec
    from fastrec.stages.prepare import PREPARE_PACK_DEFAULTS, PrepareConfig
    parser = Parser(prog="fastrec", description=fastrec.__doc__.split("\n")[0] + " "
                    "`fastrec COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"fastrec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="write .lst files like im2rec.py --list")
    p.add_argument("prefix", help="prefix of the .lst files to write")
    p.add_argument("root", nargs="?", help="folder holding the images (not with --from-tar)")
    add_list_flags(p)
    t = p.add_argument_group("listing tar archives without extracting them (these act only with --from-tar)")
    t.add_argument("--from-tar", action="append", metavar="ARCHIVE", type=PATH,
                   help="list the images of this tar (outer tar of class tars, folder of class tars, "
                        "or a tar of class folders) as the extracted tree would be listed; repeatable")
    t.add_argument("--min-images", type=whole(0), default=0,
                   help="leave out classes with fewer images (as filter; keeps a class of exactly N)")
    t.add_argument("--more-than", type=whole(0), default=None,
                   help="leave out classes with N images or fewer (the tutorial's `count > N`)")
    t.add_argument("--val-per-class", type=whole(0), default=0, help="images per class for validation (as split)")
    t.add_argument("--val-prefix", type=PATH, help="prefix of the validation .lst files")
    t.add_argument("--val-chunks", type=whole(1, 1 << 20), default=1, help="chunks of the validation lists")
    t.add_argument("--seed", type=whole(0), default=0, help="the validation split's seed (as split)")
    v = p.add_argument_group("labels from a file (a flat validation set such as ILSVRC2012_img_val.tar)")
    v.add_argument("--labels", metavar="FILE", type=PATH,
                   help="ground truth: `file class` lines (class: a folder name of the train tree or its "
                        "label), or ILSVRC2012_validation_ground_truth.txt (one 1-based ILSVRC id a line, "
                        "in file-name order; with --ids)")
    v.add_argument("--classes", metavar="TRAIN_ROOT|SYNSETS", type=PATH,
                   help="the train tree (its sorted class folders give the labels, as list --recursive) "
                        "or a synset file (one class a line, label = line number from 0)")
    v.add_argument("--ids", metavar="SYNSETS", type=PATH,
                   help="with a devkit ground truth: the devkit's class order (line i: the class of ILSVRC "
                        "id i; default: the --classes synset file)")
    v.add_argument("--partial-labels", action="store_true",
                   help="list the labelled images that are there when some are missing (a partial "
                        "extraction), with a warning and the count (default: an error naming them)")
    _add_json_flag(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("pack", help="pack .lst files into .rec/.idx like im2rec.py, natively")
    p.add_argument("prefix", help="prefix of the .lst files to pack (or a folder of them)")
    p.add_argument("root", nargs="?", help="folder the .lst paths are relative to (not with --from-tar)")
    add_pack_flags(p)
    p.add_argument("--from-tar", action="append", metavar="ARCHIVE", type=PATH,
                   help="read the images from these tar archives instead of files (see list --from-tar)")
    _add_json_flag(p)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("im2rec", help="drop-in for `python im2rec.py ARGS` (list and pack modes)")
    p.add_argument("prefix", help="prefix of input/output lst and rec files")
    p.add_argument("root", help="path to folder containing images")
    p.add_switch(p, "--list", "create an image list instead of a database", words=True)
    add_list_flags(p)
    add_pack_flags(p)
    p.set_defaults(func=cmd_im2rec)

    p = sub.add_parser("verify", help="check the framing, index and headers of .rec files")
    p.add_argument("prefix", help="a .rec file, or a prefix matching .rec files")
    p.add_argument("--decode", action="store_true", help="also decode every image")
    p.add_argument("--resize", type=whole(1, 65500), default=None,
                   help="with --decode: the shorter edge every image must have")
    p.add_argument("--sources", action="store_true",
                   help="also re-read every packed image (files or tar members) and name those changed since the pack")
    p.add_argument("--require-fingerprints", action="store_true",
                   help="fail a .rec that has no fingerprints beside it (by default such a pack, as im2rec "
                        "writes it, is checked for framing, ids and labels only, with a note)")
    p.add_argument("--index", metavar="FILE", type=PATH,
                   help="also check this combined index (`fastrec index`); PREFIX.idx is checked when present")
    _add_json_flag(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("index", help="write one index over the .rec files of a chunked pack (for DALI)",
                       description="Write one .idx over all .rec files of PREFIX (data_0.rec ... data_7.rec), "
                       "in list order, each offset shifted by the sizes of the files before it: the single "
                       "index_path that DALI's readers.mxnet takes with path=[those .rec files, same order]. "
                       "Written atomically; `fastrec verify PREFIX` checks it.")
    p.add_argument("prefix", help="prefix of the packed lists (e.g. data for data_0 .. data_7)")
    p.add_argument("-o", "--output", metavar="FILE", type=PATH,
                   help="where to write it (default: PREFIX.idx)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("inspect", help="show record headers, label counts and image sizes of .rec files")
    p.add_argument("prefix", help="a .rec file, or a prefix matching .rec files")
    p.add_argument("--head", type=whole(0), default=10, help="print the first N record headers")
    p.add_argument("--contact-sheet", metavar="FILE.png", type=PATH,
                   help="write a grid of sampled images, each captioned with its id, label and class name "
                        "(from the manifest or PREFIX.synset.txt)")
    p.add_argument("--sample", type=whole(1, 10_000), default=48, help="images on the contact sheet (drawn from all files)")
    _add_json_flag(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("bench", help="measure speed, size and fidelity of codec settings on a sample of a tree")
    p.add_argument("root", help="folder holding the images (searched recursively)")
    p.add_argument("--sample", type=whole(1, 1 << 30), default=200, help="images drawn at random from the tree")
    p.add_argument("--seed", type=whole(0), default=0, help="seed of the random sample")
    p.add_argument("--quality", default="80,90,95", help="JPEG qualities to try, comma-separated (1-100)")
    p.add_argument("--subsampling", default="420,444", help="chroma subsamplings to try: 420, 422, 444")
    p.add_argument("--dct", default="accurate", help="DCT variants to try: accurate, fast (fast gains little on AVX2)")
    p.add_argument("--filter", default="auto", help="resize filters to try (auto, lanczos, bicubic, triangle)")
    p.add_argument("--resize", type=whole(0, 65500), default=480,
                   help="shorter edge in pixels, as im2rec (0: keep the size)")
    p.add_argument("--upscale", default="yes,no",
                   help="yes: enlarge images smaller than --resize (im2rec); no: keep them (--no-upscale)")
    p.add_argument("--num-thread", type=whole(1, 1024), default=1,
                   help="threads, each with its own worker; speed is per thread")
    hidden_alias(p, "--threads", "num_thread", type=whole(1, 1024))
    p.add_argument("--passes", type=whole(1, 1000), default=5,
                   help="timed rounds after a warm-up (every setting once a round); speed = median, with min-max")
    p.add_argument("--metric-sample", type=whole(1, 1 << 30), default=50,
                   help="images of the sample that PSNR/SSIM use")
    p.add_argument("--reference", default="lanczos", help="filter of the full-resolution reference resize "
                   "(lanczos, bicubic, triangle, box)")
    p.add_argument("--out", default="fastrec-bench", help="folder for bench.csv, bench.json, bench.png ('' for none)")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    p.set_defaults(func=cmd_bench)

    d = PrepareConfig.__dataclass_fields__
    p = sub.add_parser("prepare", help="the whole chain: [raid] extract filter split list pack, resumable",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="TOML", type=PATH, default=None,
                   help="settings file (flags given here override it)")
    p.add_argument("--work", type=PATH, help="folder for lists, .rec files and the state file")
    p.add_argument("--archive", dest="archives", action="append", metavar="TAR", type=PATH,
                   help="ImageNet-style tar(s) to extract (repeat; omit if --root is already extracted)")
    p.add_argument("--root", type=PATH, help="train image tree (extract destination; not with --from-tar)")
    p.add_argument("--val-root", type=PATH, help="validation tree that split fills (not with --from-tar)")
    p.add_argument("--small-root", type=PATH, help="where filter moves classes with too few images "
                   "(default: WORK/small-classes)")
    p.add_argument("--min-images", type=whole(0),
                   help=f"filter: keep classes of at least N images (0: no filter) (default: {d['min_images'].default})")
    p.add_argument("--more-than", type=whole(0),
                   help="filter: keep classes of more than N images (the tutorial's `count > N`)")
    p.add_argument("--val-per-class", type=whole(0),
                   help=f"split: images per class for validation (0: none) (default: {d['val_per_class'].default})")
    p.add_argument("--seed", type=whole(0), help=f"split seed (default: {d['seed'].default})")
    p.add_argument("--chunks", type=whole(1, 1 << 20), help=f"train .lst/.rec chunks (default: {d['chunks'].default})")
    p.add_argument("--val-chunks", type=whole(1, 1 << 20),
                   help=f"validation chunks (default: {d['val_chunks'].default})")
    p.add_argument("--extract-num-thread", dest="extract_jobs", type=whole(1, 1024),
                   help=f"classes extracted at once (default: {d['extract_jobs'].default})")
    hidden_alias(p, "--extract-jobs", "extract_jobs", type=whole(1, 1024))
    p.add_argument("--raid-device", dest="raid_devices", action="append", metavar="DEV", type=PATH,
                   help="stripe these disks first (repeat); the plan is printed unless --raid-execute")
    p.add_argument("--raid-mount", type=PATH, help="mount point of the RAID-0 volume")
    p.add_argument("--raid-execute", action="store_true", help="really create the array (default: off: print the plan)")
    add_pack_flags(p, PREPARE_PACK_DEFAULTS)
    p.add_argument("--from-tar", nargs="*", action=_TarSwitch, metavar="ARCHIVE", type=PATH, default=None,
                   help="list and pack straight from tar archives (these, or --archive's): no extraction, "
                        "no file moves, no --root/--val-root")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal) (default: auto)")
    p.set_defaults(func=cmd_prepare)

    # -- stage commands are registered below this line --
    from fastrec.stages import extract
    from fastrec.stages import filter as filter_
    from fastrec.stages import raid
    from fastrec.stages import split
    for stage in (raid, extract, filter_, split):
        stage.register(sub)
    parser.commands = sub.choices
    return parser


def _configure_logging(verbose: int) -> None:
    """Progress and results at INFO on stderr; -v adds fastrec's debug lines (each skip, per-list
    timings), -vv every library's. Dask narrates each start and stop of a cluster at INFO: only
    its warnings are news, unless -vv."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if verbose:
        logging.getLogger("fastrec").setLevel(logging.DEBUG)
    if verbose < 2:   # dask reads its config (here: its loggers' level) at import, in every worker too
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


STAGE_OUTPUT_FOLDERS = {"extract": ("dest",), "filter": ("root", "move_to"), "split": ("root", "val_root")}


def _stage_locks(a: argparse.Namespace, stack) -> None:
    """The folders a moving stage writes are locked for its run (one writer per output); pack,
    list and prepare lock their own outputs. A dry run writes nothing and locks nothing."""
    from fastrec.fsutil import command_line, output_lock
    if getattr(a, "dry_run", False):
        return
    for field in STAGE_OUTPUT_FOLDERS.get(a.command, ()):
        folder = getattr(a, field, None)
        if field == "root" and not os.path.isdir(folder or ""):
            continue        # the stage refuses a missing ROOT in its own words
        if folder:
            os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)   # as the stage would
            stack.enter_context(output_lock(folder, command_line()))


def _os_error_line(err: OSError) -> str:
    """A failure of the machine under the run, as one line: what failed, on which path, what to do."""
    where = " -> ".join(os.fsdecode(p) for p in (err.filename, err.filename2) if p is not None)
    what = err.strerror or str(err) or type(err).__name__
    return (f"{what}{f': {where}' if where else ''} (a fault of the machine or the storage, not of the data); "
            f"fix it (space, permissions, the device) and run the same command again")


def _fail(a, command: str, message: str, code: int, json_wanted: bool) -> int:
    """Every failure: one line on stderr and, with --json, one JSON document on stdout."""
    print(f"fastrec {command}: {'' if code == 130 else 'error: '}{message}", file=sys.stderr)
    if json_wanted:
        import json
        try:
            print(json.dumps({"command": command, "error": message, "exit": code}), flush=True)
        except OSError:
            pass
    return code


def main(argv: list[str] | None = None) -> int:
    from fastrec.errors import EXIT_ENVIRONMENT
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    json_wanted = "--json" in args
    try:
        a, extras = parser.parse_known_args(args)
        if extras:   # the sub-command's usage, not the top level's
            parser.commands[a.command].error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as done:   # a wrong argument (status 2), --help or --version (0)
        code = done.code if isinstance(done.code, int) else 2
        if code and json_wanted:
            import json
            print(json.dumps({"error": "bad command line (see stderr)", "exit": code}))
        return code
    _configure_logging(a.verbose)
    json_wanted = bool(getattr(a, "json", False))
    try:
        import contextlib
        with contextlib.ExitStack() as locks:
            _stage_locks(a, locks)
            return a.func(a) or 0
    except FastrecError as err:
        return _fail(a, a.command, str(err), err.exit_code, json_wanted and not getattr(err, "json_printed", False))
    except KeyboardInterrupt:
        return _fail(a, a.command, "interrupted", 130, json_wanted)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:   # the machine failed under a path no stage wraps: one line, never a traceback
        log.debug("the failure in full", exc_info=True)
        return _fail(a, a.command, _os_error_line(err), EXIT_ENVIRONMENT, json_wanted)
