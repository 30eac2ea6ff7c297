"""No Python call into fastrec._native can kill the interpreter: every public function and method,
called with arbitrary values and list lengths in a forked child, returns or raises TypeError /
ValueError (OSError for files, MemoryError for allocations) and never dies of a signal."""
from __future__ import annotations

import os
import pathlib
import resource
import signal
import sys
import time
import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastrec._native import core, recordio
from fastrec.demo.samples import make_tree

ALLOWED = (TypeError, ValueError, OSError, MemoryError)
UNEXPECTED = 3   # the child's exit status for an exception outside ALLOWED


def in_child(call) -> None:
    """Run `call()` in a forked child with bounded memory; fail on a signal death, an unexpected
    exception, or a hang."""
    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        code = 0
        try:
            vm = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize")))
            limit = vm * 1024 + (1 << 30)   # what it has now plus 1 GiB: huge outputs fail cleanly
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            call()
        except ALLOWED:
            pass
        except BaseException:
            traceback.print_exc()
            code = UNEXPECTED
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the call hung")
        time.sleep(0.002)
    assert not os.WIFSIGNALED(status), f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    assert os.WEXITSTATUS(status) == 0, "raised something other than TypeError/ValueError/OSError"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("boundary")
    jpeg = make_tree(base / "t", classes=1, per_class=(1, 1), seed=2)[0]
    return [jpeg, os.fsencode(jpeg), str(jpeg), base, base / "missing.jpg", b"/dev/null", b"a\0b", b""]


SPECIAL_INTS = [-2**64, -2**63, -2**31, -1, 0, 1, 2, 3, 7, 255, 256, 420, 422, 444, 65500, 65501, 65535,
                2**31 - 1, 2**31, 2**32, 2**63, 2**64 - 1, 2**64, 2**70]
INTS = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-5, 300))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), st.text(max_size=6), st.binary(max_size=40))
LABELS = st.one_of(SCALARS, st.tuples(), st.tuples(st.floats()), st.lists(st.floats(), max_size=3).map(tuple),
                   st.tuples(SCALARS, SCALARS))
ARRAYS = hnp.arrays(st.sampled_from([np.uint8, np.int16, np.float32, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7))
VIEWS = st.one_of(ARRAYS, ARRAYS.map(lambda a: a[::-1] if a.ndim else a), ARRAYS.map(lambda a: a.T))
ANY = st.one_of(SCALARS, VIEWS, st.lists(SCALARS, max_size=3))
WORKER_ARGS = st.dictionaries(
    st.sampled_from(["resize", "center_crop", "color", "no_upscale", "pass_through", "filter", "quality",
                     "subsampling", "fast_dct", "max_pixels", "max_bytes", "max_scans", "raw", "keep_alpha"]),
    st.one_of(INTS, SCALARS, st.sampled_from(["auto", "triangle", "bicubic", "lanczos"])), max_size=6)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def worker(kwargs: dict) -> core.Worker:
    try:
        return core.Worker(**kwargs)
    except ALLOWED:
        return core.Worker(resize=32)


@FAST
@given(st.lists(ANY, max_size=5))
@example([0, 5, 224])
@example([5, 0, 224])
def test_output_size(args):
    in_child(lambda: core.output_size(*args))


@FAST
@given(WORKER_ARGS)
def test_worker_construction(kwargs):
    in_child(lambda: core.Worker(**kwargs))


@FAST
@given(WORKER_ARGS, st.lists(st.one_of(INTS, SCALARS), max_size=4), st.lists(LABELS, max_size=4),
       st.lists(st.integers(0, 7), max_size=4))
@example({}, [1], [0.0], [1, 1, 1, 1])
@example({}, [1], [], [1])
def test_pack_files(files, kwargs, ids, labels, which):
    paths = [files[i] for i in which]
    in_child(lambda: worker(kwargs).pack_files(ids, labels, paths))


@FAST
@given(WORKER_ARGS, st.lists(st.one_of(INTS, SCALARS), max_size=4), st.lists(LABELS, max_size=4),
       st.lists(st.one_of(st.binary(max_size=64), VIEWS, SCALARS), max_size=4))
@example({}, [1], [], [b"x"])
def test_pack_bytes(kwargs, ids, labels, datas):
    in_child(lambda: worker(kwargs).pack_bytes(ids, labels, datas))


@FAST
@given(WORKER_ARGS, ANY, st.one_of(INTS, SCALARS), LABELS)
@example({"resize": 224}, np.zeros((0, 5, 3), np.uint8), 0, 0.0)
def test_pack_pixels(kwargs, pixels, id_, label):
    in_child(lambda: worker(kwargs).pack_pixels(pixels, id_, label))


@FAST
@given(st.one_of(ANY, st.binary(max_size=200)))
def test_fingerprint(data):
    in_child(lambda: core.fingerprint(data))


DIGESTS = st.one_of(ANY, hnp.arrays(st.sampled_from([np.uint64, np.int64, np.uint32]), st.integers(0, 9)),
                    hnp.arrays(np.uint64, st.integers(0, 9)).map(lambda a: a[::-1]))


@FAST
@given(WORKER_ARGS, st.lists(st.binary(max_size=64), max_size=4), DIGESTS)
@example({}, [b"x", b"y"], np.zeros(3, np.uint64))
@example({}, [], b"")    # found by this test: a read-only buffer raised BufferError
def test_pack_bytes_digests(kwargs, datas, digests):
    in_child(lambda: worker(kwargs).pack_bytes([0] * len(datas), [0.0] * len(datas), datas, digests=digests))
    in_child(lambda: worker(kwargs).pack_pixels(np.zeros((2, 2, 3), np.uint8), 0, 0.0, digests=digests))


@FAST
@given(st.one_of(ANY, st.binary(max_size=200)))
def test_frame(payload):
    in_child(lambda: recordio.frame(payload))


@FAST
@given(st.sampled_from(["out.rec", b"out.rec", "sub/out.rec", "a\0b", "", None, 3]),
       st.one_of(st.sampled_from(["wb", "ab", "r+b", "rb", "w", "", "x\0"]), SCALARS),
       st.lists(st.one_of(st.binary(max_size=40), VIEWS, SCALARS), max_size=3),
       st.lists(st.sampled_from(["tell", "flush", "close"]), max_size=3))
def test_record_file(tmp_path_factory, name, mode, payloads, calls):
    folder = tmp_path_factory.mktemp("rec")

    def run():
        os.chdir(folder)
        f = recordio.NativeRecordFile(pathlib.Path(name) if isinstance(name, str) and name else name, mode)
        for p in payloads:
            f.write(p)
        for c in calls:
            getattr(f, c)()
        f.write(b"after")
    in_child(run)
