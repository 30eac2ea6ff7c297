"""Turn pytest-benchmark JSON from bench/test_peers.py into a markdown table of images/s and ratios.

    .venv/bin/python bench/ratios.py bench/results/peers.json [bench/results/peers-cpu.json]
                                     [--stat min|median|mean] [--baseline im2rec]

images/s = images in the tree / seconds of one round (one pass over the tree); the ratio divides by
the baseline pipeline's rate on the same tree (default: im2rec.py's per-image path).  A run timed
with ``--benchmark-timer time.process_time`` gives images per CPU-second of the whole process
(all its threads): on a shared machine where other jobs take CPU away, that is the steadier
measure of work per image; the wall-clock run is what a user waits for.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

ORDER = ("fastrec", "fastrec-2t", "im2rec", "pyturbojpeg", "simplejpeg", "pillow-bilinear", "pillow-lanczos")
DESCRIBE = {
    "fastrec": "fastrec core (`Worker.pack_bytes`: DCT-scaled decode + YCbCr-plane resize (`--filter auto`) + encode + framing)",
    "fastrec-2t": "fastrec core, 2 threads",
    "im2rec": "im2rec.py path (`cv2.imdecode` + `cv2.resize` linear + `cv2.imencode`)",
    "pyturbojpeg": "PyTurboJPEG scaled decode + `cv2.resize` area + encode",
    "simplejpeg": "simplejpeg `min_width/min_height` decode + `cv2.resize` area + encode",
    "pillow-bilinear": "Pillow `draft` + `resize` bilinear + `save`",
    "pillow-lanczos": "Pillow `draft` + `resize` Lanczos + `save`",
}
TREE_ORDER = ("imagenet", "camera")


def timer_kind(doc: dict) -> str:
    """"cpu" for runs timed with --benchmark-timer time.process_time, else "wall"."""
    timers = {b.get("options", {}).get("timer", "perf_counter") for b in doc.get("benchmarks", [])}
    return "cpu" if any("process_time" in t for t in timers) else "wall"


def rows_from(doc: dict, stat: str) -> list[dict]:
    rows = []
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "tool" not in info:
            continue
        seconds = b["stats"][stat]
        rows.append({"tree": info["tree"], "tool": info["tool"], "threads": info.get("threads", 1),
                     "images": info["images"], "rate": info["images"] / seconds, "rounds": b["stats"]["rounds"],
                     "psnr_db": info.get("psnr_db"), "kib": info.get("output_kib_per_image")})
    return rows


HEADINGS = {"wall": ("images/s", "vs im2rec path"), "cpu": ("images per CPU-second", "vs im2rec path (CPU)")}


def table(runs: dict[str, list[dict]], baseline: str = "im2rec") -> str:
    """runs: timer kind ("wall", "cpu") -> rows; one images/s and one ratio column per kind."""
    kinds = [k for k in ("wall", "cpu") if k in runs]
    head = ["tree", "pipeline", "threads"] + [h for k in kinds for h in HEADINGS[k]] + [
        "JPEG KiB/img", "PSNR dB vs reference"]
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    keyed = {k: {(r["tree"], r["tool"]): r for r in runs[k]} for k in kinds}
    keys = {key: r for k in kinds for key, r in keyed[k].items()}
    trees = sorted({t for t, _ in keys}, key=lambda t: (TREE_ORDER.index(t) if t in TREE_ORDER else 99, t))
    for tree in trees:
        tools = sorted({tool for t, tool in keys if t == tree},
                       key=lambda x: (ORDER.index(x) if x in ORDER else 99, x))
        for tool in tools:
            r0 = keys[(tree, tool)]
            name = DESCRIBE.get(tool, tool)
            if tool.startswith("fastrec"):
                name = f"**{name}**"
            cells = [f"{tree} ({r0['images']} images)", name, str(r0["threads"])]
            for k in kinds:
                r, base = keyed[k].get((tree, tool)), keyed[k].get((tree, baseline))
                cells.append(f"{r['rate']:.1f}" if r else "")
                cells.append(f"{r['rate'] / base['rate']:.2f}x" if r and base else "")
            cells.append(f"{r0['kib']:.1f}" if r0.get("kib") is not None else "")
            cells.append(f"{r0['psnr_db']:.2f}" if r0.get("psnr_db") is not None else "")
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine_line(doc: dict, stat: str) -> str:
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {})
    brand = cpu.get("brand_raw") or m.get("processor") or "unknown CPU"
    return (f"Measured {doc.get('datetime', '')[:10]} on {brand} ({cpu.get('count', '?')} logical CPUs), "
            f"Python {m.get('python_version', '?')}; rates from the {stat} round of each row.")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/ratios.py", description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="files written by pytest --benchmark-json: a wall-clock run "
                   "and/or a run with --benchmark-timer time.process_time (one column pair each)")
    p.add_argument("--stat", choices=("min", "median", "mean"), default="median",
                   help="which round time to turn into images/s (default median)")
    p.add_argument("--baseline", default="im2rec", help="pipeline the ratios divide by")
    a = p.parse_args(argv)
    runs, docs = {}, []
    for path in a.json:
        with open(path) as f:
            doc = json.load(f)
        rows = rows_from(doc, a.stat)
        if not rows:
            print(f"{path}: no bench/test_peers.py results in it", file=sys.stderr)
            return 1
        runs[timer_kind(doc)] = rows
        docs.append(doc)
    print(table(runs, a.baseline))
    print()
    print(machine_line(docs[0], a.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
