"""The simulation engine, in the order of the data path: everything whose source decides a computed number.

* :mod:`.features` -- feature models (the exact block Gram, the Gaussian mixture and its sampled Gram,
  the perturbed Gram, scikit-learn's digits) and :data:`PAPER`, the paper's numerical setting;
* :mod:`.noise` -- given labels drawn from a corruption matrix (exact counts or sampled), one-hot targets;
* :mod:`.fit` -- one fit, linearised (:class:`LinearModel`) or exact (:class:`BlockExact`,
  :class:`FeatureExact`, :class:`GramExact` over the solvers of :mod:`.fit.solver`, :class:`SoftExact` over
  :mod:`.fit.soft`);
* :mod:`.rounds` -- the one loop over SD rounds and the PLL student (:func:`sd`, :func:`pll`);
* :mod:`.measures` -- accuracy with the tie convention, "perfect", PLL targets, :class:`Agreement`.

Studies, figures and checks use the engine through the names exported here and the five stage modules
(``features``, ``noise``, ``fit``, ``rounds``, ``measures``), never the solvers' own modules
(``fit.solver``, ``fit.gram``, ``fit.newton``): tests/test_layers.py checks it.
"""

from . import features, fit, measures, noise, rounds
from .features import PAPER, block_gram, load_digits_data, perturbed_features, sample_gmm, sample_gmm_gram
from .fit import (
    GCE_Q,
    BlockExact,
    ExactFit,
    FeatureExact,
    GramExact,
    SoftExact,
    LinearFit,
    LinearModel,
    NotConvergedError,
    SoftFit,
    StackedLinear,
    fit_block,
    fit_features,
    fit_gram,
    fit_soft,
    prepare_gram,
)
from .measures import TIE_RULES, Agreement, accuracy, correct, perfect, pll_targets, split_accuracy
from .noise import NOISE_MODELS, corrupt_labels, label_counts, labels_from_counts, noise_matrix, one_hot
from .rounds import first_perfect, pll, sd

__all__ = [
    "features", "noise", "fit", "rounds", "measures",
    "PAPER", "block_gram", "load_digits_data", "perturbed_features", "sample_gmm", "sample_gmm_gram",
    "NOISE_MODELS", "corrupt_labels", "label_counts", "labels_from_counts", "noise_matrix", "one_hot",
    "GCE_Q", "BlockExact", "ExactFit", "FeatureExact", "GramExact", "SoftExact", "LinearFit", "LinearModel",
    "NotConvergedError", "SoftFit", "StackedLinear", "fit_block", "fit_features", "fit_gram", "fit_soft",
    "prepare_gram",
    "sd", "pll", "first_perfect",
    "TIE_RULES", "Agreement", "accuracy", "correct", "perfect", "pll_targets", "split_accuracy",
]
