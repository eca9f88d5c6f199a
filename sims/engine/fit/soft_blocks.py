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
instances are grouped by the argmax of their targets (the given label for the teacher), with group means
m_c, group shares n_c / N and the pooled within-group covariance Wp = C - sum_c (n_c / N) m_c m_c^T
(C = X^T X / N as estimated by :mod:`.soft`), and

    H_kk ~ a_k Wp + sum_c w_kc m_c m_c^T + lam I,   w_kc = (1/N) sum_{i in group c} p_ik (1 - p_ik),
    a_k = sum_c w_kc,

which is exact when every group's instances share one weight and one within-group covariance. Each block
is inverted by the Woodbury identity in the eigenbasis of Wp (a K x K system per class, inverted once per
refresh), so one application costs O(K D^2 + K^3). The off-diagonal blocks are left out. The result is
used only as the preconditioner of conjugate gradients (scipy.sparse.linalg.cg's ``M``): it changes how
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
    """The block model of the module docstring for features X (N, D) and targets T (K, N).

    cov: C = X^T X / N (D, D) as estimated by the caller; lam the ridge. ``refresh(P)`` sets the weights
    from the outputs P (K, N); ``solve(R)`` applies the model's inverse to R (K, D) in W coordinates and
    removes the row mean (the Hessian maps the zero-row-mean subspace to itself, and the iterates stay in it).
    """

    def __init__(self, X, T, cov, lam):
        import scipy.sparse as sp

        N, D = X.shape
        K = T.shape[0]
        self.K, self.N, self.lam = K, N, float(lam)
        self.groups = np.argmax(T, axis=0)
        counts = np.bincount(self.groups, minlength=K).astype(np.float64)
        # Group sums by a sparse one-hot product: O(N D), and X (possibly memory-mapped) is not copied.
        member = sp.csr_matrix((np.ones(N), (self.groups, np.arange(N))), shape=(K, N))
        means = np.asarray(member @ X) / np.maximum(counts, 1.0)[:, None]
        self.member = member
        within = cov - (means.T * (counts / N)) @ means
        omega, E = np.linalg.eigh((within + within.T) / 2.0)
        self.omega = np.maximum(omega, 0.0)  # the estimate of C can leave round-off below zero
        self.E = E
        self.means = means @ E  # rows m_c in the eigenbasis of Wp
        self.refreshes = 0

    def refresh(self, P):
        K = self.K
        weights = np.asarray(self.member @ (P * (1.0 - P)).T).T / self.N  # (k, c): w_kc
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
