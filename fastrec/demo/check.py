"""`make demo`'s last step: read what fastrec packed back with the real MXNet and summarise it."""
from __future__ import annotations

import collections
import glob
import sys
import warnings


def main(prefix: str) -> int:
    warnings.filterwarnings("ignore")
    try:
        import cv2  # noqa: F401  (mxnet.recordio.unpack_img needs it)
        import mxnet as mx
    except ImportError as err:
        print(f"cannot read back with MXNet ({err}); install the test extras: `make install` in fastrec's source folder")
        return 1
    total = 0
    for rec in sorted(glob.glob(prefix + "*.rec")):
        idx = rec[:-4] + ".idx"
        reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
        shapes, labels = collections.Counter(), collections.Counter()
        for key in reader.keys:
            header, img = mx.recordio.unpack_img(reader.read_idx(key))
            shapes[f"{img.shape[1]}x{img.shape[0]}"] += 1
            labels[int(header.label)] += 1
        reader.close()
        n = sum(shapes.values())
        total += n
        common = ", ".join(f"{s} ({c})" for s, c in shapes.most_common(3))
        print(f"{rec}: {n} records read by mxnet {mx.__version__}; labels {dict(sorted(labels.items()))}; "
              f"sizes {common}")
    print(f"demo OK: {total} records decoded by MXNet" if total else "demo FAILED: no records")
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
