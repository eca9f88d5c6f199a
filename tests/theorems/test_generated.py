"""theory/_generated.py is what the sympy derivations print now (importing theory without sympy:
tests/test_import_cost.py)."""

import pytest

from theory import _generated, generate


@pytest.fixture(scope="module")
def fresh():
    return generate.render()


def test_generated_module_is_current(fresh):
    """Derives every expression again; a stale file names the functions that differ."""
    current = generate.TARGET.read_text()
    assert current == fresh, f"stale: {generate.stale_functions(current, fresh)}; run python -m theory.generate"


def test_stale_check_names_the_changed_function(fresh):
    """The staleness report finds a one-character change in one function and in the header."""
    changed = fresh.replace("def filters_arith(K, n, c, d, lam):\n    return ((1 - c)", "def filters_arith(K, n, c, d, lam):\n    return ((1 + c)")
    assert changed != fresh
    assert generate.stale_functions(changed, fresh) == ["filters_arith"]
    assert generate.stale_functions("x = 1\n" + fresh, fresh) == ["header"]
    assert generate.stale_functions(fresh, fresh) == []


def test_check_command_exit_status(tmp_path, monkeypatch, fresh, capsys):
    """``python -m theory.generate --check`` exits 0 on the current file and 1 on a stale one, writing nothing."""
    target = tmp_path / "_generated.py"
    monkeypatch.setattr(generate, "TARGET", target)
    target.write_text(fresh)
    assert generate.main(["--check"]) == 0
    assert target.name in capsys.readouterr().out  # says which file is current
    target.write_text(fresh.replace("numpy.log", "numpy.log1p"))
    assert generate.main(["--check"]) == 1
    assert "balanced_threshold_np" in capsys.readouterr().out
    assert "log1p" in target.read_text()
    capsys.readouterr()
    assert generate.main([]) == 0 and target.read_text() == fresh
    assert str(target) in capsys.readouterr().out  # says which file it rewrote
    assert generate.main([]) == 0 and "up to date" in capsys.readouterr().out


def test_command_errors_are_one_line(tmp_path, monkeypatch, fresh, capsys):
    """An unknown option and an unwritable target: exit status 2 and one line on stderr naming the cause."""
    with pytest.raises(SystemExit) as info:
        generate.main(["--bogus"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "--bogus" in err
    target = tmp_path / "missing" / "_generated.py"  # its folder does not exist
    monkeypatch.setattr(generate, "TARGET", target)
    with pytest.raises(SystemExit) as info:
        generate.main([])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "cannot write" in err and str(target) in err


def test_every_generated_function_is_exported():
    names = [n for n in dir(_generated) if callable(getattr(_generated, n)) and not n.startswith("_")]
    assert sorted(set(names) - {"NOISE_THRESHOLDS"}) == sorted(set(_generated.__all__) - {"NOISE_THRESHOLDS"})
    assert set(_generated.NOISE_THRESHOLDS) == {"symmetric", "asymmetric", "superclass"}


def test_functions_from_lambdify_namespace_are_written_with_their_module():
    """numpy's and math's functions are qualified; anything else lambdify bound is refused, naming the function."""
    import math

    import numpy as np

    src = "def f(x):\n    return log(x) + sqrt(x)\n"
    assert generate._qualified("f", src, {"log": np.log, "sqrt": math.sqrt}) == (
        "def f(x):\n    return numpy.log(x) + math.sqrt(x)\n")
    with pytest.raises(RuntimeError, match="^g: lambdify bound 'log'"):
        generate._qualified("g", "def g(x):\n    return log(x)\n", {"log": lambda x: x})
    # a function only math has is looked up in numpy first without failing
    assert generate._qualified("f", "def f(x):\n    return lgamma(x)\n", {"lgamma": math.lgamma}) == (
        "def f(x):\n    return math.lgamma(x)\n")
    # a builtin lambdify left unbound is resolved as python would, and refused with what it is
    with pytest.raises(RuntimeError, match=r"^h: lambdify bound 'abs' to <built-in function abs>, which is neither"):
        generate._qualified("h", "def h(x):\n    return abs(x)\n", {})


def test_printed_names_the_function_it_refuses():
    """lambdify with a user function in its namespace: the printed source is refused under the requested name."""
    import sympy as sp

    x = sp.Symbol("x")
    with pytest.raises(RuntimeError, match=r"^twin: lambdify bound 'foo'"):
        generate._printed("twin", (x,), sp.Function("foo")(x), [{"foo": lambda v: v}, "math"])
    assert generate._printed("twin", (x,), sp.sqrt(x) + 1, "math").startswith("def twin(x):")


def test_generated_function_is_named_and_command_help(capsys):
    fresh = generate.render()
    assert "_lambdifygenerated" not in fresh and "_Dummy" not in fresh
    with pytest.raises(SystemExit):
        generate.main(["--help"])
    out = capsys.readouterr().out
    assert "numeric twins of the sympy derivations" in out and "exit 1 if theory/_generated.py is stale" in out


def test_stale_check_counts_a_function_on_one_side_only(fresh):
    """A function renamed (so present in one rendering only, under each name) is stale under both names."""
    renamed = fresh.replace("def mixing_entry(", "def mixing_entry_old(")
    assert renamed != fresh
    assert generate.stale_functions(renamed, fresh) == ["mixing_entry", "mixing_entry_old"]


def test_rendered_module_imports_what_its_functions_use(monkeypatch):
    """The header imports math and numpy exactly when a printed function calls them: the rendered text runs as a
    module with a function of each kind, and a numpy-free rendering does not import numpy."""
    import math

    twins = [("noise_threshold_symmetric", "def noise_threshold_symmetric(K):\n    return math.sqrt(K)\n"),
             ("f_np", "def f_np(x):\n    return numpy.log(x)\n")]
    monkeypatch.setattr(generate, "_functions", lambda: twins)
    namespace = {}
    exec(generate.render(), namespace)
    assert namespace["noise_threshold_symmetric"](4) == 2.0 and namespace["f_np"](math.e) == 1.0
    assert namespace["NOISE_THRESHOLDS"] == {"symmetric": namespace["noise_threshold_symmetric"]}
    monkeypatch.setattr(generate, "_functions", lambda: twins[:1])
    text = generate.render()
    assert "import math" in text and "import numpy" not in text


def test_regenerates_a_broken_module_from_the_files(tmp_path, fresh):
    """With a broken theory/_generated.py (a truncated write) the theory package cannot be imported;
    ``python theory/generate.py`` (module doc) loads the derivations from their files and writes the module again.
    PYTHONPATH puts the broken copy first, so the installed package cannot stand in for it."""
    import os
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "theory"
    shutil.copytree(generate.HERE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_generated.py").write_text("def filters_arith(K, n, c, d, lam):\n    return ((1 - c)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    broken = subprocess.run([sys.executable, "-c", "import theory"], cwd=tmp_path, env=env, capture_output=True)
    assert broken.returncode != 0  # the package really is broken
    # run from the current folder (mutmut's runtime looks for its configuration there); the script's own folder and
    # PYTHONPATH come first on sys.path, so the broken copy is the theory package it meets
    done = subprocess.run([sys.executable, str(pkg / "generate.py")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (pkg / "_generated.py").read_text() == fresh
