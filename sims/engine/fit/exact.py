"""Exact-softmax engines: one interface over the three solvers of :mod:`.solver`.

* :class:`BlockExact` -- the exact block Gram model, type-reduced (``solver.fit_block``); targets are per
  type, (K, K, K) with [k, l] the target vector of the instances of (true class k, given label l).
* :class:`FeatureExact` -- explicit features (``solver.fit_features``, primal); targets (K, N).
* :class:`GramExact` -- the Gram matrix only (``solver.fit_gram``, G prepared once); targets (K, N).
* :class:`SoftExact` -- explicit features at scale (:func:`.soft.fit_soft`: the same objective as
  :class:`FeatureExact`, Hessian-vector products only, stopped on the gradient and the outputs' distance
  from the optimum instead of the fixed-point residual); targets (K, N).

Every engine has ``fit(targets, loss="ce", start=None) -> ExactFit`` (outputs expanded to instances, the
solver's residual, fresh logits when the engine has fresh points), ``next_targets(fit)`` (the targets of
the next SD round, in the engine's own form), ``pll_targets(fit, ties)``, ``start_from(fit)`` (the
solver state a later fit can start from: the teacher's logits per type, its weights W, its coef) and
``warm_rounds`` (whether SD round t starts from round t-1: the primal and Gram solvers do, since the
targets move little between rounds; the type-reduced solver is cheap and starts from zero). The loop over
rounds is :mod:`sims.engine.rounds`.

The PLL student's generalised cross-entropy uses q = :data:`GCE_Q` (the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from theory.corruption import counts_from_labels
from theory.predictions import one_hot_type_targets
from theory.validate import check_block_correlations, check_int, check_labels, check_positive

from ..measures import pll_targets
from . import solver
from .newton import _as_float_array
from .soft import fit_soft

__all__ = ["GCE_Q", "ExactFit", "BlockExact", "FeatureExact", "GramExact", "SoftExact"]

GCE_Q = 0.7


@dataclass
class ExactFit:
    """Exact fit expanded to instances: outputs (K, N), fresh logits (K, M) or None, residual."""

    targets: np.ndarray
    outputs: np.ndarray
    fresh_logits: np.ndarray | None
    residual: float
    raw: object = field(repr=False, default=None)  # the solver's fit object


class BlockExact:
    """Exact block-model fits via ``solver.fit_block`` (type-reduced: (true class, given label)).

    Types absent from the sample (zero count) have NaN outputs; they carry no weight in any fit, and
    their PLL targets are computed from the placeholder 1/K."""

    warm_rounds = False

    def __init__(self, K, n, c, d, lam, y, z):
        K = check_int("K", K, minimum=2)
        n = check_int("n", n, minimum=1)
        c, d = check_block_correlations(K, n, c, d)
        lam = check_positive("lam", lam)
        y = check_labels("y", y, K)
        z = check_labels("z", z, K, size=y.size)
        self.K, self.n, self.c, self.d, self.lam = K, n, c, d, lam
        self.y, self.z = y, z
        self.counts = counts_from_labels(y, z, K)

    def one_hot_types(self) -> np.ndarray:
        """The round-0 targets: every type's given label, one-hot."""
        return one_hot_type_targets(self.K)

    def fit(self, targets, loss: str = "ce", start=None) -> ExactFit:
        """``targets`` (K, K, K): [k, l] = target vector of instances (class k, label l); ``start``: logits
        per type (K, K, K) to start from (required for GCE)."""
        fit = solver.fit_block(
            self.K, self.n, self.c, self.d, self.lam, self.counts, targets,
            loss=loss, q=GCE_Q, init_logits=start,
        )
        outputs = np.asarray(fit.outputs)[self.y, self.z].T  # (K, N)
        T = np.asarray(targets)[self.y, self.z].T
        return ExactFit(T, outputs, np.asarray(fit.fresh_logits).T, float(fit.residual), fit)

    def type_outputs(self, fit: ExactFit) -> np.ndarray:
        """Outputs per type (K, K, K), NaN for absent types."""
        return np.asarray(fit.raw.outputs)

    def next_targets(self, fit: ExactFit) -> np.ndarray:
        return self.type_outputs(fit)

    def pll_targets(self, fit: ExactFit, ties: str = "share") -> np.ndarray:
        K = self.K
        out = self.type_outputs(fit)
        out = np.where(np.isnan(out), 1.0 / K, out)  # placeholders: absent types carry no weight
        return pll_targets(out.reshape(K * K, K).T, ties).T.reshape(K, K, K)

    def start_from(self, fit: ExactFit):
        return fit.raw.logits


class FeatureExact:
    """Exact fits on explicit features ``X`` (N, D) via ``solver.fit_features`` (primal); fresh logits of
    ``X_fresh`` when given."""

    warm_rounds = True

    def __init__(self, X, lam, X_fresh=None):
        X = _as_float_array("X", X, 2)
        lam = check_positive("lam", lam)
        if X_fresh is not None:
            X_fresh = _as_float_array("X_fresh", X_fresh, 2)
            if X_fresh.shape[1] != X.shape[1]:
                raise ValueError(f"X_fresh has shape {X_fresh.shape}, must be (M, {X.shape[1]}) (the features of X)")
        self.X, self.lam, self.X_fresh = X, lam, X_fresh

    def fit(self, targets, loss: str = "ce", start=None) -> ExactFit:
        """``start``: weights W (K, D) to start from."""
        fit = solver.fit_features(self.X, targets, self.lam, loss=loss, q=GCE_Q, W0=start)
        fresh = fit.logits(self.X_fresh) if self.X_fresh is not None else None
        return ExactFit(np.asarray(targets), np.asarray(fit.outputs), fresh, float(fit.residual), fit)

    def next_targets(self, fit: ExactFit) -> np.ndarray:
        return fit.outputs

    def pll_targets(self, fit: ExactFit, ties: str = "share") -> np.ndarray:
        return pll_targets(fit.outputs, ties)

    def start_from(self, fit: ExactFit):
        return fit.raw.W


class GramExact(FeatureExact):
    """Exact fits from the Gram matrix only via ``solver.fit_gram`` (G prepared once for all rounds).

    ``cross`` (N, M): Gram between training and fresh points; fresh logits are ``coef @ cross``.
    """

    def __init__(self, G, lam, cross=None, method: str = "auto"):
        self.prep = solver.prepare_gram(G, method)
        self.lam = check_positive("lam", lam)
        if cross is not None:
            cross = _as_float_array("cross", cross, 2)
            if cross.shape[0] != self.prep.N:
                raise ValueError(f"cross has shape {cross.shape}, must be ({self.prep.N}, M) (one row per training point)")
        self.cross = cross if cross is not None and cross.shape[1] > 0 else None

    def fit(self, targets, loss: str = "ce", start=None) -> ExactFit:
        """``start``: coefficients (K, N) to start from."""
        fit = solver.fit_gram(self.prep, targets, self.lam, loss=loss, q=GCE_Q, coef0=start)
        fresh = fit.logits(self.cross) if self.cross is not None else None
        return ExactFit(np.asarray(targets), np.asarray(fit.outputs), fresh, float(fit.residual), fit)

    def start_from(self, fit: ExactFit):
        return fit.raw.coef


class SoftExact(FeatureExact):
    """:class:`FeatureExact`'s interface over the scalable solver :func:`.soft.fit_soft` (the probe's: real
    features at N = 50 000, K = 100, where ``solver.fit_features`` does not fit in memory). ``fit.raw`` is the
    :class:`.soft.SoftFit`; the residual reported is its fixed-point residual."""

    def fit(self, targets, loss: str = "ce", start=None) -> ExactFit:
        """``start``: weights W (K, D) to start from."""
        fit = fit_soft(self.X, targets, self.lam, loss=loss, q=GCE_Q, W0=start)
        fresh = fit.logits(self.X_fresh) if self.X_fresh is not None else None
        return ExactFit(np.asarray(targets), np.asarray(fit.outputs), fresh, float(fit.residual), fit)
