"""Tests of the PLL-on-the-mixture analysis (sims.pll_mixture)."""

import numpy as np
import pytest

from sims.studies import pll_mixture as pm
from tests.theorems.strategies import raises_naming


def _run(D, seed=0):
    return pm.pll_mixture_run(D, np.random.default_rng(seed), fresh_per_class=100)


def test_small_D_student_worse_than_teacher_and_errors_pick_the_runner_up():
    r = _run(100)
    assert r["teacher_train"] == 1.0 and r["teacher_top_is_true"] == 1.0
    assert r["pll_train"] < 0.9  # about 70 % at D = 100 (seed-dependent; 70.3 % over 5 seeds)
    # every wrong student prediction is accounted for by the runner-up or another wrong class
    assert r["share_argmax_runner_up"] + r["share_argmax_other_wrong"] == pytest.approx(1.0 - r["pll_train"], abs=1e-12)
    assert r["share_argmax_runner_up"] > r["share_argmax_other_wrong"]
    assert r["pll_fresh"] < r["teacher_fresh"]
    assert r["residual"] <= 1e-9  # solver tolerance 1e-10, 10x slack


def test_limit_is_perfect_and_the_deviation_shrinks_like_one_over_sqrt_D():
    small, large = _run(1000, seed=1), _run(100_000, seed=1)
    for r in (small, large):
        # in the D -> infinity limit (exact block Gram, same targets) every instance keeps a positive margin
        assert r["limit_margin_min"] > 0
        assert r["linear_limit_margin_mean"] > 0
    # deviation std ~ D^(-1/2): a factor 100 in D gives a factor 10; allow 2x either way for one sample
    ratio = small["deviation_std"] / large["deviation_std"]
    assert 5 < ratio < 20
    assert large["pll_train"] == 1.0
    # fresh-logit noise ~ D^(-1/2) as well (same tolerance)
    assert 5 < small["pll_fresh_noise_std"] / large["pll_fresh_noise_std"] < 20
    # the PLL student's residual varies within classes (random runner-up in the targets), the teacher's hardly
    assert large["pll_residual_within_rms"] > 10 * large["teacher_residual_within_rms"]


def test_analysis_aggregates_and_validates():
    res = pm.pll_mixture_analysis((1000, 20_000, 40_000), seeds=1, fresh_per_class=20)
    assert [p["D"] for p in res["per_dim"]] == [1000, 20_000, 40_000]
    assert res["slopes"]["fit_range_D"] == [2000, 40_000]
    assert res["slopes"]["deviation_std"] is not None
    with raises_naming("seeds", "0"):
        pm.pll_mixture_analysis((1000,), seeds=0)
    with raises_naming("D", "0"):
        pm.pll_mixture_analysis((0,), seeds=1)


def test_cli_bad_dims_one_line_error(capsys):
    assert pm.main(["--dims", "10,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m sims.pll_mixture: error: --dims") and err.count("\n") == 1
    assert pm.main(["--seeds", "0", "--json"]) == 2
