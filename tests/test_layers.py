"""The import direction theory <- sims.engine <- sims.studies <- sims.figures / sims.paper_checks, and no
import cycles among the sims modules.

Every ``import`` and ``from ... import`` statement of every module under theory/ and sims/ counts, also
those inside functions (a function-local import is still a dependency), resolved to the most specific
module it names (``from ..engine import features`` -> ``sims.engine.features``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "sims")

# Layer of a module: it may import modules of its own or a lower layer only. sims._cli, sims._interrupt
# and the sims package itself are helpers shared by the command lines; sims/<study>.py are the command
# lines' entry points (one line each: the study's main).
LAYERS = (
    ("theory", 0),
    ("sims.engine", 1),
    ("sims._cli", 1),
    ("sims._interrupt", 1),
    ("sims.studies", 2),
    ("sims.distill", 2),
    ("sims.phase_diagram", 2),
    ("sims.convergence", 2),
    ("sims.finite_dim", 2),
    ("sims.exact_boundary_check", 2),
    ("sims.pll_mixture", 2),
    ("sims.probe", 2),
    ("sims.figures", 3),
    ("sims.paper_checks", 3),
)


def layer_of(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    if module == "sims":
        return 1
    raise KeyError(f"module {module!r} is in no layer: add it to LAYERS")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def _resolve(name: str, modules) -> str | None:
    """The longest prefix of the dotted ``name`` that is one of ``modules`` (None: not ours)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in modules:
            return cand
    return None


def imports_of(module: str, source: str, modules, is_package: bool = False) -> set[str]:
    """The project modules that ``source`` (the text of ``module``) imports."""
    out = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            for alias in node.names:
                target = _resolve(f"{stem}.{alias.name}", modules) or _resolve(stem, modules)
                if target:
                    out.add(target)
    out.discard(module)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {m: imports_of(m, f.read_text(), files, f.name == "__init__.py") for m, f in files.items()}


def layer_violations(graph) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module imports one of a higher layer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def cycles(graph, prefix: str = "sims") -> list[list[str]]:
    """Import cycles among the modules starting with ``prefix`` (strongly connected components of two or
    more modules, or a module importing itself), each sorted."""
    nodes = sorted(m for m in graph if m == prefix or m.startswith(prefix + "."))
    inside = set(nodes)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in inside:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


# ----------------------------------------------------------------------------- the repository


def test_every_module_is_in_a_layer():
    for m in module_files():
        layer_of(m)


def test_imports_follow_the_layers():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles_among_sims_modules():
    assert cycles(import_graph()) == []


ENGINE_INTERFACE = {"sims.engine", "sims.engine.features", "sims.engine.noise", "sims.engine.fit",
                    "sims.engine.rounds", "sims.engine.measures"}


def engine_bypasses(graph) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module outside the engine imports an engine module that is not
    part of its interface (the package, its five stages and ``sims.engine.fit``'s exports)."""
    return sorted((a, b) for a, targets in graph.items() if not a.startswith("sims.engine")
                  for b in targets if b.startswith("sims.engine") and b not in ENGINE_INTERFACE)


def test_studies_figures_and_checks_use_the_engine_interface():
    g = import_graph()
    assert engine_bypasses(g) == []
    assert engine_bypasses({"sims.studies.x": {"sims.engine.fit.solver"}, "sims.engine.rounds": {
        "sims.engine.fit.solver"}}) == [("sims.studies.x", "sims.engine.fit.solver")]


def test_the_graph_sees_the_real_imports():
    """Spot checks that the parser finds imports at all (an empty graph would pass the two tests above)."""
    g = import_graph()
    assert "sims.engine.fit.solver" in g["sims.engine.fit.exact"]
    assert "sims.engine.measures" in g["sims.engine.rounds"]
    assert "sims.studies.phase_diagram" in g["sims.figures.fig_g_phase_diagram"]  # a function-local import
    assert "sims.studies.distill" in g["sims.distill"]
    assert "theory.validate" in g["sims.engine.features"]


# ----------------------------------------------------------------------------- the checker itself


def test_checker_finds_a_layer_violation_and_a_cycle(tmp_path):
    (tmp_path / "theory").mkdir()
    (tmp_path / "theory" / "__init__.py").write_text("")
    (tmp_path / "theory" / "bad.py").write_text("def f():\n    from sims.engine import rounds\n")
    eng = tmp_path / "sims" / "engine"
    eng.mkdir(parents=True)
    (tmp_path / "sims" / "__init__.py").write_text("")
    (eng / "__init__.py").write_text("")
    (eng / "rounds.py").write_text("from .measures import x\nfrom ..studies import distill\n")
    (eng / "measures.py").write_text("from . import rounds\n")
    (tmp_path / "sims" / "studies").mkdir()
    (tmp_path / "sims" / "studies" / "__init__.py").write_text("")
    (tmp_path / "sims" / "studies" / "distill.py").write_text("import sims.engine.rounds\n")
    g = import_graph(tmp_path)
    assert layer_violations(g) == [("sims.engine.rounds", "sims.studies.distill"),
                                   ("theory.bad", "sims.engine.rounds")]
    assert cycles(g) == [["sims.engine.measures", "sims.engine.rounds", "sims.studies.distill"]]


def test_resolution_of_relative_imports():
    mods = {"sims", "sims.engine", "sims.engine.fit", "sims.engine.fit.solver", "sims.engine.measures"}
    src = "from ..measures import pll_targets\nfrom . import solver\nfrom .. import fit\nimport numpy\n"
    assert imports_of("sims.engine.fit.exact", src, mods) == {"sims.engine.measures", "sims.engine.fit.solver",
                                                             "sims.engine.fit"}
    assert imports_of("sims.engine.fit", "from .solver import fit_gram\n", mods, is_package=True) == {
        "sims.engine.fit.solver"}


def test_unknown_module_has_no_layer():
    with pytest.raises(KeyError, match="sims.something"):
        layer_of("sims.something")
