"""The probe as a scikit-learn classifier, for cleanlab's CleanLearning.

A module of its own because scikit-learn's base classes are needed when the class is defined: the
study imports it only when cleanlab runs, so that ``python -m sims.probe --help`` stays fast.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from ..engine import fit as fit_stage
from ..engine.noise import one_hot


class ProbeClassifier(ClassifierMixin, BaseEstimator):
    """fit / predict_proba / predict of the suite's probe (no bias, ridge ``lam``, the engine's soft-target
    solver): hard labels 0..n_classes-1 as one-hot targets; a class absent from a fit keeps zero targets."""

    def __init__(self, lam: float = 1e-2, n_classes: int = 2):
        self.lam = lam
        self.n_classes = n_classes

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y, dtype=np.int64)
        self.classes_ = np.arange(self.n_classes)
        self.fit_ = fit_stage.fit_soft(np.asarray(X, dtype=np.float64), one_hot(y, self.n_classes), self.lam,
                                       q=fit_stage.GCE_Q)
        return self

    def predict_proba(self, X):
        return softmax(self.fit_.logits(np.asarray(X, dtype=np.float64)), axis=0).T

    def predict(self, X):
        return np.argmax(self.predict_proba(X), axis=1)
