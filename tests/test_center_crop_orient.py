"""`--center-crop` of EXIF-rotated photos with an odd difference between their sides: the crop box
is taken on the displayed image (as im2rec: cv2.imread turns it upright, then crops), so the
stored-coordinate box must be mirrored on the right axis. A mutation that mirrored it on the
other axis for orientations 3/4 (`flip_x` in csrc/pipeline.c) shifted the crop by one pixel and
passed every test; here the pixels are compared with OpenCV's, losslessly (--encoding .png)."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fastrec.engine import PackOptions, pack_prefix
from fastrec.formats.lists import ListOptions, make_lists
from fastrec.formats.recordio import RecordReader, unpack

# upright image -> the stored image whose EXIF orientation n displays it upright
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM}


def im2rec_center_crop(img: np.ndarray) -> np.ndarray:
    """im2rec.py's --center-crop: margin = (long - short) // 2 on the longer side."""
    h, w = img.shape[:2]
    if h > w:
        m = (h - w) // 2
        return img[m:m + w]
    m = (w - h) // 2
    return img[:, m:m + h]


@pytest.mark.parametrize("size", [(97, 64), (64, 97)], ids=["landscape", "portrait"])
def test_center_crop_of_exif_flipped_photos_matches_opencv_pixel_for_pixel(tmp_path, size):
    rng = np.random.default_rng(7)
    upright = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    (tmp_path / "img").mkdir()
    for o, op in STORED.items():
        exif = Image.Exif()
        exif[0x0112] = o
        stored = upright if op is None else upright.transpose(op)
        stored.save(tmp_path / "img" / f"o{o}.jpg", "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
    make_lists(str(tmp_path / "x"), str(tmp_path / "img"), ListOptions(shuffle=False))
    pack_prefix(str(tmp_path / "x"), str(tmp_path / "img"),
                PackOptions(center_crop=True, encoding=".png", progress="off"))
    with RecordReader(tmp_path / "x.rec") as r:
        got = [cv2.imdecode(np.frombuffer(unpack(rec)[1], np.uint8), cv2.IMREAD_COLOR) for rec in r]
    for o, img in zip(STORED, got):
        want = im2rec_center_crop(cv2.imread(str(tmp_path / "img" / f"o{o}.jpg"), cv2.IMREAD_COLOR))
        assert img.shape == want.shape, o
        # same decoder, same pixels: at most JPEG-decoder rounding; a one-pixel shift of this
        # noise differs by ~80 on average
        assert np.abs(img.astype(int) - want.astype(int)).mean() < 1, o
