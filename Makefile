# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# `make install` (used by both) is idempotent: system headers, .venv/, the project and its test deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NATIVE := $(wildcard csrc/*.c csrc/*.h fastrec/_native/*.pyx fastrec/_native/*.pxd) setup.py
DEMO := demo

.PHONY: install system-deps demo test bench fuzz fuzz-build fuzz-smoke wheel wheel-build clean

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
	$(PY) -m pytest -q tests

# A wheel that carries libjpeg-turbo inside it (fastrec.libs/), for machines where pip works but
# apt needs root (Dask workers, SLURM nodes): `pip install wheelhouse/fastrec-*.whl`. auditwheel
# grafts the library into the wheel and points the extensions' rpath at it; the platform tag is the
# oldest manylinux this machine's glibc allows (`--plat auto`). `wheel-build` has no prerequisites,
# so tests can run it with another PY (tests/test_wheel.py).
WHEEL_DIR ?= wheelhouse

wheel: install wheel-build

wheel-build:
	rm -rf build/wheel-raw
	$(PY) -m pip wheel . --no-deps --no-build-isolation -q -w build/wheel-raw
	PATH="$(dir $(PY)):$$PATH" $(PY) -m auditwheel repair --plat auto -w $(WHEEL_DIR) build/wheel-raw/fastrec-*.whl

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

# Side-by-side benchmarks (see bench/README.md); PyTurboJPEG 1.x needs the system libturbojpeg.
bench: install
	@[ -e /usr/lib/$$(gcc -print-multiarch)/libturbojpeg.so.0 ] || \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libturbojpeg0; }
	$(PIP) install -q --no-build-isolation -e ".[test,bench]"
	$(PY) bench/pack_vs_im2rec.py
	$(PY) bench/tar_vs_extract.py
	$(PY) bench/slow_storage.py
	$(PY) -m pytest -q bench/test_peers.py --benchmark-json bench/results/peers.json
	$(PY) bench/ratios.py bench/results/peers.json

clean:
	rm -rf build $(DEMO) $(WHEEL_DIR) fastrec/_native/*.so fastrec/_native/*.c fastrec/_native/.built
