"""Turn pytest-benchmark JSON from bench/test_peers.py into a markdown table of images/s and ratios.

    .venv/bin/python bench/ratios.py bench/results/peers.json [--stat min|median|mean] [--baseline im2rec]

images/s = images in the tree / seconds of one round (one pass over the tree); the ratio divides by
the baseline pipeline's images/s on the same tree (default: im2rec.py's per-image path).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

ORDER = ("fastrec", "fastrec-2t", "im2rec", "pyturbojpeg", "simplejpeg", "pillow-bilinear", "pillow-lanczos")
DESCRIBE = {
    "fastrec": "fastrec core (`Worker.pack_bytes`: DCT-scaled decode + Lanczos + encode + framing)",
    "fastrec-2t": "fastrec core, 2 threads",
    "im2rec": "im2rec.py path (`cv2.imdecode` + `cv2.resize` linear + `cv2.imencode`)",
    "pyturbojpeg": "PyTurboJPEG scaled decode + `cv2.resize` area + encode",
    "simplejpeg": "simplejpeg `min_width/min_height` decode + `cv2.resize` area + encode",
    "pillow-bilinear": "Pillow `draft` + `resize` bilinear + `save`",
    "pillow-lanczos": "Pillow `draft` + `resize` Lanczos + `save`",
}
TREE_ORDER = ("imagenet", "camera")


def rows_from(doc: dict, stat: str) -> list[dict]:
    rows = []
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "tool" not in info:
            continue
        seconds = b["stats"][stat]
        rows.append({"tree": info["tree"], "tool": info["tool"], "threads": info.get("threads", 1),
                     "images": info["images"], "rate": info["images"] / seconds, "rounds": b["stats"]["rounds"],
                     "output_mb": info.get("output_mb")})
    return rows


def table(rows: list[dict], baseline: str = "im2rec") -> str:
    out = ["| tree | pipeline | threads | images/s | vs im2rec path |",
           "|---|---|---:|---:|---:|"]
    trees = sorted({r["tree"] for r in rows}, key=lambda t: (TREE_ORDER.index(t) if t in TREE_ORDER else 99, t))
    for tree in trees:
        mine = [r for r in rows if r["tree"] == tree]
        base = next((r["rate"] for r in mine if r["tool"] == baseline), None)
        mine.sort(key=lambda r: (ORDER.index(r["tool"]) if r["tool"] in ORDER else 99, r["tool"]))
        for r in mine:
            ratio = f"{r['rate'] / base:.2f}x" if base else "n/a"
            name = DESCRIBE.get(r["tool"], r["tool"])
            if r["tool"].startswith("fastrec"):
                name = f"**{name}**"
            out.append(f"| {tree} ({r['images']} images) | {name} | {r['threads']} | {r['rate']:.1f} | {ratio} |")
    return "\n".join(out)


def machine_line(doc: dict, stat: str) -> str:
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {})
    brand = cpu.get("brand_raw") or m.get("processor") or "unknown CPU"
    return (f"Measured {doc.get('datetime', '')[:10]} on {brand} ({cpu.get('count', '?')} logical CPUs), "
            f"Python {m.get('python_version', '?')}; images/s from the {stat} round time.")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/ratios.py", description=__doc__.splitlines()[0])
    p.add_argument("json", help="file written by pytest --benchmark-json")
    p.add_argument("--stat", choices=("min", "median", "mean"), default="median",
                   help="which round time to turn into images/s (default median)")
    p.add_argument("--baseline", default="im2rec", help="pipeline the ratios divide by")
    a = p.parse_args(argv)
    with open(a.json) as f:
        doc = json.load(f)
    rows = rows_from(doc, a.stat)
    if not rows:
        print(f"{a.json}: no bench/test_peers.py results in it", file=sys.stderr)
        return 1
    print(table(rows, a.baseline))
    print()
    print(machine_line(doc, a.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
