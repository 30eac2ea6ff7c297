# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# `make install` (used by both) is idempotent: system headers, .venv/, the project and its test deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NATIVE := $(wildcard csrc/*.c csrc/*.h fastrec/_native/*.pyx fastrec/_native/*.pxd) setup.py
DEMO := demo

.PHONY: install system-deps demo test test-wheel bench fuzz fuzz-build fuzz-smoke wheel wheel-deps wheel-build clean

install: system-deps $(VENV)/.deps fastrec/_native/.built

system-deps:
	@if [ ! -f /usr/include/jpeglib.h ] && [ ! -f /usr/include/$$(gcc -print-multiarch)/jpeglib.h ]; then \
	  echo "installing libjpeg-turbo development headers (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjpeg-dev; \
	fi
	@if [ ! -f /usr/include/xxhash.h ]; then \
	  echo "installing the xxHash header (apt-get; header-only: the record fingerprints)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxxhash-dev; \
	fi

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "setuptools>=68" wheel "Cython>=3.0"
	$(PIP) install -q --no-build-isolation -e ".[test]"
	touch $@

fastrec/_native/.built: $(NATIVE) $(VENV)/.deps
	$(PY) setup.py -q build_ext --inplace
	touch $@

demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PY) -m fastrec.demo.samples $(DEMO)/images --kind mixed --classes 4 --seed 0
	$(VENV)/bin/fastrec list $(DEMO)/data $(DEMO)/images --recursive --chunks 2
	$(VENV)/bin/fastrec pack $(DEMO)/data $(DEMO)/images --resize 480 --quality 90 --num-thread 2
	$(PY) -m fastrec.demo.check $(DEMO)/data

test: install fuzz-smoke
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests -m "not wheel"

# The wheel build from scratch takes minutes (zig, libjpeg-turbo), so it has its own target; CI
# runs it after `make test` (.ci/run).
test-wheel: install
	$(PY) -m pytest -q tests -m wheel

# A wheel for machines where pip works but apt needs root (Dask workers, SLURM nodes), on glibc
# 2.17 or newer (manylinux2014: RHEL/Rocky 8, Ubuntu 20.04 and older clusters): zig cc targets
# glibc 2.17 for the extensions and for a static libjpeg-turbo built from Debian's source package
# (apt-verified), linked inside them; auditwheel checks the tag. Each build leaves one wheel in
# WHEEL_DIR (older fastrec wheels there are removed). `make wheel` is the command; tests run it.
WHEEL_DIR ?= wheelhouse
WHEEL_PLAT := manylinux_2_17_x86_64
ZIG_TARGET := x86_64-linux-gnu.2.17
JPEG_DIR := build/libjpeg-turbo
ZIG_CC := $(abspath build/zig-cc)

wheel: install wheel-build

wheel-deps:
	@command -v cmake >/dev/null && command -v nasm >/dev/null || { \
	  echo "installing cmake and nasm (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake nasm; }
	mkdir -p build
	printf '#!/bin/sh\nexec "%s" -m ziglang cc -target $(ZIG_TARGET) "$$@"\n' "$(abspath $(PY))" > $(ZIG_CC)
	chmod +x $(ZIG_CC)

# libjpeg-turbo's source from the distribution (deb-src entries are added for it if missing).
$(JPEG_DIR)/libjpeg.a:
	$(MAKE) -s wheel-deps
	rm -rf $(JPEG_DIR) && mkdir -p $(JPEG_DIR)/src
	cd $(JPEG_DIR)/src && { apt-get source -qq --download-only libjpeg-turbo 2>/dev/null || { \
	  echo "adding deb-src entries to apt's sources for libjpeg-turbo's source package"; \
	  { [ ! -f /etc/apt/sources.list.d/debian.sources ] || sed 's/^Types: deb$$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources; \
	    [ ! -f /etc/apt/sources.list ] || sed -n 's/^deb /deb-src /p' /etc/apt/sources.list; } \
	    | $(SUDO) tee /etc/apt/sources.list.d/fastrec-deb-src.$$([ -f /etc/apt/sources.list.d/debian.sources ] && echo sources || echo list) >/dev/null; \
	  $(SUDO) apt-get update -qq && apt-get source -qq --download-only libjpeg-turbo; }; }
	tar xzf $(JPEG_DIR)/src/libjpeg-turbo_*.orig.tar.gz -C $(JPEG_DIR)/src --strip-components=1
	cmake -S $(JPEG_DIR)/src -B $(JPEG_DIR)/cmake -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_C_COMPILER=$(ZIG_CC) \
	  -DCMAKE_BUILD_TYPE=Release -DENABLE_SHARED=OFF -DWITH_TURBOJPEG=OFF -DREQUIRE_SIMD=ON \
	  -DCMAKE_POSITION_INDEPENDENT_CODE=ON > $(JPEG_DIR)/cmake.log
	cmake --build $(JPEG_DIR)/cmake --target jpeg-static -j 2 > $(JPEG_DIR)/build.log
	cp $(JPEG_DIR)/cmake/libjpeg.a $@

# Header-only libraries the core includes (xxhash.h) are copied alone: zig cc brings glibc 2.17's
# headers, and /usr/include would bring this machine's.
wheel-build: $(JPEG_DIR)/libjpeg.a
	$(MAKE) -s wheel-deps
	rm -rf build/wheel build/wheel-raw build/wheel-include && mkdir -p build/wheel-include
	for h in xxhash.h; do [ ! -f /usr/include/$$h ] || cp /usr/include/$$h build/wheel-include/; done
	CC="$(ZIG_CC)" LDSHARED="$(ZIG_CC) -shared" FASTREC_LIBJPEG_STATIC=$(abspath $<) \
	  FASTREC_LIBJPEG_INCLUDE=$(abspath $(JPEG_DIR)/cmake):$(abspath $(JPEG_DIR)/src):$(abspath build/wheel-include) \
	  $(PY) setup.py -q build --build-base build/wheel bdist_wheel --dist-dir build/wheel-raw
	rm -f $(WHEEL_DIR)/fastrec-*.whl $(WHEEL_DIR)/fastrec_recordio-*.whl
	PATH="$(abspath $(dir $(PY))):$$PATH" $(PY) -m auditwheel repair --only-plat --plat $(WHEEL_PLAT) -w $(WHEEL_DIR) build/wheel-raw/*.whl
	$(PY) -m auditwheel show $(WHEEL_DIR)/fastrec_recordio-*.whl

# Coverage-guided fuzzing of the native path (libFuzzer + AddressSanitizer + UBSan, clang).
# `make test` runs it for FUZZ_SMOKE_SECONDS; `make fuzz` for FUZZ_SECONDS. Crashes land in
# tests/fuzz_regressions/, which the test suite replays.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_FLAGS = -rss_limit_mb=2048 -timeout=10 -artifact_prefix=tests/fuzz_regressions/

fuzz-build: install
	@command -v clang >/dev/null && [ -n "$$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a | grep /)" ] || { \
	  echo "installing clang and its sanitizer runtimes (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev || \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev; }
	mkdir -p build/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc \
	  fuzz/fuzz_pack.c csrc/*.c -ljpeg -o build/fuzz/fuzz_pack
	[ -d build/fuzz/seeds ] || $(PY) fuzz/seed_corpus.py build/fuzz/seeds

fuzz-smoke: fuzz-build
	@build/fuzz/fuzz_pack build/fuzz/corpus build/fuzz/seeds tests/fuzz_regressions \
	  -max_total_time=$(FUZZ_SMOKE_SECONDS) $(FUZZ_FLAGS) > build/fuzz/smoke.log 2>&1 \
	  || { tail -n 60 build/fuzz/smoke.log; echo "fuzz smoke run FAILED: see tests/fuzz_regressions/"; exit 1; }
	@echo "fuzz smoke run: $$(grep -E '^Done' build/fuzz/smoke.log)"

# The fault injector (tests/test_faults.py): every errno of every command, FAULT_SAMPLES calls each.
FAULT_SAMPLES ?= 8
# `make fuzz` also runs the generated-input properties longer, searching new examples.
FUZZ_EXAMPLES ?= 2000

fuzz: fuzz-build
	build/fuzz/fuzz_pack build/fuzz/corpus build/fuzz/seeds tests/fuzz_regressions \
	  -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS)
	FASTREC_FAULT_SAMPLES=$(FAULT_SAMPLES) FASTREC_FAULT_SEED=$$(date +%s) $(PY) -m pytest -q tests/test_faults.py
	FASTREC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HYPOTHESIS_PROFILE=explore $(PY) -m pytest -q -p no:logging \
	  tests/test_tar_generated.py

# Side-by-side benchmarks (see bench/README.md); the peers come from `make bench-peers`.
bench: install bench-peers
	$(PY) bench/pack_vs_im2rec.py
	$(PY) bench/tar_vs_extract.py
	$(PY) bench/slow_storage.py
	$(PY) bench/peers.py

# The tools bench/peers.py measures fastrec against, installed by name from the registries:
# Debian's libvips (pyvips) and libturbojpeg (PyTurboJPEG); Pillow-SIMD compiled from source (AVX2
# where the CPU has it) in its own venv, because it replaces Pillow; ffcv 1.0.2 in its own venv with
# the CPU build of torch, because the main venv pins numpy 1.23.5 for mxnet (ffcv compiles against
# OpenCV's and libturbojpeg's headers, found by pkg-config). build/ is git-ignored.
PEER_DEBS := libvips42 libturbojpeg0 libturbojpeg0-dev libopencv-dev pkg-config libjpeg-dev zlib1g-dev
.PHONY: bench-peers
bench-peers: install build/venv-simd/.done build/venv-ffcv/.done
	@dpkg -s $(PEER_DEBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PEER_DEBS); }
	$(PIP) install -q --no-build-isolation -e ".[test,bench]"

build/venv-simd/.done:
	@dpkg -s libjpeg-dev zlib1g-dev >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjpeg-dev zlib1g-dev; }
	$(PYTHON) -m venv build/venv-simd
	CC="cc $$(grep -qw avx2 /proc/cpuinfo && echo -mavx2)" build/venv-simd/bin/pip install -q --no-cache-dir \
	  "pillow-simd==12.1.1.post0" numpy
	touch $@

build/venv-ffcv/.done:
	@dpkg -s $(PEER_DEBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PEER_DEBS); }
	$(PYTHON) -m venv build/venv-ffcv
	build/venv-ffcv/bin/pip install -q torch==2.13.0 numpy pillow setuptools wheel
	build/venv-ffcv/bin/pip install -q --no-build-isolation ffcv==1.0.2
	touch $@

clean:
	rm -rf build $(DEMO) $(WHEEL_DIR) fastrec/_native/*.so fastrec/_native/*.c fastrec/_native/.built
