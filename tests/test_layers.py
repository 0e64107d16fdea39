"""The package's layers hold (the contracts in pyproject.toml, checked by import-linter) and no
module imports, through any chain, a module that imports it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
from helpers.fleet import ROOT


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    checked = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert "0 broken" in checked.stdout


def test_there_are_no_import_cycles():
    graph = grimp.build_graph("cis490_train")
    cycles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer < imported and graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == [], cycles
