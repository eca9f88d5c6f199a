"""When every training instance is predicted as its true class (steps (e) and (f)).

Two routes to the same answer, which the tests compare:

* :func:`min_rounds_balanced`, the closed form for balanced given labels,
  lambdified from :func:`theory.symbolic.derive_balanced_threshold`: a noisy
  instance (true k, label l) is pulled to k after s fits iff
  C_kk > C_kl and s > log((1 + Delta)/Delta) / log(beta/alpha), Delta = C_kk - C_kl;
  every instance of a class with label noise is correct iff additionally
  C_kk > C_kj for every other class j.
* :func:`rounds_report`, exact for any label shares (balanced or not): every
  margin is a sum of three exponentials in s (:func:`theory.predictions.margin_terms`),
  whose sign pattern over the integers is settled exactly by
  :func:`theory.rational.positive_rounds`.

Ties count as failures throughout. Rounds are t = 0 (teacher), 1, 2, ...; the
number of fits is s = t + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._generated import NOISE_THRESHOLDS, balanced_threshold_np
from .rational import exp_sum_sign, intersect_intervals, positive_rounds, rational_matrix
from .validate import check_corruption_matrix, check_fraction, check_int, check_rounds
from .block_model import filters, filters_exact
from .corruption import NOISE_MODELS
from .predictions import _fresh_margin_sign, margin_terms

__all__ = [
    "RoundsReport",
    "rounds_report",
    "min_rounds",
    "min_rounds_balanced",
    "balanced_condition",
    "noisy_threshold_fits",
    "correct_types",
    "all_correct",
    "train_accuracy",
    "population_accuracy",
    "noise_threshold",
    "is_balanced",
]



@dataclass(frozen=True)
class RoundsReport:
    """Rounds at which every training instance is predicted as its true class.

    first: the minimum round t (None: never). perfect_rounds: the rounds as
    intervals (a, b) of t, b None for "and every later round". perfect_forever:
    every round from ``first`` on is perfect. collapse_label: the most frequent
    given label when it is unique and the given labels are unbalanced (None
    otherwise); collapse_from: the first round from which every training
    instance is predicted as collapse_label (None: never).
    """

    first: int | None
    perfect_rounds: tuple
    perfect_forever: bool
    collapse_label: int | None
    collapse_from: int | None


def is_balanced(C) -> bool:
    """Given labels balanced: the column means of the label shares are exactly 1/K."""
    Cq = rational_matrix(check_corruption_matrix(C))
    return all(sum(column) == 1 for column in zip(*Cq))


def _rounds_where(bases, terms) -> list:
    """Intervals of s where every margin in ``terms`` is positive."""
    acc = [(1, None)]
    for triples in terms.values():
        for coefs in triples:
            acc = intersect_intervals(acc, positive_rounds(list(coefs), list(bases)))
            if not acc:
                return []
    return acc


def rounds_report(K: int, n: int, c: float, d: float, lam: float, C) -> RoundsReport:
    """Exact analysis over all rounds for any label shares C (see module doc)."""
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    bases, terms, (m, o) = margin_terms(K, n, c, d, lam, C)
    s_int = _rounds_where(bases, terms)
    t_int = tuple((a - 1, None if b is None else b - 1) for a, b in s_int)
    first = t_int[0][0] if t_int else None
    forever = bool(t_int) and len(t_int) == 1 and t_int[0][1] is None
    collapse_label = collapse_from = None
    # a unique most frequent given label (balanced labels, o = 1/K everywhere, have none)
    winners = [j for j in range(K) if o[j] == max(o)]
    if len(winners) == 1:
        collapse_label = winners[0]
        _, cterms, _ = margin_terms(K, n, c, d, lam, C, winner=collapse_label)
        c_int = _rounds_where(bases, cterms)
        if c_int and c_int[-1][1] is None:
            collapse_from = c_int[-1][0] - 1
    return RoundsReport(first, t_int, forever, collapse_label, collapse_from)


def min_rounds(K: int, n: int, c: float, d: float, lam: float, C) -> int | None:
    """Minimum round t after which every training instance is predicted as its true class (None: unreachable).

    Exact for any label shares (balanced or not), ties counting as failures.
    With unbalanced labels the perfect rounds may end again (see
    :func:`rounds_report`, collapse onto the most frequent given label).
    """
    return rounds_report(K, n, c, d, lam, C).first


def balanced_condition(C) -> bool:
    """Corruption condition (balanced labels): C_kk > C_kj for all j != k in every class with label noise.

    Checked in every class: a class without label noise has C_kk = 1 > 0 = C_kj anyway.
    """
    Cq = rational_matrix(check_corruption_matrix(C))
    K = len(Cq)
    return all(Cq[k][k] > Cq[k][j] for k in range(K) for j in range(K) if j != k)


def noisy_threshold_fits(K, n, c, d, lam, Ckk: float, Ckl: float) -> float:
    """log((1 + Delta)/Delta) / log(beta/alpha): the fits after which (true k, label l) is pulled to k.

    Lambdified from :func:`theory.symbolic.derive_balanced_threshold`.
    Requires Delta = Ckk - Ckl > 0 (else the instance is never corrected).
    """
    alpha, beta, _ = filters(K, n, c, d, lam)
    Ckk = check_fraction("Ckk", Ckk)
    Ckl = check_fraction("Ckl", Ckl)
    delta = Ckk - Ckl
    if not delta > 0:
        raise ValueError(f"C_kk - C_kl == {delta}, must be > 0 for the noisy instance to be correctable")
    return float(balanced_threshold_np(alpha, beta, delta))


def min_rounds_balanced(K: int, n: int, c: float, d: float, lam: float, C) -> int | None:
    """Closed form of the minimum round for balanced given labels (None: unreachable).

    t* = max over classes k and present wrong labels l of the smallest integer
    s > log((1 + Delta_kl)/Delta_kl) / log(beta/alpha), minus one; 0 if no
    label is wrong; None if the corruption condition fails. The float threshold
    locates s*, which is then confirmed exactly on the integers around it (a
    margin of exactly zero at s is a tie and fails).
    """
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    if not is_balanced(C):
        raise ValueError("C has column means != 1/K: given labels are unbalanced; use min_rounds (exact, general)")
    if not balanced_condition(C):
        return None
    alpha, beta, g = filters_exact(K, n, c, d, lam)
    Cq = rational_matrix(C)
    s_star = 1
    for k in range(K):
        for l in range(K):
            if l == k or Cq[k][l] == 0:
                continue
            delta = Cq[k][k] - Cq[k][l]
            thr = noisy_threshold_fits(K, n, c, d, lam, float(Cq[k][k]), float(Cq[k][l]))
            # the smallest integer s > thr is floor(thr) + 1; start the exact search two below it
            # no mutate: only where the exact search starts; _first_positive_fits is exact from any start >= 1
            start = max(1, math.floor(thr) - 1)  # pragma: no mutate
            # margin/1 = (beta^s - alpha^s) Delta - alpha^s
            s_star = max(s_star, _first_positive_fits([-(delta + 1), delta], [alpha, beta], start))
    return s_star - 1


def _first_positive_fits(coefs, bases, start: int) -> int:
    """Smallest s >= 1 with sum_i coefs[i] bases[i]^s > 0, for a sign pattern (<= 0 ... <= 0, > 0 ...) over s >= 1.

    Exact (:func:`theory.rational.exp_sum_sign`) from any integer ``start`` >= 1: walks down while
    s - 1 is positive too if ``start`` is positive, else up to the first positive s.
    """
    s = start
    if exp_sum_sign(coefs, bases, s) > 0:
        while s > 1 and exp_sum_sign(coefs, bases, s - 1) > 0:
            s -= 1
        return s
    s += 1  # start is not positive (already evaluated)
    while exp_sum_sign(coefs, bases, s) <= 0:
        s += 1
    return s


def correct_types(K: int, n: int, c: float, d: float, lam: float, C, t: int) -> np.ndarray:
    """K x K booleans: type (k, l) predicted as k after round t (exact; False for absent types)."""
    t = check_rounds("t", t)
    bases, terms, _ = margin_terms(K, n, c, d, lam, C)
    out = np.zeros((K, K), dtype=bool)
    for (k, l), triples in terms.items():
        out[k, l] = all(exp_sum_sign(list(cf), list(bases), t + 1) > 0 for cf in triples)
    return out


def all_correct(K: int, n: int, c: float, d: float, lam: float, C, t: int) -> bool:
    """Every training instance predicted as its true class after round t (exact)."""
    ok = correct_types(K, n, c, d, lam, C, t)  # validates K, C (K x K) and t
    return bool(np.all(ok[check_corruption_matrix(C) > 0]))


def train_accuracy(K: int, n: int, c: float, d: float, lam: float, C, t: int) -> dict:
    """Share of training instances predicted as their true class after round t: all, clean, noisy.

    Weights are the label shares (classes have n instances each). ``clean`` /
    ``noisy`` are None when there are no clean / noisy instances.
    """
    ok = correct_types(K, n, c, d, lam, C, t)  # validates K, C (K x K) and t
    W = check_corruption_matrix(C) / K
    diag = np.eye(K, dtype=bool)
    clean_w, noisy_w = W[diag].sum(), W[~diag].sum()
    return {
        "all": float((W * ok).sum()),
        "clean": float((W * ok)[diag].sum() / clean_w) if clean_w > 0 else None,
        "noisy": float((W * ok)[~diag].sum() / noisy_w) if noisy_w > 0 else None,
    }


def population_accuracy(K: int, n: int, c: float, d: float, lam: float, C, t: int) -> float:
    """Accuracy on fresh samples of the exact block model after round t (linearised, exact signs).

    A fresh class-k sample is correct iff its class-k logit beats every other
    (ties fail); classes are equally likely. With balanced labels its logits
    are proportional to C_k - U at every round, so this does not depend on t.
    """
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    t = check_rounds("t", t)
    m = C.tolist()
    o = C.mean(axis=0).tolist()
    correct = 0
    for k in range(K):
        if all(_fresh_margin_sign(K, n, c, d, lam, m, o, t, k, j) > 0 for j in range(K) if j != k):
            correct += 1
    return correct / K


def noise_threshold(noise: str, K: int, superclass_size: int = 2) -> float:
    """Largest noise rate eta (exclusive) at which C_kk > C_kj for all j != k.

    Lambdified from :func:`theory.symbolic.derive_noise_thresholds`: symmetric: (K - 1)/K; asymmetric (cyclic): K/(K + 2); superclass of size m:
    (m - 1)/m. At and above it the corruption condition fails for every
    number of rounds.
    """
    K = check_int("K", K, minimum=2)
    if noise in ("symmetric", "asymmetric"):
        return float(NOISE_THRESHOLDS[noise](K))
    if noise == "superclass":
        m = check_int("superclass_size", superclass_size, minimum=2)
        if K % m:  # also every m > K
            raise ValueError(f"superclass_size == {m}, must divide K == {K}")
        return float(NOISE_THRESHOLDS[noise](m))
    raise ValueError(f"noise == {noise!r}, must be one of {', '.join(NOISE_MODELS)}")
