"""Input validation of every public function of theory, as one contract (machinery: tests/contract.py).

For every public function (``theory.__all__`` and the ``__all__`` of the modules
listed in MODULES) the table below holds a valid call and, per parameter, a few
invalid values (wrong type, NaN or infinity, out of range, wrong shape). Each
invalid value must raise ValueError or TypeError whose message names the
parameter and shows the value received (for arrays: the offending shape or
entry). The wording around them is free. A second test makes sure the table
lists every public function and every parameter, so that a new public function
or parameter without an entry fails here. The engine's public functions have the
same contract in tests/sims/test_public_functions.py.

Specific boundaries that decide a result (accepted vs rejected at the edge of a
range or tolerance) are tested next to the module they belong to.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

import theory
import theory.exact_gap
import theory.exact_level
import theory.finite_dim as fd
import theory.finite_dim_aniso as fda
import theory.finite_dim_classes as fdc
import theory.finite_dim_classes_pll as fdcp
import theory.finite_dim_exact as fde
import theory.finite_dim_pll as fdp
import theory.predictions
import theory.validate
from tests.contract import BLOCK_BAD, INF, NAN, SHARE_BAD, Bad, assert_table_complete, choices, contract_tests
from tests.contract import ints as _ints
from tests.contract import reals as _reals
from theory import validate as V

MODULES = ("block_model", "conditions", "corruption", "predictions", "pll", "exact_level", "exact_gap", "finite_dim",
           "finite_dim_pll", "finite_dim_aniso", "finite_dim_classes", "finite_dim_classes_pll", "finite_dim_exact", "validate")


# block model K = 3, n = 4
B = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)
C3 = theory.symmetric(3, 0.25)
COUNTS = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]])
PAIRS = theory.exact_label_counts(theory.superclass(4, 0.25), 4)  # K = 4, n = 4, superclass pairs



def _matrix_bad(name, K=3):
    """Corruption-matrix-like parameter (K x K, non-negative, rows summing to 1)."""
    neg = np.array(C3, dtype=float)
    neg[0, 1], neg[0, 0] = -0.125, neg[0, 0] + 0.125 + neg[0, 1]
    rowsum = np.array(C3, dtype=float)
    rowsum[2, 2] -= 0.125  # row 2 sums to 0.875
    nan = np.array(C3, dtype=float)
    nan[1, 1] = NAN
    return [
        Bad(theory.symmetric(2, 0.25), shows="(2, 2)"),
        Bad(np.ones((3, 3, 1)) / 3, shows="(3, 3, 1)"),
        Bad(neg, shows="-0.125"),
        Bad(rowsum, shows="0.875"),
        Bad(nan, shows="finite"),
        Bad("abc"),
    ]


def _counts_bad(n=4):
    neg = COUNTS.copy()
    neg[0, 0], neg[0, 2] = 5, -1
    half = COUNTS.astype(float)
    half[1, 0], half[1, 1] = 0.5, 3.5
    short = COUNTS.copy()
    short[2, 0] = 0  # row 2 sums to 3
    return [
        Bad(np.eye(2, dtype=int) * n, shows="(2, 2)"),
        Bad(np.ones((3, 4), dtype=int), shows="(3, 4)"),
        Bad(neg, shows="-1"),
        Bad(half, shows="0.5"),
        Bad(short, shows=" 3"),
        Bad("abc", shows="()"),
    ]


def _rounds_bad(minimum=0):
    return _ints(minimum)


def _class_bad(K):
    """A class index of K classes: wrong type, one below 0, one past K - 1, far out on both sides."""
    return [Bad("1"), Bad(0.5), Bad(True), Bad(NAN), Bad(-1), Bad(K), Bad(K + 7), Bad(-8)]


_choice_bad = choices


def _cell(**extra):
    return {**B, "counts": COUNTS, **extra}


def _bad_of(*params, **more):
    return {**{p: BLOCK_BAD[p] for p in params}, **more}


BLOCK5 = ("K", "n", "c", "d", "lam")
OVERALL = C3.mean(axis=0)
OVERALL_BAD = [Bad(np.ones(3) / 2, shows="(3,)"), Bad(np.ones(2) / 2, shows="(2,)"), Bad(np.full(3, NAN), shows="(3,)")]
TARGETS_BAD = [
    Bad(np.eye(3), shows="(3, 3)"),
    Bad(np.zeros((2, 2, 2)), shows="(2, 2, 2)"),
    Bad(np.full((3, 3, 3), NAN), shows="finite"),
    Bad(np.full((3, 3, 3), INF), shows="finite"),
    Bad("abc"),
]

# finite-D model: K = 2, n = 3, noise dimension D = 10
FD = dict(K=2, n=3, c=0.4, d=0.1, lam=1e-3, D=10.0)
FD_COUNTS = np.array([[3, 0], [1, 2]])
FD_BAD = {
    "K": _ints(2),
    "n": _ints(2),
    "c": _reals(1.0, 1.25),
    "d": _reals(0.4, 0.75, -0.9),  # d >= c, and below the PSD limit (-0.6 for K = 2, n = 3, c = 0.4)
    "lam": _reals(0.0, -0.25),
    "D": [Bad("10"), Bad(True), Bad(NAN), Bad(-INF), Bad(0.0), Bad(-3.0)],
}
FD_COUNTS_BAD = [
    Bad(np.array([[3, 0], [1, 1]]), shows=" 2"),
    Bad(np.array([[1, 1, 1], [0, 3, 0], [0, 0, 3]]), shows="(3, 3)"),
    Bad(np.array([[4, -1], [1, 2]]), shows="-1"),
    Bad(np.array([[2.5, 0.5], [1.0, 2.0]]), shows="2.5"),
    Bad("abc", shows="()"),
]

# anisotropic noise: eigenvalues of Sigma (two levels, one repeated)
SIG = np.array([0.02, 0.02, 0.1])
SIG_BAD = [
    Bad("abc"),
    Bad(np.array([0.02, NAN]), shows="finite"),
    Bad(np.ones((2, 2)) / 10, shows="(2, 2)"),
    Bad(np.zeros(0), shows="(0,)"),
    Bad(np.array([0.02, -0.25]), shows="-0.25"),
]

# Gaussian classes: K = 2 means in D = 3, the two-level Sigma above, n = 3 (the finite-D counts)
MEANS = np.array([[0.3, 0.0, 0.1], [0.0, 0.3, 0.1]])
CLS = dict(means=MEANS, sigma=np.diag(SIG), n=3, lam=1e-2, rounds=2)
CLS_BAD = {
    "means": [Bad("abc"), Bad(np.ones(3), shows="(3,)"), Bad(np.zeros((1, 3)), shows="(1, 3)"),
              Bad(np.full((2, 3), NAN), shows="finite")],
    "sigma": [Bad("abc"), Bad(np.eye(2), shows="(2, 2)"), Bad(np.array([[0.1, 0.05, 0.0], [0.04, 0.1, 0.0], [0.0, 0.0, 0.1]]),
              shows="symmetric"), Bad(np.diag([0.1, -0.25, 0.1]), shows="-0.25"), Bad(np.full((3, 3), INF), shows="finite")],
    "n": _ints(2),
    "lam": _reals(0.0, -0.25),
    "rounds": _rounds_bad(),
}
OTHER_FILTERS = fdc.classes_filters(MEANS, np.diag(SIG), 3, 2e-2, 2)

# function -> (valid keyword arguments, {parameter: [Bad, ...]}, {parameter as reported: name in the message})
TABLE = {
    # theory.block_model
    theory.block_eigenvalues: (dict(K=3, n=4, c=0.4, d=0.1), _bad_of("K", "n", "c", "d")),
    theory.filters: (B, _bad_of(*BLOCK5)),
    theory.filters_exact: (B, _bad_of(*BLOCK5)),
    theory.block_gram: (dict(K=3, n=4, c=0.4, d=0.1), _bad_of("K", "n", "c", "d")),
    theory.block_projectors: (dict(K=3, n=4), _bad_of("K", "n")),
    theory.label_averaging_operator: (
        dict(G=theory.block_gram(2, 2, 0.4, 0.1), K=2, lam=1e-3),
        _bad_of(
            "K",
            "lam",
            G=[
                Bad(np.zeros((2, 3)), shows="(2, 3)"),
                Bad(np.ones((2, 2, 2)), shows="(2, 2, 2)"),
                Bad(np.array([[1.0, 0.5], [0.0, 1.0]]), shows="symmetric"),
                Bad(np.array([[1.0, 2.0], [2.0, 1.0]]), shows="-1"),
                Bad(np.array([[1.0, NAN], [NAN, 1.0]]), shows="finite"),
            ],
        ),
    ),
    theory.spectral_operator: ({**B, "t": 2}, _bad_of(*BLOCK5, t=_rounds_bad())),
    # theory.conditions
    theory.is_balanced: (dict(C=C3), dict(C=_matrix_bad("C")[1:] + [Bad([[1.0]], shows="(1, 1)")])),
    theory.balanced_condition: (dict(C=C3), dict(C=_matrix_bad("C")[1:] + [Bad([[1.0]], shows="(1, 1)")])),
    theory.rounds_report: ({**B, "C": C3}, _bad_of(*BLOCK5, C=_matrix_bad("C"))),
    theory.min_rounds: ({**B, "C": C3}, _bad_of(*BLOCK5, C=_matrix_bad("C"))),
    theory.min_rounds_balanced: ({**B, "C": C3}, _bad_of(*BLOCK5, C=_matrix_bad("C"))),
    theory.noisy_threshold_fits: (
        {**B, "Ckk": 0.75, "Ckl": 0.125},
        _bad_of(*BLOCK5, Ckk=_reals(*SHARE_BAD), Ckl=_reals(*SHARE_BAD)),
    ),
    theory.correct_types: ({**B, "C": C3, "t": 2}, _bad_of(*BLOCK5, C=_matrix_bad("C"), t=_rounds_bad())),
    theory.all_correct: ({**B, "C": C3, "t": 2}, _bad_of(*BLOCK5, C=_matrix_bad("C"), t=_rounds_bad())),
    theory.train_accuracy: ({**B, "C": C3, "t": 2}, _bad_of(*BLOCK5, C=_matrix_bad("C"), t=_rounds_bad())),
    theory.population_accuracy: ({**B, "C": C3, "t": 2}, _bad_of(*BLOCK5, C=_matrix_bad("C"), t=_rounds_bad())),
    theory.noise_threshold: (
        dict(noise="superclass", K=4, superclass_size=2),
        dict(noise=_choice_bad("pairflip", "Symmetric"), K=_ints(2), superclass_size=_ints(2) + [Bad(3), Bad(5)]),
    ),
    # theory.corruption
    theory.symmetric: (dict(K=3, eta=0.25), dict(K=_ints(2), eta=_reals(*SHARE_BAD))),
    theory.asymmetric: (dict(K=3, eta=0.25), dict(K=_ints(2), eta=_reals(*SHARE_BAD))),
    theory.superclass: (
        dict(K=4, eta=0.25, size=2, groups=None),
        dict(
            K=_ints(2),
            eta=_reals(*SHARE_BAD),
            size=_ints(2) + [Bad(3), Bad(5)],
            groups=[Bad([[0, 1], [2]]), Bad([[0, 1], [2], [3]]), Bad([[0, 1], [1, 2, 3]])],
        ),
    ),
    theory.superclass_groups: (dict(K=4, size=2), dict(K=_ints(2), size=_ints(2) + [Bad(3), Bad(5)])),
    theory.corruption_matrix: (
        dict(noise="superclass", K=4, eta=0.25, superclass_size=2),
        dict(
            noise=[Bad("pairflip", shows=("'pairflip'", "symmetric, asymmetric, superclass")), *_choice_bad("Superclass")],
            K=_ints(2),
            eta=_reals(*SHARE_BAD),
            superclass_size=_ints(2) + [Bad(3), Bad(5)],
        ),
    ),
    theory.exact_label_counts: (
        dict(C=C3, n=8),
        dict(C=_matrix_bad("C")[1:] + [Bad([[1.0]], shows="(1, 1)"), Bad(theory.symmetric(3, 0.3), shows="5.6")], n=_ints(1) + [Bad(3)]),
    ),
    theory.counts_from_labels: (
        dict(true_labels=[0, 1, 1], given_labels=[0, 1, 0], K=2),
        dict(
            true_labels=[Bad([0, 2, 1], shows="2"), Bad([0, -5, 1], shows="-5"), Bad([[0, 1, 1]], shows="(1, 3)"), Bad([0, 1], shows="(2,)")],
            given_labels=[Bad([0, 7, 1], shows="7"), Bad([0, -5, 1], shows="-5"), Bad([[0, 1, 1]], shows="(1, 3)"), Bad([0, 1], shows="(2,)")],
            K=_ints(2),
        ),
    ),
    theory.empirical_corruption: (
        dict(counts=COUNTS),
        dict(counts=_counts_bad()[1:4] + [Bad(np.array([[1, 0], [0, 0]]), shows="no instances"), Bad("abc", shows="()")]),
    ),
    # theory.predictions
    theory.predictions.one_hot_type_targets: (dict(K=3), dict(K=_ints(2))),
    theory.outputs_for_targets: (
        {**B, "C": C3, "targets": theory.predictions.one_hot_type_targets(3), "t": 2},
        _bad_of(
            *BLOCK5,
            C=_matrix_bad("C"),
            targets=[Bad(np.zeros((3, 3)), shows="(3, 3)"), Bad(np.zeros((2, 2, 2)), shows="(2, 2, 2)")],
            t=_rounds_bad(),
        ),
    ),
    theory.type_outputs: ({**B, "C": C3, "t": 2}, _bad_of(*BLOCK5, C=_matrix_bad("C"), t=_rounds_bad())),
    theory.instance_outputs: (
        {**B, "given_labels": np.repeat(np.arange(3), 4), "t": 2},
        _bad_of(
            *BLOCK5,
            given_labels=[Bad(np.zeros(5, dtype=int), shows=("(5,)", "(12,)")), Bad(np.r_[np.zeros(11, dtype=int), 7], shows=("7", "[0, 2]")),
                          Bad(np.r_[np.zeros(11, dtype=int), -5], shows="-5")],
            t=_rounds_bad(),
        ),
    ),
    theory.predictions.margin_terms: (
        {**B, "C": C3, "targets": None, "winner": None},
        _bad_of(*BLOCK5, C=_matrix_bad("C"), targets=TARGETS_BAD, winner=_class_bad(3)),
    ),
    theory.fresh_logits: (
        {**B, "class_mean": C3, "overall": OVERALL, "t": 2},
        _bad_of(
            *BLOCK5,
            class_mean=_matrix_bad("class_mean"),
            overall=OVERALL_BAD,
            t=_rounds_bad(),
        ),
    ),
    theory.predictions.fresh_margin_sign: (
        {**B, "class_mean": C3, "overall": OVERALL, "t": 2, "k": 0, "j": 1},
        _bad_of(*BLOCK5, class_mean=_matrix_bad("class_mean"), overall=OVERALL_BAD, t=_rounds_bad(), k=_class_bad(3), j=_class_bad(3)),
    ),
    theory.clustering_ratio: ({**B, "t": 2}, _bad_of(*BLOCK5, t=_rounds_bad())),
    # theory.pll
    theory.pll_targets: (
        dict(scores=[0.3, 0.2, 0.1], ties="share"),
        dict(
            scores=[Bad([1.0], shows="1"), Bad([NAN, 0.2, 0.3], shows="nan"), Bad([INF, 0.2, 0.3], shows="inf")],
            ties=_choice_bad("random", "Share"),
        ),
    ),
    theory.pll_analysis: (
        {**B, "C": C3, "ties": "share"},
        _bad_of(*BLOCK5, C=_matrix_bad("C"), ties=_choice_bad("random", "Lowest")),
    ),
    # theory.exact_level
    theory.exact_level.mixing_matrix: (_cell(), _bad_of(*BLOCK5, counts=_counts_bad())),
    theory.exact_level.solve_reduced: (
        _cell(targets=theory.predictions.one_hot_type_targets(3), r0=None, tol=1e-13, max_iter=100),
        _bad_of(
            *BLOCK5,
            counts=_counts_bad(),
            targets=[Bad(np.eye(3), shows="(3, 3)"), Bad(np.zeros((2, 2, 2)), shows="(2, 2, 2)")],
            # COUNTS has 5 present types: r0 is (5, 3)
            r0=[Bad(np.zeros((3, 3)), shows="(3, 3)"), Bad(np.zeros(15), shows="(15,)"), Bad(np.full((5, 3), NAN), shows="finite"), Bad("abc")],
            tol=_reals(-1e-13, -5e-324),
            max_iter=_ints(0),
        ),
    ),
    theory.certified_rounds: (
        _cell(rounds=1, prec=64, max_prec=128, full=False),
        _bad_of(
            *BLOCK5,
            counts=_counts_bad(),
            rounds=_rounds_bad(),
            prec=_ints(53),
            max_prec=_ints(53) + [Bad(63)],
            full=[Bad(1), Bad(0), Bad("yes"), Bad(None)],
        ),
    ),
    theory.min_rounds_exact: (_cell(rounds=3), _bad_of(*BLOCK5, counts=_counts_bad(), rounds=_rounds_bad())),
    theory.exact_boundary: (
        dict(K=4, n=4, c=0.4, d=0.1, lam=1e-3, noise="superclass", etas=[0.25], rounds=2, superclass_size=2),
        _bad_of(
            *BLOCK5,
            noise=_choice_bad("pairflip"),
            etas=[Bad([1.5], shows="1.5"), Bad([NAN], shows="nan"), Bad([0.25, -0.5], shows="-0.5")],
            rounds=_rounds_bad(),
            superclass_size=_ints(2) + [Bad(3)],
        ),
    ),
    # theory.exact_gap
    theory.exact_gap.active_classes: (
        dict(counts=COUNTS),
        dict(counts=_counts_bad()[1:4] + [Bad(np.array([[1, 0], [0, 0]]), shows="no instances"), Bad("abc", shows="()")]),
    ),
    theory.exact_gap.active_set_rounds: (_cell(), _bad_of(*BLOCK5, counts=_counts_bad())),
    theory.exact_gap.decoupled_rounds: (
        dict(K=4, n=4, c=0.4, d=0.1, lam=1e-3, counts=PAIRS, rounds=3),
        _bad_of(*BLOCK5, counts=_counts_bad(), rounds=_rounds_bad()),
    ),
    theory.exact_gap.operating_point_rounds: (
        dict(K=4, n=4, c=0.4, d=0.1, lam=1e-3, counts=PAIRS, rounds=3),
        _bad_of(*BLOCK5, counts=_counts_bad(), rounds=_rounds_bad()),
    ),
    theory.exact_gap.pair_formula_rounds: (
        dict(K=4, n=4, c=0.4, d=0.1, lam=1e-3, counts=PAIRS),
        _bad_of(*BLOCK5, counts=_counts_bad()),
    ),
    theory.exact_gap.gap_table: (
        dict(K=4, n=4, c=0.4, d=0.1, lam=1e-3, noise="superclass", etas=[0.25], rounds=2, superclass_size=2),
        _bad_of(
            *BLOCK5,
            noise=_choice_bad("pairflip"),
            etas=[Bad([1.5], shows="1.5"), Bad([NAN], shows="nan"), Bad([0.25, -0.5], shows="-0.5")],
            rounds=_rounds_bad(),
            superclass_size=_ints(2) + [Bad(3)],
        ),
    ),
    # theory.finite_dim (K = 2, n = 3, D = 10, two rounds: a few milliseconds per valid call)
    fd.mp_average: (
        dict(funcs=lambda x: np.vstack([x, x * x]), ratio=0.5, quad_tol=1e-12, order=64),
        dict(ratio=_reals(0.0, -0.5), quad_tol=_reals(0.0, -1e-12), order=_ints(8)),
    ),
    fd.mp_stieltjes: (
        dict(z=-1.0 + 0.5j, ratio=0.5, scale=0.6),
        dict(
            z=[Bad("abc"), Bad(complex(NAN, 0.0), shows="finite"), Bad(np.array([1.0 + 1.0j, INF]), shows="finite")],
            ratio=_reals(0.0, -0.5),
            scale=_reals(0.0, -0.6),
        ),
    ),
    fd.within_spectrum: (
        dict(K=2, n=3, c=0.4, lam=1e-3, D=10.0, rounds=2, quad_tol=1e-12),
        dict(K=_ints(2), n=_ints(2), c=FD_BAD["c"], lam=FD_BAD["lam"], D=FD_BAD["D"], rounds=_rounds_bad(), quad_tol=_reals(0.0, -1e-12)),
    ),
    fd.spike_filters: (
        {**FD, "rounds": 2, "tol": 1e-12},
        {**FD_BAD, "n": _ints(1), "rounds": _rounds_bad(), "tol": _reals(0.0, -1e-12)},
    ),
    fd.margin_moments: (
        {**FD, "counts": FD_COUNTS, "t": 2, "quad_tol": 1e-12},
        {**FD_BAD, "counts": FD_COUNTS_BAD, "t": _rounds_bad(), "quad_tol": _reals(0.0, -1e-12)},
    ),
    fd.orthant_probability: (
        dict(mean=np.array([0.3, 0.2]), cov=np.array([[0.04, 0.01], [0.01, 0.09]]), tol=1e-3, seed=12345, max_points=1 << 16),
        dict(
            mean=[Bad("abc"), Bad(np.array([NAN, 0.2]), shows="finite"), Bad(0.3, shows="()"), Bad(np.zeros(0), shows="(0,)")],
            cov=[Bad(np.eye(3), shows="(3, 3)"), Bad(np.full((2, 2), NAN), shows="finite"), Bad("abc")],
            tol=_reals(0.0, -1e-3),
            seed=_ints(0),
            max_points=_ints(1),
        ),
    ),
    fd.first_perfect_quantiles: (
        dict(cdf=[0.0, 0.4, 0.95], block_round=1),
        dict(
            cdf=[Bad("abc"), Bad([0.1, NAN], shows="finite"), Bad([[0.1, 0.5]], shows="(1, 2)"), Bad([], shows="(0,)")],
            block_round=[Bad("1"), Bad(0.5), Bad(True), Bad(NAN), Bad(-1), Bad(-8)],
        ),
    ),
    fd.finite_dim_prediction: (
        {**FD, "counts": FD_COUNTS, "rounds": 2, "quad_tol": 1e-12, "prob_tol": 1e-5, "probabilities": True,
         "leak": True},
        {
            **FD_BAD,
            "counts": FD_COUNTS_BAD,
            "rounds": _rounds_bad(),
            "quad_tol": _reals(0.0, -1e-12),
            "prob_tol": _reals(0.0, -1e-5),
            "probabilities": [Bad(1), Bad(0), Bad("yes"), Bad(None)],
            "leak": [Bad(1), Bad(0), Bad("yes"), Bad(None)],
        },
    ),
    # theory.finite_dim_pll: D must be finite (D = infinity is theory.pll_analysis)
    fdp.pll_finite_dim: (
        {**FD, "counts": FD_COUNTS, "prob_tol": 1e-4, "quad_tol": 1e-12},
        {
            **FD_BAD,
            "D": FD_BAD["D"] + [Bad(INF)],
            "counts": FD_COUNTS_BAD,
            "prob_tol": _reals(0.0, -1e-4),
            "quad_tol": _reals(0.0, -1e-12),
        },
    ),
    # theory.finite_dim_aniso: a two-level noise spectrum, m = 5 contrasts
    fda.silverstein_stieltjes: (
        dict(z=np.array([0.3 + 0.2j, -0.1 - 0.5j]), sigma=SIG, m=5, iters=400),
        dict(
            z=[Bad("abc"), Bad(complex(NAN, 0.0), shows="finite"), Bad(np.array([1.0 + 1.0j, INF]), shows="finite")],
            sigma=SIG_BAD,
            m=_ints(1),
            iters=_ints(0),
        ),
    ),
    fda.contour_nodes: (
        dict(q=8, mu=0.05, right=2.0),
        dict(q=_ints(1), mu=_reals(0.0, -0.25), right=[Bad(NAN), Bad("abc"), Bad(-0.025, shows="-mu/2"), Bad(-1.0, shows="-mu/2")]),
    ),
    fda.aniso_average: (
        dict(funcs=lambda z: np.vstack([z, z * z]), sigma=SIG, m=5, mu=0.05, tol=1e-11),
        dict(sigma=SIG_BAD, m=_ints(1), mu=_reals(0.0, -0.25), tol=_reals(0.0, -1e-11)),
    ),
    fda.aniso_within_spectrum: (
        dict(sigma=SIG, m=5, lam_mu=0.05, rounds=2, tol=1e-11),
        dict(sigma=SIG_BAD, m=_ints(3), lam_mu=_reals(0.0, -0.25), rounds=_rounds_bad(), tol=_reals(0.0, -1e-11)),
    ),
    # theory.finite_dim_classes
    fdc.classes_resolvent: (
        dict(z=np.array([0.3 + 0.2j, -0.1 - 0.5j]), mv=MEANS, sigma=SIG, n=3),
        dict(
            z=[Bad("abc"), Bad(complex(NAN, 0.0), shows="finite"), Bad(np.array([1.0 + 1.0j, INF]), shows="finite")],
            mv=[Bad("abc"), Bad(np.ones(3), shows="(3,)"), Bad(np.full((2, 3), NAN), shows="finite")],
            sigma=SIG_BAD + [Bad(np.array([0.1, 0.2]), shows="(2,)")],
            n=_ints(1),
        ),
    ),
    fdc.classes_filters: (
        dict(**CLS, tol=1e-10),
        dict(**CLS_BAD, tol=_reals(0.0, -1e-10)),
    ),
    fdc.classes_prediction: (
        dict(means=MEANS, sigma=np.diag(SIG), n=3, counts=FD_COUNTS, lam=1e-2, rounds=2, tol=1e-10, prob_tol=1e-3,
             filters=None),
        dict(**CLS_BAD, counts=FD_COUNTS_BAD, tol=_reals(0.0, -1e-10), prob_tol=_reals(0.0, -1e-3),
             filters=[Bad("abc"), Bad(OTHER_FILTERS, shows="filters were computed")]),
    ),
    fdcp.classes_pll: (
        dict(means=MEANS, sigma=np.diag(SIG), n=3, counts=FD_COUNTS, lam=1e-2, tol=1e-10, prob_tol=5e-3, filters=None,
             seed=0),
        dict(**{k: v for k, v in CLS_BAD.items() if k != "rounds"}, counts=FD_COUNTS_BAD, tol=_reals(0.0, -1e-10),
             prob_tol=_reals(0.0, -1e-3), filters=[Bad("abc"), Bad(OTHER_FILTERS, shows="filters were computed")],
             seed=_ints(0)),
    ),
    # theory.finite_dim_exact (K = 2, n = 3: not perfect within 3 rounds, so no calibration; inputs checked anyway)
    fde.effective_lambda: (
        {**{k: FD[k] for k in BLOCK5}, "counts": FD_COUNTS, "rounds": 3, "rel_tol": 1e-3},
        {**{k: FD_BAD[k] for k in BLOCK5}, "counts": FD_COUNTS_BAD, "rounds": _rounds_bad(),
         "rel_tol": _reals(0.0, -1e-3, 1.0, 1.5)},
    ),
    fde.exact_finite_dim_prediction: (
        {**FD, "counts": FD_COUNTS, "rounds": 3, "prob_tol": 1e-4, "calibration": None},
        {**FD_BAD, "counts": FD_COUNTS_BAD, "rounds": _rounds_bad(), "prob_tol": _reals(0.0, -1e-4),
         "calibration": [Bad("abc"), Bad(1e-3, shows="EffectiveLambda")]},
    ),
    # theory.validate: the parameter is reported under the name passed in
    theory.validate.check_int: (dict(name="gamma", value=3, minimum=2, maximum=5), dict(value=[Bad("3"), Bad(2.5), Bad(True), Bad(False), Bad(NAN), Bad(1), Bad(6)])),
    theory.validate.check_real: (dict(name="gamma", value=0.5), dict(value=_reals())),
    theory.validate.check_positive: (dict(name="gamma", value=0.5), dict(value=_reals(0.0, -0.0, -0.25))),
    theory.validate.check_fraction: (dict(name="gamma", value=0.5), dict(value=_reals(*SHARE_BAD))),
    theory.validate.check_rounds: (dict(name="gamma", value=3), dict(value=_rounds_bad())),
    theory.validate.check_bool: (dict(name="gamma", value=True), dict(value=[Bad(1), Bad(0), Bad("True"), Bad(None), Bad(NAN)])),
    theory.validate.check_block_correlations: (dict(K=3, n=4, c=0.4, d=0.1), _bad_of("c", "d")),
    theory.validate.check_corruption_matrix: (dict(C=C3, K=3, name="gamma"), dict(C=_matrix_bad("gamma"))),
    theory.validate.check_label_counts: (dict(counts=COUNTS, n=4, name="gamma"), dict(counts=_counts_bad()[1:])),
    theory.validate.check_within_correlation: (dict(name="gamma", value=0.4), dict(value=_reals(1.0, 1.25))),
    theory.validate.check_array: (
        dict(name="gamma", value=[1.0, 2.0], ndim=1, dtype=np.float64),
        dict(value=[Bad("abc"), Bad([1.0, NAN], shows="finite"), Bad([1.0, -INF], shows="finite"), Bad([[1.0]], shows="(1, 1)")]),
    ),
    theory.validate.check_spectrum: (
        dict(name="gamma", value=[0.0, 2.0]),
        dict(value=[Bad("abc"), Bad([1.0, NAN], shows="finite"), Bad([[1.0]], shows="(1, 1)"), Bad([], shows="(0,)"),
                    Bad([1.0, -0.5], shows=("[1]", "-0.5"))]),
    ),
    theory.validate.check_labels: (
        dict(name="gamma", labels=[0, 2, 1], K=3, size=3),
        dict(
            labels=[
                Bad([0, 3, 1], shows=("3", "[0, 2]")),
                Bad([0, -1, 1], shows=("-1", "[0, 2]")),
                Bad([0, 0.5, 1], shows="0.5"),
                Bad([0, NAN, 1], shows="nan"),
                Bad([[0, 1, 2]], shows="(1, 3)"),
                Bad([0, 1], shows=("(2,)", "(3,)")),
                Bad(["a", "b", "c"]),
            ]
        ),
    ),
    theory.validate.check_generator: (
        dict(name="gamma", value=np.random.default_rng(0)),
        dict(value=[Bad(0), Bad(None), Bad(np.random.RandomState(0))]),
    ),
}

# parameters reported under another name: the validators name what they check by their ``name`` argument
REPORTED_AS = {
    (theory.validate.check_int, "value"): "gamma",
    (theory.validate.check_real, "value"): "gamma",
    (theory.validate.check_positive, "value"): "gamma",
    (theory.validate.check_fraction, "value"): "gamma",
    (theory.validate.check_rounds, "value"): "gamma",
    (theory.validate.check_bool, "value"): "gamma",
    (theory.validate.check_corruption_matrix, "C"): "gamma",
    (theory.validate.check_label_counts, "counts"): "gamma",
    (theory.validate.check_within_correlation, "value"): "gamma",
    (theory.validate.check_array, "value"): "gamma",
    (theory.validate.check_spectrum, "value"): "gamma",
    (theory.validate.check_labels, "labels"): "gamma",
    (theory.validate.check_generator, "value"): "gamma",
    (theory.exact_boundary, "etas"): "eta",
    (theory.exact_gap.gap_table, "etas"): "eta",
}

# parameters without invalid values, and why
NOT_VALIDATED = {
    (theory.validate.check_int, "name"): "the caller's parameter name",
    (theory.validate.check_int, "minimum"): "a bound chosen by the caller",
    (theory.validate.check_int, "maximum"): "a bound chosen by the caller",
    (theory.validate.check_real, "name"): "the caller's parameter name",
    (theory.validate.check_positive, "name"): "the caller's parameter name",
    (theory.validate.check_fraction, "name"): "the caller's parameter name",
    (theory.validate.check_rounds, "name"): "the caller's parameter name",
    (theory.validate.check_bool, "name"): "the caller's parameter name",
    (theory.validate.check_corruption_matrix, "name"): "the caller's parameter name",
    (theory.validate.check_corruption_matrix, "K"): "the caller's validated K",
    (theory.validate.check_label_counts, "name"): "the caller's parameter name",
    (theory.validate.check_label_counts, "n"): "the caller's validated n",
    (theory.validate.check_block_correlations, "K"): "the caller's validated K",
    (theory.validate.check_block_correlations, "n"): "the caller's validated n",
    (theory.validate.check_within_correlation, "name"): "the caller's parameter name",
    (theory.validate.check_array, "name"): "the caller's parameter name",
    (theory.validate.check_array, "ndim"): "a shape chosen by the caller",
    (theory.validate.check_array, "dtype"): "a number type chosen by the caller",
    (theory.validate.check_spectrum, "name"): "the caller's parameter name",
    (theory.validate.check_labels, "name"): "the caller's parameter name",
    (theory.validate.check_labels, "K"): "the caller's validated K",
    (theory.validate.check_labels, "size"): "the caller's count of instances",
    (theory.validate.check_generator, "name"): "the caller's parameter name",
    (fd.mp_average, "funcs"): "the caller's integrand (any callable; its values are the caller's)",
    (fda.aniso_average, "funcs"): "the caller's integrand (any callable; its values are the caller's)",
}

def _public_functions():
    found = {}
    for name in theory.__all__:
        obj = getattr(theory, name)
        if inspect.isfunction(obj):
            found[obj] = f"theory.{name}"
    for module in MODULES:
        mod = importlib.import_module(f"theory.{module}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                found.setdefault(obj, f"theory.{module}.{name}")
    return found


PUBLIC = _public_functions()


def _label(fn):
    return PUBLIC.get(fn, fn.__name__)




def test_table_covers_every_public_function_and_parameter():
    """A public function or parameter without an entry (invalid values, or a reason it takes none) fails here."""
    assert set(PUBLIC) == set(TABLE), {_label(f) for f in set(PUBLIC) ^ set(TABLE)}
    assert_table_complete(TABLE, _label, NOT_VALIDATED)


test_valid_call_succeeds, test_invalid_value_is_rejected_by_name = contract_tests(TABLE, _label, REPORTED_AS)


B2 = (2, 1, 0.4, 0.1, 1e-3)  # smallest admissible block model: K = 2, n = 1


C2 = theory.symmetric(2, 0.25)


UNBAL = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.rounds_report(*B2, C2).first is not None,
        lambda: theory.min_rounds(*B2, C2) is not None,
        lambda: theory.min_rounds_balanced(*B2, C2) is not None,
        lambda: theory.correct_types(*B2, C2, 0).shape == (2, 2),
        lambda: theory.all_correct(*B2, np.eye(2), 0),
        lambda: theory.train_accuracy(*B2, np.eye(2), 0)["all"] == 1.0,
        lambda: theory.population_accuracy(*B2, C2, 0) == 1.0,
        lambda: theory.noise_threshold("symmetric", 2) == 0.5,
        lambda: theory.noise_threshold("asymmetric", 2) == 0.5,
        lambda: theory.noise_threshold("superclass", 2, 2) == 0.5,
        lambda: theory.symmetric(2, 0.0).tolist() == [[1.0, 0.0], [0.0, 1.0]],
        lambda: theory.symmetric(2, 1.0).tolist() == [[0.0, 1.0], [1.0, 0.0]],
        lambda: theory.asymmetric(2, 0.0).tolist() == [[1.0, 0.0], [0.0, 1.0]],
        lambda: theory.superclass_groups(2, 2) == [[0, 1]],
        lambda: theory.superclass(2, 0.5).tolist() == [[0.5, 0.5], [0.5, 0.5]],
        lambda: theory.exact_label_counts(C2, 4).tolist() == [[3, 1], [1, 3]],
        lambda: theory.exact_label_counts(np.eye(2), 1).tolist() == [[1, 0], [0, 1]],
        lambda: theory.counts_from_labels([0, 1], [1, 1], 2).tolist() == [[0, 1], [0, 1]],
        lambda: len(theory.block_eigenvalues(2, 1, 0.4, 0.1)) == 3,
        lambda: theory.block_gram(2, 1, 0.4, 0.1).tolist() == [[1.0, 0.1], [0.1, 1.0]],
        lambda: theory.block_projectors(2, 1)[2].tolist() == [[0.5, 0.5], [0.5, 0.5]],
        lambda: theory.filters(*B2)[0] > 0,
        lambda: theory.filters_exact(*B2)[0] > 0,
        lambda: theory.label_averaging_operator(np.eye(2), 2, 1e-3).shape == (2, 2),
        lambda: theory.spectral_operator(*B2, 0).shape == (2, 2),
        lambda: theory.outputs_for_targets(*B2, C2, theory.predictions.one_hot_type_targets(2), 0).shape == (2, 2, 2),
        lambda: theory.type_outputs(*B2, C2, 0).shape == (2, 2, 2),
        lambda: theory.instance_outputs(*B2, [0, 1], 0).shape == (2, 2),
        lambda: theory.instance_outputs(3, 2, 0.4, 0.1, 1e-3, [0, 0, 1, 1, 2, 2], 0).shape == (3, 6),
        lambda: len(theory.predictions.margin_terms(*B2, C2)[1]) == 4,
        lambda: theory.fresh_logits(*B2, C2, C2.mean(axis=0), 0).shape == (2, 2),
        # class indices up to K - 1, rounds from 0
        lambda: theory.predictions.fresh_margin_sign(*B2, C2, C2.mean(axis=0), 0, 1, 0) == 1,
        lambda: theory.predictions.fresh_margin_sign(*B2, C2, C2.mean(axis=0), 0, 0, 0) == 0,
        lambda: sorted(theory.predictions.margin_terms(*B2, C2, winner=1)[1]) == [(0, 0), (0, 1), (1, 0), (1, 1)],
        lambda: theory.predictions.one_hot_type_targets(2).tolist() == [[[1.0, 0.0], [0.0, 1.0]]] * 2,
        lambda: theory.exact_gap.active_classes([[1, 0], [0, 1]]) == 2,
        lambda: theory.exact_gap.decoupled_rounds(*B2, [[1, 0], [0, 1]], 0) == 0,
        lambda: theory.exact_gap.operating_point_rounds(*B2, [[1, 0], [0, 1]], 0) == 0,
        # unbalanced given labels: overall = (1/2, 1/3, 1/6), the mean of class_mean's rows
        lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, UNBAL, UNBAL.mean(axis=0), 0).shape == (3, 3),
        lambda: theory.clustering_ratio(*B2, 0) < 1,
        lambda: theory.pll_analysis(*B2, C2).condition in (True, False),
        # one contrast, one eigenvalue, no fixed-point steps (Newton alone, far from the spectrum); m = 3 for the Haar constant
        lambda: fda.silverstein_stieltjes(-1.0 + 1.0j, [0.5], 1, iters=0)[1] <= 1e-12,
        lambda: fda.aniso_average(lambda z: np.vstack([z]), [0.5], 1, 0.1)[0][0] > 0,
        lambda: fda.aniso_within_spectrum([0.5], 3, 0.1, 0).phi.shape == (1,),
        # -(1 / 2 pi i) times the contour integral: of 1 it is 0, of 1 / (z - 0.3) (a pole inside the circle) it is -1
        lambda: abs(fda.contour_nodes(64, 0.1, 1.0)[1].sum()) < 1e-12,
        lambda: abs((fda.contour_nodes(64, 0.1, 1.0)[1] / (fda.contour_nodes(64, 0.1, 1.0)[0] - 0.3)).sum() + 1.0) < 1e-12,
        lambda: fda.contour_nodes(1, 0.1, 1.0)[0].shape == (1,),
        lambda: V.check_int("K", 2, minimum=2, maximum=2) == 2,
        lambda: V.check_int("K", 4.0) == 4,
        lambda: V.check_fraction("eta", 0.0) == 0.0,
        lambda: V.check_fraction("eta", 1.0) == 1.0,
        lambda: V.check_positive("lam", 5e-324) == 5e-324,
        lambda: V.check_rounds("t", 0) == 0,
        lambda: V.check_bool("full", np.bool_(False)) is False,
        lambda: V.check_bool("full", True) is True,
        lambda: V.check_label_counts([[1, 0], [0, 1]], 1).tolist() == [[1, 0], [0, 1]],
    ],
)
def test_boundary_values_accepted(call):
    assert call()


def test_integral_floats_and_bounds_accepted():
    """Whole-number floats count as integers; bounds are inclusive; the PSD boundary d = d_min is accepted."""
    assert theory.symmetric(2.0, 0.1).shape == (2, 2)
    assert theory.spectral_operator(2, 1, 0.4, 0.1, 1e-3, 0).shape == (2, 2)
    K, n, c = 3, 2, 0.4
    d_min = -(1 - c + n * c) / (K * n - n)
    # at the PSD boundary the constant eigenvalue is 0 up to round-off of its sum (a few ulps), never negative
    assert 0.0 <= theory.block_eigenvalues(K, n, c, d_min)[2] <= 1e-15
    assert theory.noise_threshold("superclass", 4, 4) == 0.75
    assert theory.exact_label_counts(theory.symmetric(4, 0.3), 10).tolist() == [[7, 1, 1, 1], [1, 7, 1, 1], [1, 1, 7, 1], [1, 1, 1, 7]]
    # whole-number float counts are accepted
    assert theory.empirical_corruption([[3.0, 1.0], [0.0, 4.0]]).tolist() == [[0.75, 0.25], [0.0, 1.0]]
    C = [[1.0, 0.0], [1e-10, 1.0 - 1e-10]]  # a row sum off by < 1e-9 is accepted
    assert theory.is_balanced(np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert not theory.is_balanced(np.array(C))
