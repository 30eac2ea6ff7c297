"""One peer's per-image pipeline, run in a child process by bench/peers.py (in the venv it needs).

Each pipeline takes a JPEG's bytes and writes a JPEG of im2rec's geometry (short edge = R, long
edge = long * R // short), quality 90, on one thread.  The child loads the job (files and target
sizes, a JSON file), builds the pipeline and answers commands on stdin, one per line:

    check DIR   run once, write output i.jpg for every input i into DIR, answer "ok"
    time        run one pass over all inputs, answer "WALL CPU" (seconds)
    versions    answer a JSON object of the libraries' versions
    quit

so that bench/peers.py can interleave rounds of pipelines that live in different venvs (Pillow-SIMD
replaces Pillow and cannot share a venv with it).  Only the modules a pipeline needs are imported.

    python bench/peer_pipelines.py PIPELINE JOB.json
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
from typing import Callable

Pipeline = Callable[[bytes, tuple[int, int], tuple[int, int]], bytes]  # (data, in size, out size) -> JPEG
QUALITY = 90


def dct_scale(width: int, height: int, target_short: int) -> int:
    """The largest denominator of 1/8, 1/4, 1/2 whose (rounded-up) shorter edge stays >= target."""
    short = min(width, height)
    for den in (8, 4, 2):
        if -(-short // den) >= target_short:
            return den
    return 1


# ---------------------------------------------------------------- Pillow (stock or SIMD)
def pillow(resample_name: str) -> Pipeline:
    """Image.draft (DCT-scaled decode) + resize from the box draft() returns + save q90 4:2:0.

    draft() rounds the decoded size up (a 3795x2530 photo at 1/4 decodes to 949x633 for an exact
    948.75x632.5); the box it returns is the original image in the scaled decode's coordinates,
    and resizing from it maps the picture exactly onto the output (Image.thumbnail does the same).
    Resizing the whole decoded image instead stretches it by up to a pixel."""
    from PIL import Image
    resample = getattr(Image.Resampling, resample_name)

    def run(data: bytes, _size, out: tuple[int, int]) -> bytes:
        with Image.open(io.BytesIO(data)) as im:
            _mode, box = im.draft("RGB", out)
            im = im.convert("RGB").resize(out, resample, box=box)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=QUALITY, subsampling="4:2:0")
        return buf.getvalue()
    return run


# ---------------------------------------------------------------- libvips
def pyvips(subsample_mode: str | None) -> Pipeline:
    """thumbnail_buffer (shrink-on-load, then its own resize) to the exact size + jpegsave_buffer.

    One thread (concurrency 1) and no operation cache (else a repeated pass would be a lookup).
    subsample_mode None keeps libvips's default, which at Q >= 90 is 4:4:4."""
    import pyvips as vips
    vips.concurrency_set(1)
    vips.cache_set_max(0)
    vips.cache_set_max_mem(0)
    vips.cache_set_max_files(0)
    save = {"Q": QUALITY, "strip": True}
    if subsample_mode:
        save["subsample_mode"] = subsample_mode

    def run(data: bytes, _size, out: tuple[int, int]) -> bytes:
        img = vips.Image.thumbnail_buffer(data, out[0], height=out[1], size="force")
        return img.jpegsave_buffer(**save)
    return run


# ---------------------------------------------------------------- OpenCV-based
def im2rec() -> Pipeline:
    """im2rec.py's image_encode: full decode, cv2.resize INTER_LINEAR (its default), imencode q90."""
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    params = [cv2.IMWRITE_JPEG_QUALITY, QUALITY]

    def run(data: bytes, _size, out: tuple[int, int]) -> bytes:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.imencode(".jpg", cv2.resize(img, out), params)[1].tobytes()
    return run


def pyturbojpeg() -> Pipeline:
    """TurboJPEG decode at fastrec's DCT scale + cv2.resize INTER_AREA + TurboJPEG encode 4:2:0."""
    import cv2
    import turbojpeg
    cv2.setNumThreads(1)
    tj = turbojpeg.TurboJPEG()

    def run(data: bytes, size, out: tuple[int, int]) -> bytes:
        img = tj.decode(data, pixel_format=turbojpeg.TJPF_BGR,
                        scaling_factor=(1, dct_scale(*size, min(out))))
        img = cv2.resize(img, out, interpolation=cv2.INTER_AREA)
        return tj.encode(img, quality=QUALITY, pixel_format=turbojpeg.TJPF_BGR,
                         jpeg_subsample=turbojpeg.TJSAMP_420)
    return run


def simplejpeg() -> Pipeline:
    """decode_jpeg(min_width, min_height) (it may pick 3/8, 5/8...) + INTER_AREA + encode 4:2:0."""
    import cv2
    import simplejpeg as sj
    cv2.setNumThreads(1)

    def run(data: bytes, _size, out: tuple[int, int]) -> bytes:
        img = sj.decode_jpeg(data, colorspace="RGB", min_width=out[0], min_height=out[1])
        img = cv2.resize(img, out, interpolation=cv2.INTER_AREA)
        return sj.encode_jpeg(img, quality=QUALITY, colorspace="RGB", colorsubsampling="420", fastdct=False)
    return run


# ---------------------------------------------------------------- fastrec's core
class Fastrec:
    """Worker.pack_bytes in batches of 64 (as `fastrec pack` hands them out), on `threads` threads,
    each with its own Worker over an interleaved share; outputs are the records' JPEGs."""

    def __init__(self, threads: int, resize: int):
        from concurrent.futures import ThreadPoolExecutor
        from fastrec._native.core import Worker
        self.threads = threads
        self.workers = [Worker(resize=resize, quality=QUALITY) for _ in range(threads)]
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _share(self, worker, datas, idx):
        out = []
        for b in range(0, len(idx), 64):
            part = idx[b:b + 64]
            out.append((part, worker.pack_bytes(part, [0.0] * len(part), [datas[i] for i in part])))
        return out

    def run_all(self, datas: list[bytes]) -> list:
        shares = [list(range(t, len(datas), self.threads)) for t in range(self.threads)]
        if self.pool is None:
            return self._share(self.workers[0], datas, shares[0])
        futs = [self.pool.submit(self._share, w, datas, s) for w, s in zip(self.workers, shares)]
        return [batch for f in futs for batch in f.result()]

    @staticmethod
    def jpegs(batches, n: int) -> list[bytes]:
        from fastrec._native.core import OK
        from fastrec.formats.recordio import _read_record, unpack
        out: list[bytes] = [b""] * n
        for idx, (blob, results) in batches:
            start = 0
            for i, r in zip(idx, results):
                if r[0] != OK:
                    raise SystemExit(f"fastrec refused input {i}: {r}")
                out[i] = unpack(_read_record(io.BytesIO(bytes(blob[start:r[1]]))))[1]
                start = r[1]
        return out


PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "im2rec": im2rec,
    "pyturbojpeg": pyturbojpeg,
    "simplejpeg": simplejpeg,
    "pillow-bilinear": lambda: pillow("BILINEAR"),
    "pillow-lanczos": lambda: pillow("LANCZOS"),
    "pillow-simd-bilinear": lambda: pillow("BILINEAR"),
    "pillow-simd-lanczos": lambda: pillow("LANCZOS"),
    "pyvips-420": lambda: pyvips("on"),
    "pyvips-default": lambda: pyvips(None),
}


def versions() -> dict[str, str]:
    v = {"python": sys.version.split()[0]}
    for mod in ("PIL", "cv2", "numpy", "simplejpeg", "turbojpeg", "pyvips", "fastrec"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = str(getattr(m, "__version__", "?"))
    if "pyvips" in sys.modules:
        pv = sys.modules["pyvips"]
        v["libvips"] = ".".join(str(pv.version(i)) for i in range(3))
    if "PIL" in sys.modules:
        from PIL import features
        v["pillow_libjpeg"] = str(features.version("jpg"))
    return v


def main() -> int:
    name, job_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    datas = []
    for path in job["files"]:
        with open(path, "rb") as f:
            datas.append(f.read())
    sizes = [tuple(s) for s in job["sizes"]]
    targets = [tuple(t) for t in job["targets"]]
    if name.startswith("fastrec"):
        fr = Fastrec(2 if name == "fastrec-2t" else 1, job["resize"])

        def one_pass() -> list[bytes] | list:
            return fr.run_all(datas)

        def outputs(result) -> list[bytes]:
            return fr.jpegs(result, len(datas))
    else:
        fn = PIPELINES[name]()

        def one_pass():
            return [fn(d, s, t) for d, s, t in zip(datas, sizes, targets)]

        def outputs(result) -> list[bytes]:
            return result
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "check":
            for i, jpeg in enumerate(outputs(one_pass())):
                with open(os.path.join(arg, f"{i}.jpg"), "wb") as f:
                    f.write(jpeg)
            reply = "ok"
        elif cmd == "time":
            w0, c0 = time.perf_counter(), time.process_time()
            one_pass()
            reply = f"{time.perf_counter() - w0} {time.process_time() - c0}"
        elif cmd == "versions":
            reply = json.dumps(versions())
        elif cmd == "quit":
            return 0
        else:
            reply = f"error unknown command {cmd!r}"
        print(reply, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
