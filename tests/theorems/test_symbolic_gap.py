"""Contract of theory.symbolic_gap: the derivations behind the gap corrections.

The active-set linearisation, the pair recursion and the operating-point
linearisation leave zero residuals at their documented defaults; the softmax
Jacobian they use matches finite differences; a wrong Jacobian leaves a
nonzero residual.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory import symbolic_gap
from theory.exact_level import _softmax_rows
from theory.symbolic_gap import (
    verify_active_set_linearisation,
    verify_operating_point_linearisation,
    verify_pair_recursion,
)

from .strategies import all_zero


def _is_zero_matrix(value) -> bool:
    return all(sp.simplify(x) == 0 for x in value)


def test_active_set_linearisation_residuals_vanish():
    for name, value in verify_active_set_linearisation().items():
        assert all_zero(value), name


def test_active_set_linearisation_default_has_three_active_classes():
    """Documented default m = 3: one first-order residual per active class, all zero."""
    res = verify_active_set_linearisation()
    assert set(res) == {"first_order", "scalar_fixed_point", "lambda_substitution"}
    assert len(res["first_order"]) == 3
    assert all(r == 0 for r in res["first_order"])
    assert res["scalar_fixed_point"] == 0 and res["lambda_substitution"] == 0


def test_pair_recursion_residuals_vanish():
    for name, value in verify_pair_recursion().items():
        assert all_zero(value), name


def test_operating_point_linearisation_residuals_vanish():
    for name, value in verify_operating_point_linearisation(K=2).items():
        assert all_zero(value), name


def test_operating_point_linearisation_default_is_three_classes():
    """Documented default K = 3: K-vectors for the K-class checks, a 2-vector for the pair; all zero."""
    res = verify_operating_point_linearisation()
    assert set(res) == {"jacobian", "linear_step", "pair_rate", "uniform_rate"}
    assert [res[k].shape for k in ("jacobian", "linear_step", "pair_rate", "uniform_rate")] == [(3, 1), (3, 1), (2, 1), (3, 1)]
    for name, value in res.items():
        assert _is_zero_matrix(value), name


def test_softmax_jacobian_matches_finite_differences():
    """diag(q) - q q^T is the Jacobian of softmax at logits log q (central differences, step 1e-6:
    truncation error ~1e-12, rounding ~1e-10; tolerance 1e-8)."""
    q = np.array([0.5, 0.3, 0.2])
    H = np.array(symbolic_gap._softmax_jacobian(sp.Matrix([sp.Rational(5, 10), sp.Rational(3, 10), sp.Rational(2, 10)])), dtype=float)
    z0, h = np.log(q), 1e-6
    fd = np.empty((3, 3))
    for j in range(3):
        dz = np.zeros(3)
        dz[j] = h
        fd[:, j] = (_softmax_rows((z0 + dz)[None])[0] - _softmax_rows((z0 - dz)[None])[0]) / (2 * h)
    np.testing.assert_allclose(H, fd, atol=1e-8)


def test_operating_point_jacobian_check_detects_a_wrong_hessian(monkeypatch):
    """The ``jacobian`` residual depends on H: with diag(q) + q q^T it is nonzero (``linear_step`` alone
    holds for any matrix H, which is why the Jacobian is checked separately).

    verify_operating_point_linearisation takes no Jacobian argument, so the wrong ingredient is swapped in for
    symbolic_gap._softmax_jacobian; test_softmax_jacobian_matches_finite_differences checks the true one."""

    def wrong(q):
        q = sp.Matrix(q)
        return sp.diag(*q) + q * q.T

    monkeypatch.setattr(symbolic_gap, "_softmax_jacobian", wrong)
    res = verify_operating_point_linearisation(K=2)
    assert not _is_zero_matrix(res["jacobian"])
    assert not _is_zero_matrix(res["pair_rate"])
    assert _is_zero_matrix(res["linear_step"])
