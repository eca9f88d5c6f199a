"""Hypothesis profiles shared by every test module, chosen with hypothesis' own option
``pytest --hypothesis-profile NAME``.

* ``dev`` (default): random examples, a modest number per property, so that local
  runs keep exploring new inputs.
* ``ci``: the same number of examples, derandomised, so that a CI run is reproducible;
  ``.ci/run`` and the mutation run select it.
* ``thorough``: 1000 random examples per property (``pytest tests/theorems
  --hypothesis-profile thorough``).
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("dev")


# The project's declared dependencies (pyproject.toml), checked once before any test runs: in an environment that
# lacks one (e.g. python-flint, which the certified exact level needs), pytest otherwise reports the first test
# that imports it as a failure among passes ("1 failed, 48 passed" for `pytest tests/theorems -x` without
# python-flint), which reads like a broken theorem. The import names that differ from the distribution names:
_IMPORT_NAMES = {"python-flint": "flint", "scikit-learn": "sklearn", "pytest-xdist": "xdist", "dask": "dask"}
_NOT_IMPORTED = {"ruff"}  # a command-line tool, not imported by the tests


def _missing_dependencies() -> list[str]:
    import importlib.util
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
    missing = []
    for spec in wanted:
        dist = re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]
        if dist in _NOT_IMPORTED:
            continue
        module = _IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if importlib.util.find_spec(module) is None:
            missing.append(f"{dist} (module {module})")
    return missing


def pytest_configure(config):
    missing = _missing_dependencies()
    if missing:
        raise pytest.UsageError(
            f"missing dependencies of the project: {', '.join(missing)}; install them with pip install -e '.[test]'"
        )


# Mutation testing (mutmut 3, docs/testing.md): theory.symbolic and theory.symbolic_exact memoise their
# derivations. mutmut forks each mutant's test run from a process that has already run the tests, so a
# mutant of a derivation would only ever meet the memoised results of the original code; and while mutmut
# records which tests call which function, only the first test to derive would be recorded. Both hooks
# forget the memoised derivations, and do nothing unless mutmut sets MUTANT_UNDER_TEST.
_MUTMUT_PHASES = ("", "stats", "fail", "mutant_generation")


def _forget_derivations():
    symbolic = sys.modules.get("theory.symbolic")
    if symbolic is not None:
        symbolic.clear_caches()
    symbolic_exact = sys.modules.get("theory.symbolic_exact")
    if symbolic_exact is not None:
        symbolic_exact.derived_mixing_expr.cache_clear()


def pytest_sessionstart(session):
    if os.environ.get("MUTANT_UNDER_TEST", "") not in _MUTMUT_PHASES:
        _forget_derivations()


@pytest.fixture(autouse=True)
def _record_every_test_that_derives():
    if os.environ.get("MUTANT_UNDER_TEST", "") == "stats":
        _forget_derivations()
    yield
