"""The linearised softmax fit on an explicit Gram matrix, by brute-force linear algebra.

``P - U = (T - U) A`` with ``A = G (G + K N lam I)^-1`` (U = 1/K), solved by a Cholesky factorisation of
``G + K N lam I``: the brute-force twin of ``theory.type_outputs`` (no closed form from :mod:`theory`).
Residual of a fit: ``max |(P - U)(G + K N lam I) - (T - U) G| / max(1, max |(T - U) G|)``.

:class:`LinearModel` and :class:`StackedLinear` (several problems on one G, stacked into one array) have
the engine interface of :mod:`sims.engine.rounds` (``fit``, ``next_targets``, ``pll_targets``,
``start_from``, ``warm_rounds``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from theory.validate import check_bool, check_int, check_positive

from ..measures import pll_targets
from .newton import _as_float_array

__all__ = ["LinearFit", "LinearModel", "StackedLinear"]


@dataclass
class LinearFit:
    """One linearised fit: outputs P (K, N), residual R = T - P, linear-solve residual.

    ``residual`` is a float, or (:class:`StackedLinear`) one float per stacked problem."""

    targets: np.ndarray
    outputs: np.ndarray
    residual: float
    lam: float

    @property
    def R(self) -> np.ndarray:
        return self.targets - self.outputs

    def logits(self, cross_gram) -> np.ndarray:
        """Logits ``R g_x / (N lam)`` of new points; ``cross_gram`` is (N, M) = <phi_i, phi(x_m)>."""
        N = self.outputs.shape[1]
        return self.R @ np.asarray(cross_gram) / (N * self.lam)


def _check_ce(loss, start):
    if loss != "ce":
        raise ValueError(f"loss == {loss!r}, must be 'ce' at the linear level (the linearisation is for cross-entropy)")
    if start is not None:
        raise ValueError("start must be None at the linear level (a linear solve has no starting point)")


class LinearModel:
    """Linearised softmax ridge fit on an explicit Gram matrix ``G`` (N, N).

    ``fit(T)`` returns ``P`` with ``(P - U)(G + K N lam I) = (T - U) G`` (U = 1/K),
    i.e. ``P - U = (T - U) A``, ``A = G (G + K N lam I)^-1``; G is symmetric so
    ``A`` is too and ``(T - U) A = [(G + K N lam I)^-1 G (T - U)^T]^T``.
    """

    warm_rounds = False

    def __init__(self, G, K: int, lam: float, explicit: bool = False):
        from scipy.linalg import cho_factor, cho_solve

        G = _as_float_array("G", G, 2)
        if G.shape[0] != G.shape[1]:
            raise ValueError(f"G has shape {G.shape}, must be square (N, N)")
        self.G = G
        self.K = check_int("K", K, minimum=2)
        self.lam = check_positive("lam", lam)
        self.N = G.shape[0]
        explicit = check_bool("explicit", explicit)
        self.kappa = self.K * self.N * self.lam
        self._cho = cho_factor(G + self.kappa * np.eye(self.N), lower=True)
        # explicit=True forms A = (G + K N lam I)^-1 G once (N^3) so that each fit is one
        # matrix product; worth it when many fits share G (sweeps).
        # A is symmetric in exact arithmetic; symmetrising removes the solve's round-off asymmetry
        # and lets each product be written A @ X^T (OpenBLAS is several times faster with the
        # large operand on the left than for a K-row matrix times A).
        self._A = None
        if explicit:
            A = cho_solve(self._cho, G)
            self._A = np.ascontiguousarray(0.5 * (A + A.T))

    def fit(self, T, loss: str = "ce", start=None) -> LinearFit:
        from scipy.linalg import cho_solve

        _check_ce(loss, start)
        T = np.asarray(T, dtype=np.float64)
        U = 1.0 / self.K
        if self._A is not None:
            TU = T - U
            PU = (self._A @ TU.T).T  # (T - U) A with A symmetric
            both = (self.G @ np.vstack([PU, TU]).T).T  # one pass over G for the residual
            m = PU.shape[0]  # K rows, or several K-row problems stacked (sweeps)
            lhs, GTU_T = both[:m] + self.kappa * PU, both[m:]
            res = float(np.max(np.abs(lhs - GTU_T)) / max(1.0, float(np.max(np.abs(GTU_T)))))
            return LinearFit(targets=T, outputs=PU + U, residual=res, lam=self.lam)
        GTU = self.G @ (T - U).T  # (N, K) = G (T - U)^T
        PU = cho_solve(self._cho, GTU).T  # (K, N)
        lhs = (self.G @ PU.T).T + self.kappa * PU
        res = float(np.max(np.abs(lhs - GTU.T)) / max(1.0, float(np.max(np.abs(GTU)))))
        return LinearFit(targets=T, outputs=PU + U, residual=res, lam=self.lam)

    def next_targets(self, fit: LinearFit) -> np.ndarray:
        return fit.outputs

    def pll_targets(self, fit: LinearFit, ties: str = "share") -> np.ndarray:
        return pll_targets(fit.outputs, ties)

    def start_from(self, fit: LinearFit):
        return None


class StackedLinear:
    """Several K-row problems on the same G solved at once: targets (problems K, N), one fit per round.

    Each product with the explicit operator A of an ``explicit=True`` :class:`LinearModel` serves every
    problem (compute-bound instead of memory-bound); the fit's ``residual`` holds one residual per
    problem, ``max |(P - U)(G + K N lam I) - (T - U) G| / max(1, max |(T - U) G|)`` over that problem's
    rows only (the algebra of :meth:`LinearModel.fit`)."""

    warm_rounds = False

    def __init__(self, model: LinearModel):
        if not isinstance(model, LinearModel) or model._A is None:
            raise ValueError(f"model == {model!r}, must be a LinearModel(..., explicit=True)")
        self.model = model
        self.K = model.K

    def fit(self, T, loss: str = "ce", start=None) -> LinearFit:
        _check_ce(loss, start)
        model, K = self.model, self.K
        T = np.asarray(T, dtype=np.float64)
        U = 1.0 / K
        TU = T - U
        PU = (model._A @ TU.T).T  # (T - U) A, A symmetric
        both = (model.G @ np.vstack([PU, TU]).T).T
        m, N = PU.shape
        rhs = both[m:].reshape(m // K, K, N)
        lhs = (both[:m] + model.kappa * PU).reshape(m // K, K, N)
        res = np.max(np.abs(lhs - rhs), axis=(1, 2)) / np.maximum(1.0, np.max(np.abs(rhs), axis=(1, 2)))
        return LinearFit(targets=T, outputs=PU + U, residual=res, lam=model.lam)

    def next_targets(self, fit: LinearFit) -> np.ndarray:
        return fit.outputs

    def pll_targets(self, fit: LinearFit, ties: str = "share") -> np.ndarray:
        K = self.K
        P = fit.outputs
        return np.vstack([pll_targets(P[i * K:(i + 1) * K], ties) for i in range(P.shape[0] // K)])

    def start_from(self, fit: LinearFit):
        return None
