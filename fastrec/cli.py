"""Command line: parses arguments and calls the stage functions; no work is done here."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from fastrec._version import __version__
from fastrec.errors import FastrecError, UsageError

log = logging.getLogger("fastrec")


# ---------------------------------------------------------------- im2rec-compatible flags
def add_list_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("list options (as im2rec.py --list)")
    g.add_argument("--exts", nargs="+", default=[".jpeg", ".jpg", ".png"],
                   help="file extensions to list (compared with the lower-cased extension)")
    g.add_argument("--chunks", type=int, default=1, help="number of chunks")
    g.add_argument("--train-ratio", type=float, default=1.0, help="ratio of images for training")
    g.add_argument("--test-ratio", type=float, default=0, help="ratio of images for testing")
    g.add_argument("--recursive", action="store_true",
                   help="walk sub-folders; each folder with images gets its own label")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep the sorted order instead of im2rec's seeded shuffle")


def add_pack_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pack options (as im2rec.py)")
    g.add_argument("--pass-through", action="store_true", help="store the file bytes unchanged")
    g.add_argument("--resize", type=int, default=0,
                   help="resize the shorter edge to this many pixels (0: keep the size)")
    g.add_argument("--center-crop", action="store_true", help="cut the centre square before resizing")
    g.add_argument("--quality", type=int, default=95, help="JPEG quality (1-100) or PNG compression (0-9)")
    g.add_argument("--num-thread", type=int, default=1, help="worker threads")
    g.add_argument("--color", type=int, default=1, choices=[-1, 0, 1],
                   help="1: colour, 0: grayscale, -1: keep the channels (no EXIF rotation)")
    g.add_argument("--encoding", default=".jpg", choices=[".jpg", ".png"], help="output encoding")
    g.add_argument("--pack-label", action="store_true", help="store every label of multi-label lines")
    x = p.add_argument_group("fastrec pack options")
    x.add_argument("--no-upscale", action="store_true",
                   help="keep images whose shorter edge is below --resize at their size (im2rec upscales)")
    x.add_argument("--filter", default="auto", choices=["auto", "triangle", "bicubic", "lanczos"],
                   help="resampling filter for --resize, antialiased when shrinking (auto: Lanczos-3 "
                        "when shrinking, Catmull-Rom bicubic when enlarging)")
    x.add_argument("--strict", action="store_true", help="exit non-zero if any image was skipped")
    x.add_argument("--resume", action="store_true",
                   help="continue an interrupted pack where its .rec/.idx stop")
    x.add_argument("--max-pixels", type=int, default=None,
                   help="skip images with more pixels than this (default 178956970, as Pillow)")
    x.add_argument("--max-bytes", type=int, default=None, help="skip files larger than this (default 256 MiB)")
    x.add_argument("--max-scans", type=int, default=None, help="skip progressive JPEGs with more scans (default 100)")
    x.add_argument("--batch-size", type=int, default=64,
                   help="most images handed to a worker at once (fewer for short lists, so all threads work)")
    x.add_argument("--io-depth", type=int, default=0, help="reads in flight ahead of the decoders (default 0: automatic, grows while they wait)")
    x.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    x.add_argument("--dask", metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler address, or local[:WORKERS] for a local one")
    x.add_argument("--shard-size", type=int, default=0,
                   help="with --dask: images per task (default: one task per .lst)")


def _pack_args_to_options(a: argparse.Namespace):
    from fastrec.engine.options import PackOptions
    return PackOptions.from_args(a)


# ---------------------------------------------------------------- commands
def cmd_list(a: argparse.Namespace) -> int:
    from fastrec.formats.lists import ListOptions, make_lists
    opts = ListOptions(recursive=a.recursive, exts=tuple(a.exts), chunks=a.chunks,
                       train_ratio=a.train_ratio, test_ratio=a.test_ratio, shuffle=a.shuffle)
    if getattr(a, "from_tar", None):
        return _list_from_tar(a, opts)
    if a.root is None:
        raise UsageError("give the image ROOT (or --from-tar ARCHIVE)")
    result = make_lists(a.prefix, a.root, opts)
    for rel, label in result.label_map:  # im2rec prints the folder -> label mapping
        print(rel, label)
    for path in result.files:
        log.info("wrote %s (%d images)", path, result.counts[path])
    return 0


def _list_from_tar(a: argparse.Namespace, opts) -> int:
    from fastrec.stages.tarlists import make_lists_from_tar
    made = make_lists_from_tar(a.prefix, a.from_tar, opts, a.min_images, a.val_per_class, a.seed,
                               a.val_prefix, a.val_chunks)
    for rel, label in made.train.label_map:
        print(rel, label)
    for result in (made.train, made.val):
        for path in (result.files if result else []):
            log.info("wrote %s (%d images)", path, result.counts[path])
    if made.split.small_classes:
        log.info("left out %d classes with fewer than %d images", len(made.split.small_classes), a.min_images)
    if made.rejected:
        log.info("left out %d archive members (see the warnings above)", len(made.rejected))
    return 0


def cmd_pack(a: argparse.Namespace) -> int:
    from fastrec.engine import pack_prefix
    summary = pack_prefix(a.prefix, a.root, _pack_args_to_options(a), archives=getattr(a, "from_tar", None) or ())
    return 1 if a.strict and summary.skipped else 0


def cmd_im2rec(a: argparse.Namespace) -> int:
    """`fastrec im2rec ARGS` takes exactly im2rec.py's argument vector."""
    return cmd_list(a) if a.list else cmd_pack(a)


def cmd_verify(a: argparse.Namespace) -> int:
    from fastrec.reports.verify import verify
    reports = verify(a.prefix, decode=a.decode, resize=a.resize)
    if not reports:
        raise UsageError(f"no .rec file matches {a.prefix!r}")
    for report in reports:
        for line in report.lines():
            print(line)
    return 0 if all(r.ok for r in reports) else 1


def cmd_inspect(a: argparse.Namespace) -> int:
    from fastrec.formats.recordio import RecordIOError
    from fastrec.reports.inspect import collect, contact_sheet, report_lines
    from fastrec.reports.verify import find_recs
    recs = find_recs(a.prefix)
    if not recs:
        raise UsageError(f"no .rec file matches {a.prefix!r}")
    try:
        for rec in recs:
            first, stats = collect(rec, a.head)
            print("\n".join(report_lines(rec, first, stats)))
        if a.contact_sheet:
            n = contact_sheet(recs[0], a.contact_sheet, a.sample)
            print(f"contact sheet of {n} images from {recs[0]}: {a.contact_sheet}")
    except RecordIOError as err:
        raise UsageError(f"{err} (run `fastrec verify` for a full report)") from err
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from fastrec.reports.bench import run
    run(a.root, sample=a.sample, seed=a.seed, quality=a.quality, subsampling=a.subsampling,
        dct=a.dct, filter=a.filter, resize=a.resize, upscale=a.upscale, threads=a.threads,
        passes=a.passes, metric_sample=a.metric_sample, reference=a.reference,
        out=a.out or None, progress=a.progress)
    return 0


def cmd_prepare(a: argparse.Namespace) -> int:
    import dataclasses
    from fastrec.stages.prepare import PrepareConfig, prepare, report_lines
    fields = ("work", "root", "val_root", "archives", "small_root", "min_images", "val_per_class", "seed",
              "chunks", "val_chunks", "extract_jobs", "raid_devices", "raid_mount", "raid_execute", "from_tar")
    given = {k: getattr(a, k) for k in fields if getattr(a, k) is not None}
    pack_given = {k: getattr(a, k) for k in ("resize", "quality", "num_thread", "filter", "dask", "shard_size",
                                             "no_upscale") if getattr(a, k) is not None}
    if a.config:
        cfg = PrepareConfig.from_toml(a.config, **given)
    else:
        missing = [f"--{k.replace('_', '-')}" for k in ("work", "root", "val_root") if k not in given]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or give --config)")
        cfg = PrepareConfig(**given)
    cfg.pack = dataclasses.replace(cfg.pack, **pack_given)
    cfg.progress = a.progress
    state = prepare(cfg)
    print("\n".join(report_lines(state)))
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    import fastrec
    parser = argparse.ArgumentParser(prog="fastrec", description=fastrec.__doc__.split("\n")[0] + " "
                                     "`fastrec COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"fastrec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="write .lst files like im2rec.py --list")
    p.add_argument("prefix", help="prefix of the .lst files to write")
    p.add_argument("root", nargs="?", help="folder holding the images (not with --from-tar)")
    add_list_flags(p)
    t = p.add_argument_group("listing tar archives without extracting them")
    t.add_argument("--from-tar", action="append", metavar="ARCHIVE",
                   help="list the images of this tar (outer tar of class tars, folder of class tars, "
                        "or a tar of class folders) as the extracted tree would be listed; repeatable")
    t.add_argument("--min-images", type=int, default=0, help="leave out classes with fewer images (as filter)")
    t.add_argument("--val-per-class", type=int, default=0, help="images per class for validation (as split)")
    t.add_argument("--val-prefix", help="prefix of the validation .lst files")
    t.add_argument("--val-chunks", type=int, default=1, help="chunks of the validation lists")
    t.add_argument("--seed", type=int, default=0, help="the validation split's seed (as split)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("pack", help="pack .lst files into .rec/.idx like im2rec.py, natively")
    p.add_argument("prefix", help="prefix of the .lst files to pack (or a folder of them)")
    p.add_argument("root", nargs="?", help="folder the .lst paths are relative to (not with --from-tar)")
    add_pack_flags(p)
    p.add_argument("--from-tar", action="append", metavar="ARCHIVE",
                   help="read the images from these tar archives instead of files (see list --from-tar)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("im2rec", help="drop-in for `python im2rec.py ARGS` (list and pack modes)")
    p.add_argument("prefix", help="prefix of input/output lst and rec files")
    p.add_argument("root", help="path to folder containing images")
    p.add_argument("--list", action="store_true", help="create an image list instead of a database")
    add_list_flags(p)
    add_pack_flags(p)
    p.set_defaults(func=cmd_im2rec)

    p = sub.add_parser("verify", help="check the framing, index and headers of .rec files")
    p.add_argument("prefix", help="a .rec file, or a prefix matching .rec files")
    p.add_argument("--decode", action="store_true", help="also decode every image")
    p.add_argument("--resize", type=int, default=None,
                   help="with --decode: the shorter edge every image must have")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="show record headers, label counts and image sizes of .rec files")
    p.add_argument("prefix", help="a .rec file, or a prefix matching .rec files")
    p.add_argument("--head", type=int, default=10, help="print the first N record headers")
    p.add_argument("--contact-sheet", metavar="FILE.png", help="write a grid of sampled images")
    p.add_argument("--sample", type=int, default=48, help="images on the contact sheet")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("bench", help="measure speed, size and fidelity of codec settings on a sample of a tree")
    p.add_argument("root", help="folder holding the images (searched recursively)")
    p.add_argument("--sample", type=int, default=200, help="images drawn at random from the tree")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    p.add_argument("--quality", default="80,90,95", help="JPEG qualities to try, comma-separated (1-100)")
    p.add_argument("--subsampling", default="420,444", help="chroma subsamplings to try: 420, 422, 444")
    p.add_argument("--dct", default="accurate", help="DCT variants to try: accurate, fast (fast gains little on AVX2)")
    p.add_argument("--filter", default="auto", help="resize filters to try (auto, lanczos, bicubic, triangle)")
    p.add_argument("--resize", type=int, default=480, help="shorter edge in pixels, as im2rec (0: keep the size)")
    p.add_argument("--upscale", default="yes,no",
                   help="yes: enlarge images smaller than --resize (im2rec); no: keep them (--no-upscale)")
    p.add_argument("--threads", type=int, default=1, help="threads, each with its own worker; speed is per thread")
    p.add_argument("--passes", type=int, default=2, help="timed passes after a warm-up; the best counts")
    p.add_argument("--metric-sample", type=int, default=50, help="images of the sample that PSNR/SSIM use")
    p.add_argument("--reference", default="lanczos", help="filter of the full-resolution reference resize "
                   "(lanczos, bicubic, triangle, box)")
    p.add_argument("--out", default="fastrec-bench", help="folder for bench.csv, bench.json, bench.png ('' for none)")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar (auto: only on a terminal)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("prepare", help="the whole chain: [raid] extract filter split list pack, resumable")
    p.add_argument("--config", metavar="TOML", help="settings file (flags given here override it)")
    p.add_argument("--work", help="folder for lists, .rec files and the state file")
    p.add_argument("--archive", dest="archives", action="append", metavar="TAR",
                   help="ImageNet-style tar(s) to extract (repeat; omit if --root is already extracted)")
    p.add_argument("--root", help="train image tree (extract destination)")
    p.add_argument("--val-root", help="validation tree that split fills")
    p.add_argument("--small-root", help="where filter moves classes with too few images")
    p.add_argument("--min-images", type=int, help="filter: minimum images per class (0: no filter; 500)")
    p.add_argument("--val-per-class", type=int, help="split: images per class for validation (0: none; 50)")
    p.add_argument("--seed", type=int, help="split seed (0)")
    p.add_argument("--chunks", type=int, help="train .lst/.rec chunks (8)")
    p.add_argument("--val-chunks", type=int, help="validation chunks (1)")
    p.add_argument("--extract-jobs", type=int, help="parallel class extraction (4)")
    p.add_argument("--raid-device", dest="raid_devices", action="append", metavar="DEV",
                   help="stripe these disks first (repeat); the plan is printed unless --raid-execute")
    p.add_argument("--raid-mount", help="mount point of the RAID-0 volume")
    p.add_argument("--raid-execute", action="store_true", default=None, help="really create the array")
    for flag, kind in (("--resize", int), ("--quality", int), ("--num-thread", int), ("--filter", str),
                       ("--dask", str), ("--shard-size", int)):
        p.add_argument(flag, type=kind, default=None, help=f"pack {flag} (see fastrec pack)")
    p.add_argument("--no-upscale", action="store_true", default=None, help="pack --no-upscale")
    p.add_argument("--from-tar", action="store_true", default=None,
                   help="list and pack straight from the --archive tars: no extraction, no file moves")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto")
    p.set_defaults(func=cmd_prepare)

    # -- stage commands are registered below this line --
    from fastrec.stages import extract
    from fastrec.stages import filter as filter_
    from fastrec.stages import raid
    from fastrec.stages import split
    for stage in (raid, extract, filter_, split):
        stage.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(a.verbose, 2) if a.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        return a.func(a) or 0
    except FastrecError as err:
        print(f"fastrec {a.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"fastrec {a.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
