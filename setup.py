"""Build fastrec's Cython extensions over csrc/*.c, linked against the system libjpeg-turbo."""
import os
import sys
from glob import glob

from setuptools import Extension, setup

HEADERS = {"jpeglib.h": "libjpeg62-turbo-dev (Debian) or libjpeg-turbo8-dev (Ubuntu)",
           "xxhash.h": "libxxhash-dev (header-only here: the record fingerprints)"}
INCLUDE_DIRS = ["/usr/include", "/usr/local/include", "/opt/libjpeg-turbo/include"]


def check_headers() -> None:
    """Stop early with the package to install instead of a compiler error mid-build."""
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
    if sanitize:
        cflags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-O1", "-g"]
        ldflags += [f"-fsanitize={sanitize}"]
    exts = [
        Extension(
            name=pyx[:-4].replace(os.sep, "."),
            sources=[pyx] + csources,
            include_dirs=["csrc"],
            libraries=["jpeg"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
        for pyx in sorted(glob("fastrec/**/*.pyx", recursive=True))
    ]
    return cythonize(exts, compiler_directives={"language_level": 3}, include_path=["."])


if any(cmd in sys.argv for cmd in ("build_ext", "bdist_wheel", "install", "develop", "editable_wheel", "build")):
    check_headers()

setup(ext_modules=extensions())
