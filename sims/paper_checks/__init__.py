"""Generate paper_checks.md: every claim of the paper, how the suite checks it, the numbers, the verdict.

``python -m sims.paper_checks`` runs every check and writes paper_checks.md at the repository root
(``--out FILE`` elsewhere). ``python -m sims.paper_checks --check`` runs them again and exits 1 if a verdict
or a key number differs from what the file records (key numbers are stored in a JSON block at the end of the
file; integers, strings and verdicts must match exactly, floats to a relative 1e-6 or an absolute 1e-9).
Evidence too expensive for CI is read from results/ caches (see :mod:`.evidence`); --check says which of it
it could not verify. A bad ``--out`` is a one-line error with exit status 2 before any computing.

Every number in the file comes from a run performed here; nothing is typed in. The file is a pure function of
the code and the one seed: regenerating it gives the same bytes (no timings in it).

One module per claim, each naming its theory, tests and figures in its docstring:
:mod:`.p1_label_averaging`, :mod:`.p2_clustering`, :mod:`.p3_perfect_accuracy`, :mod:`.p4_pll`,
:mod:`.p5_approximations`, :mod:`.p6_real_features`, :mod:`.p7_cost`, :mod:`.findings` (F1-F4); shared pieces
in :mod:`._common`, the phase-diagram sweep in :mod:`.sweep`, rendering and the command line in :mod:`.report`.
Each claim's verdict comes from a ``verdict_pN`` function whose docstring is the rule printed in the file.
"""

# Names are loaded on first use (PEP 562): ``python -m sims.paper_checks`` runs this file first, and the check
# modules import theory/ (seconds of sympy), which must not delay an argument or --out error.
_EXPORTS = {
    "Check": "._common", "Interval": "._common", "confusion": "._common",
    "t_interval": "._common", "check_out_path": ".report", "compare": ".report", "compare_cached": ".report",
    "key_numbers": ".report", "main": ".report", "read_key_numbers": ".report", "render": ".report",
    "run_all": ".report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    import importlib

    if name == "_read_key_numbers":  # the name the first version used
        name = "read_key_numbers"
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
