"""Tests of `python -m sims.figures`: tiny figures into tmp_path, and the numbers they return."""

from pathlib import Path

import numpy as np
import pytest

import theory
from sims import figures as F
from sims.figures.fig_f_min_rounds import _f_etas
from tests.theorems.strategies import raises_naming

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == PNG_MAGIC and Path(path).stat().st_size > 10_000


def test_ternary_vertices():
    x, y = F.ternary_xy(np.eye(3))
    assert np.allclose(x, [0.0, 1.0, 0.5]) and np.allclose(y, [0.0, 0.0, np.sqrt(3) / 2])
    with raises_naming("P", "(4, 2)"):
        F.ternary_xy(np.ones((4, 2)) / 4)


def test_fig_b_filters_ordered_and_decreasing(tmp_path):
    res = F.fig_b_spectral_filter(tmp_path, np.random.default_rng(0), quick=True, rounds=12, gmm_n=20, gmm_D=50)
    assert _is_png(res["file"]) and res["file"].endswith("fig_b_spectral_filter_quick.png")
    f = res["filters"]
    assert 0 < f["alpha"] < f["beta"] < f["g"] < 1
    pw = {k: np.array(v) for k, v in res["powered"].items()}
    for v in pw.values():
        assert np.all(np.diff(v) < 0)  # strictly decreasing with t
    assert np.all(pw["alpha"] < pw["beta"]) and np.all(pw["beta"] < pw["g"])
    # eigenvalues and multiplicities of the paper's block model (K=4, n=500, c=0.4, d=0.1)
    assert np.allclose(res["eigenvalues"], [0.6, 150.6, 350.6])
    assert tuple(res["multiplicities"]) == (1996, 3, 1)


def test_fig_c_linear_level_reaches_100_at_theory_round(tmp_path):
    res = F.fig_c_paper_experiment(tmp_path, np.random.default_rng(1), quick=True, n=40, rounds=25)
    assert _is_png(res["file"])
    t_star = res["theory_min_round_sample"]
    assert t_star is not None and 0 < t_star <= 25
    lin = res["series"]["block_linear"]
    # the brute-force linearised run on the explicit block Gram: 100 % exactly from the theory's round on
    assert lin["first_all_correct"] == t_star
    assert lin["all"][t_star - 1] < 1.0
    # our perturbed matrix is a Gram matrix; the paper's is not
    assert res["perturbed_gram"]["symmetric"] and res["perturbed_gram"]["psd"]
    assert not res["paper_matrix"]["symmetric"]


def test_fig_f_theory_monotone_and_exact_reaches(tmp_path):
    res = F.fig_f_min_rounds(tmp_path, np.random.default_rng(2), quick=True, seeds=1)
    assert _is_png(res["file"])
    for noise, r in res["noises"].items():
        thr = r["threshold"]
        below = [(e, t) for e, t in zip(r["etas"], r["theory"]) if e < thr]
        rounds = [t for _, t in below]
        assert all(t is not None for t in rounds), noise
        assert all(a <= b for a, b in zip(rounds, rounds[1:])), (noise, rounds)  # non-decreasing in eta
        # at and beyond the threshold: never, in theory and in the exact block model
        beyond = [(t, x) for e, t, x in zip(r["etas"], r["theory"], r["exact_block"]) if e >= thr]
        assert beyond and all(t is None and x is None for t, x in beyond)
        # no noise: the teacher is already perfect
        assert r["theory"][0] == 0 and r["exact_block"][0] == 0


def test_fig_a_clusters_over_rounds(tmp_path):
    res = F.fig_a_simplex(tmp_path, np.random.default_rng(3), quick=True, n=20, rounds_shown=(0, 2, 6))
    assert _is_png(res["file"])
    for level in ("linear", "exact"):
        per = res["levels"][level]
        assert per[6]["spread"] < per[2]["spread"] < per[0]["spread"]


def test_fig_e_tiny_runs_and_reports_gains(tmp_path):
    res = F.fig_e_distillation_gain(tmp_path, np.random.default_rng(4), quick=True, etas=(0.0, 0.5), seeds=2)
    assert _is_png(res["file"])
    assert set(res["panels"]) == {"gmm_superclass", "gmm_symmetric", "digits_superclass", "digits_symmetric"}
    for panel in res["panels"].values():
        assert set(panel["gain_mean"]) == set(F.E_METHODS)
        assert all(len(v) == 2 for v in panel["gain_mean"].values())
        assert all(0.0 <= a <= 1.0 for a in panel["teacher_test_accuracy"])


def test_same_seed_same_numbers(tmp_path):
    a = F.fig_a_simplex(tmp_path / "1", np.random.default_rng(7), quick=True, n=20, rounds_shown=(0, 1))
    b = F.fig_a_simplex(tmp_path / "2", np.random.default_rng(7), quick=True, n=20, rounds_shown=(0, 1))
    assert a["levels"] == b["levels"]
    with raises_naming("n", "30"):
        F.fig_a_simplex(tmp_path, np.random.default_rng(7), n=30)


def test_cli_only_writes_selected_quick_files(tmp_path, capsys):
    assert F.main(["--quick", "--only", "b", "--out", str(tmp_path), "--no-progress", "--jobs", "1"]) == 0
    assert _is_png(tmp_path / "fig_b_spectral_filter_quick.png")
    assert not (tmp_path / "fig_b_spectral_filter.png").exists()
    assert (tmp_path / "figures_quick.json").stat().st_size > 0
    assert "fig_b_spectral_filter_quick.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,option",
    [
        (["--only", "a,z"], "--only"),
        (["--only", ""], "--only"),
        (["--jobs", "0"], "--jobs"),
        (["--seed", "-3"], "--seed"),
        (["--seed", "x"], "--seed"),
    ],
)
def test_bad_options_exit_nonzero_with_one_line(args, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        F.main(args + ["--out", str(tmp_path)])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert option in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*.png"))


def test_theory_threshold_matches_fig_f_grid():
    etas = _f_etas("symmetric", 4, 2, 0.03, 500)
    assert 0.75 in etas and max(e for e in etas if e < 0.75) == pytest.approx(0.72)
    assert theory.noise_threshold("symmetric", 4) == 0.75


# ---------------------------------------------------------------------------- CLI: paths, interrupts, layout


def _main_code(argv):
    try:
        return F.main(argv)
    except SystemExit as exc:
        return exc.code


def test_bad_out_rejected_before_any_figure(tmp_path, read_only_dir, capsys, monkeypatch):
    from sims.figures import cli

    for letter, (name, _) in list(cli.FIGURES.items()):
        monkeypatch.setitem(cli.FIGURES, letter, (name, lambda *a, **k: pytest.fail("a figure was computed")))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in ((read_only_dir, "cannot write into the folder"), (a_file, "is a file, must be a folder"),
                         (a_file / "sub", "lies under the file")):
        assert _main_code(["--quick", "--only", "b", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m sims.figures: error: --out == {str(out)!r}") and message in err
        assert len(err.strip().splitlines()) == 1
    assert list(read_only_dir.iterdir()) == []


def test_ctrl_c_keeps_finished_figures(tmp_path, capsys, monkeypatch):
    from sims.figures import cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.FIGURES, "c", ("fig_c_paper_experiment", interrupted))
    argv = ["--quick", "--only", "b,c", "--out", str(tmp_path), "--no-progress", "--jobs", "1"]
    assert F.main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("python -m sims.figures: interrupted; figures b are written")
    assert len(err.strip().splitlines()) == 1
    assert _is_png(tmp_path / "fig_b_spectral_filter_quick.png")
    assert "b" in __import__("json").loads((tmp_path / "figures_quick.json").read_text())


def test_one_module_per_figure_with_its_claims():
    """scikit-learn-gallery layout: one module per figure, whose docstring says what it shows and which
    claims (P1-P7) it supports; none of the figure and phase-diagram modules over 1000 lines."""
    import importlib
    import re

    import sims

    for letter, (name, fn) in F.FIGURES.items():
        module = importlib.import_module(fn.__module__)
        assert module.__name__.startswith("sims.figures.fig_" + letter), (letter, module.__name__)
        doc = module.__doc__
        assert doc.startswith(f"Figure {letter}:") and re.search(r"\*\*P[1-7]\*\*", doc), letter
        assert "Rebuild:" in doc and f"--only {letter}" in doc
    root = Path(sims.__file__).parent
    mine = list((root / "figures").glob("*.py")) + [root / f for f in ("studies/phase_diagram.py", "_cli.py")]
    for path in mine:
        assert len(path.read_text().splitlines()) <= 1000, path


def test_fig_g_reports_informative_agreement_and_confusion(tmp_path):
    extra = ["--etas", "0,0.3,0.6", "--rounds", "4", "--seeds", "1", "--per-class", "12", "--levels", "linear,exact",
             "--noise", "symmetric"]
    res = F.fig_g_phase_diagram(tmp_path, quick=True, jobs=1, out_given=True, extra_args=extra)
    assert _is_png(res["file"]) and res["file"].startswith(str(tmp_path.resolve()))
    assert set(res["confusion"]) == {"linear", "exact"}
    for level, c in res["confusion"].items():
        informative = c["both"] + c["only_theory"] + c["only_observed"]
        assert res["agreement"][level] == c["both"] / informative
        assert res["disagreements"][level] == c["only_theory"] + c["only_observed"]
    assert res["agreement"]["linear"] == 1.0
