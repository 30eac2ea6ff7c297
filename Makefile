# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# `make install` (used by both) is idempotent: system headers, .venv/, the project and its test deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NATIVE := $(wildcard csrc/*.c csrc/*.h fastrec/_native/*.pyx fastrec/_native/*.pxd) setup.py
DEMO := demo

.PHONY: install system-deps demo test bench fuzz clean

install: system-deps $(VENV)/.deps fastrec/_native/.built

system-deps:
	@if [ ! -f /usr/include/jpeglib.h ] && [ ! -f /usr/include/$$(gcc -print-multiarch)/jpeglib.h ]; then \
	  echo "installing libjpeg-turbo development headers (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjpeg-dev; \
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
	$(PY) -m fastrec.samples $(DEMO)/images --kind mixed --classes 4 --seed 0
	$(VENV)/bin/fastrec list $(DEMO)/data $(DEMO)/images --recursive --chunks 2
	$(VENV)/bin/fastrec pack $(DEMO)/data $(DEMO)/images --resize 480 --quality 90 --num-thread 2
	$(PY) -m fastrec.demo_check $(DEMO)/data

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PIP) install -q -e ".[bench]" --no-build-isolation
	$(PY) bench/pack_vs_im2rec.py

clean:
	rm -rf build $(DEMO) fastrec/_native/*.so fastrec/_native/*.c fastrec/_native/.built
