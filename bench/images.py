"""Build benchmark image trees from real photographs (Pillow + numpy only).

JPEG decode/encode cost follows the entropy-coded bit rate, so benchmarks need real
photographs.  The only network used is the package registries:

* Debian wallpaper packages, fetched with ``apt-get download`` and unpacked with
  ``dpkg-deb -x`` (nothing is installed).  Only the photographic files are used.
* optionally (``--skimage``) the sample photos inside the scikit-image wheel, fetched
  with ``pip download --no-deps`` and read as a zip file.

Photos are cropped, scaled and re-encoded with a seed into

* ``imagenet``: ~500x375 (some portrait), mostly q96 4:4:4, some q90 4:2:0, ~110 KB mean;
* ``camera``: 8-12 MP at q90-92 4:2:0, ~2-3.5 MB each.

Where a crop is smoother than a real photo of that size (upscaled, or a low-detail
region), mild sensor-like grain is added until it reaches a drawn target bit rate.

    python bench/images.py OUT --kind imagenet --count 200 --classes 4 --seed 0
    python bench/images.py OUT --kind camera --count 16
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"

# Debian package -> globs (inside the package) of files that are photographs.  Other
# wallpaper packages (ukui-wallpapers, most of mate-backgrounds) are renders or flat
# vector art, which compress far better than photos.
DEB_SOURCES: dict[str, Sequence[str]] = {
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds/*.jpg",),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
                                "usr/share/backgrounds/Painting-Colors_by__herobrine7gamer.jpg"),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature/*.jpg",),
}
# Colour photographs inside the scikit-image wheel (the rest are grey or synthetic).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                  "rocket.jpg")

# (width, height, weight): ImageNet is mostly 500x375 / 500x333 landscapes.
IMAGENET_SIZES = ((500, 375, 0.5), (375, 500, 0.15), (500, 333, 0.2), (333, 500, 0.05),
                  (500, 400, 0.05), (500, 500, 0.05))
CAMERA_SIZES = ((4000, 3000), (3000, 4000), (4032, 3024), (3264, 2448), (3648, 2736),
                (4000, 2250))


@dataclass(frozen=True)
class Source:
    """A photograph available for cropping: a name and a function that opens it."""
    name: str
    size: tuple[int, int]
    open: Callable[[], Image.Image]


# --------------------------------------------------------------------------- fetching


def _run(cmd: Sequence[str], cwd: Path) -> None:
    """Run a command, turning a failure into a readable SystemExit."""
    res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr.strip()}\n"
                         "(for apt-get: is `apt-get update` needed?)")


def fetch_deb(pkg: str, cache: Path) -> Path:
    """Download `pkg`'s .deb into the cache (once) and unpack it; return the tree."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        _run(["apt-get", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
    tree = cache / "unpacked" / found[-1].stem
    if not (tree / ".done").exists():
        tree.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(found[-1]), str(tree)], cwd=cache)
        (tree / ".done").touch()
    return tree


def deb_sources(cache: Path) -> list[Source]:
    """Return the photographs from the Debian wallpaper packages, in a stable order."""
    out = []
    for pkg, globs in sorted(DEB_SOURCES.items()):
        tree = fetch_deb(pkg, cache)
        files = sorted({p for g in globs for p in tree.glob(g)})
        for path in files:
            with Image.open(path) as im:
                size = im.size
            out.append(Source(f"{pkg}:{path.name}", size, lambda p=path: Image.open(p)))
    return out


def skimage_sources(cache: Path) -> list[Source]:
    """Return the colour photos inside the scikit-image wheel (downloaded once)."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("scikit_image-*.whl"))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              "-d", str(wheels), "scikit-image"], cwd=wheels)
        found = sorted(wheels.glob("scikit_image-*.whl"))
    out = []
    with zipfile.ZipFile(found[-1]) as zf:
        for name in SKIMAGE_PHOTOS:
            data = zf.read(f"skimage/data/{name}")
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
            out.append(Source(f"skimage:{name}", size,
                              lambda d=data: Image.open(io.BytesIO(d))))
    return out


# --------------------------------------------------------------------------- synthesis


def _crop_box(rng: np.random.Generator, src: tuple[int, int], out: tuple[int, int],
              min_frac: float) -> tuple[float, float, float, float]:
    """A random crop of `src` with `out`'s aspect ratio, at least `min_frac` of the
    largest such crop (log-uniform in between), placed uniformly."""
    sw, sh = src
    ow, oh = out
    full = min(sw / ow, sh / oh)  # scale of the largest crop with out's aspect
    s = full * float(np.exp(rng.uniform(np.log(min_frac), 0.0)))
    cw, ch = ow * s, oh * s
    x0, y0 = rng.uniform(0, sw - cw), rng.uniform(0, sh - ch)
    return x0, y0, x0 + cw, y0 + ch


def _render(im: Image.Image, box: tuple[float, float, float, float], out: tuple[int, int],
            flip: bool) -> np.ndarray:
    """Crop `box` from `im`, resize to `out` with Lanczos, optionally mirror; as uint8."""
    img = im.resize(out, Image.LANCZOS, box=box, reducing_gap=3.0)
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(img.convert("RGB"))


def _encode(rgb: np.ndarray, quality: int, subsampling: str) -> bytes:
    """Baseline JPEG with standard Huffman tables (what most cameras and sites write)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


class _Grain:
    """Fixed, seeded grain pattern (luma Gaussian + weaker chroma) that can be scaled,
    so that bits grow monotonically with sigma during the search."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...]):
        h, w, _ = shape
        self.luma = rng.standard_normal((h, w, 1), dtype=np.float32)
        self.chroma = rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(0.35)

    def apply(self, rgb: np.ndarray, sigma: float) -> np.ndarray:
        """Return `rgb` + sigma * pattern, rounded and clipped to uint8."""
        if sigma <= 0:
            return rgb
        out = rgb.astype(np.float32)
        out += self.luma * np.float32(sigma)
        out += self.chroma * np.float32(sigma)
        return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _reach_bpp(rng: np.random.Generator, rgb: np.ndarray, target_bpp: float, quality: int,
               subsampling: str, steps: int = 6) -> tuple[np.ndarray, float]:
    """Add the least grain (bisection on sigma in 0-8 levels) that makes the encoding at
    (quality, subsampling) reach `target_bpp`; return the image and the sigma used."""
    px = rgb.shape[0] * rgb.shape[1]

    def bpp(img: np.ndarray) -> float:
        return len(_encode(img, quality, subsampling)) * 8 / px

    if bpp(rgb) >= target_bpp:
        return rgb, 0.0
    grain = _Grain(rng, rgb.shape)
    lo, hi = 0.0, 8.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if bpp(grain.apply(rgb, mid)) < target_bpp else (lo, mid)
    return grain.apply(rgb, hi), hi


def _pick(rng: np.random.Generator, items: Sequence, weights: Sequence[float] | None = None):
    """Seeded choice from a sequence (optionally weighted)."""
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return items[int(rng.choice(len(items), p=p))]


def _imagenet_plan(rng: np.random.Generator) -> dict:
    """Draw the output size, encoding and target bit rate of one ImageNet-like image."""
    w, h, _ = _pick(rng, IMAGENET_SIZES, [s[2] for s in IMAGENET_SIZES])
    q, sub = (96, "4:4:4") if rng.random() < 0.85 else (90, "4:2:0")
    # Target measured at the reference q96 4:4:4, so both encodings share content stats;
    # ImageNet's q96 4:4:4 files sit around 4-6 bits/pixel.
    return dict(size=(w, h), quality=q, subsampling=sub, ref=(96, "4:4:4"),
                target_bpp=float(np.clip(rng.lognormal(np.log(5.2), 0.18), 3.5, 7.5)),
                min_frac=0.25)


def _camera_plan(rng: np.random.Generator) -> dict:
    """Draw the output size, encoding and target bit rate of one camera-like photo."""
    w, h = _pick(rng, CAMERA_SIZES)
    q = int(rng.integers(90, 93))
    return dict(size=(w, h), quality=q, subsampling="4:2:0", ref=(q, "4:2:0"),
                target_bpp=float(rng.uniform(1.6, 2.4)), min_frac=0.7)


def build(out: Path, kind: str, count: int, classes: int, seed: int,
          sources: Sequence[Source]) -> list[Path]:
    """Write `count` images into ``out/<class>/<class>_<i>.JPEG``; return their paths."""
    plan_fn = _imagenet_plan if kind == "imagenet" else _camera_plan
    top = np.random.default_rng([seed, 0xB3AC])
    wnids = sorted({f"n{int(v):08d}" for v in top.choice(14_000_000, classes, replace=False)
                    + 1_000_000})
    plans = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        plan = plan_fn(rng)
        ow, oh = plan["size"]
        # Camera photos must not be upscaled by more than 1.5x (detail would be missing).
        usable = [s for s in sources if kind == "imagenet"
                  or min(s.size[0] / ow, s.size[1] / oh) >= 1 / 1.5]
        if not usable:  # no photo is large enough: take the largest one
            usable = [max(sources, key=lambda s: s.size[0] * s.size[1])]
        plans.append((i, rng, plan, _pick(rng, usable)))
    paths: list[Path] = [Path()] * count
    # Group by source so each large photo is decoded once.
    for src in sources:
        mine = [p for p in plans if p[3] is src]
        if not mine:
            continue
        with src.open() as im:
            im.load()
            for i, rng, plan, _ in mine:
                box = _crop_box(rng, src.size, plan["size"], plan["min_frac"])
                rgb = _render(im, box, plan["size"], flip=bool(rng.random() < 0.5))
                rgb, _sigma = _reach_bpp(rng, rgb, plan["target_bpp"], *plan["ref"])
                cls = wnids[i % classes]
                path = out / cls / f"{cls}_{i:06d}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_encode(rgb, plan["quality"], plan["subsampling"]))
                paths[i] = path
    return paths


def summarize(paths: Sequence[Path]) -> str:
    """One line: count, mean/min/max bytes and mean bits per pixel."""
    sizes, bpps = [], []
    for p in paths:
        n = p.stat().st_size
        with Image.open(p) as im:
            bpps.append(n * 8 / (im.size[0] * im.size[1]))
        sizes.append(n)
    a = np.array(sizes)
    return (f"{len(a)} images, mean {a.mean() / 1024:.1f} KiB (min {a.min() / 1024:.1f}, "
            f"max {a.max() / 1024:.1f}), mean {np.mean(bpps):.2f} bits/pixel, "
            f"total {a.sum() / 2**20:.1f} MiB")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="bench/images.py", description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--kind", choices=("imagenet", "camera"), default="imagenet")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where .deb/.whl files are kept (default {DEFAULT_CACHE})")
    p.add_argument("--skimage", action="store_true",
                   help="also use the photos inside the scikit-image wheel")
    p.add_argument("--only-skimage", action="store_true",
                   help="use only the scikit-image photos (no apt; imagenet kind only)")
    args = p.parse_args(argv)
    if args.only_skimage and args.kind == "camera":
        p.error("the scikit-image photos are too small for --kind camera")

    t0 = time.perf_counter()
    sources = [] if args.only_skimage else deb_sources(args.cache)
    if args.skimage or args.only_skimage:
        sources += skimage_sources(args.cache)
    t1 = time.perf_counter()
    paths = build(args.out, args.kind, args.count, args.classes, args.seed, sources)
    t2 = time.perf_counter()
    print(f"{args.kind}: {summarize(paths)} under {args.out} "
          f"({len(sources)} source photos; fetch {t1 - t0:.1f} s, build {t2 - t1:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
