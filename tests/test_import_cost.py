"""Importing theory or the engine, and asking any command for --help, loads none of the heavy libraries.

sympy derives once (theory/_generated.py holds the results), scipy is imported where a solve happens, and
matplotlib / scikit-learn where a figure is drawn or digits are loaded. Which modules are loaded is checked
here, not how long it takes (timings belong to benchmarks): each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sympy", "scipy", "sklearn", "matplotlib", "seaborn", "joblib", "dask", "flint", "cleanlab", "pandas", "pyarrow")
COMMANDS = ("sims.phase_diagram", "sims.distill", "sims.convergence", "sims.finite_dim", "sims.exact_boundary_check",
            "sims.pll_mixture", "sims.probe", "sims.figures", "sims.paper_checks", "theory.generate")


def _loaded_after(code: str) -> list:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["theory", "sims", "sims.engine"])
def test_import_loads_no_heavy_library(module):
    assert _loaded_after(f"import {module}") == []


@pytest.mark.parametrize("command", COMMANDS)
def test_help_loads_no_heavy_library(command):
    code = ("import contextlib, io, runpy, sys\n"
            f"sys.argv = [{command!r}, '--help']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        runpy.run_module({command!r}, run_name='__main__', alter_sys=True)\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code in (0, None), exc.code")
    assert _loaded_after(code) == []


def test_probe_sees_a_heavy_import():
    """The check itself can fail: a module that imports scipy is reported."""
    assert _loaded_after("import scipy.linalg") == ["scipy"]
