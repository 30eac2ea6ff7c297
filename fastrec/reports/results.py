"""Machine-readable results (`--json`): one JSON document on stdout per command; logs stay on stderr."""
from __future__ import annotations

import collections
import dataclasses
import json
import os

from fastrec.formats.manifest import manifest_path, read_manifest


def dumps(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False, default=str)


def _manifest(rec: str) -> dict | None:
    manifest = read_manifest(manifest_path(rec))
    return dataclasses.asdict(manifest) if manifest is not None else None


def list_document(results: dict) -> dict:
    """`fastrec list`: {role: ListResult} -> the lists written, their counts, classes and synset file."""
    out = {}
    for role, result in results.items():
        if result is None:
            continue
        out[role] = {"lists": [{"path": p, "images": result.counts[p]} for p in result.files],
                     "images": sum(result.counts.values()),
                     "classes": {str(label): folder for folder, label in result.label_map},
                     "synset": result.synset}
    return out


def _pack_outputs(rec: str) -> dict:
    """What one list's outputs hold, read back from disk: records, and skips by reason."""
    base = os.path.splitext(rec)[0]
    with open(base + ".idx", "rb") as f:
        records = sum(1 for _ in f)
    reasons: collections.Counter = collections.Counter()
    if os.path.exists(base + ".skipped.tsv"):
        with open(base + ".skipped.tsv", encoding="utf-8", errors="surrogateescape") as f:
            reasons.update(line.split("\t")[1] for line in f if line.strip())
    return {"rec": rec, "records": records, "skipped": sum(reasons.values()), "reasons": dict(reasons),
            "manifest": _manifest(rec)}


def pack_document(summary) -> dict:
    """`fastrec pack`: the run's counts, and per list what its outputs hold (and its manifest)."""
    return {"images": summary.images, "skipped": summary.skipped, "reasons": dict(summary.reasons),
            "bytes_in": summary.bytes_in, "bytes_out": summary.bytes_out, "seconds": round(summary.seconds, 3),
            "resumed_from": summary.resumed_from, "lists": [_pack_outputs(rec) for rec in summary.lists]}


def verify_document(reports) -> dict:
    return {"ok": all(r.ok for r in reports), "files": [dict(r.to_dict(), manifest=_manifest(r.rec))
                                                        for r in reports]}


def inspect_document(files: list[tuple[str, object]], total, names: dict[str, str],
                     sheet: dict | None = None) -> dict:
    """`fastrec inspect`: per file and across all of them, records and bytes per class."""
    return {"files": [{"rec": rec, "records": s.count, "bytes": s.bytes, "per_class": s.per_class()}
                      for rec, s in files],
            "records": total.count, "bytes": total.bytes, "per_class": total.per_class(), "classes": names,
            "contact_sheet": sheet}
