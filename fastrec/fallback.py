"""Images the native JPEG path does not take: decoded with Pillow, then packed by the same core.

Covers PNG/BMP/GIF/WebP/TIFF files (also under a .jpg name), following OpenCV's imread rules
that im2rec relies on: colour drops alpha, 16-bit samples are scaled to 8 bits, EXIF
orientation is applied unless --color -1. Also turns raw pixel records into PNG for
--encoding .png.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fastrec._native.core import OK, STATUS_NAMES
from fastrec._native.recordio import frame

if TYPE_CHECKING:
    from fastrec.pack import Outcome, PackOptions

Image.MAX_IMAGE_PIXELS = None  # we check --max-pixels ourselves, before decoding


def _to_array(im: Image.Image, color: int) -> np.ndarray:
    """Pixels in the channel layout im2rec's cv2.imread(path, color) would give (RGB order)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.uint32) >> 8           # 16-bit gray: keep the high byte
        im = Image.fromarray(arr.astype(np.uint8), "L")
    gray = im.mode in ("1", "L", "LA", "I", "F")
    want = "L" if color == 0 or (color == -1 and gray) else "RGB"
    return np.ascontiguousarray(np.asarray(im.convert(want)))


def decode(path: bytes, color: int, max_pixels: int) -> np.ndarray | tuple[str, str]:
    """Upright pixels of a non-JPEG image, or (reason, message) when it cannot be used."""
    try:
        with Image.open(path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path) as im:
            if im.width * im.height > max_pixels:
                return "too-many-pixels", f"{im.width}x{im.height} is above the limit of {max_pixels} pixels"
            if color != -1:
                im = ImageOps.exif_transpose(im)
            return _to_array(im, color)
    except UnidentifiedImageError:
        return "not-an-image", "not a format the image libraries know"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = "truncated" if "truncated" in str(err) else "corrupt"
        return reason, f"{type(err).__name__}: {err}"


def pack(worker, path: bytes, id_: int, label, opts: "PackOptions") -> "Outcome":
    """Decode with Pillow and pack with the native worker (resize, encode, framing)."""
    from fastrec.pack import Outcome

    if opts.pass_through:  # never reached: pass-through takes any bytes natively
        raise AssertionError("pass-through does not decode")
    px = decode(path, opts.color, opts.max_pixels)
    if isinstance(px, tuple):
        return Outcome(None, px[0], px[1])
    record, (status, _, message, _, _, w, h, _, _) = worker.pack_pixels(px, id_, label)
    if status != OK:
        return Outcome(None, STATUS_NAMES[status], message)
    import os
    return Outcome(record, in_bytes=os.path.getsize(path), size=(w, h))


def raw_to_png(outcome: "Outcome", opts: "PackOptions") -> "Outcome":
    """Turn a raw-pixel record (header + rows) into a framed record holding a PNG."""
    if outcome.record is None:
        return outcome
    w, h = outcome.size
    data = outcome.record
    pixels = len(data) % (w * h) if w * h else 0
    channels = 3 if (len(data) - _header_len(data)) == w * h * 3 else 1
    head = data[:len(data) - w * h * channels]
    arr = np.frombuffer(data, np.uint8, count=w * h * channels, offset=len(head))
    im = Image.fromarray(arr.reshape((h, w, 3) if channels == 3 else (h, w)), "RGB" if channels == 3 else "L")
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=max(0, min(opts.quality, 9)))  # OpenCV clamps to 0..9
    outcome.record = frame(head + buf.getvalue())
    return outcome


def _header_len(payload: bytes) -> int:
    flag = int.from_bytes(payload[:4], "little")
    return 24 + 4 * flag
