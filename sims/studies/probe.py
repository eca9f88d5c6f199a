"""The practitioner's protocol on your own features: tuned teacher, SD, PLL and cleanlab on a linear probe.

Command line: ``python -m sims.probe --features FILE --labels FILE [...]`` (``--help`` lists the options);
files are read by :mod:`sims.studies.probe_data`.

Protocol, for each of ``--seeds`` repetitions (a stratified held-out split of ``--test-size``, or the given
test files, and its own fold assignment; every random number comes from one NumPy Generator seeded by
``--seed``):

1. the training features are standardised (``--standardize``, mean and scale from the training part);
2. stratified K-fold cross-validation (scikit-learn's StratifiedKFold, ``--folds``) on the NOISY training
   labels scores, for every lambda of ``--lams`` (or the one ``--lam``): the teacher (round 0), SD rounds
   1..``--rounds`` (round t fitted on round t-1's training outputs, warm-started), and the PLL student on
   the teacher's top-two targets (:func:`sims.engine.measures.pll_targets`), with CE from zero and with GCE
   (q = 0.7) from the teacher, as in :func:`sims.engine.rounds.pll`. The score is validation accuracy
   against the noisy labels (ties count as failures). Each method takes the lambda with the best mean
   score; SD takes (lambda, round) jointly. Ties go to the smaller round, then the smaller lambda.
3. cleanlab: :class:`cleanlab.classification.CleanLearning` with the same probe (:class:`sims.studies.probe_classifier.ProbeClassifier`)
   at the teacher's chosen lambda finds the label issues by its own cross-validation; the lambda of the
   probe refitted on the kept instances is chosen by stratified K-fold CV on them (noisy labels).
4. every method is refitted on the whole training part at its choice and scored on the test part (against
   the true test labels when known, else the given ones); paired differences to the tuned teacher over
   the repetitions give a 95 % t-interval.

Label-issue detectors (precision / recall against ``--true-labels``): ``cleanlab`` (CleanLearning's issues),
``cleanlab_filter`` (:func:`cleanlab.filter.find_label_issues` on the teacher's out-of-fold probabilities
from step 2), ``oof_disagree`` (given label not the out-of-fold teacher's top class), ``sd_disagree`` (given
label not the SD student's top class on the training set at its chosen (lambda, round)), ``pll_top2``
(given label not among the tuned teacher's top two classes: the PLL student's candidate set excludes it).

The theory from data (first repetition's training part): the K x K block means of the Gram matrix the
probe sees, scaled to unit mean diagonal, from class sums in O(N D) (:func:`block_means`), the superclasses
(:func:`sims.engine.features.class_mean_superclasses`), the corruption matrix C[true, given] from cleanlab's
confident joint on the out-of-fold probabilities (:func:`estimate_corruption`), and
:func:`theory.rounds_report` with them, next to what SD did on the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import theory
from theory.validate import check_block_correlations

from ..engine import features as feat
from ..engine import fit as fit_stage
from ..engine.fit import SoftExact
from ..engine.measures import accuracy, correct, pll_targets
from ..engine.noise import one_hot
from ..engine.rounds import pll, sd
from .._cli import OneLineParser, ProgressBar, atomic_write, check_output_dir, csv_text, write_text
from . import probe_data as pdata
from .runner import dask_client, settings_key

__all__ = [
    "METHODS", "DETECTORS", "RULE", "BLOCK_TOL", "DEFAULT_LAMS", "QUICK", "ProbeData",
    "block_means", "estimate_corruption", "paired_interval", "recommend", "run_probe", "build_parser", "main",
]

METHODS = ("teacher", "sd", "pll_ce", "pll_gce", "cleanlab")
METHOD_GROUPS = {"teacher": ("teacher",), "sd": ("sd",), "pll": ("pll_ce", "pll_gce"), "pll_ce": ("pll_ce",),
                 "pll_gce": ("pll_gce",), "cleanlab": ("cleanlab",)}
DETECTORS = ("cleanlab", "cleanlab_filter", "oof_disagree", "sd_disagree", "pll_top2")
DEFAULT_LAMS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
QUICK = {"seeds": 2, "folds": 3, "rounds": 3, "lams": (1e-3, 1e-2, 1e-1)}
BLOCK_TOL = 0.25
RULE = ("recommend the method with the highest mean test accuracy among those whose paired 95 % t-interval "
        "of the test-accuracy difference to the tuned teacher (over the seeds) lies entirely above 0; if "
        "there is none, the tuned teacher (ties: first in the order " + ", ".join(METHODS) + ")")
CSV_COLUMNS = ("seed", "stage", "method", "lam", "round", "cv_accuracy", "chosen", "test_accuracy",
               "train_accuracy_true", "train_accuracy_given", "flagged", "precision", "recall")


# ----------------------------------------------------------------------------------------------------
# the probe
# ----------------------------------------------------------------------------------------------------

def _softmax_cols(L):
    from scipy.special import softmax

    return softmax(L, axis=0)


def _blas1():
    return fit_stage.limit_blas_threads(1)


# ----------------------------------------------------------------------------------------------------
# the theory's quantities from data
# ----------------------------------------------------------------------------------------------------

def block_means(X, y, K: int) -> dict:
    """Block means of the Gram matrix X X^T / s (s = mean squared row norm, so the diagonal averages 1)
    from class sums S_k, in O(N D): between classes k != l, S_k . S_l / (n_k n_l s); within class k,
    (||S_k||^2 - sum_{i in k} ||x_i||^2) / (n_k (n_k - 1) s) (the diagonal left out).

    Returns ``scale`` s, ``B`` (K x K, within-class means on the diagonal), ``c_k``, ``c`` (mean of c_k),
    ``d`` (mean of the off-diagonal block means) and the spreads ``c_spread`` = std of c_k and
    ``d_spread`` = std of the off-diagonal block means, both in units of the gap c - d."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    N = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X)
    scale = float(sq.mean())
    S = np.zeros((K, X.shape[1]))
    np.add.at(S, y, X)
    n = np.bincount(y, minlength=K).astype(np.float64)
    if n.min() < 2:
        raise ValueError("every class needs at least 2 instances for a within-class mean")
    SS = S @ S.T
    B = SS / np.outer(n, n) / scale
    within = (np.diag(SS) - np.bincount(y, weights=sq, minlength=K)) / (n * (n - 1)) / scale
    B[np.diag_indices(K)] = within
    off = B[~np.eye(K, dtype=bool)]
    c, d = float(within.mean()), float(off.mean())
    gap = c - d
    return {"N": N, "scale": scale, "B": B, "c_k": within, "c": c, "d": d,
            "c_spread": float(within.std() / gap) if gap > 0 else math.inf,
            "d_spread": float(off.std() / gap) if gap > 0 else math.inf}


def estimate_corruption(labels, pred_probs, K: int) -> np.ndarray:
    """The suite's corruption matrix C[true, given] = P(given | true) (rows sum to 1) from cleanlab's
    confident-joint estimate on out-of-sample probabilities ``pred_probs`` (N, K).

    cleanlab's ``noise_matrix`` is P(given | true) indexed [given, true] (columns sum to 1): its
    transpose, rows renormalised against round-off."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.shape != (labels.size, K):
        raise ValueError(f"pred_probs has shape {pred_probs.shape}, must be ({labels.size}, {K})")
    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs)
    C = np.clip(np.asarray(noise_matrix, dtype=np.float64).T, 0.0, None)
    return C / C.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------------
# statistics and the rule
# ----------------------------------------------------------------------------------------------------

def paired_interval(diffs) -> dict:
    """Mean of paired differences and its 95 % t-interval (None bounds with fewer than 2 pairs)."""
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": int(d.size)}
    half = float(student_t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(d.size)}


def _mode_round(rounds) -> int:
    vals, counts = np.unique(np.asarray(rounds, dtype=np.int64), return_counts=True)
    return int(vals[np.argmax(counts)])


def recommend(methods: dict) -> dict:
    """:data:`RULE` applied to ``methods`` (name -> {"test_accuracy", "vs_teacher": {"low", ...}, ...})."""
    eligible = [m for m in METHODS if m in methods and m != "teacher"
                and methods[m]["vs_teacher"]["low"] is not None and methods[m]["vs_teacher"]["low"] > 0]
    choice = "teacher"
    if eligible:
        best = max(methods[m]["test_accuracy"] for m in eligible)
        choice = next(m for m in eligible if methods[m]["test_accuracy"] == best)
    if choice == "sd":
        t = _mode_round(methods["sd"]["round_per_seed"])
        text = f"distil for {t} round{'s' if t != 1 else ''}"
    elif choice == "pll_ce":
        text = "use PLL (the CE student)"
    elif choice == "pll_gce":
        text = "use PLL (the GCE student, q = 0.7)"
    elif choice == "cleanlab":
        text = "clean with cleanlab"
    else:
        text = "the tuned teacher is as good"
    return {"rule": RULE, "method": choice, "text": text, "eligible": eligible}


# ----------------------------------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------------------------------

@dataclass
class ProbeData:
    """Encoded data: training features and given labels (true labels optional); the test part as files
    (``X_test`` not None) or drawn per repetition with ``test_size``."""

    X: np.ndarray
    y: np.ndarray
    y_true: np.ndarray | None
    classes: list
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    y_test_true: np.ndarray | None = None
    test_size: float | None = None

    @property
    def K(self) -> int:
        return len(self.classes)


def _cv_cell(Xa, ya, Xv, yv, lam, K, rounds, want_pll):
    """One (fold, lambda): validation accuracies (noisy labels) of SD rounds 0..rounds and the PLL
    students, and the teacher's validation probabilities (K, M)."""
    with _blas1():
        engine = SoftExact(Xa, lam, Xv)
        fits = sd(engine, one_hot(ya, K), rounds)
        Lv = fits[0].fresh_logits
        out = {"sd": [accuracy(f.fresh_logits, yv) for f in fits], "oof": _softmax_cols(Lv)}
        if want_pll:
            out["pll_ce"] = accuracy(pll(engine, fits[0], "ce").fresh_logits, yv)
            out["pll_gce"] = accuracy(pll(engine, fits[0], "gce").fresh_logits, yv)
    return out


def _issue_scores(flags, noisy):
    flags = np.asarray(flags, dtype=bool)
    n_flag = int(flags.sum())
    if noisy is None:
        return n_flag, None, None
    hit = int((flags & noisy).sum())
    precision = hit / n_flag if n_flag else None
    recall = hit / int(noisy.sum()) if noisy.any() else None
    return n_flag, precision, recall


def _argbest(scores):
    """Index of the largest entry of a list (first on ties)."""
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))


def _final_unit(rep, Xtr, ytr, ytr_true, Xte, yte, lams, choice, oof_teacher, K, rounds, methods, folds,
                fold_state, cl_seed):
    """Refits at the chosen settings on the whole training part, test scores, detectors, cleanlab."""
    from sklearn.model_selection import StratifiedKFold

    rows, test, issues = [], {}, {}
    noisy = None if ytr_true is None else ytr != ytr_true

    def train_acc(P):
        return (None if ytr_true is None else accuracy(P, ytr_true)), accuracy(P, ytr)

    engines, teachers = {}, {}

    def engine(lam):
        if lam not in engines:
            engines[lam] = SoftExact(Xtr, lam, Xte)
        return engines[lam]

    def teacher_at(lam):  # one teacher fit per lambda, shared by the methods that chose it
        if lam not in teachers:
            teachers[lam] = engine(lam).fit(one_hot(ytr, K))
        return teachers[lam]

    with _blas1():
        lam_t = lams[choice["teacher"]]
        teacher = teacher_at(lam_t)
        test["teacher"] = accuracy(teacher.fresh_logits, yte)
        tt, tg = train_acc(teacher.outputs)
        rows.append({"stage": "test", "method": "teacher", "lam": lam_t, "round": 0,
                     "test_accuracy": test["teacher"], "train_accuracy_true": tt, "train_accuracy_given": tg})
        sd_rounds = []
        if "sd" in methods:
            lam_sd, r_sd = lams[choice["sd"][0]], choice["sd"][1]
            fits = sd(engine(lam_sd), one_hot(ytr, K), rounds, first=teacher_at(lam_sd))
            for t, f in enumerate(fits):
                a = accuracy(f.fresh_logits, yte)
                tt, tg = train_acc(f.outputs)
                sd_rounds.append({"round": t, "test_accuracy": a, "train_accuracy_true": tt,
                                  "train_accuracy_given": tg})
                rows.append({"stage": "sd_round", "method": "sd", "lam": lam_sd, "round": t, "test_accuracy": a,
                             "train_accuracy_true": tt, "train_accuracy_given": tg, "chosen": t == r_sd})
                if t == r_sd:
                    test["sd"] = a
                    issues["sd_disagree"] = ~correct(f.outputs, ytr)
                    rows.append({"stage": "test", "method": "sd", "lam": lam_sd, "round": t, "test_accuracy": a,
                                 "train_accuracy_true": tt, "train_accuracy_given": tg})
        for m, loss in (("pll_ce", "ce"), ("pll_gce", "gce")):
            if m not in methods:
                continue
            lam_p = lams[choice[m]]
            s = pll(engine(lam_p), teacher_at(lam_p), loss)
            test[m] = accuracy(s.fresh_logits, yte)
            tt, tg = train_acc(s.outputs)
            rows.append({"stage": "test", "method": m, "lam": lam_p, "round": 1, "test_accuracy": test[m],
                         "train_accuracy_true": tt, "train_accuracy_given": tg})
        issues["pll_top2"] = pll_targets(teacher.outputs)[ytr, np.arange(ytr.size)] == 0
        issues["oof_disagree"] = ~correct(oof_teacher, ytr)

        from cleanlab.filter import find_label_issues

        issues["cleanlab_filter"] = np.asarray(find_label_issues(ytr, oof_teacher.T, n_jobs=1), dtype=bool)
        lam_cl = None
        cl_note = None
        if "cleanlab" in methods:
            from cleanlab.classification import CleanLearning

            from .probe_classifier import ProbeClassifier

            finder = CleanLearning(ProbeClassifier(lam_t, K), seed=cl_seed, cv_n_folds=folds,
                                   find_label_issues_kwargs={"n_jobs": 1})
            found = finder.find_label_issues(Xtr, ytr)
            keep = ~found["is_label_issue"].to_numpy(dtype=bool)
            issues["cleanlab"] = ~keep
            Xk, yk = Xtr[keep], ytr[keep]
            counts = np.bincount(yk, minlength=K)
            if len(lams) == 1:
                lam_cl = lams[0]
            elif counts.min() < folds:
                lam_cl = lam_t
                cl_note = (f"seed {rep}: after cleaning, a class has {int(counts.min())} < --folds instances; "
                           "cleanlab's probe keeps the teacher's lambda")
            else:
                skf = StratifiedKFold(folds, shuffle=True, random_state=int(fold_state))
                scores = np.zeros(len(lams))
                for a, v in skf.split(Xk, yk):
                    for j, lam in enumerate(lams):
                        scores[j] += accuracy(SoftExact(Xk[a], lam, Xk[v]).fit(one_hot(yk[a], K)).fresh_logits, yk[v])
                scores /= folds
                jbest = _argbest(scores)
                lam_cl = lams[jbest]
                choice["cleanlab"] = jbest
                for j, lam in enumerate(lams):
                    rows.append({"stage": "cv", "method": "cleanlab", "lam": lam, "round": 0,
                                 "cv_accuracy": float(scores[j]), "chosen": j == jbest})
            model = CleanLearning(ProbeClassifier(lam_cl, K), seed=cl_seed, cv_n_folds=folds,
                                  find_label_issues_kwargs={"n_jobs": 1})
            model.fit(Xtr, ytr, label_issues=found)
            test["cleanlab"] = accuracy(model.predict_proba(Xte).T, yte)
            rows.append({"stage": "test", "method": "cleanlab", "lam": lam_cl, "round": 0,
                         "test_accuracy": test["cleanlab"], "flagged": int((~keep).sum())})
    for name in DETECTORS:
        if name in issues:
            n_flag, prec, rec = _issue_scores(issues[name], noisy)
            rows.append({"stage": "issues", "method": name, "flagged": n_flag, "precision": prec, "recall": rec})
    return {"rows": rows, "test": test, "lam_cleanlab": lam_cl, "note": cl_note, "sd_rounds": sd_rounds,
            "cleanlab_choice": choice.get("cleanlab")}


def _parallel(fn, arg_list, jobs, backend, bar):
    """fn(*args) for every args, results in order; joblib (optionally its dask backend) when parallel."""
    if jobs == 1 and backend is None:
        out = []
        for a in arg_list:
            out.append(fn(*a))
            bar.update(1)
        return out
    from joblib import Parallel, delayed, parallel_backend

    with parallel_backend(backend) if backend else contextlib.nullcontext():
        par = Parallel(n_jobs=-1 if backend else jobs, return_as="generator")
        out = []
        for r in par(delayed(fn)(*a) for a in arg_list):
            out.append(r)
            bar.update(1)
        return out


def _repetition_data(data: ProbeData, split_state: int, standardize: bool):
    """(X_train, y_train, y_train_true, X_test, y_test_scored) of one repetition."""
    if data.X_test is not None:
        Xtr, ytr, ytt = data.X, data.y, data.y_true
        Xte = data.X_test
        yte = data.y_test_true if data.y_test_true is not None else data.y_test
    else:
        from sklearn.model_selection import StratifiedShuffleSplit

        sss = StratifiedShuffleSplit(n_splits=1, test_size=data.test_size, random_state=int(split_state))
        tr, te = next(sss.split(np.zeros(data.y.size), data.y))
        tr, te = np.sort(tr), np.sort(te)
        Xtr, ytr = data.X[tr], data.y[tr]
        ytt = None if data.y_true is None else data.y_true[tr]
        Xte = data.X[te]
        yte = data.y[te] if data.y_true is None else data.y_true[te]
    Xtr = np.array(Xtr, dtype=np.float64)
    Xte = np.array(Xte, dtype=np.float64)
    if standardize:
        mu = Xtr.mean(axis=0)
        scale = Xtr.std(axis=0)
        scale[scale == 0] = 1.0
        Xtr = (Xtr - mu) / scale
        Xte = (Xte - mu) / scale
    return Xtr, ytr, ytt, Xte, yte


def run_probe(data: ProbeData, *, seeds: int, seed: int, folds: int, rounds: int, lams, methods,
              standardize: bool, jobs: int = 1, backend=None, progress: bool = True, prog: str = "") -> dict:
    """The protocol (module doc). Returns {"json": ..., "rows": [...]}; deterministic for a seed, for any
    ``jobs`` / backend."""
    from sklearn.model_selection import StratifiedKFold

    K = data.K
    lams = tuple(float(v) for v in lams)
    methods = tuple(m for m in METHODS if m in methods)
    want_pll = any(m in methods for m in ("pll_ce", "pll_gce"))
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 2**31 - 1, size=(seeds, 3))  # split, folds, cleanlab's seed
    reps = [_repetition_data(data, states[r, 0], standardize) for r in range(seeds)]
    for r, (Xtr, ytr, *_rest) in enumerate(reps):
        pdata.class_counts_check(f"seed {r}: the training part", ytr, K, minimum=folds,
                                 why=f" for --folds {folds} (lower --folds or --test-size)", names=data.classes)
    fold_sets = [list(StratifiedKFold(folds, shuffle=True, random_state=int(states[r, 1])).split(rep[0], rep[1]))
                 for r, rep in enumerate(reps)]
    cells = [(r, f, j) for r in range(seeds) for f in range(folds) for j in range(len(lams))]
    bar = ProgressBar(len(cells) + seeds, "probe", enabled=progress)
    try:
        cell_out = _parallel(_cv_cell, [
            (reps[r][0][fold_sets[r][f][0]], reps[r][1][fold_sets[r][f][0]], reps[r][0][fold_sets[r][f][1]],
             reps[r][1][fold_sets[r][f][1]], lams[j], K, rounds, want_pll) for r, f, j in cells], jobs, backend, bar)
        res = {c: o for c, o in zip(cells, cell_out)}
        rows, choices, oofs = [], [], []
        for r in range(seeds):
            ntr = reps[r][1].size
            sd_scores = np.array([[np.mean([res[(r, f, j)]["sd"][t] for f in range(folds)])
                                   for j in range(len(lams))] for t in range(rounds + 1)])  # (round, lam)
            choice = {"teacher": _argbest(sd_scores[0])}
            flat = _argbest(sd_scores.reshape(-1))
            choice["sd"] = (flat % len(lams), flat // len(lams))
            for m in ("pll_ce", "pll_gce"):
                if m in methods:
                    sc = [np.mean([res[(r, f, j)][m] for f in range(folds)]) for j in range(len(lams))]
                    choice[m] = _argbest(sc)
                    for j, lam in enumerate(lams):
                        rows.append({"seed": r, "stage": "cv", "method": m, "lam": lam, "round": 1,
                                     "cv_accuracy": float(sc[j]), "chosen": j == choice[m]})
            for t in range(rounds + 1):
                for j, lam in enumerate(lams):
                    if t == 0:
                        rows.append({"seed": r, "stage": "cv", "method": "teacher", "lam": lam, "round": 0,
                                     "cv_accuracy": float(sd_scores[0, j]), "chosen": j == choice["teacher"]})
                    if "sd" in methods:
                        rows.append({"seed": r, "stage": "cv", "method": "sd", "lam": lam, "round": t,
                                     "cv_accuracy": float(sd_scores[t, j]), "chosen": (j, t) == choice["sd"]})
            oof = np.zeros((K, ntr))
            for f in range(folds):
                oof[:, fold_sets[r][f][1]] = res[(r, f, choice["teacher"])]["oof"]
            choices.append(choice)
            oofs.append(oof)
        finals = _parallel(_final_unit, [
            (r, reps[r][0], reps[r][1], reps[r][2], reps[r][3], reps[r][4], lams, dict(choices[r]), oofs[r], K,
             rounds, methods, folds, states[r, 1], int(states[r, 2])) for r in range(seeds)], jobs, backend, bar)
    finally:
        bar.close()
    for r, fin in enumerate(finals):
        for row in fin["rows"]:
            rows.append({"seed": r, **row})
        if fin["cleanlab_choice"] is not None:
            choices[r]["cleanlab"] = fin["cleanlab_choice"]
    rows = [{c: row.get(c) for c in CSV_COLUMNS} for row in rows]
    stage_order = {"cv": 0, "sd_round": 1, "test": 2, "issues": 3}
    rows.sort(key=lambda w: (w["seed"], stage_order[w["stage"]], (METHODS + DETECTORS).index(w["method"]),
                             w["lam"] if w["lam"] is not None else 0.0, w["round"] or 0))

    warnings = []
    for note in (fin["note"] for fin in finals):
        if note:
            warnings.append(note)
    out_methods = {}
    for m in methods:
        accs = [fin["test"][m] for fin in finals]
        if m == "cleanlab":
            lam_seed = [fin["lam_cleanlab"] for fin in finals]
        elif m == "sd":
            lam_seed = [lams[c["sd"][0]] for c in choices]
        else:
            lam_seed = [lams[c[m]] for c in choices]
        entry = {"test_accuracy": float(np.mean(accs)), "test_accuracy_per_seed": accs, "lam_per_seed": lam_seed}
        if m == "sd":
            entry["round_per_seed"] = [int(c["sd"][1]) for c in choices]
        base = [fin["test"]["teacher"] for fin in finals]
        entry["vs_teacher"] = (paired_interval(np.subtract(accs, base)) if m != "teacher"
                               else {"mean": 0.0, "low": None, "high": None, "n": seeds})
        out_methods[m] = entry
        if len(lams) > 1:
            for edge, value in (("lower", lams[0]), ("upper", lams[-1])):
                hit = [r for r, v in enumerate(lam_seed) if v == value]
                if hit:
                    warnings.append(f"{m}: the chosen lambda {value:g} is at the {edge} edge of the grid "
                                    f"[{lams[0]:g}, {lams[-1]:g}] in seed(s) {', '.join(map(str, hit))}; "
                                    "widen --lams")
    issues = {}
    for name in DETECTORS:
        rs = [w for w in rows if w["stage"] == "issues" and w["method"] == name]
        if not rs:
            continue

        def mean_of(key):
            vals = [w[key] for w in rs if w[key] is not None]
            return float(np.mean(vals)) if vals else None

        issues[name] = {"flagged": mean_of("flagged"), "precision": mean_of("precision"), "recall": mean_of("recall")}
    rec = recommend(out_methods)
    th = _theory_section(reps[0], lams, choices[0], oofs[0], finals[0], K)
    js = {
        "command": "sims.probe",
        "settings": {"seeds": seeds, "seed": seed, "folds": folds, "rounds": rounds, "lams": list(lams),
                     "methods": list(methods), "standardize": standardize,
                     "test": "files" if data.X_test is not None else f"held-out fraction {data.test_size}"},
        "data": {"N": int(data.y.size), "N_train": int(reps[0][1].size), "N_test": int(reps[0][4].size),
                 "D": int(data.X.shape[1]), "K": K, "classes": [c if isinstance(c, str) else c for c in data.classes],
                 "true_labels": data.y_true is not None,
                 "test_scored_against": "true labels" if (data.y_true is not None if data.X_test is None
                                                          else data.y_test_true is not None) else "given labels",
                 "train_noise_rate": (None if data.y_true is None else float(np.mean(data.y != data.y_true)))},
        "methods": out_methods,
        "label_issues": issues,
        "recommendation": rec,
        "theory": th,
        "warnings": warnings,
    }
    return {"json": js, "rows": rows}


def _theory_section(rep, lams, choice, oof, fin, K) -> dict:
    Xtr, ytr, ytt, _, _ = rep
    y_struct = ytt if ytt is not None else ytr
    bm = block_means(Xtr, y_struct, K)
    groups, _, _ = feat.class_mean_superclasses(Xtr, y_struct, K)
    C = estimate_corruption(ytr, oof.T, K)
    lam_sd = lams[choice["sd"][0]]
    lam_theory = lam_sd / bm["scale"]
    n = int(round(ytr.size / K))
    out = {"structure_from": "true labels" if ytt is not None else "given labels",
           "K": K, "n": n, "c": bm["c"], "d": bm["d"], "c_k": bm["c_k"].tolist(), "block_means": bm["B"].tolist(),
           "scale": bm["scale"], "c_spread": bm["c_spread"], "d_spread": bm["d_spread"], "block_tol": BLOCK_TOL,
           "superclasses": groups, "C_estimated": C.tolist(), "lam": lam_sd, "lam_theory": lam_theory}
    reasons = []
    if not bm["c"] > bm["d"]:
        reasons.append(f"c = {bm['c']:.3g} is not above d = {bm['d']:.3g}")
    else:
        if bm["c_spread"] > BLOCK_TOL:
            reasons.append(f"the within-class means c_k spread by {bm['c_spread']:.2f} (std) x (c - d) > {BLOCK_TOL}")
        if bm["d_spread"] > BLOCK_TOL:
            reasons.append(f"the between-class block means spread by {bm['d_spread']:.2f} (std) x (c - d) > "
                           f"{BLOCK_TOL}")
    out["block_model_fits"] = not reasons
    out["block_model_reasons"] = reasons
    t_star = forever = None
    applicable = None
    try:
        check_block_correlations(K, n, bm["c"], bm["d"])
        report = theory.rounds_report(K, n, bm["c"], bm["d"], lam_theory, C)
        t_star, forever = report.first, report.perfect_forever
    except ValueError as err:
        applicable = str(err)
    out["t_star"] = t_star
    out["perfect_forever"] = forever
    out["not_applicable"] = applicable
    sd_rounds = fin["sd_rounds"]
    observed_first = None
    if sd_rounds and sd_rounds[0]["train_accuracy_true"] is not None:
        observed_first = next((w["round"] for w in sd_rounds if w["train_accuracy_true"] == 1.0), None)
    out["observed"] = {
        "cv_round": int(choice["sd"][1]),
        "train_accuracy_true_per_round": [w["train_accuracy_true"] for w in sd_rounds],
        "first_perfect_round": observed_first,
        "rounds_fitted": len(sd_rounds) - 1,
    }
    out["agreement"] = None
    if applicable is None and sd_rounds and sd_rounds[0]["train_accuracy_true"] is not None:
        R = len(sd_rounds) - 1
        predicted = t_star if t_star is not None and t_star <= R else None
        if predicted == observed_first:
            out["agreement"] = ("agree: " + ("neither reaches 100 % within the fitted rounds" if predicted is None
                                             else f"both reach 100 % first at round {predicted}"))
        else:
            out["agreement"] = (f"disagree: the theory says {'never' if t_star is None else f'round {t_star}'}, "
                                f"the data {'never' if observed_first is None else f'round {observed_first}'} "
                                f"(within rounds 0..{R})")
    return out


# ----------------------------------------------------------------------------------------------------
# text report and figure
# ----------------------------------------------------------------------------------------------------

def _pct(v):
    return "   n/a" if v is None else f"{100 * v:6.2f}"


def format_report(js: dict) -> str:
    d = js["data"]
    lines = [f"probe: N = {d['N_train']} train / {d['N_test']} test, D = {d['D']}, K = {d['K']}; "
             f"test scored against the {d['test_scored_against']}; {js['settings']['seeds']} seed(s), "
             f"{js['settings']['folds']}-fold CV on the noisy labels"]
    if d["train_noise_rate"] is not None:
        lines.append(f"given labels wrong on {100 * d['train_noise_rate']:.1f} % of the instances")
    lines.append("method     test acc %   vs tuned teacher (points, paired 95 % t-interval)   lambda per seed")
    for m, e in js["methods"].items():
        v = e["vs_teacher"]
        if m == "teacher":
            diff = "(baseline)"
        elif v["low"] is None:
            diff = f"{100 * v['mean']:+.2f} (no interval with one seed)"
        else:
            diff = f"{100 * v['mean']:+.2f} [{100 * v['low']:+.2f}, {100 * v['high']:+.2f}]"
        extra = f"; rounds {e['round_per_seed']}" if m == "sd" else ""
        lines.append(f"{m:10s} {_pct(e['test_accuracy'])}       {diff:48s} "
                     f"{', '.join(f'{x:g}' for x in e['lam_per_seed'])}{extra}")
    if js["label_issues"]:
        lines.append("label issues  flagged  precision %  recall %")
        for name, e in js["label_issues"].items():
            lines.append(f"{name:15s} {e['flagged']:7.1f}  {_pct(e['precision'])}      {_pct(e['recall'])}")
    rec = js["recommendation"]
    lines.append(f"recommendation: {rec['text']}")
    lines.append(f"rule: {rec['rule']}")
    th = js["theory"]
    lines.append(f"theory from data (structure from the {th['structure_from']}): c = {th['c']:.4f} (c_k "
                 f"{min(th['c_k']):.3f} .. {max(th['c_k']):.3f}), d = {th['d']:.4f}, n = {th['n']}, "
                 f"superclasses {th['superclasses']}")
    if th["block_model_fits"]:
        lines.append(f"block model: describes the data (spreads of c_k and of the between-class means below "
                     f"{th['block_tol']} x (c - d))")
    else:
        lines.append("block model does NOT describe the data: " + "; ".join(th["block_model_reasons"]))
    if th["not_applicable"]:
        lines.append(f"theory: not applicable ({th['not_applicable']})")
    else:
        t = th["t_star"]
        lines.append(f"theory (lambda {th['lam']:g}, i.e. {th['lam_theory']:.3g} on the unit-diagonal Gram; C "
                     f"estimated): every training instance correct "
                     + ("never" if t is None else f"from round t* = {t}"
                        + ("" if th["perfect_forever"] else " (not in every later round)")))
    ob = th["observed"]
    first = ob["first_perfect_round"]
    if ob["train_accuracy_true_per_round"] and ob["train_accuracy_true_per_round"][0] is not None:
        best = max(ob["train_accuracy_true_per_round"])
        seen = (f"100 % training accuracy on the true labels first at round {first}" if first is not None else
                f"100 % training accuracy on the true labels never reached in rounds 0..{ob['rounds_fitted']} "
                f"(best {100 * best:.2f} %)")
    else:
        seen = "training accuracy on the true labels unknown (no --true-labels)"
    lines.append(f"observed: CV chose round {ob['cv_round']}; {seen}")
    if th["agreement"] is not None:
        lines.append(f"theory vs observed: {th['agreement']}")
    return "\n".join(lines)


def write_figure(path: Path, js: dict, rows: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(js["methods"])
    for i, m in enumerate(names):
        e = js["methods"][m]
        a1.scatter([i] * len(e["test_accuracy_per_seed"]), 100 * np.asarray(e["test_accuracy_per_seed"]),
                   color="0.6", s=12, zorder=2)
        a1.scatter([i], [100 * e["test_accuracy"]], color="C0", marker="_", s=400, zorder=3)
    a1.set_xticks(range(len(names)), names)
    a1.set_ylabel("test accuracy %")
    a1.set_title(f"per seed (dots) and mean; recommendation: {js['recommendation']['text']}", fontsize=8)
    sd = [w for w in rows if w["stage"] == "sd_round"]
    if sd:
        R = max(w["round"] for w in sd)
        t = np.arange(R + 1)
        for key, label, col in (("test_accuracy", "test", "C0"), ("train_accuracy_true", "train vs true labels", "C1"),
                                ("train_accuracy_given", "train vs given labels", "C2")):
            vals = [[w[key] for w in sd if w["round"] == s] for s in t]
            if all(v is not None for vs in vals for v in vs):
                a2.plot(t, [100 * np.mean(v) for v in vals], marker="o", color=col, label=label)
        a2.set_xlabel("SD round (at each seed's chosen lambda)")
        a2.set_ylabel("accuracy %")
        a2.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------

def _positive_floats(option, text) -> tuple:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} == {text!r}, must be comma-separated positive numbers") from None
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"{option} == {text!r}, must be comma-separated positive numbers")
    return tuple(sorted(set(vals)))


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m sims.probe", description=(
        "Linear probe on your own features under label noise: the CV-tuned teacher, SD, the PLL student and "
        "cleanlab, paired 95 % intervals over seeds, label-issue detection, a recommendation by a stated "
        "rule, and the theory's round count from the data."))
    p.add_argument("--features", required=True, metavar="FILE", help="training features (N, D): .npy .npz .csv .parquet")
    p.add_argument("--labels", required=True, metavar="FILE", help="given (noisy) training labels, any type")
    p.add_argument("--true-labels", metavar="FILE", help="true training labels (to score)")
    p.add_argument("--test-size", type=float, default=None, metavar="F",
                   help="held-out stratified fraction per seed (default 0.25 without --test-features)")
    p.add_argument("--test-features", metavar="FILE", help="test features (instead of --test-size)")
    p.add_argument("--test-labels", metavar="FILE", help="given test labels (with --test-features)")
    p.add_argument("--test-true-labels", metavar="FILE", help="true test labels (scored against when given)")
    p.add_argument("--standardize", action="store_true", help="standardise features (training mean and scale)")
    p.add_argument("--methods", default="teacher,sd,pll,cleanlab",
                   help="comma list of teacher, sd, pll (= pll_ce and pll_gce), pll_ce, pll_gce, cleanlab; the "
                        "teacher always runs (the baseline)")
    p.add_argument("--lam", type=float, default=None, metavar="L", help="fixed lambda instead of CV over --lams")
    p.add_argument("--lams", default=None, metavar="L1,L2,...",
                   help="lambda grid for CV (default " + ",".join(f"{v:g}" for v in DEFAULT_LAMS) + ")")
    p.add_argument("--rounds", type=int, default=None, metavar="R", help="max SD rounds (default 5)")
    p.add_argument("--folds", type=int, default=None, metavar="F", help="CV folds (default 5)")
    p.add_argument("--seeds", type=int, default=None, metavar="S", help="repetitions for paired intervals (default 3)")
    p.add_argument("--seed", type=int, default=0, help="the one random seed (splits, folds, cleanlab)")
    p.add_argument("--quick", action="store_true",
                   help=f"small defaults: {QUICK['seeds']} seeds, {QUICK['folds']} folds, {QUICK['rounds']} rounds, "
                        f"lambdas {','.join(f'{v:g}' for v in QUICK['lams'])} (explicit options win)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="parallel joblib workers (-1: all cores)")
    p.add_argument("--dask-scheduler", default=None, metavar="ADDR",
                   help="address of a Dask scheduler: run folds, lambdas and seeds there through joblib")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default results/probe/<key>/)")
    p.add_argument("--json", action="store_true", help="print the JSON on stdout instead of the text report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(args) -> ProbeData:
    if args.test_features is not None and args.test_size is not None:
        raise ValueError("--test-size and --test-features exclude each other")
    if (args.test_features is None) != (args.test_labels is None):
        raise ValueError("--test-features and --test-labels go together")
    if args.test_true_labels is not None and args.test_features is None:
        raise ValueError("--test-true-labels needs --test-features and --test-labels")
    X = pdata.read_features("--features", args.features)
    z = pdata.read_labels("--labels", args.labels)
    if z.size != X.shape[0]:
        raise ValueError(f"shape mismatch: --labels has {z.size} labels, --features has {X.shape[0]} rows")
    codec = pdata.LabelCodec("--labels", z)
    if len(codec.classes) < 2:
        raise ValueError(f"--labels == {args.labels!r}: one class only, needs at least 2")
    y = codec.encode("--labels", z)
    K = len(codec.classes)
    names = [codec.name(k) for k in range(K)]
    pdata.class_counts_check(f"--labels == {args.labels!r}", y, K, names=names)
    y_true = None
    if args.true_labels is not None:
        t = pdata.read_labels("--true-labels", args.true_labels)
        if t.size != X.shape[0]:
            raise ValueError(f"shape mismatch: --true-labels has {t.size} labels, --features has {X.shape[0]} rows")
        y_true = codec.encode(f"--true-labels == {args.true_labels!r}", t)
    data = ProbeData(X=X, y=y, y_true=y_true, classes=names)
    if args.test_features is not None:
        Xt = pdata.read_features("--test-features", args.test_features)
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(f"shape mismatch: --test-features has {Xt.shape[1]} columns, --features has "
                             f"{X.shape[1]}")
        zt = pdata.read_labels("--test-labels", args.test_labels)
        if zt.size != Xt.shape[0]:
            raise ValueError(f"shape mismatch: --test-labels has {zt.size} labels, --test-features has "
                             f"{Xt.shape[0]} rows")
        data.X_test, data.y_test = Xt, codec.encode(f"--test-labels == {args.test_labels!r}", zt)
        if args.test_true_labels is not None:
            tt = pdata.read_labels("--test-true-labels", args.test_true_labels)
            if tt.size != Xt.shape[0]:
                raise ValueError(f"shape mismatch: --test-true-labels has {tt.size} labels, --test-features has "
                                 f"{Xt.shape[0]} rows")
            data.y_test_true = codec.encode(f"--test-true-labels == {args.test_true_labels!r}", tt)
    else:
        data.test_size = 0.25 if args.test_size is None else args.test_size
        n_test = math.ceil(data.test_size * y.size)
        if n_test < K or y.size - n_test < K:
            raise ValueError(f"--test-size == {data.test_size}: {n_test} test and {y.size - n_test} training "
                             f"instances, each needs at least K == {K}")
    return data


def _settings(args) -> dict:
    q = args.quick
    seeds = args.seeds if args.seeds is not None else (QUICK["seeds"] if q else 3)
    folds = args.folds if args.folds is not None else (QUICK["folds"] if q else 5)
    rounds = args.rounds if args.rounds is not None else (QUICK["rounds"] if q else 5)
    if args.lam is not None and args.lams is not None:
        raise ValueError("--lam and --lams exclude each other")
    if args.lam is not None:
        if not (math.isfinite(args.lam) and args.lam > 0):
            raise ValueError(f"--lam == {args.lam}, must be a positive number")
        lams = (float(args.lam),)
    elif args.lams is not None:
        lams = _positive_floats("--lams", args.lams)
    else:
        lams = QUICK["lams"] if q else DEFAULT_LAMS
    if seeds < 1:
        raise ValueError(f"--seeds == {seeds}, must be >= 1")
    if folds < 2:
        raise ValueError(f"--folds == {folds}, must be >= 2")
    if rounds < 0:
        raise ValueError(f"--rounds == {rounds}, must be >= 0")
    if args.jobs == 0 or args.jobs < -1:
        raise ValueError(f"--jobs == {args.jobs}, must be >= 1 or -1 (all cores)")
    if args.test_size is not None and not (0 < args.test_size < 1):
        raise ValueError(f"--test-size == {args.test_size}, must be in (0, 1)")
    methods = []
    for name in (s.strip() for s in args.methods.split(",")):
        if name not in METHOD_GROUPS:
            raise ValueError(f"--methods: unknown method {name!r}, must be among {', '.join(METHOD_GROUPS)}")
        methods += METHOD_GROUPS[name]
    methods = tuple(m for m in METHODS if m == "teacher" or m in methods)
    return {"seeds": seeds, "folds": folds, "rounds": rounds, "lams": lams, "methods": methods}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog

    start = time.perf_counter()
    try:
        s = _settings(args)
        if args.out is not None:
            out = check_output_dir("--out", args.out)
        data = _load(args)
        if args.out is None:
            key = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}
            key.update(seed=args.seed, standardize=args.standardize, test_size=data.test_size,
                       files=[_file_digest(f) for f in (args.features, args.labels, args.true_labels,
                                                        args.test_features, args.test_labels,
                                                        args.test_true_labels) if f is not None])
            out = check_output_dir("output folder", Path("results") / "probe" / settings_key(key))
    except ValueError as err:
        return parser.fail(err)
    client = None
    try:
        if args.dask_scheduler is not None:
            client = dask_client(args.dask_scheduler)
        result = run_probe(data, seeds=s["seeds"], seed=args.seed, folds=s["folds"], rounds=s["rounds"],
                           lams=s["lams"], methods=s["methods"], standardize=args.standardize, jobs=args.jobs,
                           backend="dask" if client is not None else None,
                           progress=not (args.no_progress or args.json), prog=prog)
    except ValueError as err:
        return parser.fail(err)
    except RuntimeError as err:  # the solver did not converge
        return parser.fail(f"solver failed: {' '.join(str(err).split())}", 3)
    finally:
        if client is not None:
            client.close()
    js, rows = result["json"], result["rows"]
    text = json.dumps(js, indent=1, allow_nan=False)
    write_text(out / "probe.json", text + "\n")
    write_text(out / "probe.csv", csv_text(rows, CSV_COLUMNS))
    write_figure(out / "probe.png", js, rows)
    for w in js["warnings"]:
        print(f"{prog}: warning: {w}", file=sys.stderr)
    if args.json:
        print(text)
    else:
        print(format_report(js))
        print(f"wrote {out}/probe.csv, probe.json, probe.png ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
