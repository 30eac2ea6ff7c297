"""`fastrec prepare`: the whole ImageNet chain in one resumable command.

    [raid] -> extract -> filter -> split -> list (train, val) -> pack (train, val)

Each stage is the stage module's own function, and each is resumable on its own (extract by
class, split by its manifest, pack by --resume). A state file in the work folder records the
stages that finished and their summaries, so a rerun after an interruption skips what is done
and picks the interrupted stage up where it stopped. Filter in particular must not run twice:
after the split, classes just above the minimum would fall below it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, field

from fastrec.fsutil import atomic_write, command_line, output_lock
from fastrec.engine import pack_all
from fastrec.engine.local import Job
from fastrec.engine.options import PackOptions
from fastrec.formats.fields import wrong_fields
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.formats.manifest import setting_differences
from fastrec.errors import EnvironmentFault, FastrecError

STATE_NAME = "prepare.state.json"
PREPARE_PACK_DEFAULTS = {"resize": 480, "quality": 90}   # the seed workflow's, not im2rec's 0/95
STAGES = ("raid", "extract", "filter", "split", "list", "pack")


class PrepareError(FastrecError):
    """The chain cannot start or go on; the message says what to do."""


@dataclass
class PrepareConfig:
    """What to prepare. Folders: `work` (lists, .rec files, state), `root` (train images; the
    extract destination), `val_root`, `small_root` (where filter moves small classes)."""

    work: str
    root: str = ""                  # not used with from_tar
    val_root: str = ""
    archives: list[str] = field(default_factory=list)  # empty: `root` is already extracted
    small_root: str = ""
    min_images: int = 500           # 0 disables filter
    val_per_class: int = 50         # 0 disables split
    seed: int = 0
    chunks: int = 8
    val_chunks: int = 1
    extract_jobs: int = 4
    raid_devices: list[str] = field(default_factory=list)
    raid_mount: str = ""
    raid_execute: bool = False
    pack: PackOptions = field(default_factory=lambda: PackOptions(**PREPARE_PACK_DEFAULTS))
    from_tar: bool = False          # list and pack straight from the archives: no extract, no moves
    progress: str = "auto"

    @classmethod
    def from_toml(cls, path: str, **overrides) -> "PrepareConfig":
        """Read a config like:  work = "..."  root = "..."  val_root = "..."  [pack] resize = 480"""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise PrepareError(f"cannot read the config {path!r}: {err.strerror}") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise PrepareError(f"{path}: not valid TOML: {err}") from err
        pack = data.pop("pack", {})
        if not isinstance(pack, dict):
            raise PrepareError(f"{path}: pack must be a [pack] table")
        _refuse_unknown(path, pack, {f.name for f in dataclasses.fields(PackOptions)} - {"resume", "progress"},
                        "[pack] ")
        _refuse_unknown(path, data, {f.name for f in dataclasses.fields(cls)} - {"pack", "progress"}, "")
        wrong = [f"[pack] {w}" for w in wrong_fields(PackOptions, pack)] + wrong_fields(cls, data)
        if wrong:
            raise PrepareError(f"{path}: " + "; ".join(wrong))
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(pack=PackOptions(**{**PREPARE_PACK_DEFAULTS, **pack}), **data)
        try:
            cfg.pack.validate()
        except FastrecError as err:
            raise PrepareError(f"{path}: [pack] {err}") from err
        return cfg

    def check(self) -> None:
        """Settings that cannot work together, refused before anything runs."""
        if self.from_tar:
            if not self.archives:
                raise PrepareError("--from-tar needs the archives (--from-tar ARCHIVE..., or --archive)")
        elif not self.root or not self.val_root:
            raise PrepareError("give --root and --val-root (or --from-tar ARCHIVE to work from the archives)")
        self.pack.validate()

    def fingerprint(self) -> dict:
        d = dataclasses.asdict(self)
        d["pack"] = {k: v for k, v in d["pack"].items() if k not in ("num_thread", "progress", "resume", "dask")}
        d.pop("progress")
        d.pop("extract_jobs")
        return d


def _refuse_unknown(path: str, table: dict, known: set, where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        import difflib
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else "")
                 for k in unknown]
        raise PrepareError(f"{path}: unknown {where}setting(s) {', '.join(hints)}")


def _load_state(path: str, config: PrepareConfig) -> dict:
    if not os.path.exists(path):
        return {"config": config.fingerprint(), "done": {}, "seconds": {}}
    damaged = (f"{path} is damaged ({{}}); it records which stages finished: move it away and run again "
               f"(the stages run again and each skips what is already done)")
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:   # truncated, not JSON, not text
        raise PrepareError(damaged.format(f"not a JSON document: {err}")) from None
    except OSError as err:
        raise PrepareError(f"cannot read {path}: {err.strerror}; fix that and run again") from None
    if not (isinstance(state, dict) and isinstance(state.get("done"), dict)
            and isinstance(state.get("seconds"), dict)):
        raise PrepareError(damaged.format("not the state of a prepare run"))
    if state.get("config") != config.fingerprint():
        changed = setting_differences(_flat(state.get("config")), _flat(config.fingerprint()))
        raise PrepareError(f"{path} was written for other settings ({'; '.join(changed)}); rerun with the "
                           f"same settings to resume, or use another --work folder (or delete the state "
                           f"file) to start over")
    return state


def _flat(fingerprint) -> dict:
    """A fingerprint's settings by the names the flags have: `resize`, not `pack.resize`."""
    d = dict(fingerprint) if isinstance(fingerprint, dict) else {}
    pack = d.pop("pack", None)
    return {**d, **(pack if isinstance(pack, dict) else {})}


def _save_state(path: str, state: dict) -> None:
    try:
        atomic_write(path, json.dumps(state, indent=1, sort_keys=True).encode())
    except OSError as err:   # the stage itself is done; only its record failed
        raise EnvironmentFault(f"writing {path} failed: {err.strerror}; fix that and run the same command again "
                               f"(finished work is kept; the stage checks what is done)") from err


def _summary_dict(summary) -> dict:
    if dataclasses.is_dataclass(summary):
        return json.loads(json.dumps(dataclasses.asdict(summary), default=str))
    return summary


def _lists_in(work: str, split: str) -> list[str]:
    """The .lst files the list stage wrote for `split` (WORK/train_0.lst ...), sorted. Not
    find_lists(WORK/train): with --root WORK/train that prefix is the image folder, whose .lst
    files (none) it would take instead."""
    work = os.path.abspath(work)
    return sorted(os.path.join(work, n) for n in os.listdir(work)
                  if n.startswith(split) and n.endswith(".lst") and os.path.isfile(os.path.join(work, n)))


def _pack_stage(cfg: PrepareConfig) -> dict:
    out = {}
    source = None
    if cfg.from_tar:
        from fastrec.engine.sources import cache_path, index_for
        source = index_for(cfg.archives, cache_path(os.path.join(cfg.work, "train")))
    for split in ("train", "val"):
        lists = _lists_in(cfg.work, split)
        root = "" if source else os.path.abspath(cfg.root if split == "train" else cfg.val_root)
        jobs = [Job.for_list(lst, root, cfg.pack.list_rules()) for lst in lists]
        for job in jobs:
            job.source = source
        summary = pack_all(jobs, dataclasses.replace(cfg.pack, resume=True, progress=cfg.progress))
        out[split] = {"images": summary.images, "skipped": summary.skipped, "reasons": dict(summary.reasons),
                      "files": {rec: os.path.getsize(rec) for rec in summary.lists}}
    return out


def _list_from_tar(cfg: PrepareConfig) -> dict:
    """Filter, split and list on the archives' index: the lists the moves would have given."""
    from fastrec.stages.tarlists import make_lists_from_tar
    made = make_lists_from_tar(os.path.join(cfg.work, "train"), cfg.archives,
                               ListOptions(recursive=True, chunks=cfg.chunks), cfg.min_images,
                               cfg.val_per_class, cfg.seed, os.path.join(cfg.work, "val"), cfg.val_chunks)
    out = {"train": {"images": sum(made.train.counts.values()), "lists": made.train.files,
                     "classes": len(made.train.label_map)},
           "small_classes": made.split.small_classes, "rejected_members": len(made.rejected)}
    out["val"] = ({"images": sum(made.val.counts.values()), "lists": made.val.files}
                  if made.val else {"images": 0, "lists": []})
    return out


def _list_stage(cfg: PrepareConfig) -> dict:
    if cfg.from_tar:
        return _list_from_tar(cfg)
    out = {}
    for split, root, chunks in (("train", cfg.root, cfg.chunks), ("val", cfg.val_root, cfg.val_chunks)):
        if not os.path.isdir(root):
            out[split] = {"images": 0, "lists": []}
            continue
        result = make_lists(os.path.join(cfg.work, split), root, ListOptions(recursive=True, chunks=chunks))
        out[split] = {"images": sum(result.counts.values()), "lists": result.files,
                      "classes": len(result.label_map)}
    return out


def run_stage(name: str, cfg: PrepareConfig) -> dict | None:
    """Run one stage; None when the configuration leaves it out."""
    if name == "raid":
        if not cfg.raid_devices:
            return None
        from fastrec.stages.raid import RaidOptions, create_raid
        return _summary_dict(create_raid(RaidOptions(cfg.raid_devices, cfg.raid_mount), execute=cfg.raid_execute))
    if name in ("extract", "filter", "split") and cfg.from_tar:
        return {"on_index": True}    # extract is not needed; filter and split are done on the index by list
    if name == "extract":
        if not cfg.archives:
            return None
        from fastrec.stages.extract import ExtractOptions, extract
        also = (cfg.small_root,) if cfg.small_root else ()
        s = extract(cfg.archives, cfg.root, ExtractOptions(jobs=cfg.extract_jobs, progress=cfg.progress,
                                                           also_done=also))
        return {"classes": s.classes, "files": s.files, "bytes": s.bytes,
                "refused": [list(p) for p in s.refused], "corrupt": [list(p) for p in s.corrupt]}
    if name == "filter":
        if not cfg.min_images:
            return None
        from fastrec.stages.filter import filter_classes
        s = filter_classes(cfg.root, cfg.min_images, cfg.small_root or os.path.join(cfg.work, "small-classes"),
                           progress=cfg.progress)
        return {"kept": len(s.kept), "kept_images": s.kept_images, "moved": [list(m) for m in s.moved],
                "moved_images": s.moved_images}
    if name == "split":
        if not cfg.val_per_class:
            return None
        from fastrec.stages.split import SplitError, split_classes
        try:
            s = split_classes(cfg.root, cfg.val_root, cfg.val_per_class, cfg.seed, progress=cfg.progress)
        except SplitError as err:   # its hints name split's own flags; say prepare's
            raise PrepareError(str(err).replace("pass another --manifest", "give prepare another --val-root")
                               .replace("--per-class", "--val-per-class")) from err
        return {"classes": s.classes, "moved": len(s.moves), "manifest": s.manifest}
    if name == "list":
        return _list_stage(cfg)
    if name == "pack":
        return _pack_stage(cfg)
    raise ValueError(name)


RERUN_PREPARE = "run the same `fastrec prepare` command again (it resumes where it stopped)"
_RESUME_HINT = re.compile(r"(re)?run [^;]*--resume[^;]*")


def prepare(cfg: PrepareConfig) -> dict:
    """Run (or resume) the chain; returns the state with every stage's summary and timing."""
    cfg.check()
    try:
        os.makedirs(cfg.work, exist_ok=True)
    except OSError as err:
        raise PrepareError(f"cannot create the --work folder {cfg.work!r}: {err.strerror}") from err
    with contextlib.ExitStack() as locks:   # one prepare per work folder and image trees at a time
        for folder in (cfg.work, *(() if cfg.from_tar else (cfg.root, cfg.val_root))):
            os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
            locks.enter_context(output_lock(folder, command_line()))
        return _prepare(cfg)


def _prepare(cfg: PrepareConfig) -> dict:
    state_path = os.path.join(cfg.work, STATE_NAME)
    state = _load_state(state_path, cfg)
    state["earlier"] = [name for name in STAGES if name in state["done"]]
    for name in STAGES:
        if name in state["done"]:
            continue
        started = time.perf_counter()
        try:
            result = run_stage(name, cfg)
        except FastrecError as err:   # a stage's hint names its own command's flags; prepare always resumes
            if "--resume" in str(err):
                err.args = (_RESUME_HINT.sub(RERUN_PREPARE, str(err)),)
            raise
        state["seconds"][name] = state["seconds"].get(name, 0.0) + time.perf_counter() - started
        state["done"][name] = result
        _save_state(state_path, {k: v for k, v in state.items() if k != "earlier"})
    return state


def report_lines(state: dict) -> list[str]:
    done, secs, earlier = state["done"], state["seconds"], state.get("earlier", ())
    out = ["stage     seconds  result"]
    for name in STAGES:
        result = done.get(name)
        if result is None:
            text = "skipped (not configured)" if name in done else "not run"
        elif result.get("on_index"):
            text = ("not needed: the images are read from the archives" if name == "extract"
                    else "done on the archive index (see list)")
        elif name == "extract":
            text = (f"{result['classes']} classes, {result['files']} files, {result['bytes'] / 1e9:.2f} GB; "
                    f"{len(result['refused'])} members refused, {len(result['corrupt'])} corrupt")
        elif name == "filter":
            text = (f"kept {result['kept']} classes ({result['kept_images']} images), moved "
                    f"{len(result['moved'])} classes ({result['moved_images']} images)")
        elif name == "split":
            text = f"moved {result['moved']} images of {result['classes']} classes to validation"
        elif name == "list":
            text = ", ".join(f"{k}: {result[k]['images']} images" for k in ("train", "val"))
            if "small_classes" in result:
                text += (f" (from the archives: {len(result['small_classes'])} small classes and "
                         f"{result['rejected_members']} members left out)")
        elif name == "pack":
            parts = []
            for split, r in result.items():
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items()))
                parts.append(f"{split}: {r['images']} packed, {r['skipped']} skipped"
                             + (f" ({reasons})" if reasons else ""))
            text = "; ".join(parts)
        else:
            text = "done"
        seconds = "earlier" if name in earlier else f"{secs.get(name, 0.0):.1f}"
        out.append(f"{name:<8} {seconds:>8}  {text}{' (done earlier)' if name in earlier else ''}")
    for split, r in (done.get("pack") or {}).items():
        for rec, size in r["files"].items():
            out.append(f"  {rec}  {size / 1e6:.1f} MB")
    return out
