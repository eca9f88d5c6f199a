"""Tests of the finite-D study (`python -m sims.finite_dim`): the quick grid, its columns, agreement of the
theory with the Monte Carlo (and disagreement of the block model at small D/N), determinism, resume, bad
options."""

import csv
import json
import math

import pytest
from scipy.special import ndtri

from sims._cli import csv_text
from sims.studies import finite_dim as fds

# A tiny study for the byte-identity test: N = 40, K N lambda = 0.08 as in the default, one D below N
# (explicit features) and one above (Wishart sampler), 2 label draws x 2 samples.
TINY = fds.Study(n=10, lam=5e-4, settings=(("symmetric", 0.3), ("superclass", 0.2)), ratios=(0.5, 50.0),
                 label_draws=2, samples_per_draw=2, max_rounds=8, fresh_per_class=5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The --quick grid, run once (jobs 2) into a temporary folder, then once more from its cache."""
    out = tmp_path_factory.mktemp("fd_quick")
    with pytest.MonkeyPatch.context() as mp:
        # a stable cache key: edits to theory/ or sims/ during the session must not invalidate the cache
        mp.setattr(fds, "_code_fingerprint", lambda: "test")
        assert fds.main(["--quick", "--jobs", "2", "--no-progress", "--out", str(out)]) == 0
        first = {p.name: p.read_bytes() for p in out.glob("finite_dim_quick*.csv")}
        assert fds.main(["--quick", "--jobs", "1", "--no-progress", "--out", str(out)]) == 0
    return out, first


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_quick_grid_writes_the_documented_files_and_columns(quick):
    out, _ = quick
    for name in ("finite_dim_quick.csv", "finite_dim_quick_cells.csv", "finite_dim_quick.json", "finite_dim_quick.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "finite_dim_quick.csv") as fh:
        assert tuple(next(csv.reader(fh))) == fds.COLUMNS
    with open(out / "finite_dim_quick_cells.csv") as fh:
        assert tuple(next(csv.reader(fh))) == fds.CELL_COLUMNS
    study = fds.Study(**fds.QUICK).validate()
    rounds, cells = _read(out / "finite_dim_quick.csv"), _read(out / "finite_dim_quick_cells.csv")
    n_cells = len(study.settings) * len(study.ratios)
    assert len(cells) == n_cells and len(rounds) == n_cells * (study.max_rounds + 1)
    assert {int(c["samples"]) for c in cells} == {study.samples}
    summary = json.loads((out / "finite_dim_quick.json").read_text())
    assert summary["cells_total"] == n_cells
    assert summary["median_outside_interval"] == sum(c["median_outside"] == "true" for c in cells)
    assert sum(s["cells"] for s in summary["per_noise"].values()) == n_cells
    # the linear solves' residual (relative) is at round-off level
    assert summary["max_mc_residual"] <= 1e-10
    # CDFs are non-decreasing in the round, within [0, 1]
    for c in cells:
        rows = [r for r in rounds if (r["noise"], r["eta"], r["D"]) == (c["noise"], c["eta"], c["D"])]
        for key in ("first_cdf_pred", "first_cdf_obs"):
            v = [float(r[key]) for r in rows]
            assert all(0.0 <= a <= b <= 1.0 + 1e-12 for a, b in zip(v, v[1:]))


def test_resume_reads_every_unit_and_writes_the_same_bytes(quick):
    out, first = quick
    summary = json.loads((out / "finite_dim_quick.json").read_text())
    study = fds.Study(**fds.QUICK)
    assert summary["units_computed"] == 0
    assert summary["units_from_cache"] == len(study.ratios) * study.label_draws
    assert {p.name: p.read_bytes() for p in out.glob("finite_dim_quick*.csv")} == first


def test_theory_agrees_with_monte_carlo_where_the_block_model_does_not(quick):
    """Symmetric eta = 0.3 at D/N = 1.25 (D = 200 > N = 160): the finite-D theory's median first perfect
    round lies inside the Monte Carlo median's 95 % interval; the block model's (D = infinity) lies below
    it. Replacing the theory by the block model fails the first assertion."""
    out, _ = quick
    cells = _read(out / "finite_dim_quick_cells.csv")
    cell = next(c for c in cells if c["noise"] == "symmetric" and c["D"] == "200")
    lo, hi = int(cell["obs_median_lo"]), int(cell["obs_median_hi"])
    assert lo <= int(cell["pred_median"]) <= hi
    assert float(cell["block_first_median"]) < lo
    # KS distance of the first-round distributions: the 1 % critical value of the two-sided KS test with
    # S = 100 samples is 1.63 / sqrt(100) = 0.163 (conservative for discrete data); 0.2 leaves room for the
    # theory's neglected O(1/m) terms
    assert float(cell["ks"]) <= 0.2
    assert cell["median_outside"] == "false"


def test_accuracies_within_the_monte_carlo_error(quick):
    """Training and fresh accuracy, every cell and round: |theory - Monte Carlo mean| <= z SE + 2e-3.

    z: Bonferroni over all the checks at family level 1 % (a correct theory fails with probability
    <= 1 %); 2e-3 allows for the theory's approximations (O(1/m) Wishart corrections, the orthant
    probabilities' tolerance 1e-4) where the Monte Carlo spread is ~0 (accuracy 1 in every sample)."""
    out, _ = quick
    rows = _read(out / "finite_dim_quick.csv")
    checks = [(r, q) for r in rows for q in ("train", "fresh")]
    z = float(-ndtri(0.01 / (2 * len(checks))))
    bad = [(r["noise"], r["D"], r["round"], q) for r, q in checks
           if abs(float(r[f"{q}_accuracy_pred"]) - float(r[f"{q}_accuracy_obs"]))
           > z * float(r[f"{q}_accuracy_se"]) + 2e-3]
    assert not bad, bad
    # informative: at D < N the teacher does not reach training accuracy 1 and the theory says so
    cell = next(r for r in rows if r["noise"] == "symmetric" and r["D"] == "40" and r["round"] == "0")
    assert float(cell["train_accuracy_obs"]) < 0.99 and float(cell["train_accuracy_pred"]) < 0.99


def test_same_bytes_for_jobs_1_and_2(tmp_path, monkeypatch):
    monkeypatch.setattr(fds, "_code_fingerprint", lambda: "test")
    a = fds.run_study(TINY, jobs=1, cache_dir=tmp_path / "a", progress=False)
    b = fds.run_study(TINY, jobs=2, cache_dir=tmp_path / "b", progress=False)
    assert csv_text(a[0], fds.COLUMNS) == csv_text(b[0], fds.COLUMNS)
    assert csv_text(a[1], fds.CELL_COLUMNS) == csv_text(b[1], fds.CELL_COLUMNS)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    assert len(files) == len(TINY.ratios) * TINY.label_draws
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_median_interval_is_the_order_statistic_interval():
    # tabulated distribution-free 95 % interval for the median of 100 values: the 40th and 61st
    assert fds.median_interval(list(range(1, 101))) == (40.0, 61.0)
    # its coverage P(40 <= B <= 60), B ~ Binomial(100, 1/2), is >= 95 %; one rank narrower is below
    cover = lambda j, S: sum(math.comb(S, i) for i in range(j, S - j + 1)) / 2**S  # noqa: E731
    assert cover(40, 100) >= 0.95 > cover(41, 100)
    for S in (6, 17, 200):
        lo, hi = fds.median_interval(list(range(1, S + 1)))
        j = int(lo)
        assert hi == S + 1 - j and cover(j, S) >= 0.95 > cover(j + 1, S)
    assert fds.median_interval([3, 3, 3, 3, 3]) == (-math.inf, math.inf)  # P(B <= 0) = 1/32 > 0.025: no j


def test_quantiles_follow_the_least_t_rule():
    assert fds.quantiles([0.0, 0.05, 0.5, 0.95]) == {"median": 2, "q10": 2, "q90": 3}
    assert fds.quantiles([0.0, 0.2, 0.3]) == {"median": None, "q10": 1, "q90": None}


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--jobs", "0"], "--jobs == 0"),
        (["--jobs", "-3"], "--jobs"),
        (["--seed", "-1"], "seed (--seed) == -1"),
        (["--exact-draws", "-1"], "exact_draws (--exact-draws) == -1"),
        (["--exact-draws", "x"], "--exact-draws"),
        (["--jobs", "two"], "--jobs"),
        (["--bogus"], "unrecognized arguments"),
        (["--dask-scheduler", ""], "--dask-scheduler"),
    ],
)
def test_bad_options_give_one_line_and_status_2(tmp_path, capsys, args, fragment):
    try:
        status = fds.main(["--quick", "--no-progress", "--out", str(tmp_path / "o")] + args)
    except SystemExit as exc:  # argparse's own errors (OneLineParser.error)
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and err.startswith("python -m sims.finite_dim: error: ")
    assert not (tmp_path / "o" / "cache").exists()  # rejected before any computing


def test_out_under_a_file_is_rejected(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert fds.main(["--quick", "--out", str(f / "sub")]) == 2
    err = capsys.readouterr().err
    assert "lies under the file" in err and err.count("\n") == 1


def test_exact_level_fields_and_totals(quick):
    """Every quick cell has its exact-softmax samples (the first Gram sample of each of the first 6 draws),
    converged fits, a 95 % interval of the exact median, and the JSON totals recount the cells."""
    out, _ = quick
    cells = _read(out / "finite_dim_quick_cells.csv")
    study = fds.Study(**fds.QUICK)
    assert all(int(c["exact_samples"]) == study.exact_draws for c in cells)
    assert all(float(c["max_exact_residual"]) <= 1e-8 for c in cells)  # the exact solvers' stopping rule
    assert all(c["pred_outside_exact"] in ("true", "false") for c in cells)  # a bound beyond R is written empty
    ex = json.loads((out / "finite_dim_quick.json").read_text())["exact"]
    assert ex["cells"] == ex["cells_with_interval"] == len(cells)
    assert ex["pred_outside_exact_interval"] == sum(c["pred_outside_exact"] == "true" for c in cells)
    assert ex["combined_outside_exact_interval"] == sum(c["combined_outside_exact"] == "true" for c in cells)
    assert ex["max_lag"] == max(float(c["exact_lag_max"]) for c in cells)
    # the exact softmax lags the linearised fits somewhere on this grid (the block model's exact level lags too)
    assert ex["max_lag"] > 0
    # the exact-level theory (theory.finite_dim_exact): one calibrated row per exact draw, its totals recounted
    assert all(int(c["exact_theory_draws"]) == study.exact_draws for c in cells)
    assert ex["exact_theory_outside_exact_interval"] == sum(c["exact_theory_outside_exact"] == "true" for c in cells)
    assert ex["uncalibrated_draws"] == sum(int(c["exact_theory_uncalibrated"]) for c in cells)
    assert all(0.3 < float(c["lam_eff_ratio_mean"]) < 1.0 for c in cells)  # the exact level lags: a smaller ridge


def test_exact_level_theory_inside_the_exact_interval_where_the_linearised_theory_is_not(quick):
    """On the quick grid's seeded samples (6 exact samples per cell: the 95 % interval is their full range)
    the exact-level theory's median is inside the exact softmax's interval in every cell, while the linearised
    theory's is outside it in some (so the comparison could fail), and at D/N = 1e5 it equals the exact
    median to within one round."""
    out, _ = quick
    cells = _read(out / "finite_dim_quick_cells.csv")
    assert all(c["exact_theory_outside_exact"] == "false" for c in cells)
    assert any(c["pred_outside_exact"] == "true" for c in cells)
    for c in cells:
        if float(c["D_over_N"]) == 1e5 and c["exact_median"] != "":
            assert abs(int(c["exact_theory_median"]) - int(c["exact_median"])) <= 1


def test_exact_and_linearised_agree_on_every_sample_where_the_logits_are_small():
    """lambda = 0.5 (K N lambda = 20): the outputs stay near uniform, where the softmax is its linearisation,
    and the verdicts (scale-free in the linear model) agree sample by sample: the pairing of exact and
    linearised rows is by (setting, D, draw, sample). Informative: some samples are perfect at round 0 or 1,
    some never within the 8 rounds."""
    st = fds.Study(n=10, lam=0.5, settings=(("symmetric", 0.3), ("superclass", 0.2)), ratios=(0.5, 50.0),
                   label_draws=6, samples_per_draw=1, max_rounds=8, fresh_per_class=5, exact_draws=6)
    rows = [r for D in st.dims for b in range(st.label_draws) for r in fds.run_unit(st, D, b)]
    lin = {(r["noise"], r["D"], r["draw"], r["sample"]): r["first"] for r in rows if r["kind"] == "mc"}
    ex = [r for r in rows if r["kind"] == "exact"]
    assert len(ex) == len(st.settings) * len(st.dims) * st.exact_draws
    pairs = [(r["first"], lin[(r["noise"], r["D"], r["draw"], r["sample"])]) for r in ex]
    assert all(a == b for a, b in pairs), pairs
    firsts = [a for a, _ in pairs]
    assert None in firsts and 0 in firsts and 1 in firsts
    _, cells = fds._cells(st, sorted(rows, key=fds._sort_key))
    assert all(c["exact_lag_min"] == c["exact_lag_max"] == 0.0 for c in cells)


def test_block_exact_lag_is_none_without_whole_expected_counts():
    # symmetric eta = 0.1 at K = 4, n = 100 (a default setting): C * n = 3.33 off the diagonal, no exact counts;
    # eta = 0.3 gives whole counts and a certified round
    from sims.engine import noise as noise_mod

    study = fds.Study()
    assert fds._block_exact(study, noise_mod.noise_matrix("symmetric", study.K, 0.1)) is None
    assert isinstance(fds._block_exact(study, noise_mod.noise_matrix("symmetric", study.K, 0.3)), int)
