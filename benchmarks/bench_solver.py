"""Benchmark of the exact solvers in sims.engine.fit against two baselines.

Run: ``python benchmarks/bench_solver.py [--quick] [--baseline-threads T] [--report FILE]``
from the repository root. Everything runs in one process on this machine; speeds are
reported as ratios against baselines run in the same process. Results go to
results/bench/bench_solver.json, a table is printed, and a markdown report of what was
measured (with the machine's cores, BLAS and load) is written to ``--report``
(default results/bench/bench_solver.md).

Setting (the paper's numerical solver): K=4, n=500 (N=2000), lam=1e-5, c=0.4,
d=0.1, one-hot given labels with symmetric noise eta=0.5 (sampled), on a valid
perturbed Gram matrix (sims.engine.features.perturbed_gram / perturbed_features:
row-normalised Gaussian-mixture features whose off-diagonal Gram fluctuations
match the paper's uniform(-0.05, 0.05) entries).

(a) our exact solvers: fit_gram on G and fit_features on the features, timed
    with one BLAS thread (their default) and with BLAS threads as configured;
(b) the paper's approach in numpy: Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8)
    on the mean squared fixed-point residual mean((P - softmax((T-P) G/(N lam)))^2)
    with P (K x N, started at 1/K) free, gradient derived by hand; stop when the
    loss < 1e-5 or after 100 000 iterations (--quick: 2 000);
    (baselines run with --baseline-threads BLAS threads, default 1)
(c) scikit-learn LogisticRegression (lbfgs, multinomial, fit_intercept=False,
    C = 1/(N lam), tol=1e-12, max_iter=100 000) on the instances repeated per
    class with sample weights T_ji (zero weights dropped);
(d) fit_gram time as N grows (n = 125 ... 2000 per class; --quick: up to 1000);
(e) fit_block: 60 rounds of multi-round SD at K=4, n=500 (cold starts, and warm
    starts from the previous round's logits);
(f) full-rank Gram matrices at N = 2000: the exact block Gram and a Gaussian-
    mixture Gram sampled at D = 10^6 (sims.engine.features.sample_gmm_gram). fit_gram's
    dense route (Newton + preconditioned CG, sims.engine.fit.gram) against its low-rank
    route (pivoted Cholesky, method="lowrank"),
    same labels: the time ratio, per-fit times with and without the one-off
    preparation (prepare_gram), and rounds 1..10 of SD (soft targets,
    warm-started with coef0); GCE PLL student from the teacher (dense route only:
    the low-rank route's GCE fit at full rank takes many minutes);
(g) the dense route as N grows: N = 500, 1000, 2000, 4000, 8000 (--quick: up to
    2000), block Gram and D = 10^6 mixture Gram; preparation and per-fit times
    and their log-log growth exponents.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from sims.engine import measures as metrics  # noqa: E402
from sims.engine.fit import solver  # noqa: E402
from sims._cli import OneLineParser, write_text  # noqa: E402

from benchmarks import _report  # noqa: E402
from sims.engine.features import block_gram, perturbed_features, sample_gmm_gram  # noqa: E402

K, n, c, d, lam, eta = 4, 500, 0.4, 0.1, 1e-5, 0.5
SEED = 0


def setting(n_per_class, rng):
    N = K * n_per_class
    X = perturbed_features(K, n_per_class, c, d, rng)
    G = X @ X.T
    G = 0.5 * (G + G.T)
    y = np.repeat(np.arange(K), n_per_class)
    flip = rng.random(N) < eta
    z = y.copy()
    z[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K  # symmetric noise
    T = np.eye(K)[:, z]
    return X, G, T


def timed(fn, repeats=1):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), float(np.median(times))


def adam_fixed_point(G, T, lam, max_iter, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, stop=1e-5):
    """The paper's approach: Adam on mean squared fixed-point residual, P free."""
    Kc, N = T.shape
    s = 1.0 / (N * lam)
    P = np.full((Kc, N), 1.0 / Kc)
    m = np.zeros_like(P)
    v = np.zeros_like(P)
    loss = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        Q = solver._softmax(((T - P) @ G) * s)
        D = P - Q
        loss = float(np.mean(D * D))
        if loss < stop:
            break
        # d/dP of mean(D^2): (2/(K N)) (D + s B G), B_i = J_i D_i, J_i = diag(q_i) - q_i q_i^T.
        B = Q * D - Q * np.sum(Q * D, axis=0, keepdims=True)
        grad = (2.0 / (Kc * N)) * (D + s * (B @ G))
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        P = P - lr * (m / (1 - b1**it)) / (np.sqrt(v / (1 - b2**it)) + eps)
    residual = float(np.max(np.abs(P - solver._softmax(((T - P) @ G) * s))))
    return dict(iterations=it, final_loss=loss, residual=residual)


def sklearn_fit(X, T, lam):
    from sklearn.linear_model import LogisticRegression

    Kc, N = T.shape
    rows, labels, weights = [], [], []
    for j in range(Kc):
        keep = T[j] > 0
        rows.append(np.flatnonzero(keep))
        labels.append(np.full(keep.sum(), j))
        weights.append(T[j, keep])
    idx = np.concatenate(rows)
    clf = LogisticRegression(C=1.0 / (N * lam), fit_intercept=False, solver="lbfgs", tol=1e-12, max_iter=100_000)
    clf.fit(X[idx], np.concatenate(labels), sample_weight=np.concatenate(weights))
    W = clf.coef_
    P = solver._softmax(W @ X.T)
    residual = float(np.max(np.abs(P - solver._softmax(((T - P) @ X) @ X.T / (N * lam)))))
    return dict(iterations=int(np.max(clf.n_iter_)), residual=residual)


def block_rounds(rounds, warm):
    counts = np.array([np.roll([250, 84, 83, 83], k) for k in range(K)])  # eta = 0.5, exact-ish counts
    T = np.broadcast_to(np.eye(K)[None], (K, K, K)).copy()
    prev, its, res = None, [], []
    for _ in range(rounds):
        init = prev.logits if (warm and prev is not None) else None
        fit = solver.fit_block(K, n, c, d, lam, counts, T, init_logits=init)
        its.append(fit.iterations)
        res.append(fit.residual)
        prev, T = fit, fit.outputs
    return dict(iterations=its, max_residual=float(max(res)))


def progress(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def noisy_one_hot(N_per_class, rng):
    """One-hot given labels with symmetric noise eta (sampled), class-major true labels."""
    N = K * N_per_class
    y = np.repeat(np.arange(K), N_per_class)
    flip = rng.random(N) < eta
    z = y.copy()
    z[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K
    return np.eye(K)[:, z]


def full_rank_grams(n_per_class, rng):
    """The two full-rank Gram matrices of (f), (g): exact block model and the D = 10^6 mixture."""
    yield "block", block_gram(K, n_per_class, c, d)
    yield "gmm_D1e6", sample_gmm_gram(K, n_per_class, c, d, 10**6, rng).G


def dense_rounds(prep, T, rounds):
    """Rounds 0..rounds of SD with the dense route, warm-started; per-round time and fit."""
    out, coef = [], None
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        fit = solver.fit_gram(prep, T, lam, coef0=coef)
        out.append((time.perf_counter() - t0, fit))
        coef, T = fit.coef, fit.outputs
    return out


def dense_vs_lowrank(args, rng, rows):
    """Section (f)."""
    res = {}
    for name, G in full_rank_grams(n, rng):
        T = noisy_one_hot(n, rng)
        t0 = time.perf_counter()
        prep = solver.prepare_gram(G)
        t_prep = time.perf_counter() - t0
        rounds = dense_rounds(prep, T, 10)
        t_dense, f_dense = rounds[0]
        soft = [t for t, _ in rounds[1:]]
        old, t_old, _ = timed(lambda: solver.fit_gram(G, T, lam, method="lowrank"))
        # GCE PLL student from the teacher (coef0 = teacher's coef), both routes.
        Tp = metrics.pll_targets(f_dense.outputs, "share")
        gce, t_gce, _ = timed(lambda: solver.fit_gram(prep, Tp, lam, loss="gce", coef0=f_dense.coef))
        r = dict(
            N=G.shape[0], prepare_time=t_prep, route=prep.method,
            dense_round0=dict(time=t_dense, time_with_prepare=t_dense + t_prep, residual=f_dense.residual,
                              newton=f_dense.iterations, cg=f_dense.cg_iterations),
            dense_rounds_1_10=dict(time_mean=float(np.mean(soft)), time_max=float(np.max(soft)),
                                   residual_max=float(max(f.residual for _, f in rounds[1:])),
                                   newton=[f.iterations for _, f in rounds[1:]], cg=[f.cg_iterations for _, f in rounds[1:]]),
            lowrank_round0=dict(time=t_old, residual=old.residual, newton=old.iterations, rank=old.rank),
            ratio_lowrank_over_dense=t_old / t_dense,
            ratio_lowrank_over_dense_with_prepare=t_old / (t_dense + t_prep),
            max_output_diff=float(np.max(np.abs(old.outputs - f_dense.outputs))),
            gce_dense=dict(time=t_gce, residual=gce.residual, newton=gce.iterations, cg=gce.cg_iterations),
        )
        res[name] = r
        rows.append((f"(f) {name} N=2000 prepare_gram (dense)", t_prep, float("nan"), 0))
        rows.append((f"(f) {name} dense round 0", t_dense, f_dense.residual, f_dense.iterations))
        rows.append((f"(f) {name} dense rounds 1-10 (mean, warm)", float(np.mean(soft)),
                     r["dense_rounds_1_10"]["residual_max"], int(np.sum(r["dense_rounds_1_10"]["newton"]))))
        rows.append((f"(f) {name} low-rank route round 0", t_old, old.residual, old.iterations))
        rows.append((f"(f) {name} GCE PLL dense", t_gce, gce.residual, gce.iterations))
    return res


def dense_scaling(args, rows):
    """Section (g)."""
    sizes = (125, 250, 500) + (() if args.quick else (1000, 2000))
    res = {}
    for nn in sizes:
        rng = np.random.default_rng(SEED + 7 * nn)
        for name, G in full_rank_grams(nn, rng):
            T = noisy_one_hot(nn, rng)
            t0 = time.perf_counter()
            prep = solver.prepare_gram(G)
            t_prep = time.perf_counter() - t0
            rounds = dense_rounds(prep, T, 1)
            (t0_fit, f0), (t1_fit, f1) = rounds
            res.setdefault(name, []).append(dict(
                N=K * nn, prepare_time=t_prep, round0_time=t0_fit, round1_warm_time=t1_fit,
                residual=max(f0.residual, f1.residual), newton=[f0.iterations, f1.iterations],
                cg=[f0.cg_iterations, f1.cg_iterations]))
            rows.append((f"(g) {name} N={K * nn} dense round 0 (prep {t_prep:.2f} s)", t0_fit, f0.residual, f0.iterations))
            del G, prep
    for name, pts in list(res.items()):
        Ns = np.array([p["N"] for p in pts], dtype=float)
        for key in ("prepare_time", "round0_time", "round1_warm_time"):
            ts = np.array([p[key] for p in pts])
            res[f"{name}_exponent_{key}"] = float(np.polyfit(np.log(Ns), np.log(ts), 1)[0])
    return res


def main(argv=None):
    ap = OneLineParser(prog="bench_solver.py", description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-threads", type=int, default=1,
                    help="BLAS threads (>= 1) for the baselines (b), (c); default 1 like the exact solvers")
    ap.add_argument("--quick", action="store_true",
                    help="cap Adam at 2000 iterations, N scaling up to n=1000 in (d) and N=2000 in (g)")
    ap.add_argument("--only-gram", action="store_true",
                    help="run only (f) and (g), the full-rank Gram sections (results/bench/bench_solver_gram.json)")
    ap.add_argument("--report", default=None, metavar="FILE",
                    help="markdown report of this run (default results/bench/bench_solver.md, "
                         "or bench_solver_gram.md with --only-gram)")
    args = ap.parse_args(argv)
    if args.baseline_threads < 1:
        ap.error(f"argument --baseline-threads: {args.baseline_threads} is not >= 1")
    if args.report is None:
        args.report = ROOT / "results" / "bench" / ("bench_solver_gram.md" if args.only_gram else "bench_solver.md")
    problem = _report.check_writable(args.report)
    if problem:
        ap.error(f"argument --report: {problem}")
    rng = np.random.default_rng(SEED)
    out = dict(setting=dict(K=K, n=n, c=c, d=d, lam=lam, eta=eta, seed=SEED), quick=args.quick,
               baseline_blas_threads=args.baseline_threads,
               load_average_at_start=list(__import__("os").getloadavg()),
               machine=dict(python=platform.python_version(), numpy=np.__version__, cpus=__import__("os").cpu_count(),
                            blas=[{k: i.get(k) for k in ("internal_api", "num_threads", "version")} for i in threadpool_info()]))
    if args.only_gram:
        rows = []
        run_gram_sections(args, out, rows)
        print_rows(rows)
        print_gram_summary(out)
        finish(out, "bench_solver_gram.json", args.report)
        return 0
    X, G, T = setting(n, rng)
    rows = []

    # (a) exact solvers
    progress("(a) exact solvers on the perturbed Gram")
    a = {}
    for threads in (1, None):  # 1 is the solvers' default; None = BLAS as configured
        tag = "blas_threads_1" if threads == 1 else "blas_threads_default"
        gf, tmin, tmed = timed(lambda: solver.fit_gram(G, T, lam, blas_threads=threads), repeats=3)
        a[f"fit_gram_{tag}"] = dict(time_min=tmin, time_median=tmed, residual=gf.residual, iterations=gf.iterations, rank=gf.rank)
        ff, tmin, tmed = timed(lambda: solver.fit_features(X, T, lam, blas_threads=threads), repeats=3)
        a[f"fit_features_{tag}"] = dict(time_min=tmin, time_median=tmed, residual=ff.residual, iterations=ff.iterations, D=X.shape[1])
    a["max_output_diff_gram_vs_features"] = float(np.max(np.abs(gf.outputs - ff.outputs)))
    out["exact"] = a
    t_exact = a["fit_gram_blas_threads_1"]["time_min"]
    for key, r in a.items():
        if isinstance(r, dict):
            rows.append((f"(a) {key}", r["time_min"], r["residual"], r["iterations"]))

    # (b) Adam on the squared fixed-point residual
    progress("(b) Adam baseline")
    max_iter = 2_000 if args.quick else 100_000
    with threadpool_limits(args.baseline_threads):
        res_b, t_b, _ = timed(lambda: adam_fixed_point(G, T, lam, max_iter))
    res_b.update(time=t_b, max_iter=max_iter, capped_by_quick=args.quick, speed_ratio_vs_exact=t_b / t_exact)
    out["adam"] = res_b
    rows.append(("(b) Adam on fixed-point residual", t_b, res_b["residual"], res_b["iterations"]))

    # (c) scikit-learn
    progress("(c) scikit-learn baseline")
    with threadpool_limits(args.baseline_threads):
        res_c, t_c, _ = timed(lambda: sklearn_fit(X, T, lam))
    res_c.update(time=t_c, speed_ratio_vs_exact=t_c / a["fit_features_blas_threads_1"]["time_min"])
    out["sklearn"] = res_c
    rows.append(("(c) sklearn LogisticRegression lbfgs", t_c, res_c["residual"], res_c["iterations"]))

    # (d) N scaling
    progress("(d) fit_gram / fit_features as N grows (perturbed Gram)")
    scal = []
    for nn in (125, 250, 500, 1000) + (() if args.quick else (2000,)):
        Xs, Gs, Ts = setting(nn, np.random.default_rng(SEED + nn))
        fit, tmin, _ = timed(lambda: solver.fit_gram(Gs, Ts, lam), repeats=1 if nn >= 1000 else 2)
        fit2, tmin2, _ = timed(lambda: solver.fit_features(Xs, Ts, lam), repeats=1 if nn >= 1000 else 2)
        scal.append(dict(n=nn, N=K * nn, D=Xs.shape[1], rank=fit.rank, fit_gram_time=tmin, fit_gram_residual=fit.residual,
                         fit_features_time=tmin2, fit_features_residual=fit2.residual, iterations=fit.iterations))
        rows.append((f"(d) fit_gram N={K * nn} (rank {fit.rank})", tmin, fit.residual, fit.iterations))
        rows.append((f"(d) fit_features N={K * nn} (D {Xs.shape[1]})", tmin2, fit2.residual, fit2.iterations))
    out["scaling"] = scal

    # (e) block solver, 60 rounds
    progress("(e) fit_block rounds")
    blk = {}
    for warm in (False, True):
        block_rounds(3, warm)  # warm-up
        r, tmin, tmed = timed(lambda: block_rounds(60, warm), repeats=5)
        r.update(time_min=tmin, time_median=tmed, per_fit=tmin / 60)
        blk["warm" if warm else "cold"] = r
        rows.append((f"(e) fit_block 60 rounds ({'warm' if warm else 'cold'})", tmin, r["max_residual"], sum(r["iterations"])))
    out["block"] = blk

    # (f) dense route vs the low-rank (pivoted-Cholesky) route on full-rank Gram matrices; (g) growth
    run_gram_sections(args, out, rows)

    print_rows(rows)
    print_gram_summary(out)
    print(f"Adam / exact (fit_gram) time ratio: {res_b['speed_ratio_vs_exact']:.1f}"
          + (" (Adam capped at 2000 iterations by --quick)" if args.quick else ""))
    print(f"sklearn / exact (fit_features) time ratio: {res_c['speed_ratio_vs_exact']:.1f}")
    finish(out, "bench_solver.json", args.report)
    return 0


def run_gram_sections(args, out, rows):
    """(f) dense route vs the low-rank (pivoted-Cholesky) route on full-rank Gram matrices; (g) growth with N."""
    progress("(f) full-rank Gram matrices at N = 2000: dense route vs the low-rank route; (g) dense route as N grows")
    with threadpool_limits(1):
        out["full_rank_N2000"] = dense_vs_lowrank(args, np.random.default_rng(SEED + 1), rows)
        out["dense_scaling"] = dense_scaling(args, rows)


def print_rows(rows):
    print(f"{'case':58s} {'time [s]':>10s} {'residual':>11s} {'iters':>7s}")
    for name, t, res, it in rows:
        print(f"{name:58s} {t:10.4f} {res:11.3e} {it:7d}")


def print_gram_summary(out):
    for name, r in out["full_rank_N2000"].items():
        print(f"(f) {name}: low-rank route / dense = {r['ratio_lowrank_over_dense']:.1f}x "
              f"({r['ratio_lowrank_over_dense_with_prepare']:.1f}x counting prepare_gram); "
              f"max |P_dense - P_lowrank| = {r['max_output_diff']:.1e}")
    sc = out["dense_scaling"]
    for name in ("block", "gmm_D1e6"):
        print(f"(g) {name}: growth exponents (log-log slope over N): prepare {sc[f'{name}_exponent_prepare_time']:.2f}, "
              f"round 0 {sc[f'{name}_exponent_round0_time']:.2f}, warm round 1 {sc[f'{name}_exponent_round1_warm_time']:.2f}")


def finish(out, filename, report=None):
    path = ROOT / "results" / "bench" / filename
    print(f"load average at start {out['load_average_at_start']}, at end {list(__import__('os').getloadavg())}")
    out["load_average_at_end"] = list(__import__("os").getloadavg())
    write_text(path, json.dumps(out, indent=2))
    print(f"wrote {path}")
    report = Path(report) if report is not None else path.with_suffix(".md")
    _report.write(report, render_report(out))
    print(f"wrote {report}")


def render_report(out) -> str:
    """The markdown report of one run: every section that ran, times in seconds, ratios within this run."""
    st = out["setting"]
    intro = [
        f"Setting: K={st['K']}, n={st['n']} (N={st['K'] * st['n']}), lambda={st['lam']:g}, c={st['c']}, "
        f"d={st['d']}, symmetric noise eta={st['eta']} (sampled, seed {st['seed']}). Times are seconds of wall "
        "time on this machine; every ratio compares two runs made in this process. The exact solvers run with "
        f"one BLAS thread (their default); the baselines with {out['baseline_blas_threads']} "
        f"(--baseline-threads). "
        "Residual: the largest entry of |P - softmax((T - P) G / (N lambda))|.",
    ]
    sections = []
    if "exact" in out:
        a = out["exact"]
        rows = [(key.replace("_blas_threads_1", ", 1 BLAS thread").replace("_blas_threads_default", ", BLAS default"),
                 r["time_min"], r["time_median"], r["residual"], r["iterations"])
                for key, r in a.items() if isinstance(r, dict)]
        sections.append(("(a) Exact solvers on the perturbed Gram matrix",
                         _report.table(("solver", "time (min of 3)", "median", "residual",
                                        "Newton steps"), rows)
                         + ["", f"Largest output difference fit_gram vs fit_features: "
                                f"{_report.fmt(a['max_output_diff_gram_vs_features'])}."]))
    if "adam" in out:
        b, c = out["adam"], out["sklearn"]
        rows = [
            ("the paper's approach: Adam (lr 1e-3) on the squared fixed-point residual", b["time"], b["residual"],
             b["iterations"], f"{_report.fmt(b['speed_ratio_vs_exact'])}x fit_gram"),
            ("scikit-learn LogisticRegression (lbfgs, tol 1e-12), soft labels as sample weights", c["time"],
             c["residual"], c["iterations"], f"{_report.fmt(c['speed_ratio_vs_exact'])}x fit_features"),
        ]
        body = _report.table(("baseline", "time", "residual", "iterations", "time ratio"), rows)
        if b.get("capped_by_quick"):
            body += ["", f"Adam was capped at {b['max_iter']} iterations."]
        sections.append(("(b, c) Baselines", body))
    if "scaling" in out:
        rows = [(r["N"], r["rank"], r["D"], r["fit_gram_time"], r["fit_gram_residual"], r["fit_features_time"],
                 r["fit_features_residual"]) for r in out["scaling"]]
        sections.append(("(d) Low-rank route as N grows (perturbed Gram)",
                         _report.table(("N", "rank", "D", "fit_gram", "residual", "fit_features", "residual"), rows)))
    if "block" in out:
        rows = [(kind, r["time_min"], r["per_fit"], r["max_residual"], sum(r["iterations"]))
                for kind, r in out["block"].items()]
        sections.append(("(e) Type-reduced block solver, 60 rounds of SD",
                         _report.table(("starts", "60 rounds (min of 5)", "per fit", "largest residual",
                                        "Newton steps"), rows)))
    if "full_rank_N2000" in out:
        rows = []
        for name, r in out["full_rank_N2000"].items():
            r0, rs, old = r["dense_round0"], r["dense_rounds_1_10"], r["lowrank_round0"]
            rows.append((name, r["prepare_time"], r0["time"], rs["time_mean"], rs["time_max"],
                         max(r0["residual"], rs["residual_max"]), old["time"], r["ratio_lowrank_over_dense"],
                         r["ratio_lowrank_over_dense_with_prepare"], r["max_output_diff"], r["gce_dense"]["time"]))
        sections.append(("(f) Full-rank Gram matrices: dense route against the low-rank route",
                         _report.table(("Gram", "prepare_gram", "round 0", "rounds 1-10 mean", "max",
                                        "largest residual", "low-rank route, round 0", "ratio per fit",
                                        "ratio with preparation", "largest output difference",
                                        "GCE PLL student"), rows)))
    if "dense_scaling" in out:
        sc = out["dense_scaling"]
        rows, exps = [], []
        for name, pts in sc.items():
            if isinstance(pts, list):
                rows += [(name, p["N"], p["prepare_time"], p["round0_time"], p["round1_warm_time"], p["residual"])
                         for p in pts]
                exps.append((name, sc[f"{name}_exponent_prepare_time"], sc[f"{name}_exponent_round0_time"],
                             sc[f"{name}_exponent_round1_warm_time"]))
        sections.append(("(g) Dense route as N grows",
                         _report.table(("Gram", "N", "prepare_gram", "round 0", "round 1 (warm)", "residual"), rows)
                         + ["", "Growth exponents (log-log slope of time against N):", ""]
                         + _report.table(("Gram", "prepare_gram", "round 0", "round 1 (warm)"), exps)))
    facts = _report.machine_facts(out.get("load_average_at_start"))
    quick = "Adam capped at 2000 iterations, smaller N in (d) and (g)" if out["quick"] else None
    return _report.render("Solver benchmark", intro, sections, facts, quick)


if __name__ == "__main__":
    sys.exit(main())
