"""Procedural, photo-like JPEG test trees (numpy + Pillow only, nothing downloaded).

JPEG decode and encode time is driven by the entropy-coded bit rate, and photographs
compress very differently from noise or flat colour.  The images made here mimic the
statistics that matter: smooth sky gradients, a textured ground with a ragged horizon,
overlapping soft-edged objects with their own shading and texture, a few hard edges,
1/f ("pink") texture fields and mild sensor grain.  At quality 96, 4:4:4 a 500x375
image comes out at roughly 4-5 bits/pixel, like ImageNet's training JPEGs.

Everything is deterministic for a given seed (same bytes on the same numpy/Pillow).

    python -m fastrec.demo.samples ROOT [--kind imagenet|mixed|camera] [--classes N]
                                   [--per-class A B] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import math
import struct
import sys
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, features

__all__ = ["make_image", "make_tree", "make_odd_files", "SIZE_KINDS"]

Size = Tuple[int, int]
Subsampling = Union[int, str]

SIZE_KINDS = ("imagenet", "mixed", "camera")

# Scenes are synthesised at no more than this many pixels and upsampled; camera-sized
# images are then given full-resolution grain, which is what sets their bit rate.
_WORK_PIXELS = 640 * 480

# (width, height, weight): ImageNet's training set is dominated by 500x375 and 500x333
# landscapes with a minority of portraits.
_IMAGENET_SIZES: Sequence[Tuple[int, int, float]] = (
    (500, 375, 0.42), (375, 500, 0.12), (500, 333, 0.14), (333, 500, 0.05),
    (500, 334, 0.04), (500, 400, 0.05), (400, 500, 0.03), (500, 500, 0.03),
    (500, 346, 0.04), (500, 281, 0.03),
)
_MIXED_EXTRA_SIZES: Sequence[Size] = (
    (64, 48), (48, 64), (32, 32), (160, 120), (256, 256), (300, 450), (640, 480),
    (800, 800), (1024, 683), (683, 1024), (1600, 1200), (1200, 1600), (2048, 1536),
)
_CAMERA_SIZES: Sequence[Size] = (
    (4000, 3000), (3000, 4000), (3264, 2448), (4032, 3024), (3648, 2736), (4000, 2250),
)


# --------------------------------------------------------------------------- fields


def _pink_noise(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Return an (h, w) float32 field with a 1/f**beta amplitude spectrum, unit std.

    Natural images have amplitude spectra close to 1/f; larger beta gives smoother
    fields (clouds, terrain), smaller beta gives fine texture (foliage, gravel).
    """
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = np.inf  # no DC: the field is zero-mean
    amp = f ** np.float32(-beta)
    spec = amp * (rng.standard_normal(amp.shape, dtype=np.float32)
                  + 1j * rng.standard_normal(amp.shape, dtype=np.float32))
    field = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    std = float(field.std())
    return field / std if std > 1e-12 else field


def _gradient(h: int, w: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Return an (h, w, 3) vertical gradient from colour `top` to colour `bottom`."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.float32)


def _random_colour(rng: np.random.Generator, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """Return a random RGB colour in [lo, hi] with photo-like (moderate) saturation."""
    base = rng.uniform(lo, hi)
    tint = rng.normal(0.0, 0.18, 3)
    return np.clip(base + tint, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- scene


def _sky_and_ground(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sky gradient with soft clouds above a ragged horizon, textured ground below."""
    sky = _gradient(h, w, _random_colour(rng, 0.25, 0.7) * np.float32([0.7, 0.85, 1.1]),
                    _random_colour(rng, 0.6, 0.95))
    clouds = np.clip(_pink_noise(rng, h, w, 2.4) * 0.5 + rng.uniform(-0.6, 0.2), 0, 1)
    sky = sky + clouds[..., None] * (1.0 - sky) * rng.uniform(0.3, 0.9)

    ground_top = _random_colour(rng, 0.2, 0.6) * np.float32([0.9, 1.0, 0.7])
    ground = _gradient(h, w, ground_top, ground_top * rng.uniform(0.3, 0.8))
    texture = _pink_noise(rng, h, w, 1.3)
    tint = _pink_noise(rng, h, w, 1.9)
    ground = ground * (1 + 0.35 * texture[..., None]) \
        + 0.06 * tint[..., None] * np.float32([1.0, -0.4, -0.8])

    # The horizon is a 1-D pink-noise profile: hills, tree lines, roof tops.
    profile = _pink_noise(rng, 1, w, 1.6)[0] if w > 1 else np.zeros(1, np.float32)
    horizon = h * rng.uniform(0.3, 0.75) + profile * h * rng.uniform(0.02, 0.12)
    rows = np.arange(h, dtype=np.float32)[:, None]
    below = np.clip(rows - horizon[None, :] + 0.5, 0.0, 1.0)[..., None]  # 1-px soft edge
    return sky * (1 - below) + ground * below


def _add_objects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Composite several shaded, textured objects: some blurred (out of focus), some sharp."""
    h, w, _ = img.shape
    texture = _pink_noise(rng, h, w, 1.1)  # shared, rolled per object (one FFT)
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(3, 9))):
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(0.1, 1.1) * h
        rx, ry = rng.uniform(0.05, 0.45) * w, rng.uniform(0.05, 0.45) * h
        if rng.random() < 0.55:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        else:  # an irregular polygon: rocks, buildings, leaves
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = rng.uniform(0.5, 1.0, n)
            draw.polygon([(cx + rx * r * math.cos(a), cy + ry * r * math.sin(a))
                          for a, r in zip(ang, rad)], fill=255)
        blur = 0.0 if rng.random() < 0.35 else rng.uniform(0.6, 6.0) * max(w, h) / 500
        if blur:
            mask = mask.filter(ImageFilter.GaussianBlur(blur))
        alpha = np.asarray(mask, dtype=np.float32)[..., None] * np.float32(
            rng.uniform(0.75, 1.0) / 255)

        colour = _random_colour(rng)
        # Directional lighting across the object, so it reads as a 3-D surface.
        light = 1 + rng.uniform(0.1, 0.5) * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
        tex = np.roll(texture, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        obj = colour * (light * np.maximum(0.2, 1 + rng.uniform(0.05, 0.3) * tex))[..., None]
        img = img * (1 - alpha) + obj * alpha
    return img


def _add_edges(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Draw a few thin dark or bright lines (branches, wires, window frames)."""
    h, w, _ = img.shape
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(0, 6))):
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(3)]
        draw.line(pts, fill=int(rng.integers(120, 256)),
                  width=max(1, int(rng.uniform(0.002, 0.012) * max(w, h))))
    a = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] / 255
    return img * (1 - a) + _random_colour(rng, 0.0, 1.0) * a


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Vignette, an S-shaped tone curve and exposure, as a camera pipeline would."""
    h, w, _ = img.shape
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    img = img * (1 - rng.uniform(0.05, 0.35) * (xx * xx + yy * yy) / 2)[..., None]
    img = np.clip(img * rng.uniform(0.85, 1.15), 0, 1)
    return img + 0.25 * img * (1 - img) * (2 * img - 1) * -1  # gentle contrast S-curve


def _add_grain(rng: np.random.Generator, rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Return `rgb` (uint8) plus sensor-like grain: Gaussian luma noise of std `sigma`
    levels and weaker, independent per-channel (chroma) noise.

    Grain is what gives real photographs their high-frequency DCT energy; it is added at
    the final resolution so that upsampled camera-sized images keep a realistic bit rate.
    Integer arithmetic and uniform integer chroma noise keep a 12 MP image well under
    0.5 s (float Gaussian noise for all three channels took over 1 s).
    """
    h, w, _ = rgb.shape
    luma = np.rint(rng.standard_normal((h, w), dtype=np.float32) * np.float32(sigma))
    c = max(0, round(sigma * 0.6))
    out = rgb.astype(np.int16)
    out += luma.astype(np.int16)[..., None]
    if c:
        out += rng.integers(-c, c + 1, size=(h, w, 3), dtype=np.int8)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def make_image(rng: np.random.Generator, width: int, height: int,
               grain: float | None = None) -> Image.Image:
    """Return a photo-like RGB image of the given size, deterministic for `rng`'s state.

    The scene is synthesised at no more than ~0.3 MP and upsampled with bicubic
    interpolation; grain (std in 8-bit levels; if None, random in 1.2-3.0, or 2.5-4.0
    for images upsampled by more than 1/0.7) is then added at full resolution.
    """
    if width < 1 or height < 1:
        raise ValueError(f"bad size {width}x{height}")
    scale = min(1.0, math.sqrt(_WORK_PIXELS / (width * height)))
    ww, wh = max(1, round(width * scale)), max(1, round(height * scale))
    img = _sky_and_ground(rng, wh, ww)
    img = _add_objects(rng, img)
    img = _add_edges(rng, img)
    img = _finish(rng, img)
    base = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    if (ww, wh) != (width, height):
        base = base.resize((width, height), Image.BICUBIC)
    if grain is None:  # upsampled scenes lack fine detail: more grain restores the bit rate
        grain = float(rng.uniform(1.2, 3.0) if scale > 0.7 else rng.uniform(2.5, 4.0))
    return Image.fromarray(_add_grain(rng, np.asarray(base), grain), "RGB")


# --------------------------------------------------------------------------- trees


def _wnids(rng: np.random.Generator, n: int) -> list[str]:
    """Return n distinct, sorted WordNet-id-like class names (``n01440764`` style)."""
    ids: set[int] = set()
    while len(ids) < n:
        ids.add(int(rng.integers(1_000_000, 15_000_000)))
    return [f"n{i:08d}" for i in sorted(ids)]


def _pick_size(rng: np.random.Generator, kind: str) -> Size:
    """Draw an image size for a tree of the given kind."""
    if kind == "camera":
        return _CAMERA_SIZES[int(rng.integers(len(_CAMERA_SIZES)))]
    if kind == "mixed" and rng.random() < 0.5:
        return _MIXED_EXTRA_SIZES[int(rng.integers(len(_MIXED_EXTRA_SIZES)))]
    if kind not in SIZE_KINDS:
        raise ValueError(f"unknown sizes {kind!r}; expected one of {SIZE_KINDS}")
    weights = np.array([s[2] for s in _IMAGENET_SIZES])
    w, h, _ = _IMAGENET_SIZES[int(rng.choice(len(weights), p=weights / weights.sum()))]
    if rng.random() < 0.15:  # ImageNet also has odd sizes around the common ones
        long_edge = int(rng.integers(300, 501))
        short = max(1, round(long_edge * min(w, h) / max(w, h)))
        w, h = (long_edge, short) if w >= h else (short, long_edge)
    return w, h


def _pick_encoding(rng: np.random.Generator, kind: str) -> tuple[int, Subsampling]:
    """Draw (quality, subsampling) the way real collections of each kind were saved."""
    if kind == "camera":
        return int(rng.integers(85, 96)), "4:2:0"
    if kind == "mixed":
        return int(rng.integers(75, 99)), ("4:4:4", "4:2:2", "4:2:0")[int(rng.integers(3))]
    if rng.random() < 0.8:
        return 96, "4:4:4"
    return 90, "4:2:0"


def _encode(img: Image.Image, quality: int, subsampling: Subsampling, **kw) -> bytes:
    """Encode `img` as a baseline JPEG with standard Huffman tables."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=subsampling, **kw)
    return buf.getvalue()


def make_tree(root: str | Path, classes: int = 4, per_class: tuple[int, int] = (5, 12),
              sizes: str = "imagenet", seed: int = 0, quality: int | None = None,
              subsampling: Subsampling | None = None) -> list[Path]:
    """Write ``root/<wnid>/<wnid>_<n>.JPEG`` images and return their paths (in write order).

    sizes: 'imagenet' (~500x375, mostly q96 4:4:4, some q90 4:2:0), 'mixed' (adds tiny,
    square, portrait and large images at varied quality and subsampling) or 'camera'
    (8-12 MP at q85-95 4:2:0).  `quality` / `subsampling` override the per-image draw.
    The bytes written depend only on the arguments.
    """
    if sizes not in SIZE_KINDS:
        raise ValueError(f"unknown sizes {sizes!r}; expected one of {SIZE_KINDS}")
    lo, hi = per_class
    root = Path(root)
    top = np.random.default_rng([seed, 0x5EED])
    paths: list[Path] = []
    for ci, wnid in enumerate(_wnids(top, classes)):
        count = int(top.integers(lo, hi + 1))
        numbers = np.sort(top.choice(max(20000, 2 * count), size=count, replace=False)) + 1
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            # One generator per image, so an image does not depend on its siblings.
            rng = np.random.default_rng([seed, ci, int(n)])
            w, h = _pick_size(rng, sizes)
            q, sub = _pick_encoding(rng, sizes)
            img = make_image(rng, w, h)
            data = _encode(img, quality if quality is not None else q,
                           subsampling if subsampling is not None else sub)
            path = root / wnid / f"{wnid}_{int(n)}.JPEG"
            path.write_bytes(data)
            paths.append(path)
    return paths


# --------------------------------------------------------------------------- odd files


# Pillow's exif_transpose undoes orientation n with this op; we store the inverse of it
# applied to an upright image, so a correct reader recovers the upright image for every n.
_INVERSE_ORIENT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,   # exif_transpose applies ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # exif_transpose applies ROTATE_90
}

# Upright reference for the EXIF files: each corner has its own saturated colour, so any
# of the 8 rotations/reflections is detectable from the corners alone.
ORIENT_CORNERS = {
    "top_left": (255, 0, 0), "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255), "bottom_right": (255, 255, 255),
}
ORIENT_SIZE: Size = (96, 64)  # upright width, height (not square: rotations swap them)


def orientation_reference() -> Image.Image:
    """Return the upright image that every ``exif_orient_<n>`` file should decode to."""
    w, h = ORIENT_SIZE
    img = make_image(np.random.default_rng(1234), w, h, grain=1.0)
    draw = ImageDraw.Draw(img)
    b = 16  # corner blocks are 2x2 MCUs, so JPEG keeps their colour intact
    draw.rectangle((0, 0, b - 1, b - 1), fill=ORIENT_CORNERS["top_left"])
    draw.rectangle((w - b, 0, w - 1, b - 1), fill=ORIENT_CORNERS["top_right"])
    draw.rectangle((0, h - b, b - 1, h - 1), fill=ORIENT_CORNERS["bottom_left"])
    draw.rectangle((w - b, h - b, w - 1, h - 1), fill=ORIENT_CORNERS["bottom_right"])
    return img


def _exif_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """Encode `upright`, stored pre-rotated, with EXIF Orientation (tag 0x0112) set."""
    op = _INVERSE_ORIENT[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, 95, "4:4:4", exif=exif.tobytes())


def _patch_sof_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame size in the first SOF0 segment of a baseline JPEG."""
    i = data.find(b"\xff\xc0")
    if i < 0:
        raise ValueError("no SOF0 marker")
    # SOF0 layout: FFC0, length(2), precision(1), height(2), width(2), components...
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


def _flip_entropy_bits(data: bytes, rng: np.random.Generator, nbits: int = 24) -> bytes:
    """Flip `nbits` bits inside the entropy-coded data that follows the first SOS header."""
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", data[sos + 2:sos + 4])[0]
    end = len(data) - 2  # keep the EOI marker
    buf = bytearray(data)
    for pos in rng.integers(start + (end - start) // 4, end - 16, nbits):
        buf[int(pos)] ^= 1 << int(rng.integers(8))
    return bytes(buf)


def make_odd_files(dir: str | Path) -> dict[str, Path]:
    """Write awkward inputs into `dir` and return them by descriptive key.

    Keys: gray, cmyk, progressive, restart, exif_orient_1..8, png_as_jpeg, rgba_png,
    palette_gif, bmp, webp (only if Pillow has WebP), tiff, truncated, bitflip, empty,
    text_as_jpg, px_1x1, tall_1x10000, wide_3000x1, tiny_5x7, bomb.
    """
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    photo = make_image(rng, 320, 240)
    out: dict[str, Path] = {}

    def put(key: str, name: str, data: bytes) -> None:
        path = d / name
        path.write_bytes(data)
        out[key] = path

    def save(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    baseline = _encode(photo, 90, "4:2:0")
    put("gray", "gray.JPEG", _encode(photo.convert("L"), 90, "4:2:0"))
    # Pillow writes CMYK JPEGs with an Adobe APP14 marker and inverted samples, as
    # Photoshop does; readers must honour the marker to get the colours right.
    put("cmyk", "cmyk.JPEG", _encode(photo.convert("CMYK"), 90, "4:4:4"))
    put("progressive", "progressive.JPEG", _encode(photo, 90, "4:2:0", progressive=True))
    # DRI + RSTn markers every MCU row (Pillow >= 10.2 option; older ones ignore it).
    put("restart", "restart.JPEG", _encode(photo, 90, "4:2:0", restart_marker_rows=1))

    upright = orientation_reference()
    for n in range(1, 9):
        put(f"exif_orient_{n}", f"exif_orient_{n}.JPEG", _exif_jpeg(upright, n))

    put("png_as_jpeg", "png_as_jpeg.JPEG", save(photo, "PNG"))
    rgba = photo.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    put("rgba_png", "rgba.png", save(rgba, "PNG"))
    put("palette_gif", "palette.gif",
        save(photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "GIF"))
    put("bmp", "image.bmp", save(photo, "BMP"))
    if features.check("webp"):
        put("webp", "image.webp", save(photo, "WEBP", quality=90))
    put("tiff", "image.tiff", save(photo, "TIFF"))

    put("truncated", "truncated.JPEG", baseline[:len(baseline) // 2])
    put("bitflip", "bitflip.JPEG", _flip_entropy_bits(baseline, rng))
    put("empty", "empty.JPEG", b"")
    put("text_as_jpg", "not_an_image.jpg", b"This is a text file, not a JPEG.\n")

    put("px_1x1", "px_1x1.JPEG", _encode(make_image(rng, 1, 1), 90, "4:2:0"))
    put("tall_1x10000", "tall_1x10000.JPEG", _encode(make_image(rng, 1, 10000), 90, "4:2:0"))
    put("wide_3000x1", "wide_3000x1.JPEG", _encode(make_image(rng, 3000, 1), 90, "4:2:0"))
    put("tiny_5x7", "tiny_5x7.JPEG", _encode(make_image(rng, 5, 7), 90, "4:2:0"))

    # Decompression bomb: a real 16x16 baseline JPEG whose SOF0 header is patched to claim
    # 60000x60000 (3.6 Gpx, ~10.8 GB as RGB).  The header parses; a reader that allocates
    # from the header before checking limits will try to allocate gigabytes.
    small = _encode(make_image(rng, 16, 16), 90, "4:2:0")
    put("bomb", "bomb.JPEG", _patch_sof_size(small, 60000, 60000))
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: write a tree and print what was written."""
    p = argparse.ArgumentParser(prog="python -m fastrec.demo.samples", description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--kind", choices=SIZE_KINDS, default="imagenet")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, nargs=2, default=(5, 12), metavar=("A", "B"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--odd", type=Path, metavar="DIR",
                   help="also write the odd files into DIR (keep it outside ROOT)")
    args = p.parse_args(argv)
    paths = make_tree(args.root, args.classes, tuple(args.per_class), args.kind, args.seed)
    total = sum(path.stat().st_size for path in paths)
    print(f"wrote {len(paths)} files, {total} bytes "
          f"({total / max(1, len(paths)) / 1024:.1f} KiB mean) under {args.root}")
    if args.odd:
        odd = make_odd_files(args.odd)
        print(f"wrote {len(odd)} odd files under {args.odd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
