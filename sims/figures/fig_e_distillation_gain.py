"""Figure e: held-out accuracy gain of SD rounds 1-4 and of the PLL student over the teacher.

Claims: **P6** (on real and mixture features SD and the PLL student improve test
accuracy under label noise, most at high noise) and **P4** (one round of the PLL
student is comparable to several SD rounds; cross-entropy on the 1/2-1/2 target
as in the theory, generalised cross-entropy as in the paper's experiments).

File: ``figures/fig_e_distillation_gain.png``. Rebuild: ``python -m sims.figures --only e``.
"""

from __future__ import annotations

import numpy as np

import theory
from theory.validate import check_int

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import rounds as sd_rounds
from ..engine.fit import FeatureExact, NotConvergedError
from ..engine import noise as noise_mod
from ._common import PAPER_ETAS, _digits, _fig_path, _one_hot, _parallel, _plt, _save

__all__ = ["fig_e_distillation_gain"]


E_METHODS = ("round 1", "round 2", "round 3", "round 4", "PLL (CE)", "PLL (GCE)")
GCE_Q = 0.7


def _e_setting(quick):
    if quick:
        return dict(etas=(0.0, 0.5, 0.8), seeds=2, gmm=dict(K=6, n=30, D=100, fresh=100, lam=5e-4, size=3),
                    digits=dict(train_per_class=40, lam=5e-4))
    return dict(etas=PAPER_ETAS, seeds=3, gmm=dict(K=6, n=100, D=300, fresh=500, lam=5e-4, size=3),
                digits=dict(train_per_class=feat.DIGITS_TRAIN_PER_CLASS, lam=5e-4))


def _e_task(dataset, noise, eta, rng, setting):
    """Test accuracies (teacher, rounds 1-4, PLL CE, PLL GCE) of one (data set, noise, eta, seed)."""
    if dataset == "gmm":
        s = setting["gmm"]
        K = s["K"]
        X, y = feat.sample_gmm(K, s["n"], 0.4, 0.1, s["D"], rng)
        X_test, y_test = feat.sample_gmm(K, s["fresh"], 0.4, 0.1, s["D"], rng)
        groups = theory.superclass_groups(K, s["size"])
        lam = s["lam"]
    else:
        s = setting["digits"]
        data = _digits(s["train_per_class"])
        K, X, y, X_test, y_test, groups, lam = data.K, data.X_train, data.y_train, data.X_test, data.y_test, \
            data.groups, s["lam"]
    C = noise_mod.noise_matrix(noise, K, eta, groups=groups if noise == "superclass" else None)
    z = noise_mod.corrupt_labels(y, C, rng)
    engine = FeatureExact(X, lam, X_test)
    failures = []
    fits = sd_rounds.sd(engine, _one_hot(z, K), 4)
    accs = [metrics.accuracy(f.fresh_logits, y_test) for f in fits]
    for loss in ("ce", "gce"):
        try:
            accs.append(metrics.accuracy(sd_rounds.pll(engine, fits[0], loss).fresh_logits, y_test))
        except NotConvergedError as err:
            accs.append(float("nan"))
            failures.append(f"{dataset}/{noise}/eta={eta}: PLL {loss}: {err}")
    train_teacher = metrics.accuracy(fits[0].outputs, y)
    return np.array(accs), failures, train_teacher


def fig_e_distillation_gain(out_dir, rng, quick=False, jobs=1, progress=False, *, etas=None, seeds=None):
    """Distillation gain against noise rate on held-out data (exact softmax solvers).

    For each data set (Gaussian mixture K=6, n=100, D=300, 500 fresh samples
    per class; scikit-learn digits, 120 training images per class, 597 held-out
    test images) and noise model (superclass: groups {0,1,2},{3,4,5} for the
    mixture, the complete-linkage superclasses of figure d for digits;
    symmetric), the top row shows the test accuracy of SD rounds 1-4 and of
    the PLL student minus the teacher's (round 0), mean over seeds (3; --quick
    2) with standard-error bars of the paired differences; the PLL student is
    fitted with cross-entropy on the 1/2-1/2 top-two targets (the theory) and
    with generalised cross-entropy (q = 0.7) started from the teacher's weights
    (the paper's experiments). The bottom row shows the absolute test accuracy
    of the teacher, round 4 and both PLL students. Noise rates as in the paper
    (0, .1, .3, .5, .6, .7, .8, .9); given labels drawn independently; ridge
    lam = 5e-4 for both data sets (the paper's weight decay on small data sets).
    Dotted vertical lines: the noise rate beyond which C_kk > C_kj fails.

    Returns mean gains and standard errors per (data set, noise, method, eta),
    teacher accuracies and any solver failures.
    """
    plt = _plt()
    setting = _e_setting(quick)
    etas = tuple(setting["etas"] if etas is None else etas)
    seeds = setting["seeds"] if seeds is None else check_int("seeds", seeds, minimum=1)
    datasets = ("gmm", "digits")
    noises = ("superclass", "symmetric")
    tasks, keys = [], []
    children = rng.spawn(len(datasets) * len(noises) * len(etas) * seeds)
    it = iter(children)
    for ds in datasets:
        for noise in noises:
            for eta in etas:
                for s in range(seeds):
                    tasks.append((ds, noise, float(eta), next(it), setting))
                    keys.append((ds, noise, float(eta), s))
    results = _parallel(_e_task, tasks, jobs, "fig e runs", progress)
    acc = {}
    failures = []
    train_teacher = {}
    for key, (a, f, tr) in zip(keys, results):
        acc[key] = a
        failures.extend(f)
        train_teacher[key] = tr
    dig = _digits(setting["digits"]["train_per_class"])
    gs = setting["gmm"]
    group_text = {"gmm": ", ".join("{" + ",".join(map(str, g)) + "}" for g in theory.superclass_groups(gs["K"], gs["size"])),
                  "digits": ", ".join("{" + ",".join(map(str, g)) + "}" for g in dig.groups)}
    thresholds = {("gmm", "symmetric"): (gs["K"] - 1) / gs["K"], ("gmm", "superclass"): (gs["size"] - 1) / gs["size"],
                  ("digits", "symmetric"): (dig.K - 1) / dig.K,
                  ("digits", "superclass"): min((len(g) - 1) / len(g) for g in dig.groups if len(g) > 1)}
    colors = {"round 1": "#c6dbef", "round 2": "#6baed6", "round 3": "#2171b5", "round 4": "#08306b",
              "PLL (CE)": "tab:orange", "PLL (GCE)": "tab:red"}
    fig, axes = plt.subplots(2, 4, figsize=(18, 9.2), layout="constrained", sharex=True)
    numbers = {"etas": list(etas), "seeds": seeds, "setting": setting, "failures": failures, "panels": {}}
    ev = np.array(etas)
    for j, (ds, noise) in enumerate((d_, n_) for d_ in datasets for n_ in noises):
        A = np.array([[acc[(ds, noise, float(e), s)] for s in range(seeds)] for e in etas])  # (E, S, 7)
        teacher = A[:, :, 0]
        gains = A[:, :, 1:] - teacher[:, :, None]
        mean = np.nanmean(gains, axis=1)
        cnt = np.sum(~np.isnan(gains), axis=1)
        se = np.where(cnt > 1, np.nanstd(gains, axis=1, ddof=1) / np.sqrt(np.maximum(cnt, 1)), 0.0) \
            if seeds > 1 else np.zeros_like(mean)
        ax = axes[0, j]
        width = 0.012 * (ev.max() - ev.min() if ev.size > 1 else 1.0)
        for m, name in enumerate(E_METHODS):
            off = (m - (len(E_METHODS) - 1) / 2) * width
            style = dict(marker="s", ls="--") if name.startswith("PLL") else dict(marker="o", ls="-")
            ax.errorbar(ev + off, mean[:, m], yerr=se[:, m], color=colors[name], ms=4, lw=1.3, capsize=2.5,
                        label=name, **style)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(thresholds[(ds, noise)], color="0.4", ls=":", lw=1.2)
        ax.set_ylabel("test accuracy minus teacher's")
        ax.grid(alpha=0.3)
        name_ds = "Gaussian mixture" if ds == "gmm" else "digits"
        extra = f"groups {group_text[ds]}" if noise == "superclass" else r"$\eta$ spread over all other classes"
        ax.set_title(f"{name_ds}, {noise} noise\n{extra}", fontsize=9)
        ax = axes[1, j]
        tmean = teacher.mean(axis=1)
        ax.plot(ev, tmean, "-o", color="k", ms=4, label="teacher (round 0)")
        for m, name in ((3, "round 4"), (4, "PLL (CE)"), (5, "PLL (GCE)")):
            ax.plot(ev, np.nanmean(A[:, :, 1 + m], axis=1), "-s" if name.startswith("PLL") else "-o", ms=4,
                    color=colors[name], label=name)
        ax.axvline(thresholds[(ds, noise)], color="0.4", ls=":", lw=1.2, label=r"$C_{kk} > C_{kj}$ fails beyond")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(r"noise rate $\eta$")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.grid(alpha=0.3)
        numbers["panels"][f"{ds}_{noise}"] = {
            "teacher_test_accuracy": tmean.tolist(),
            "teacher_train_accuracy": [float(np.mean([train_teacher[(ds, noise, float(e), s)] for s in range(seeds)]))
                                       for e in etas],
            "gain_mean": {name: mean[:, m].tolist() for m, name in enumerate(E_METHODS)},
            "gain_se": {name: se[:, m].tolist() for m, name in enumerate(E_METHODS)},
            "threshold": thresholds[(ds, noise)],
        }
    h0, l0 = axes[0, 0].get_legend_handles_labels()
    h1, l1 = axes[1, 0].get_legend_handles_labels()
    fig.legend(h0 + h1, [f"gain: {v}" for v in l0] + [f"accuracy: {v}" for v in l1], loc="outside lower center",
               ncol=6, fontsize=8)
    dgt = setting["digits"]
    fig.suptitle(
        f"Distillation gain on held-out data (exact softmax, mean ± s.e. over {seeds} seeds; PLL GCE: q={GCE_Q}, "
        f"started from the teacher)\nmixture: K={gs['K']}, n={gs['n']}, c=0.4, d=0.1, D={gs['D']}, "
        f"{gs['fresh']} test samples/class, $\\lambda$={gs['lam']:g}; digits: n={dgt['train_per_class']}/class, "
        f"{dig.y_test.size} test images, $\\lambda$={dgt['lam']:g}",
        fontsize=10,
    )
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_e_distillation_gain", quick))
    return numbers
