"""Input validation of every public callable of the engine (``sims.engine.__all__``), as one contract.

The same contract as tests/theorems/test_public_functions.py (machinery: tests/contract.py): per public
function, constructor or class method, a valid call and, per parameter, invalid values; each must raise
ValueError or TypeError whose message names the parameter and shows the value. The completeness test
goes through ``sims.engine.__all__``: every function and every class whose constructor takes user input is
in the table, the rest (stage modules, constants, result records) is listed in EXCLUDED with the reason.
"""

from __future__ import annotations

import numpy as np

import sims.engine as engine
import theory
from sims.engine import Agreement, BlockExact, FeatureExact, GramExact, LinearModel, SoftExact, StackedLinear
from theory.predictions import one_hot_type_targets
from tests.contract import (
    BLOCK_BAD,
    INF,
    NAN,
    SHARE_BAD,
    Bad,
    contract_tests,
    assert_table_complete,
    choices,
    ints,
    reals,
)

# block model K = 3, n = 4; given labels with the counts below (class-major)
K, N_PER = 3, 4
B = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)
BLOCK5 = ("K", "n", "c", "d", "lam")
COUNTS = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]])
Y, Z = engine.labels_from_counts(COUNTS)
G = theory.block_gram(3, 4, 0.4, 0.1)
X, _ = engine.sample_gmm(3, 4, 0.4, 0.1, 5, np.random.default_rng(0))  # (12, 9)
T = engine.one_hot(Z, 3)
TYPE_TARGETS = one_hot_type_targets(3)
RNG = np.random.default_rng(1)
BLOCK = BlockExact(3, 4, 0.4, 0.1, 1e-3, Y, Z)
TEACHER = BLOCK.fit(BLOCK.one_hot_types())
FITS = engine.sd(BLOCK, TYPE_TARGETS, 2)


def _bad_of(*params, **more):
    return {**{p: BLOCK_BAD[p] for p in params}, **more}


def _with(a, index, value):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


GMM_D_BAD = [*BLOCK_BAD["d"], Bad(-0.05)]  # the mixture also needs d >= 0
RNG_BAD = [Bad(0), Bad(None), Bad(np.random.RandomState(0))]
LABELS_BAD = [
    Bad(np.r_[Y[:-1], 3], shows="3"),
    Bad(np.r_[Y[:-1], -1], shows="-1"),
    Bad(Y + 0.5, shows="0.5"),
    Bad(_with(Y, 4, NAN), shows="nan"),
    Bad(Y.reshape(3, 4), shows="(3, 4)"),
    Bad("abc", shows="()"),
]
SECOND_LABELS_BAD = [  # given labels next to true labels: also of the same length
    Bad(np.r_[Z[:-1], 3], shows="3"),
    Bad(Z[:-1], shows="(11,)"),
    Bad(Z + 0.5, shows="0.5"),
    Bad("abc", shows="()"),
]
MATRIX_BAD = [
    Bad(np.ones((3, 3, 1)) / 3, shows="(3, 3, 1)"),
    Bad(np.full((3, 3), NAN), shows="finite"),
    Bad([[1.25, -0.25, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], shows="-0.25"),
    Bad([[0.5, 0.25, 0.125], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], shows="0.875"),
    Bad("abc"),
]
COUNTS_BAD = [
    Bad(np.ones((3, 4), dtype=int), shows="(3, 4)"),
    Bad(_with(COUNTS, (0, 2), -1), shows="-1"),
    Bad(_with(_with(COUNTS, (1, 0), 0.5), (1, 1), 3.5), shows="0.5"),
    Bad(np.array([[1, 0], [0, 0]]), shows="no instances"),
    Bad("abc", shows="()"),
]
BLOCK_COUNTS_BAD = [  # rows must also sum to n == 4
    Bad(np.eye(2, dtype=int) * 4, shows="(2, 2)"),
    *COUNTS_BAD[:3],
    Bad(_with(COUNTS, (2, 0), 0), shows=" 3"),
    Bad("abc", shows="()"),
]
X_BAD = [Bad("abc"), Bad(np.zeros(12), shows="(12,)"), Bad(_with(X, (2, 3), NAN), shows="finite"), Bad(_with(X, (0, 0), INF), shows="finite")]
T_BAD = [
    Bad(T[:, :-1], shows="(3, 11)"),
    Bad(T[:1], shows="(1, 12)"),
    Bad(_with(T, (0, 0), NAN), shows="finite"),
    Bad(T * 2, shows="sums to 2.0"),
    Bad(_with(_with(T, (0, 0), 1.5), (1, 0), -0.5), shows="-0.5"),
    Bad("abc"),
]
W0_BAD = [Bad(np.zeros((3, 8)), shows="(3, 8)"), Bad(np.zeros(9), shows="(9,)"), Bad(np.full((3, 9), NAN), shows="finite"), Bad("abc")]
G_BAD = [
    Bad("abc"),
    Bad(np.zeros((12, 11)), shows="(12, 11)"),
    Bad(_with(G, (3, 3), NAN), shows="finite"),
    Bad(_with(G, (0, 1), 0.5), shows="symmetric"),
    Bad(-G, shows="-1.0"),
    Bad(_with(_with(G, (0, 1), 2.0), (1, 0), 2.0), shows="positive semidefinite"),
]
OUTPUTS_BAD = [
    Bad("abc"),
    Bad(np.zeros(12), shows="(12,)"),
    Bad(np.zeros((1, 12)), shows="(1, 12)"),
    Bad(_with(T, (1, 5), NAN), shows="finite"),
    Bad(_with(T, (1, 5), -INF), shows="finite"),
]
OUTPUT_LABELS_BAD = [Bad(np.r_[Y[:-1], 3], shows="3"), Bad(Y[:-1], shows="(11,)"), Bad(Y + 0.5, shows="0.5"), Bad("abc", shows="()")]
VERDICTS_BAD = [
    Bad([1, 0, 1], shows="1"),
    Bad([True, None, False], shows="None"),
    Bad([True, False], shows="(2,)"),
    Bad([[True, False, True]], shows="(1, 3)"),
    Bad("abc", shows="()"),
]
FIT = dict(loss="ce", q=0.7)
FIT_BAD = dict(loss=choices("mse", "CE"), q=reals(0.0, -0.5, 1.5))

# callable -> (valid keyword arguments, {parameter: [Bad, ...]})
# the explicit-feature engines (FeatureExact, SoftExact): the reference call and the invalid values of each parameter
FEATURE_ENGINE = (
    dict(X=X, lam=1e-3, X_fresh=X[:5]),
    dict(
        X=X_BAD,
        lam=reals(0.0, -1e-3),
        X_fresh=[Bad(np.zeros((5, 8)), shows="(5, 8)"), Bad(np.zeros(9), shows="(9,)"), Bad(np.full((5, 9), NAN), shows="finite"), Bad("abc")],
    ),
)

TABLE = {
    # sims.engine.features
    engine.block_gram: (dict(K=3, n=4, c=0.4, d=0.1), _bad_of("K", "n", "c", "d")),
    engine.load_digits_data: (
        dict(train_per_class=120, split_seed=0),
        dict(train_per_class=[*ints(1), Bad(175)], split_seed=ints(0)),
    ),
    engine.perturbed_features: (
        dict(K=3, n=4, c=0.4, d=0.1, rng=RNG, D=5),
        _bad_of("K", "n", "c", d=GMM_D_BAD, rng=RNG_BAD, D=ints(1)),
    ),
    engine.sample_gmm: (
        dict(K=3, n=4, c=0.4, d=0.1, D=5, rng=RNG),
        _bad_of("K", "n", "c", d=GMM_D_BAD, D=ints(1), rng=RNG_BAD),
    ),
    engine.sample_gmm_gram: (
        dict(K=3, n=4, c=0.4, d=0.1, D=5, rng=RNG, fresh_per_class=2),
        _bad_of("K", "n", "c", d=GMM_D_BAD, D=ints(1), rng=RNG_BAD, fresh_per_class=ints(0)),
    ),
    # sims.engine.noise
    engine.corrupt_labels: (
        dict(y=Y, C=theory.symmetric(3, 0.5), rng=RNG, exact=True),
        dict(y=LABELS_BAD, C=MATRIX_BAD, rng=RNG_BAD, exact=[Bad(1), Bad("yes"), Bad(None)]),
    ),
    engine.label_counts: (dict(y=Y, z=Z, K=3), dict(y=LABELS_BAD, z=SECOND_LABELS_BAD, K=ints(2))),
    engine.labels_from_counts: (dict(counts=COUNTS), dict(counts=COUNTS_BAD)),
    engine.noise_matrix: (
        dict(noise="superclass", K=4, eta=0.25, superclass_size=2, groups=None),
        dict(
            noise=choices("pairflip", "Superclass"),
            K=ints(2),
            eta=reals(*SHARE_BAD),
            superclass_size=[*ints(2), Bad(3), Bad(5)],
            groups=[Bad([[0, 1], [2]]), Bad([[0, 1], [1, 2, 3]]), Bad(5), Bad([[0, 1], [2, "x"]])],
        ),
    ),
    engine.one_hot: (
        dict(z=Z, K=3),
        dict(z=[Bad([0, 3], shows="3"), Bad([0, -1], shows="-1"), Bad([0.5], shows="0.5"), Bad([[0, 1]], shows="(1, 2)"), Bad("abc", shows="()")], K=ints(2)),
    ),
    # sims.engine.fit: solvers
    engine.fit_block: (
        {**B, "counts": COUNTS, "targets": TYPE_TARGETS, **FIT, "init_logits": None, "tol": 1e-10, "max_iter": 200},
        _bad_of(
            *BLOCK5,
            counts=BLOCK_COUNTS_BAD,
            targets=[
                Bad(np.eye(3), shows="(3, 3)"),
                Bad(np.zeros((2, 2, 2)), shows="(2, 2, 2)"),
                Bad(np.full((3, 3, 3), NAN), shows="finite"),
                Bad(np.zeros((3, 3, 3)), shows="sums to 0"),
                Bad("abc"),
            ],
            **FIT_BAD,
            init_logits=[Bad(np.zeros((3, 3)), shows="(3, 3)"), Bad(np.zeros((2, 2, 2)), shows="(2, 2, 2)"), Bad(np.full((3, 3, 3), NAN), shows="finite"), Bad("abc")],
            tol=reals(0.0, -1e-10),
            max_iter=ints(1),
        ),
    ),
    engine.fit_features: (
        dict(X=X, T=T, lam=1e-3, **FIT, W0=None, tol=1e-10, max_iter=200, blas_threads=1),
        dict(
            X=[*X_BAD, Bad(np.zeros((0, 9)), shows="(0, 9)")],
            T=T_BAD,
            lam=reals(0.0, -1e-3),
            **FIT_BAD,
            W0=W0_BAD,
            tol=reals(0.0, -1e-10),
            max_iter=ints(1),
            blas_threads=ints(1),
        ),
    ),
    engine.fit_gram: (
        dict(G=G, T=T, lam=1e-3, **FIT, coef0=None, tol=1e-10, max_iter=200, blas_threads=1, method="auto"),
        dict(
            G=G_BAD,
            T=T_BAD,
            lam=reals(0.0, -1e-3),
            **FIT_BAD,
            coef0=[Bad(np.zeros((3, 11)), shows="(3, 11)"), Bad(np.full((3, 12), NAN), shows="finite"), Bad("abc")],
            tol=reals(0.0, -1e-10),
            max_iter=ints(1),
            blas_threads=ints(1),
            method=choices("exact", "Dense"),
        ),
    ),
    engine.fit_soft: (
        dict(X=X, T=T, lam=1e-3, **FIT, W0=None, gtol=1e-8, output_tol=1e-9, max_iter=5000, method="auto", precondition="auto",
             newton_precondition="auto", blas_threads=1),
        dict(
            X=[*X_BAD, Bad(np.zeros((0, 9)), shows="(0, 9)")],
            T=T_BAD,
            lam=reals(0.0, -1e-3),
            **FIT_BAD,
            W0=W0_BAD,
            gtol=reals(0.0, -1e-8),
            output_tol=reals(0.0, -1e-9),
            max_iter=ints(1),
            method=choices("newton", "LBFGS"),
            precondition=choices("cholesky", "Whiten"),
            newton_precondition=choices("ilu", "Classes"),
            blas_threads=ints(1),
        ),
    ),
    engine.prepare_gram: (dict(G=G, method="auto"), dict(G=G_BAD, method=choices("exact", "Dense"))),
    # sims.engine.fit: engines (constructors)
    BlockExact: ({**B, "y": Y, "z": Z}, _bad_of(*BLOCK5, y=LABELS_BAD, z=SECOND_LABELS_BAD)),
    FeatureExact: FEATURE_ENGINE,
    SoftExact: FEATURE_ENGINE,  # the same interface over the scalable solver
    GramExact: (
        dict(G=G, lam=1e-3, cross=G[:, :5], method="auto"),
        dict(
            G=G_BAD,
            lam=reals(0.0, -1e-3),
            cross=[Bad(np.zeros((11, 5)), shows="(11, 5)"), Bad(np.zeros(12), shows="(12,)"), Bad(np.full((12, 5), NAN), shows="finite"), Bad("abc")],
            method=choices("exact", "Dense"),
        ),
    ),
    LinearModel: (
        dict(G=G, K=3, lam=1e-3, explicit=False),
        dict(
            G=[Bad("abc"), Bad(np.zeros((12, 11)), shows="(12, 11)"), Bad(np.zeros(12), shows="(12,)"), Bad(_with(G, (3, 3), NAN), shows="finite")],
            K=ints(2),
            lam=reals(0.0, -1e-3),
            explicit=[Bad(1), Bad("yes"), Bad(None)],
        ),
    ),
    StackedLinear: (
        dict(model=LinearModel(G, 3, 1e-3, explicit=True)),
        dict(model=[Bad(LinearModel(G, 3, 1e-3)), Bad("abc"), Bad(None)]),
    ),
    # sims.engine.rounds
    engine.sd: (
        dict(engine=BLOCK, targets=TYPE_TARGETS, rounds=2, until=None, progress=None, first=None),
        dict(targets=[Bad(np.eye(3), shows="(3, 3)"), Bad(np.zeros((3, 3, 3)), shows="sums to 0"), Bad("abc")], rounds=ints(0)),
    ),
    engine.pll: (
        dict(engine=BLOCK, teacher=TEACHER, loss="ce", ties="share"),
        dict(loss=choices("mse", "CE"), ties=choices("random", "Share")),
    ),
    engine.first_perfect: (dict(fits=FITS, y=Y), dict(y=OUTPUT_LABELS_BAD)),
    # sims.engine.measures
    engine.accuracy: (dict(P=T, y=Y), dict(P=OUTPUTS_BAD, y=OUTPUT_LABELS_BAD)),
    engine.correct: (dict(P=T, y=Y), dict(P=OUTPUTS_BAD, y=OUTPUT_LABELS_BAD)),
    engine.perfect: (dict(P=T, y=Y), dict(P=OUTPUTS_BAD, y=OUTPUT_LABELS_BAD)),
    engine.split_accuracy: (
        dict(P=T, y=Y, z=Z),
        dict(P=OUTPUTS_BAD, y=OUTPUT_LABELS_BAD, z=SECOND_LABELS_BAD),
    ),
    engine.pll_targets: (dict(P=T, ties="share"), dict(P=OUTPUTS_BAD, ties=choices("random", "Share"))),
    Agreement.of: (dict(theory=[True, False, True], observed=[True, True, False]), dict(theory=VERDICTS_BAD, observed=VERDICTS_BAD)),
}

# public methods in the table besides the functions and constructors of sims.engine.__all__
METHODS = {Agreement.of: "sims.engine.Agreement.of"}

# names of sims.engine.__all__ without a table entry, and why
EXCLUDED = {
    "features": "a stage module: its public callables are exported here",
    "noise": "a stage module: its public callables are exported here",
    "fit": "a stage module: its public callables are exported here",
    "rounds": "a stage module: its public callables are exported here",
    "measures": "a stage module: its public callables are exported here",
    "PAPER": "a constant (the paper's setting)",
    "NOISE_MODELS": "a constant (names of the noise models)",
    "GCE_Q": "a constant (the PLL student's q)",
    "TIE_RULES": "a constant (names of the PLL tie rules)",
    "ExactFit": "a result record, built by the engines' fit",
    "LinearFit": "a result record, built by the linear engines' fit",
    "SoftFit": "a result record, built by fit_soft",
    "NotConvergedError": "an exception, raised by the solvers",
    "Agreement": "a record of four counts; built from verdicts by Agreement.of (in the table)",
}

# parameters without invalid values, and why
NOT_VALIDATED = {
    (engine.sd, "engine"): "any object with the engine interface (fit, next_targets, start_from, warm_rounds)",
    (engine.sd, "until"): "the caller's stopping rule (a callable or None)",
    (engine.sd, "progress"): "the caller's progress callback (a callable or None)",
    (engine.sd, "first"): "round 0's fit, made by the caller with the same engine (or None)",
    (engine.pll, "engine"): "any object with the engine interface",
    (engine.pll, "teacher"): "a fit returned by the same engine",
    (engine.first_perfect, "fits"): "fits returned by an engine (their outputs are checked with y)",
}


def _label(fn):
    if fn in METHODS:
        return METHODS[fn]
    return f"sims.engine.{fn.__name__}"




def test_table_covers_every_public_callable_and_parameter():
    """A name of sims.engine.__all__ without an entry or a reason, or a parameter without invalid values or a
    reason, fails here; only non-functions may be excluded."""
    exported = {name: getattr(engine, name) for name in engine.__all__}
    assert set(EXCLUDED) <= set(exported), set(EXCLUDED) - set(exported)
    for name, obj in exported.items():
        if name in EXCLUDED:
            assert not callable(obj) or isinstance(obj, type), (name, "a function cannot be excluded")
            assert all(obj is not fn for fn in TABLE), (name, "excluded and in the table")
        else:
            assert callable(obj) and obj in TABLE, (name, "not in the table")
    listed = {obj for name, obj in exported.items() if name not in EXCLUDED} | set(METHODS)
    assert set(TABLE) == listed, {_label(f) for f in set(TABLE) ^ listed}
    assert_table_complete(TABLE, _label, NOT_VALIDATED)


test_valid_call_succeeds, test_invalid_value_is_rejected_by_name = contract_tests(TABLE, _label)
