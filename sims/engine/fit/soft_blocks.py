"""A class-block preconditioner for the Newton steps of :func:`.soft.fit_soft` (cross-entropy).

The Hessian of the CE objective in W (K x D, see :mod:`.soft`) has the blocks

    H_kl = (1/N) sum_i (p_ik [k == l] - p_ik p_il) x_i x_i^T + lam [k == l] I.

Its diagonal blocks differ from class to class: H_kk weighs the instances by p_ik (1 - p_ik), which is
large for the instances the probe gives to class k and small for the rest, so H_kk carries class k's
mean direction with a weight that a single Kronecker factor (the whitening of :mod:`.soft`) cannot give
every class at once. On the benchmark's mixtures the exact block diagonal brings the condition number of
the preconditioned Hessian from about 19 (whitening alone) to 2.2 (K = 50, D = 64, N = 5000, at the
optimum; benchmarks/bench_probe_solver.py measures the effect on the solver).

Forming the exact blocks costs N D^2 per class. The model used here costs O(N K + K^3 D) per refresh:
instances are grouped by the argmax of the solver's current outputs (:meth:`ClassBlocks.regroup`; at
construction, of the array passed), with group means m_c, group shares n_c / N and the pooled
within-group covariance Wp = C - sum_c (n_c / N) m_c m_c^T (C = X^T X / N as estimated by :mod:`.soft`), and

    H_kk ~ a_k Wp + sum_c w_kc m_c m_c^T + lam I,   w_kc = (1/N) sum_{i in group c} p_ik (1 - p_ik),
    a_k = sum_c w_kc,

which is exact when every group's instances share one weight and one within-group covariance. The
Hessian depends on the outputs only, so the groups follow them: grouped by the given labels instead (as
before), a teacher's groups under label noise mix instances of different clusters, whose weights differ,
and the within-group covariance takes in the spread between clusters. Measured (K = 10, D = 64, N = 4 000,
noise 0.3, at the optimum; condition number of the preconditioned Hessian on rows summing to zero):
teacher 4.1 grouped by the given labels, 2.4 by the outputs (exact block diagonal 1.7, whitening alone 8.0);
an SD round 2.2 either way (its targets are outputs); on the benchmark's teacher at N = 10 000, D = 512,
K = 100 (otherwise the solver's settings before: handover and rtol 1e-3) the Newton steps took 11 Hessian
products instead of 23, 37 products with X in all instead of 61. Regrouping (O(N D + D^3): the group
means and an eigendecomposition of Wp) happens only when more than 1% of the instances changed group.
Each block is inverted by the Woodbury identity in the eigenbasis of Wp (a K x K system per class,
inverted once per refresh), so one application costs O(K D^2 + K^3). The off-diagonal blocks are left out. The result is
used only as the preconditioner of the Newton steps' conjugate gradients (:func:`.soft._pcg`): it changes how
many Hessian products a Newton step needs, never the point the solver converges to, which is judged by
the gradient and the output change as before.

Hand-written: no library offers a preconditioner for the multinomial logistic Hessian.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ClassBlocks", "MAX_CLASSES"]

# K^3 floats hold the per-class K x K inverses (K = 256: 128 MB); beyond, the Newton steps run without it.
MAX_CLASSES = 256


class ClassBlocks:
    """The block model of the module docstring for features X (N, D), the instances grouped by the argmax of
    the columns of T (K, N) (the solver passes its current outputs; targets work too).

    cov: C = X^T X / N (D, D) as estimated by the caller; lam the ridge. ``regroup(P, share)`` groups the
    instances by the argmax of the outputs P (K, N) again; ``refresh(P)`` sets the weights from them; ``solve(R)`` applies the model's inverse to R (K, D) in W coordinates and
    removes the row mean (the Hessian maps the zero-row-mean subspace to itself, and the iterates stay in it).
    """

    def __init__(self, X, T, cov, lam):
        N, D = X.shape
        K = T.shape[0]
        self.K, self.N, self.lam = K, N, float(lam)
        self.X, self.cov = X, cov
        self.refreshes = 0
        self.regroups = 0
        self._group(np.argmax(T, axis=0))

    def _group(self, groups):
        """Group means, shares and the pooled within-group covariance's eigenbasis for the labels ``groups``."""
        import scipy.sparse as sp

        N, K = self.N, self.K
        self.groups = groups
        counts = np.bincount(groups, minlength=K).astype(np.float64)
        # Group sums by a sparse one-hot product: O(N D), and X (possibly memory-mapped) is not copied.
        member = sp.csr_matrix((np.ones(N), (groups, np.arange(N))), shape=(K, N))
        means = np.asarray(member @ self.X) / np.maximum(counts, 1.0)[:, None]
        within = self.cov - (means.T * (counts / N)) @ means
        omega, E = np.linalg.eigh((within + within.T) / 2.0)
        self.omega = np.maximum(omega, 0.0)  # the estimate of C can leave round-off below zero
        self.E = E
        self.means = means @ E  # rows m_c in the eigenbasis of Wp

    def regroup(self, P, share=0.0):
        """Group the instances by the argmax of the outputs P (K, N) instead, if more than ``share`` of them
        change group; returns whether they did (then E, the eigenbasis of Wp, changed). O(N D + D^3)."""
        groups = np.argmax(P, axis=0)
        if np.count_nonzero(groups != self.groups) <= share * self.N:
            return False
        self._group(groups)
        self.regroups += 1
        return True

    def refresh(self, P):
        K = self.K
        Q = P * (1.0 - P)
        # (k, c): w_kc, one bincount per class (measured 2x faster than the sparse one-hot product with Q^T)
        weights = np.stack([np.bincount(self.groups, weights=Q[k], minlength=K) for k in range(K)]) / self.N
        self.scale = weights.sum(axis=1)[:, None] * self.omega[None, :] + self.lam  # (K, D): a_k omega + lam
        self.root = np.sqrt(weights)
        inner = np.empty((K, K, K))
        for k in range(K):
            Gk = (self.means / self.scale[k]) @ self.means.T
            Gk *= self.root[k][:, None]
            Gk *= self.root[k][None, :]
            Gk[np.diag_indices(K)] += 1.0
            inner[k] = Gk
        # I + (PSD): eigenvalues >= 1, so the inverses are well conditioned.
        self.inner_inv = np.linalg.inv(inner)
        self.refreshes += 1

    def solve_rotated(self, Rt):
        """The model's inverse applied to R E (rows in the eigenbasis of Wp); returns Z E (row mean removed)."""
        Y = Rt / self.scale
        t = (Y @ self.means.T) * self.root  # (K, K): row k = class k's Woodbury right-hand side
        u = np.einsum("kij,kj->ki", self.inner_inv, t)
        Z = Y - ((u * self.root) @ self.means) / self.scale
        return Z - Z.mean(axis=0, keepdims=True)

    def solve(self, R):
        return self.solve_rotated(R @ self.E) @ self.E.T
