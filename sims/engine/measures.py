"""Measures of a fit: accuracy with the suite's tie convention, clean/noisy split, "perfect", PLL targets,
and the informative agreement of two verdicts of "perfect" (:class:`Agreement`).

Outputs are (K, M) arrays (columns = instances): probabilities or logits; the
conventions only compare entries within a column.

Tie convention: an instance counts as correct only if its true class's output
exceeds every other output by more than ``TIE_TOL = 1e-9`` (ties are failures,
as in the theory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.validate import check_array, check_bool, check_labels

__all__ = [
    "TIE_TOL",
    "TIE_RULES",
    "margins",
    "correct",
    "accuracy",
    "split_accuracy",
    "perfect",
    "first_perfect_round",
    "Agreement",
    "pll_targets",
    "fresh_accuracy_from_class_logits",
]

TIE_TOL = 1e-9
TIE_RULES = ("share", "lowest")


def _as_outputs(P, y=None):
    """Outputs ``P`` (K, M) and, if given, their true labels ``y`` (M,)."""
    P = check_array("P", P, ndim=2)
    if P.shape[0] < 2:
        raise ValueError(f"P has shape {P.shape}, must be (K, M) outputs with K >= 2 classes")
    if y is None:
        return P, None
    return P, check_labels("y", y, P.shape[0], size=P.shape[1])


def margins(P, y) -> np.ndarray:
    """Per instance: output of the true class minus the largest other output."""
    P, y = _as_outputs(P, y)
    cols = np.arange(P.shape[1])
    own = P[y, cols]
    other = P.copy()
    other[y, cols] = -np.inf
    return own - other.max(axis=0)


def correct(P, y) -> np.ndarray:
    """Boolean per instance: true class ahead of every other output by more than TIE_TOL."""
    return margins(P, y) > TIE_TOL


def accuracy(P, y) -> float | None:
    """Share of correct instances (None for an empty set)."""
    ok = correct(P, y)
    return float(ok.mean()) if ok.size else None


def perfect(P, y) -> bool:
    """Every instance correct (accuracy exactly 1, ties failing); False for an empty set."""
    return accuracy(P, y) == 1.0


def first_perfect_round(accuracies) -> int | None:
    """First round whose training accuracy is exactly 1 (every instance correct, ties failing), or None.

    ``accuracies``: one per round t = 0, 1, ... (any iterable; read only up to the first perfect round)."""
    return next((t for t, a in enumerate(accuracies) if a == 1.0), None)


def split_accuracy(P, y, z) -> dict:
    """Accuracy against the true labels ``y`` on all, clean (``z == y``) and noisy (``z != y``) instances.

    An empty subset gives None.
    """
    P, y = _as_outputs(P, y)
    z = check_labels("z", z, P.shape[0], size=y.size)
    ok = correct(P, y)
    clean = z == y

    def share(mask):
        return float(ok[mask].mean()) if mask.any() else None

    return {"all": share(np.ones_like(clean)), "clean": share(clean), "noisy": share(~clean)}


def pll_targets(P, ties: str = "share") -> np.ndarray:
    """PLL targets (K, M) from teacher outputs: the top two classes with 1/2 each.

    Two outputs within TIE_TOL count as tied. ``ties="share"`` (default): if the
    largest output is unique it gets 1/2 and the other 1/2 is split equally among
    the classes tied for second place; if m >= 2 classes tie for first, each of
    them gets 1/m. ``ties="lowest"``: strict top two, ties broken towards the
    lowest class index.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties == {ties!r}, must be one of {', '.join(TIE_RULES)}")
    P, _ = _as_outputs(P)
    K, M = P.shape
    cols = np.arange(M)
    top = P.max(axis=0)
    first = P >= top - TIE_TOL
    if ties == "share":
        m = first.sum(axis=0)
        rest = np.where(first, -np.inf, P)
        second_top = rest.max(axis=0)
        second = (rest >= second_top - TIE_TOL) & ~first
        T = np.where(
            m >= 2,
            first / m,
            0.5 * first + 0.5 * second / np.maximum(second.sum(axis=0), 1),
        )
        return T.astype(np.float64)
    i1 = np.argmax(first, axis=0)  # lowest index among those tied for first
    rest = P.copy()
    rest[i1, cols] = -np.inf
    second = rest >= rest.max(axis=0) - TIE_TOL
    i2 = np.argmax(second, axis=0)
    T = np.zeros((K, M))
    T[i1, cols] = 0.5
    T[i2, cols] = 0.5
    return T


def fresh_accuracy_from_class_logits(L) -> float:
    """Balanced fresh-sample accuracy of the exact block model.

    ``L`` is (K, K) with row k = the logits of a fresh class-k sample (in the
    exact block model every fresh sample of a class has the same logits); the
    result is the share of classes whose row is correct under the tie convention.
    """
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"fresh logits have shape {L.shape}, must be (K, K)")
    return float(correct(L.T, np.arange(L.shape[0])).mean())


@dataclass(frozen=True)
class Agreement:
    """The theory's verdict "every training instance correct" against the observed one, over a set of cells.

    ``both`` / ``only_theory`` / ``only_observed`` / ``neither``; "theory" is the reference side (the
    linearised theory, the certified exact-level theory, or the exact block model a mixture is compared
    with), "observed" the simulation. ``informative`` = cells where either side says 100 %;
    ``agreement`` = both / informative (None without informative cells). Cells where both sides say
    "not perfect" are counted in ``neither`` and never in the agreement."""

    both: int = 0
    only_theory: int = 0
    only_observed: int = 0
    neither: int = 0

    RULE = ("agreement = both / (both + only theory + only observed): the share of informative cells (the theory "
            "or the simulation says 100 %) on which both say 100 %; cells where neither does are counted apart "
            "(neither), not as agreement; None when no cell is informative")

    @classmethod
    def of(cls, theory, observed) -> Agreement:
        """Counts of two equally long sequences of booleans (theory says 100 %, observed 100 %)."""
        p, o = np.asarray(theory), np.asarray(observed)
        if p.shape != o.shape or p.ndim != 1:
            raise ValueError(f"theory and observed have shapes {p.shape} and {o.shape}, must be equal 1-d")
        p = np.array([check_bool("theory", v) for v in p], dtype=bool)
        o = np.array([check_bool("observed", v) for v in o], dtype=bool)
        return cls(int(np.sum(p & o)), int(np.sum(p & ~o)), int(np.sum(~p & o)), int(np.sum(~p & ~o)))

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.both + other.both, self.only_theory + other.only_theory,
                         self.only_observed + other.only_observed, self.neither + other.neither)

    @property
    def cells(self) -> int:
        return self.both + self.only_theory + self.only_observed + self.neither

    @property
    def informative(self) -> int:
        return self.both + self.only_theory + self.only_observed

    @property
    def agreement(self) -> float | None:
        return self.both / self.informative if self.informative else None

    @property
    def all_cells_agreement(self) -> float | None:
        """(both + neither) / cells: the share of all cells on which the two verdicts are equal."""
        return (self.both + self.neither) / self.cells if self.cells else None

    def counts(self) -> dict:
        """{"both", "only_theory", "only_observed", "neither"}."""
        return {"both": self.both, "only_theory": self.only_theory, "only_observed": self.only_observed,
                "neither": self.neither}

    def text(self) -> str:
        if self.agreement is None:
            return f"no informative cells (neither side says 100 % in any of the {self.neither} cells)"
        return (f"{self.agreement:.4f} on {self.informative} informative cells (both 100 %: {self.both}, only theory: "
                f"{self.only_theory}, only observed: {self.only_observed}; neither: {self.neither})")

    def numbers(self, prefix: str) -> dict:
        return {f"{prefix}_both": self.both, f"{prefix}_only_theory": self.only_theory,
                f"{prefix}_only_observed": self.only_observed, f"{prefix}_neither": self.neither}
