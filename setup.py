"""Build fastrec's Cython extensions over csrc/*.c, linked against the system libjpeg-turbo.

`make wheel` links a static libjpeg-turbo into them instead (built for glibc 2.17 by zig cc):
FASTREC_LIBJPEG_STATIC names its libjpeg.a, FASTREC_LIBJPEG_INCLUDE its header folders
(os.pathsep-separated); each extension exports only PyInit_* (csrc/extension.map), so
another libjpeg in the same process (Pillow's, OpenCV's) never binds to them.
"""
import os
import sys
from glob import glob

from setuptools import Extension, setup

HEADERS = {"jpeglib.h": "libjpeg62-turbo-dev (Debian) or libjpeg-turbo8-dev (Ubuntu)",
           "xxhash.h": "libxxhash-dev (header-only here: the record fingerprints)"}
INCLUDE_DIRS = ["/usr/include", "/usr/local/include", "/opt/libjpeg-turbo/include"]


STATIC_JPEG = os.environ.get("FASTREC_LIBJPEG_STATIC")
STATIC_JPEG_INCLUDE = [d for d in os.environ.get("FASTREC_LIBJPEG_INCLUDE", "").split(os.pathsep) if d]


def check_headers() -> None:
    """Stop early with the package to install instead of a compiler error mid-build."""
    if STATIC_JPEG:
        if not os.path.isfile(STATIC_JPEG) or not any(os.path.exists(os.path.join(d, "jpeglib.h"))
                                                      for d in STATIC_JPEG_INCLUDE):
            sys.exit(f"fastrec: FASTREC_LIBJPEG_STATIC={STATIC_JPEG!r} is not a file, or no folder of "
                     f"FASTREC_LIBJPEG_INCLUDE holds jpeglib.h (`make wheel` builds both)")
        return
    missing = [h for h in HEADERS if not any(os.path.exists(os.path.join(d, h)) for d in INCLUDE_DIRS)]
    if missing:
        sys.exit(
            f"fastrec: missing {', '.join(missing)}: install the development headers, e.g. "
            f"`sudo apt-get install {' and '.join(HEADERS[h] for h in missing)}` (or `make install`)."
        )


def extensions() -> list:
    from Cython.Build import cythonize

    csources = sorted(glob("csrc/*.c"))
    sanitize = os.environ.get("FASTREC_SANITIZE")  # e.g. "address,undefined" for fuzz builds
    cflags = ["-O3", "-std=gnu11", "-fno-semantic-interposition", "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
    ldflags = []
    jpeg = dict(libraries=["jpeg"])
    if STATIC_JPEG:
        jpeg = dict(extra_objects=[STATIC_JPEG])
        ldflags += ["-Wl,--version-script=csrc/extension.map"]
    if sanitize:
        cflags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-O1", "-g"]
        ldflags += [f"-fsanitize={sanitize}"]
    exts = [
        Extension(
            name=pyx[:-4].replace(os.sep, "."),
            sources=[pyx] + csources,
            include_dirs=STATIC_JPEG_INCLUDE + ["csrc"],
            **jpeg,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
        for pyx in sorted(glob("fastrec/**/*.pyx", recursive=True))
    ]
    return cythonize(exts, compiler_directives={"language_level": 3}, include_path=["."])


if any(cmd in sys.argv for cmd in ("build_ext", "bdist_wheel", "install", "develop", "editable_wheel", "build")):
    check_headers()

setup(ext_modules=extensions())
