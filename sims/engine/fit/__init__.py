"""One fit of the softmax linear probe, linearised or exact.

* :mod:`.linear` -- the linearised fit on an explicit Gram matrix (brute-force linear algebra);
* :mod:`.newton` -- numerical pieces shared by the exact solvers;
* :mod:`.gram` -- the two routes of the Gram-only exact solver;
* :mod:`.solver` -- the exact solvers: features (primal), Gram (kernel), block model (type-reduced);
* :mod:`.soft` -- the soft-target primal solver at scale (Hessian-vector products only);
* :mod:`.exact` -- the exact engines, one interface over the three exact solvers and the soft-target solver.
"""

from .exact import GCE_Q, BlockExact, ExactFit, FeatureExact, GramExact, SoftExact
from .linear import LinearFit, LinearModel, StackedLinear
from .soft import SoftFit, fit_soft
from .solver import NotConvergedError, fit_block, fit_features, fit_gram, limit_blas_threads, prepare_gram

__all__ = [
    "LinearFit", "LinearModel", "StackedLinear",
    "GCE_Q", "ExactFit", "BlockExact", "FeatureExact", "GramExact", "SoftExact",
    "NotConvergedError", "SoftFit", "fit_soft", "fit_block", "fit_features", "fit_gram", "limit_blas_threads",
    "prepare_gram",
]
