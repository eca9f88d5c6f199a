"""Multi-round self-distillation (SD) and the PLL student: the one loop over rounds.

Round 0 (the teacher) is fitted on the first targets (the one-hot given labels); round t on the outputs of
round t-1 on the training instances. The PLL student is one fit on the teacher's (round 0's) top-two
targets, 1/2 each (tie rule :func:`sims.engine.measures.pll_targets`), with cross-entropy (as in the
theory) or generalised cross-entropy (started from the teacher's solution, as in the paper's experiments).

Works with every engine of :mod:`sims.engine.fit` (linear or exact); what an engine decides in one place:

* warm starts -- round t starts from round t-1's solution iff ``engine.warm_rounds``; the GCE student
  always starts from the teacher (``engine.start_from``), the CE student from zero;
* absent instance types (block model) -- :class:`~sims.engine.fit.exact.BlockExact`;

and what counts as "perfect" is :func:`sims.engine.measures.perfect` (:func:`first_perfect` here).
"""

from __future__ import annotations

from theory.validate import check_rounds

from .measures import accuracy, first_perfect_round

__all__ = ["sd", "pll", "first_perfect"]


def sd(engine, targets, rounds: int, *, until=None, progress=None, first=None) -> list:
    """Fits of rounds 0..``rounds`` (``rounds + 1`` fits), round 0 on ``targets`` (in the engine's form).

    ``until(fit)`` (optional): stop after the first round for which it is true (the list is shorter);
    ``progress()`` is called after every fit; ``first`` (optional): round 0's fit, made already by the
    caller with this engine on ``targets`` (a teacher shared with other methods), used instead of a refit."""
    rounds = check_rounds("rounds", rounds)
    fits: list = []
    T = targets
    for _ in range(rounds + 1):
        if first is not None and not fits:
            fit = first
        else:
            start = engine.start_from(fits[-1]) if fits and engine.warm_rounds else None
            fit = engine.fit(T, start=start)
        fits.append(fit)
        if progress:
            progress()
        if until is not None and until(fit):
            break
        T = engine.next_targets(fit)
    return fits


def pll(engine, teacher, loss: str = "ce", ties: str = "share"):
    """PLL student: one fit on the teacher's top-two targets, CE from zero or GCE from the teacher."""
    T = engine.pll_targets(teacher, ties)
    start = engine.start_from(teacher) if loss == "gce" else None
    return engine.fit(T, loss=loss, start=start)


def first_perfect(fits, y) -> int | None:
    """First round whose outputs get every training instance right (:func:`measures.first_perfect_round`), or None."""
    return first_perfect_round(accuracy(f.outputs, y) for f in fits)
