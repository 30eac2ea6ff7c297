"""The package layout is the architecture: imports only run down the layers (the import-linter
contract in pyproject.toml, which `make test` also runs) and no two modules import each other,
directly or through others."""
from __future__ import annotations

import os
import subprocess
import sys

import grimp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_layer_contract_is_kept():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_no_import_cycles():
    graph = grimp.build_graph("fastrec", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(imported=module, importer=imported):
                cycles.append((module, imported))
    assert not cycles, cycles


def test_import_fastrec_loads_no_engine():
    """`import fastrec` is light: the public names load on first use."""
    code = "import sys, fastrec; print(sorted(m for m in sys.modules if m.startswith('fastrec')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['fastrec', 'fastrec._version']"
