"""Symbolic theory of label averaging in self-distillation of linear probes.

Derivations live in :mod:`theory.symbolic`, :mod:`theory.symbolic_exact` and
:mod:`theory.symbolic_gap` (sympy). Every closed form the numeric functions
below use was printed by sympy.lambdify into the checked-in module
:mod:`theory._generated` (``python -m theory.generate``; a test derives again
and fails when it is stale), so importing theory does not import sympy. Sign
decisions at boundaries evaluate the same expressions in exact rational
arithmetic.

Array conventions: targets/outputs are K x N (columns = instances, class-major);
per-type results are indexed [true class k, given label l, output class j].
"""

from .block_model import (
    block_eigenvalues,
    block_gram,
    block_projectors,
    filters,
    filters_exact,
    label_averaging_operator,
    spectral_operator,
)
from .conditions import (
    RoundsReport,
    all_correct,
    balanced_condition,
    correct_types,
    is_balanced,
    min_rounds,
    min_rounds_balanced,
    noise_threshold,
    noisy_threshold_fits,
    population_accuracy,
    rounds_report,
    train_accuracy,
)
from .corruption import (
    NOISE_MODELS,
    asymmetric,
    corruption_matrix,
    counts_from_labels,
    empirical_corruption,
    exact_label_counts,
    superclass,
    superclass_groups,
    symmetric,
)
from .pll import TIE_RULES, PLLReport, pll_analysis, pll_targets
from .exact_level import ExactRoundsReport, certified_rounds, exact_boundary, min_rounds_exact
from .predictions import (
    clustering_ratio,
    fresh_logits,
    instance_outputs,
    outputs_for_targets,
    type_outputs,
)

__all__ = [name for name in dir() if not name.startswith("_")]
