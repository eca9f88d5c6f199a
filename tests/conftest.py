"""Hypothesis profiles shared by every test module.

* ``ci`` (default): derandomised, a modest number of examples per property,
  so that ``pytest tests`` is fast and reproducible.
* ``thorough``: 1000 examples per property, random. Select it with
  ``SD_HYPOTHESIS_PROFILE=thorough pytest tests/theorems``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("SD_HYPOTHESIS_PROFILE", "ci"))


# ---------------------------------------------------------------------------
# Mutation testing (mutmut 3, README "Mutation testing")
# ---------------------------------------------------------------------------
# theory/ derives its expressions in sympy and lambdifies them when the modules
# are imported (memoised in theory.symbolic). mutmut runs each mutant in a
# process forked after that import, so a mutant in a derivation would never
# reach the numeric functions, and its import-time calls are not attributed to
# the tests that use their results. Two hooks make the run honest; both are
# inert unless mutmut sets MUTANT_UNDER_TEST.
_MUTMUT_PHASES = ("", "stats", "fail", "mutant_generation")
_import_time_hits: set = set()


def _mutant_under_test() -> str:
    return os.environ.get("MUTANT_UNDER_TEST", "")


_IMPORT_TIME_FILE = "import_time_functions.txt"  # written in mutmut's working directory (mutants/)


def pytest_sessionstart(session):
    """With a mutant of an import-time theory function active: forget memoised derivations and re-run the
    modules that lambdify at import (others need nothing: their trampolines pick the mutant at call time)."""
    mutant = _mutant_under_test()
    if mutant in _MUTMUT_PHASES or not mutant.startswith("theory."):
        return
    function = mutant.rsplit("__mutmut_", 1)[0]
    try:
        with open(_IMPORT_TIME_FILE) as fh:
            import_time = {line.strip() for line in fh}
    except FileNotFoundError:
        import_time = None  # unknown: reload to be safe
    if import_time is not None and function not in import_time:
        return
    import importlib
    import sys

    symbolic = sys.modules.get("theory.symbolic")
    if symbolic is not None:
        symbolic.clear_caches()
    for name in ("theory.block_model", "theory.predictions", "theory.conditions", "theory.pll", "theory"):
        if name in sys.modules:
            importlib.reload(sys.modules[name])


def pytest_collection_finish(session):
    """Stats phase: remember (and write down) the theory functions called while the test modules were imported."""
    if _mutant_under_test() == "stats":
        from mutmut.state import state

        _import_time_hits.update(state()._stats)
        with open(_IMPORT_TIME_FILE, "w") as fh:
            fh.write("\n".join(sorted(_import_time_hits)) + "\n")


def pytest_runtest_setup(item):
    """Stats phase: every test depends on the import-time derivations (it calls what they produced)."""
    if _import_time_hits and _mutant_under_test() == "stats":
        from mutmut.state import state

        state()._stats.update(_import_time_hits)
