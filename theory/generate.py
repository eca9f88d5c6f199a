"""Write :mod:`theory._generated`, the numeric twins of the sympy derivations.

sympy derives every closed form once, here, and :func:`sympy.lambdify` prints
each as a plain Python function; the printed source is written to
``theory/_generated.py``, which is checked in, so that ``import theory`` needs
neither sympy nor the derivations (the way SciPy ships tables it computed
once). ``tests/theorems/test_generated.py`` derives again and fails when the
file is stale.

    python -m theory.generate            # rewrite theory/_generated.py
    python -m theory.generate --check    # exit 1 and name the functions if it is stale

Two twins are printed where both are used: ``*_np`` (numpy printer: works on
arrays) and ``*_arith`` (plain arithmetic, no module calls: exact on
``fractions.Fraction`` and usable on python-flint balls).

This module reads only :mod:`theory.symbolic`, :mod:`theory.symbolic_exact` and
:mod:`theory.symbolic_finite_dim`;
when the theory package cannot be imported (``theory/_generated.py`` missing
or broken) it loads them from their files, so ``python theory/generate.py``
still repairs the checkout.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "_generated.py"

# How lambdify names a function and the stand-ins it makes for arguments that are not identifiers
# (the symbol ``lambda``): renamed to fixed names so that the file is the same in every process.
_LAMBDIFY_NAME = "_lambdifygenerated"
_DUMMY = re.compile(r"_Dummy_\d+")


def _load(name: str):
    """The module theory.<name>; from its file alone when the theory package cannot be imported (a missing or
    broken theory/_generated.py raises whatever its import raises, hence the broad except)."""
    try:
        return importlib.import_module(f"theory.{name}")
    except Exception:
        pass
    spec = importlib.util.spec_from_file_location(f"_theory_generate_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _printed(name: str, args, expr, modules, dummy_names=()) -> str:
    """Source of ``lambdify(args, expr, modules)`` as a function called ``name``."""
    import sympy as sp

    fn = sp.lambdify(args, expr, modules=modules)
    src = inspect.getsource(fn)
    src = src.replace(f"def {_LAMBDIFY_NAME}(", f"def {name}(", 1)
    dummies = list(dict.fromkeys(_DUMMY.findall(src)))
    if len(dummies) != len(dummy_names):
        raise RuntimeError(f"{name}: {len(dummies)} non-identifier arguments, expected {len(dummy_names)}")
    for dummy, fixed in zip(dummies, dummy_names):
        src = re.sub(rf"\b{dummy}\b", fixed, src)
    return _qualified(name, src, fn.__globals__).rstrip() + "\n"


def _qualified(name: str, src: str, namespace: dict) -> str:
    """``src`` with every function it takes from lambdify's namespace written as ``numpy.f`` or ``math.f``
    (the same objects lambdify bound), so that the file needs only ``import numpy`` and ``import math``."""
    import builtins
    import math

    import numpy

    tree = ast.parse(src)
    params = {a.arg for a in tree.body[0].args.args}
    free = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in params
    }
    for ident in sorted(free):
        obj = namespace.get(ident, getattr(builtins, ident, None))
        if ident in ("numpy", "math"):
            continue
        if getattr(numpy, ident, None) is obj and obj is not None:
            module = "numpy"
        elif getattr(math, ident, None) is obj and obj is not None:
            module = "math"
        else:
            raise RuntimeError(f"{name}: lambdify bound {ident!r} to {obj!r}, which is neither numpy's nor math's")
        src = re.sub(rf"(?<![\w.]){ident}\b", f"{module}.{ident}", src)
    return src


def _functions():
    """(name, source, used names of module ``numpy`` / ``math``) of every generated function, in file order."""
    S = _load("symbolic")
    X = _load("symbolic_exact")
    out = []
    spec = S.derive_block_spectrum()
    block = (S.K, S.n, S.c, S.d)
    out.append(("block_eigenvalues_np", _printed("block_eigenvalues_np", block, spec["mu"], "numpy")))
    out.append(("filters_np", _printed("filters_np", block + (S.lam,), spec["filters"], "numpy", ("lam",))))
    out.append(("filters_arith", _printed("filters_arith", block + (S.lam,), spec["filters"], [{}, "math"], ("lam",))))
    (alpha, beta, delta), _, threshold, _ = S.derive_balanced_threshold()
    out.append(("balanced_threshold_np", _printed("balanced_threshold_np", (alpha, beta, delta), threshold, "numpy")))
    for model, (expr, free) in S.derive_noise_thresholds().items():
        fname = f"noise_threshold_{model}"
        out.append((fname, _printed(fname, free, expr, "math")))
    syms, expr = S.derive_type_scores()
    out.append(("type_score_np", _printed("type_score_np", syms, expr, "numpy")))
    out.append(("type_score_arith", _printed("type_score_arith", syms, expr, [{}, "math"])))
    syms, coeffs, _ = S.derive_margin_coefficients()
    out.append(("margin_coefficients_arith", _printed("margin_coefficients_arith", syms, coeffs, [{}, "math"])))
    syms, expr = S.derive_fresh_logits()
    out.append(("fresh_logits_arith", _printed("fresh_logits_arith", syms, expr, [{}, "math"])))
    out.append(("mixing_entry", _printed("mixing_entry", X.MIXING_ARGS, X.derived_mixing_expr(), "math")))
    # the finite-D theory's closed forms (numpy printer: the numeric modules broadcast them over arrays)
    for fname, args, expr in _load("symbolic_finite_dim").generated_functions():
        out.append((fname, _printed(fname, args, expr, "numpy")))
    return out


def render() -> str:
    """The text of theory/_generated.py as the derivations give it now."""
    funcs = _functions()
    body = "\n\n".join(src for _, src in funcs)
    uses_numpy = re.search(r"(?<![\w.])numpy\.", body) is not None
    uses_math = re.search(r"(?<![\w.])math\.", body) is not None
    names = ", ".join(f'"{name}"' for name, _ in funcs)
    header = [
        '"""Numeric twins of the sympy derivations, printed by sympy.lambdify.',
        "",
        "Generated by ``python -m theory.generate`` from theory/symbolic.py,",
        "theory/symbolic_exact.py and theory/symbolic_finite_dim.py; do not edit",
        "(tests/theorems/test_generated.py fails",
        'when this file differs from what the derivations print).',
        '"""',
        "",
        "# fmt: off",
        "# ruff: noqa",
    ]
    imports = (["import math"] if uses_math else []) + (["import numpy"] if uses_numpy else [])
    noise_models = [name.removeprefix("noise_threshold_") for name, _ in funcs if name.startswith("noise_threshold_")]
    footer = [
        "",
        "NOISE_THRESHOLDS = {" + ", ".join(f'"{m}": noise_threshold_{m}' for m in noise_models) + "}",
        "",
        f"__all__ = [{names}, \"NOISE_THRESHOLDS\"]",
    ]
    return "\n".join(header + [""] + imports + ["", ""] + [body.rstrip(), ""] + footer) + "\n"


def stale_functions(current: str, fresh: str) -> list[str]:
    """Names of the generated functions whose source differs between two renderings (or "header")."""

    def split(text):
        parts = re.split(r"^(?=def )", text, flags=re.M)
        named = {p.split("(", 1)[0][4:]: p.strip() for p in parts[1:]}
        named["header"] = parts[0].strip()
        return named

    a, b = split(current), split(fresh)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


class _OneLineParser(argparse.ArgumentParser):
    # theory/ may not import sims (the layer rule), hence not sims._cli.OneLineParser: the same one-line
    # error (exit status 2, no usage block), kept to these three lines
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None) -> int:
    parser = _OneLineParser(prog="python -m theory.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if theory/_generated.py is stale")
    args = parser.parse_args(argv)
    fresh = render()
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if current == fresh:
            print(f"{TARGET.name} is up to date")
            return 0
        print(f"{TARGET.name} is stale: {', '.join(stale_functions(current, fresh))} (run python -m theory.generate)")
        return 1
    if current != fresh:
        try:
            TARGET.write_text(fresh)
        except OSError as err:
            parser.exit(2, f"{parser.prog}: error: cannot write {TARGET}: {err.strerror or type(err).__name__}\n")
        print(f"wrote {TARGET}")
    else:
        print(f"{TARGET.name} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
