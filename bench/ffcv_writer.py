"""ffcv's DatasetWriter as a whole tool, the way ffcv's ImageNet example converts a folder (run in
build/venv-ffcv by bench/peers.py, timed as one process like `fastrec pack`).

The dataset reads each file, decodes it fully with Pillow and converts to RGB (torchvision's
ImageFolder loader, which ffcv's example uses), and resizes to im2rec's geometry with
cv2.INTER_AREA (ffcv's own resizer; it only ever shrinks, and by the long edge, so the dataset
does the resize to get the same geometry as the other rows); RGBImageField(write_mode='jpg',
jpeg_quality=90) encodes with cv2.imencode (4:2:0), one writer worker.

    python bench/ffcv_writer.py JOB.json OUT.beton            # the timed run
    python bench/ffcv_writer.py JOB.json --check DIR          # i.jpg per input, by ffcv's encoder
"""
from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
from PIL import Image


class Folder:
    """(image, label) pairs: full decode, RGB, INTER_AREA to the target size."""

    def __init__(self, files: list[str], targets: list[list[int]]):
        self.files, self.targets = files, targets

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            rgb = np.asarray(im.convert("RGB"))
        return cv2.resize(rgb, tuple(self.targets[i]), interpolation=cv2.INTER_AREA), i % 1000


def main() -> int:
    cv2.setNumThreads(1)
    with open(sys.argv[1]) as f:
        job = json.load(f)
    ds = Folder(job["files"], job["targets"])
    if sys.argv[2] == "--check":
        from ffcv.fields.rgb_image import encode_jpeg
        for i in range(len(ds)):
            img, _ = ds[i]
            with open(os.path.join(sys.argv[3], f"{i}.jpg"), "wb") as f:
                f.write(encode_jpeg(img, 90).tobytes())
        return 0
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    writer = DatasetWriter(sys.argv[2], {"image": RGBImageField(write_mode="jpg", jpeg_quality=90),
                                         "label": IntField()}, num_workers=1)
    writer.from_indexed_dataset(ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
