"""P6 (sims/paper_checks/p6_real_features.py): the verdict follows its printed rule on constructed protocol results,
the runs of the protocol do not depend on the number of workers, the noise-validity test, the sweep's solver."""

from pathlib import Path

import numpy as np

from sims.engine import noise as noise_mod
from sims.paper_checks import p6_real_features as p6
from sims.paper_checks._common import rule_text

ROOT = Path(__file__).resolve().parents[2]
TEACHER = np.array([0.80, 0.82, 0.84, 0.86, 0.88])
UP = np.array([0.020, 0.021, 0.022, 0.020, 0.021])  # every seed better: the interval lies above 0
MIXED = np.array([-0.05, 0.02, 0.06, -0.01, 0.03])  # mean > 0, interval contains 0
DOWN = -UP


def _run(acc: dict) -> dict:
    """The parts of a probe JSON that P6 reads, for one seed."""
    return {"methods": {m: {"test_accuracy": float(a), "lam_per_seed": [1e-3], "round_per_seed": [1]}
                        for m, a in acc.items()},
            "label_issues": {"cleanlab": {"flagged": 3, "precision": 0.5, "recall": 0.5}}}


def _cell(sd, pll_ce, pll_gce, cleanlab=MIXED, eta=0.4):
    accs = {"teacher": TEACHER, "sd": TEACHER + sd, "pll_ce": TEACHER + pll_ce, "pll_gce": TEACHER + pll_gce,
            "cleanlab": TEACHER + cleanlab}
    runs = [_run({m: a[s] for m, a in accs.items()}) for s in range(TEACHER.size)]
    return p6.CvCell("digits", "symmetric", eta, runs)


def _verdict(cells, blocks=(True,)):
    cv = p6.CvResult(cells, {}, {}, len(cells))
    lines, flags = p6._cv_lines(cv, {})
    return p6.verdict_p6(list(blocks), flags["sd"], flags["pll_ce"], flags["pll_gce"]), flags, lines


def test_verdict_follows_its_rule_on_constructed_intervals():
    # SD above the teacher in 2 of 3 cells (a majority), no PLL student in a majority: SD only
    v, flags, _ = _verdict([_cell(UP, MIXED, DOWN), _cell(UP, UP, MIXED), _cell(MIXED, MIXED, UP)])
    assert flags["sd"] == [True, True, False] and flags["pll_ce"] == [False, True, False]
    assert v == "holds with a caveat: SD only"
    # the GCE student in 2 of 3 as well: holds; but not if c <= d on a data set
    cells = [_cell(UP, MIXED, UP), _cell(UP, DOWN, UP), _cell(DOWN, MIXED, MIXED)]
    assert _verdict(cells)[0] == "holds"
    assert _verdict(cells, blocks=(True, False))[0] == "fails"
    # exactly half is not a majority
    assert _verdict([_cell(UP, UP, UP), _cell(MIXED, MIXED, MIXED)])[0] == "fails"
    # below the teacher never counts as beating it
    assert _verdict([_cell(DOWN, DOWN, DOWN)])[0] == "fails"


def test_constructed_cells_render_their_intervals():
    _, _, lines = _verdict([_cell(UP, DOWN, MIXED, cleanlab=UP)])
    row = next(line for line in lines if line.startswith("| digits |"))
    assert "(+2.1 [+2.0, +2.2])" in row  # SD: mean 2.08 points, sd 0.084, t_(0.975, 4) 2.776 -> half 0.10
    assert "(-2.1 [-2.2, -2.0])" in row
    summary = next(line for line in lines if line.startswith("- Significantly above"))
    assert "SD in 1, PLL CE in 0, PLL GCE in 0, CleanLearning in 1" in summary


def test_printed_rule_is_the_verdict_function_docstring():
    text = (ROOT / "paper_checks.md").read_text()
    assert f"- Verdict rule: {rule_text(p6.verdict_p6)}" in text
    assert "CV-tuned teacher" in rule_text(p6.verdict_p6) and "CleanLearning" in rule_text(p6.verdict_p6)


def test_given_label_most_likely_at_the_boundary():
    # symmetric noise on K = 3 keeps 1 - eta on the true class and eta / 2 on each other: majority iff eta < 2/3
    assert p6.given_label_most_likely(noise_mod.noise_matrix("symmetric", 3, 0.6))
    assert not p6.given_label_most_likely(noise_mod.noise_matrix("symmetric", 3, 0.7))
    groups = [[0, 4, 6], [1, 2, 3, 5, 7, 8, 9]]
    assert p6.given_label_most_likely(noise_mod.noise_matrix("superclass", 10, 0.6, groups=groups))
    assert not p6.given_label_most_likely(noise_mod.noise_matrix("superclass", 10, 0.7, groups=groups))


def test_protocol_runs_do_not_depend_on_the_workers():
    wine = next(s for s in p6.CV_DATA if s.name == "wine")
    spec = p6.CvData(wine.name, wine.noises, (0.1, 1.0), wine.standardize, wine.test_size, wine.what)
    a = p6.run_cv(None, datasets=(spec,), etas=(0.4,), seeds=2, workers=1)
    b = p6.run_cv(None, datasets=(spec,), etas=(0.4,), seeds=2, workers=2)
    assert [c.runs for c in a.cells] == [c.runs for c in b.cells]
    assert a.sizes == b.sizes and a.valid_noise == b.valid_noise == 1
    assert a.cells[0].acc("teacher").shape == (2,)


