"""The one-round PLL student (step (g)), linearised block model, exact signs.

The teacher (round 0, one fit on the given labels) ranks the classes for each
instance type; the PLL target keeps its top two with 1/2 each. The student is
one fit on these targets, so its outputs follow the same closed form as any
fit (:func:`theory.predictions.outputs_for_targets` with s = 1) with the PLL
targets in place of the labels.

Tie rule (the teacher's outputs tie exactly in symmetric settings, e.g. the
wrong classes of a clean instance under symmetric noise):

* ``"share"`` (default): if the teacher's largest output is unique, it gets
  1/2 and the classes tied for second place share the other 1/2 equally; if
  m >= 2 classes tie for first, each gets 1/m.
* ``"lowest"``: strict top two, ties broken towards the lower class index.

Results in words (balanced PLL targets, beta > alpha):

* the true class k of an instance is in the teacher's top two exactly when
  at most one class outranks it (decided per type, exactly, by
  :func:`pll_analysis`); a sufficient condition for every instance is
  C_kk > C_kj for every j != k in every class with label noise (then a noisy
  instance's own label can outrank k, nothing else can). It is not necessary:
  C = [[.4, .6, 0], [.6, .4, 0], [0, 0, 1]] fails it and every true class is
  still in the top two;
* if moreover every target gives the true class its full 1/2 (no shared
  tie), the student predicts every instance correctly iff, in every class,
  the class-mean PLL target gives strictly less than 1/2 to each wrong label
  (with a shared tie the true class may get only 1/4 and the student can fail
  even then: uniform noise with K = 3);
* with superclasses of two classes every instance of the pair gets the same
  pair of labels, the class-mean target gives exactly 1/2 to the partner
  class and the student's two outputs tie exactly: the condition fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .rational import exp_sum_sign, rational_matrix
from .validate import check_corruption_matrix, check_int
from .block_model import filters_exact
from .predictions import _fresh_margin_sign, margin_terms, score_exact

__all__ = ["PLLReport", "pll_targets", "pll_analysis", "TIE_RULES"]

TIE_RULES = ("share", "lowest")


def pll_targets(scores, ties: str = "share") -> list:
    """PLL target (list of K Fractions or floats) from one instance's teacher scores (exact comparison)."""
    if ties not in TIE_RULES:
        raise ValueError(f"ties == {ties!r}, must be one of {', '.join(TIE_RULES)}")
    K = len(scores)
    if K < 2:
        raise ValueError(f"scores has {K} entries, must have K >= 2")
    if not all(math.isfinite(float(v)) for v in scores):
        raise ValueError(f"scores == {list(scores)!r}, must be finite")
    order = sorted(range(K), key=lambda j: (-scores[j], j))  # stable: lower index first among ties
    target = [Fraction(0)] * K
    if ties == "lowest":
        target[order[0]] = target[order[1]] = Fraction(1, 2)
        return target
    top = scores[order[0]]
    first = [j for j in range(K) if scores[j] == top]
    if len(first) >= 2:
        for j in first:
            target[j] = Fraction(1, len(first))
        return target
    second_val = scores[order[1]]
    second = [j for j in range(K) if scores[j] == second_val]
    target[order[0]] = Fraction(1, 2)
    for j in second:
        target[j] = Fraction(1, 2 * len(second))
    return target


@dataclass(frozen=True)
class PLLReport:
    """Linearised PLL analysis on the block model (arrays indexed [true class k, given label l]).

    present: type occurs (C[k, l] > 0). teacher_correct / teacher_contains_true /
    student_correct: per type. targets: (K, K, K) PLL targets. class_mean_targets:
    (K, K) average PLL target of each class. max_wrong_share: per class, the
    largest average PLL share of a wrong label (the condition asks < 1/2).
    tied_pairs: (k, j) with share exactly 1/2, where the student ties.
    teacher/student train accuracy (share of instances), student fresh accuracy.
    """

    present: np.ndarray
    teacher_correct: np.ndarray
    teacher_contains_true: np.ndarray
    targets: np.ndarray
    class_mean_targets: np.ndarray
    max_wrong_share: np.ndarray
    condition: bool
    tied_pairs: tuple
    student_correct: np.ndarray
    teacher_train_accuracy: float
    student_train_accuracy: float
    student_all_correct: bool
    student_fresh_accuracy: float


def pll_analysis(K: int, n: int, c: float, d: float, lam: float, C, ties: str = "share") -> PLLReport:
    """Teacher ranking, PLL targets and one-round student, exact (see module doc)."""
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    if ties not in TIE_RULES:
        raise ValueError(f"ties == {ties!r}, must be one of {', '.join(TIE_RULES)}")
    alpha, beta, g = filters_exact(K, n, c, d, lam)
    Cq = rational_matrix(C)
    present = C > 0
    # Teacher scores after one fit, exactly: 1/K + alpha (e_l - m_k) + beta (m_k - o) + g (o - 1/K).
    m = Cq
    o = [sum(m[k][j] for k in range(K)) / K for j in range(K)]
    targets = np.zeros((K, K, K))
    Tq = [[None] * K for _ in range(K)]
    teacher_correct = np.zeros((K, K), dtype=bool)
    contains = np.zeros((K, K), dtype=bool)
    for k in range(K):
        for l in range(K):
            # the lambdified closed form (theory.symbolic.derive_type_scores) at s = 1, in Fractions
            sc = [score_exact(alpha, beta, g, 1, Fraction(int(j == l)), m[k][j], o[j], Fraction(K)) for j in range(K)]
            tq = pll_targets(sc, ties)
            Tq[k][l] = tq
            targets[k, l] = [float(v) for v in tq]
            teacher_correct[k, l] = all(sc[k] > sc[j] for j in range(K) if j != k)
            contains[k, l] = tq[k] > 0
    mean_t = [[sum(Cq[k][l] * Tq[k][l][j] for l in range(K)) for j in range(K)] for k in range(K)]
    wrong = np.array([max(float(mean_t[k][j]) for j in range(K) if j != k) for k in range(K)])
    tied = tuple((k, j) for k in range(K) for j in range(K) if j != k and mean_t[k][j] == Fraction(1, 2))
    condition = all(mean_t[k][j] < Fraction(1, 2) for k in range(K) for j in range(K) if j != k)
    bases, terms, (mm, oo) = margin_terms(K, n, c, d, lam, C, targets=Tq)
    student = np.zeros((K, K), dtype=bool)
    for (k, l), triples in terms.items():
        student[k, l] = all(exp_sum_sign(list(cf), list(bases), 1) > 0 for cf in triples)
    W = C / K
    fresh = sum(
        all(_fresh_margin_sign(K, n, c, d, lam, mm, oo, 0, k, j) > 0 for j in range(K) if j != k) for k in range(K)
    ) / K
    return PLLReport(
        present=present,
        teacher_correct=teacher_correct & present,
        teacher_contains_true=contains & present,
        targets=targets,
        class_mean_targets=np.array([[float(v) for v in row] for row in mean_t]),
        max_wrong_share=wrong,
        condition=condition,
        tied_pairs=tied,
        student_correct=student & present,
        teacher_train_accuracy=float((W * (teacher_correct & present)).sum()),
        student_train_accuracy=float((W * (student & present)).sum()),
        student_all_correct=bool(np.all(student[present])),
        student_fresh_accuracy=fresh,
    )

