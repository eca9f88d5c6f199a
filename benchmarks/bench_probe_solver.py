"""Benchmark of the soft-target solver ``sims.engine.fit.fit_soft`` at linear-probe scale.

Run: ``python benchmarks/bench_probe_solver.py [--quick | --full] [--report FILE]`` from the repository
root. Everything runs in one process, BLAS limited to one thread for every solver (the shared 2-core
machine); times are wall-clock seconds of single fits.

Data: Gaussian-mixture features in D dimensions realising the suite's block model with random mean
directions: ``x = sqrt(d) u_0 + sqrt(c - d) u_y + xi``, ``u`` random unit vectors, ``xi ~ N(0, (1-c)/D I)``
(c = 0.4, d = 0.1, so |x| is about 1 and the features have a common mean), N instances in K balanced
classes, given labels with symmetric noise eta = 0.3 (each label replaced, with probability eta, by one of
the other K - 1 classes). The teacher is fitted to the one-hot given labels; SD round r is fitted to the
outputs of round r - 1, warm-started from its weights.

For each K (main scale N = 50 000, D = 512, K = 100 and K = 10; --quick: N = 6 000, D = 128):

* the reference: fit_soft at gtol = output_tol = 1e-12 (trust-krylov, Newton-CG finish), for the teacher
  and for every SD round (on the same targets as the timed fit); errors are max |P - P_ref| over the
  training outputs;
* fit_soft with its defaults (the teacher, then the SD rounds warm-started);
* scikit-learn's LogisticRegression(solver="lbfgs", tol=1e-6, fit_intercept=False, C = 1 / (N lam),
  max_iter=10 000) on the hard given labels: its objective C sum_i CE_i + |W|^2 / 2 is N C = 1 / lam
  times ours, so both have the same minimiser (checked: the gap f(W_sklearn) - f(W_ref) >= 0 in our
  objective, and max |W_sklearn - W_ref|);
* a plain scipy L-BFGS-B on the soft-target objective in W (no preconditioning, zero start, default
  ftol, gtol = 1e-8, maxiter 20 000; its objective written independently of fit_soft's code);
* fit_soft also at gtol = 1e-6, output_tol = 1e-7 (an accuracy closer to scikit-learn's);
* peak memory of each fit: tracemalloc's peak of the allocations during the fit (numpy registers its
  buffers), features excluded (they exist before); process maxrss at the end.

--full adds the growth in N (10^4, 5 10^4, 2 10^5 at K = 100) and in K (10, 100, 1000 at N = 5 10^4),
teacher and one warm round, and fit_soft's optimiser and preconditioner choices at the main scale
(K = 10).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks import _report  # noqa: E402
from sims._cli import OneLineParser  # noqa: E402
from sims.engine.fit import NotConvergedError, fit_soft  # noqa: E402

C_WITHIN, D_BETWEEN, ETA, SEED = 0.4, 0.1, 0.3, 0
LAM = 1e-4


def make_problem(N, D, K, eta=ETA, seed=SEED, c=C_WITHIN, d=D_BETWEEN):
    """Features X (N, D), true labels y, given labels yn, one-hot targets T (K, N) of yn."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    U = rng.standard_normal((K + 1, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    X = rng.standard_normal((N, D)) * np.sqrt((1.0 - c) / D)
    X += np.sqrt(c - d) * U[1:][y]
    X += np.sqrt(d) * U[0]
    flip = rng.random(N) < eta
    yn = y.copy()
    yn[flip] = (y[flip] + rng.integers(1, K, int(flip.sum()))) % K
    T = np.zeros((K, N))
    T[yn, np.arange(N)] = 1.0
    return X, y, yn, T


def objective(W, X, T, lam):
    """(1/N) sum_i CE(t_i, softmax(W x_i)) + lam/2 |W|^2 and its gradient (plain numpy)."""
    N = X.shape[0]
    Z = W @ X.T
    Z -= Z.max(axis=0)
    lse = np.log(np.exp(Z).sum(axis=0))
    logP = Z - lse
    f = -float(np.sum(T * logP)) / N + 0.5 * lam * float(np.sum(W * W))
    G = (np.exp(logP) - T) @ X / N + lam * W
    return f, G


def softmax_outputs(W, X):
    Z = W @ X.T
    Z -= Z.max(axis=0)
    E = np.exp(Z)
    return E / E.sum(axis=0)


def measured(fn, repeat=1):
    """(result, seconds (the least of ``repeat`` runs), peak MB of the allocations made during fn)."""
    best, peak = np.inf, 0.0
    for _ in range(repeat):
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
    return out, best, peak / 2**20


def plain_lbfgs(X, T, lam):
    from scipy.optimize import minimize

    K, D = T.shape[0], X.shape[1]

    def fg(w):
        f, G = objective(w.reshape(K, D), X, T, lam)
        return f, G.ravel()

    res = minimize(fg, np.zeros(K * D), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "maxfun": 40000, "gtol": 1e-8})
    return res.x.reshape(K, D), res


def sklearn_teacher(X, yn, lam):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(solver="lbfgs", tol=1e-6, C=1.0 / (X.shape[0] * lam), fit_intercept=False,
                             max_iter=10000)
    clf.fit(X, yn)
    return clf


def reference(X, T, lam, W0=None):
    return fit_soft(X, T, lam, W0=W0, method="trust-krylov", gtol=1e-12, output_tol=1e-12, max_iter=500)


def err(P, ref):
    return float(np.max(np.abs(P - ref)))


def warm_rounds(X, first, rounds, **options):
    """SD rounds 1..rounds after the fit ``first``, each warm-started from the last: (targets, fit, time, peak MB)."""
    prev = first
    for _ in range(rounds):
        targets = prev.P
        fit, t, m = measured(lambda: fit_soft(X, targets, LAM, W0=prev.W, **options))
        yield targets, fit, t, m
        prev = fit


def run_scale(N, D, K, rounds, baselines=True, log=print):
    """Teacher and SD rounds at one scale; with the baselines (and the teacher timed twice) when asked."""
    X, y, yn, T = make_problem(N, D, K)
    out = {"N": N, "D": D, "K": K, "lam": LAM, "features_MB": X.nbytes / 2**20}
    ref0 = reference(X, T, LAM)
    repeat = 2 if baselines else 1
    fit0, t0, m0 = measured(lambda: fit_soft(X, T, LAM), repeat)
    out["teacher"] = {"time": t0, "peak_MB": m0, "error": err(fit0.P, ref0.P), "iterations": fit0.iterations,
                      "evaluations": fit0.evaluations, "hessian_products": fit0.hessian_products,
                      "products": fit0.products, "gradient_norm": fit0.gradient_norm, "output_change": fit0.output_change,
                      "predicted_change": fit0.predicted_change, "residual": fit0.residual, "method": fit0.method,
                      "accuracy_true": float(np.mean(fit0.P.argmax(axis=0) == y))}
    log(f"  K={K} N={N} teacher fit_soft {t0:.2f}s err {out['teacher']['error']:.1e} peak {m0:.0f} MB")
    out["rounds"] = []
    for r, (targets, fit, t, m) in enumerate(warm_rounds(X, fit0, rounds), start=1):
        ref = reference(X, targets, LAM, W0=fit.W)
        out["rounds"].append({"round": r, "time": t, "peak_MB": m, "error": err(fit.P, ref.P),
                              "ratio_to_teacher": t / t0, "iterations": fit.iterations,
                              "evaluations": fit.evaluations, "hessian_products": fit.hessian_products,
                              "products": fit.products, "residual": fit.residual, "output_change": fit.output_change,
                              "predicted_change": fit.predicted_change, "start_distance": err(targets, ref.P)})
        log(f"  K={K} N={N} SD round {r} {t:.2f}s ({t / t0:.2f} x teacher) err {out['rounds'][-1]['error']:.1e}")
    if baselines:
        loose, tl, ml = measured(lambda: fit_soft(X, T, LAM, gtol=1e-6, output_tol=1e-7), repeat)
        out["teacher_loose"] = {"time": tl, "peak_MB": ml, "error": err(loose.P, ref0.P),
                                "iterations": loose.iterations, "evaluations": loose.evaluations,
                                "hessian_products": loose.hessian_products, "products": loose.products, "residual": loose.residual}
        log(f"  K={K} N={N} teacher fit_soft gtol 1e-6, output_tol 1e-7: {tl:.2f}s err {err(loose.P, ref0.P):.1e}")
        plain, tu, mu = measured(lambda: fit_soft(X, T, LAM, newton_precondition="none"), repeat)
        plain_rounds = [t / tu for _targets, _fit, t, _m in warm_rounds(X, plain, rounds, newton_precondition="none")]
        out["teacher_unblocked"] = {"time": tu, "peak_MB": mu, "error": err(plain.P, ref0.P),
                                    "iterations": plain.iterations, "evaluations": plain.evaluations,
                                    "hessian_products": plain.hessian_products, "products": plain.products,
                                    "residual": plain.residual,
                                    "round_ratios": plain_rounds}
        log(f"  K={K} N={N} teacher fit_soft without class blocks: {tu:.2f}s; rounds {plain_rounds}")
        clf, ts, ms = measured(lambda: sklearn_teacher(X, yn, LAM), repeat)
        Wsk = clf.coef_
        if list(clf.classes_) != list(range(K)):
            raise RuntimeError("a class is missing from the given labels")
        Psk = clf.predict_proba(X).T
        fsk = objective(Wsk, X, T, LAM)[0]
        fref = objective(ref0.W, X, T, LAM)[0]
        out["sklearn"] = {"time": ts, "peak_MB": ms, "error": err(Psk, ref0.P), "iterations": int(clf.n_iter_[0]),
                          "objective_gap": fsk - fref, "max_weight_difference": err(Wsk, ref0.W),
                          "ratio_fit_soft_to_sklearn": t0 / ts}
        log(f"  K={K} N={N} sklearn {ts:.2f}s err {out['sklearn']['error']:.1e} gap {fsk - fref:.1e}")
        (Wpl, res), tp, mp = measured(lambda: plain_lbfgs(X, T, LAM), repeat)
        out["plain_lbfgs"] = {"time": tp, "peak_MB": mp, "error": err(softmax_outputs(Wpl, X), ref0.P),
                              "iterations": int(res.nit), "message": str(res.message),
                              "ratio_fit_soft_to_plain": t0 / tp}
        log(f"  K={K} N={N} plain L-BFGS-B {tp:.2f}s err {out['plain_lbfgs']['error']:.1e} ({res.nit} it)")
    return out


def run_choices(N, D, K, log=print):
    """fit_soft's optimisers and preconditioners on one teacher fit and one warm round."""
    X, y, yn, T = make_problem(N, D, K)
    ref0 = reference(X, T, LAM)
    ref1 = reference(X, ref0.P, LAM, W0=ref0.W)
    rows = []
    for method in ("lbfgs", "trust-ncg", "trust-krylov"):
        for pre in ("whiten", "diag", "none"):
            row = {"method": method, "precondition": pre}
            try:
                f0, t0, _ = measured(lambda: fit_soft(X, T, LAM, method=method, precondition=pre))
                f1, t1, _ = measured(lambda: fit_soft(X, ref0.P, LAM, W0=ref0.W, method=method,
                                                      precondition=pre))
                row.update(teacher_time=t0, teacher_passes=f0.products,
                           teacher_error=err(f0.P, ref0.P), warm_time=t1,
                           warm_passes=f1.products, warm_error=err(f1.P, ref1.P))
            except NotConvergedError as exc:
                row["failed"] = str(exc)
            rows.append(row)
            log(f"  choices {method}/{pre}: {row}")
    return {"N": N, "D": D, "K": K, "rows": rows}


def _work(fit):
    """The work column: iterations, evaluations, Hessian products and products with X."""
    return (f"{fit['iterations']} it, {fit['evaluations']} f, {fit['hessian_products']} Hv, "
            f"{fit['products']} X")


def main(argv=None):
    ap = OneLineParser(prog="bench_probe_solver.py", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small problems (< 60 s): shows that it runs")
    mode.add_argument("--full", action="store_true", help="also the growth in N and K, and the solver choices")
    ap.add_argument("--rounds", type=int, default=None, help="warm SD rounds per scale (default 3; --quick 2)")
    ap.add_argument("--report", default=None, metavar="FILE",
                    help="markdown report (default results/bench/bench_probe_solver.md)")
    args = ap.parse_args(argv)
    report = Path(args.report) if args.report else ROOT / "results" / "bench" / "bench_probe_solver.md"
    problem = _report.check_writable(report)
    if problem:
        ap.error(f"argument --report: {problem}")
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    out = {"load_average_at_start": os.getloadavg(), "mode": "quick" if args.quick else ("full" if args.full else "main")}
    N, D = (6000, 128) if args.quick else (50000, 512)
    with threadpool_limits(limits=1):  # BLAS and OpenMP (scikit-learn's loss) alike
        out["main"] = []
        for K in (100, 10):
            out["main"].append(run_scale(N, D, K, rounds))
        if args.full:
            out["growth_N"] = [run_scale(n, 512, 100, 1, baselines=False) for n in (10000, 50000, 200000)]
            out["growth_K"] = [run_scale(50000, 512, k, 1, baselines=False) for k in (10, 100, 1000)]
            out["choices"] = run_choices(50000, 512, 10)
    out["maxrss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json_path = ROOT / "results" / "bench" / (report.stem + ".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=1, default=str))
    _report.write(report, render(out))
    print(render_table(out))
    print(f"wrote {report} and {json_path}")


def targets_met(s):
    t, sk, lo = s["teacher"], s.get("sklearn"), s.get("teacher_loose")
    worst_round = max((r["ratio_to_teacher"] for r in s["rounds"]), default=float("nan"))
    return [
        ("teacher (defaults) time <= sklearn (tol 1e-6)", f"{t['time']:.2f} s vs {sk['time']:.2f} s",
         t["time"] <= sk["time"]),
        ("teacher (gtol 1e-6, output_tol 1e-7) time <= sklearn (tol 1e-6)",
         f"{lo['time']:.2f} s vs {sk['time']:.2f} s", lo["time"] <= sk["time"]),
        ("teacher outputs within 1e-6 of the optimum (defaults; gtol 1e-6)",
         f"{_report.fmt(t['error'])}; {_report.fmt(lo['error'])}", max(t["error"], lo["error"]) <= 1e-6),
        ("peak memory < 2 GB (fit_soft, teacher and rounds)",
         f"{max([t['peak_MB']] + [r['peak_MB'] for r in s['rounds']]):.0f} MB",
         max([t["peak_MB"]] + [r["peak_MB"] for r in s["rounds"]]) < 2048),
        ("each warm round <= 0.5 x teacher", f"worst {worst_round:.2f} x", worst_round <= 0.5),
    ]


def render_table(out) -> str:
    lines = []
    for s in out["main"]:
        lines.append(f"N={s['N']} D={s['D']} K={s['K']}")
        for name, value, ok in targets_met(s):
            lines.append(f"  {'met ' if ok else 'NOT '} {name}: {value}")
    return "\n".join(lines)


def render(out) -> str:
    quick = "N = 6 000, D = 128, 2 rounds" if out["mode"] == "quick" else None
    intro = [f"fit_soft against scikit-learn's lbfgs (tol 1e-6, hard labels) and a plain scipy L-BFGS-B, "
             f"lambda = {LAM:g}, one thread each (BLAS and OpenMP). At the main scale the teacher fits and "
             "the baselines are timed twice (the lesser time is shown): the machine is shared. Errors: max |P - P_ref| over the training outputs, "
             "P_ref from fit_soft at gtol = output_tol = 1e-12 (trust-krylov) on the same targets. Memory: "
             "tracemalloc peak of the allocations during the fit (the features excluded). "
             f"Process maxrss at the end: {out['maxrss_MB']:.0f} MB.", "",
             "Data and baselines: see the docstring of benchmarks/bench_probe_solver.py."]
    sections = []
    for s in out["main"]:
        rows = []
        t = s["teacher"]
        rows.append(("fit_soft teacher", t["time"], 1.0, t["peak_MB"], t["error"],
                     _work(t), t["residual"]))
        for r in s["rounds"]:
            rows.append((f"fit_soft SD round {r['round']} (warm)", r["time"], r["ratio_to_teacher"], r["peak_MB"],
                         r["error"], _work(r),
                         r["residual"]))
        if "sklearn" in s:
            lo = s["teacher_loose"]
            rows.append(("fit_soft teacher, gtol 1e-6, output_tol 1e-7", lo["time"], lo["time"] / t["time"],
                         lo["peak_MB"], lo["error"],
                         _work(lo), lo["residual"]))
            u = s.get("teacher_unblocked")
            if u:
                ratios = ", ".join(f"{r:.2f}" for r in u["round_ratios"])
                rows.append((f"fit_soft teacher, Newton CG without class blocks (its warm rounds: {ratios} x)",
                             u["time"], u["time"] / t["time"], u["peak_MB"], u["error"],
                             _work(u), u["residual"]))
            k = s["sklearn"]
            rows.append(("scikit-learn lbfgs tol 1e-6 (teacher)", k["time"], k["time"] / t["time"], k["peak_MB"],
                         k["error"], f"{k['iterations']} it", None))
            p = s["plain_lbfgs"]
            rows.append(("plain scipy L-BFGS-B (teacher)", p["time"], p["time"] / t["time"], p["peak_MB"],
                         p["error"], f"{p['iterations']} it", None))
        body = _report.table(("fit", "time (s)", "time / fit_soft teacher", "peak MB", "max |P - P_ref|",
                              "work", "fixed-point residual"), rows)
        if "sklearn" in s:
            k = s["sklearn"]
            body += ["", f"Same problem: f(W_sklearn) - f(W_ref) = {_report.fmt(k['objective_gap'])} (>= 0, "
                     f"our objective), max |W_sklearn - W_ref| = {_report.fmt(k['max_weight_difference'])}; "
                     f"plain L-BFGS-B stopped with: {s['plain_lbfgs']['message']}.", ""]
            body += _report.table(("target", "measured", "met"), targets_met(s))
        sections.append((f"N = {s['N']}, D = {s['D']}, K = {s['K']} (features {s['features_MB']:.0f} MB)", body))
    for key, title in (("growth_N", "Growth in N (K = 100, D = 512)"), ("growth_K", "Growth in K (N = 50 000, D = 512)")):
        if key in out:
            rows = [(s["N"], s["K"], s["teacher"]["time"], s["teacher"]["peak_MB"], s["teacher"]["error"],
                     s["rounds"][0]["time"], s["rounds"][0]["ratio_to_teacher"], s["rounds"][0]["error"])
                    for s in out[key]]
            sections.append((title, _report.table(("N", "K", "teacher (s)", "peak MB", "error", "warm round (s)",
                                                   "ratio", "error"), rows)))
    if "choices" in out:
        ch = out["choices"]
        rows = [(r["method"], r["precondition"], r.get("teacher_time"), r.get("teacher_passes"),
                 r.get("teacher_error"), r.get("warm_time"), r.get("warm_passes"), r.get("warm_error"),
                 r.get("failed", "")) for r in ch["rows"]]
        sections.append((f"Optimiser and preconditioner (N = {ch['N']}, D = {ch['D']}, K = {ch['K']})",
                         ["Passes = products of a K x D or K x N matrix with X (SoftFit.products), the unit "
                          "of cost.", ""]
                         + _report.table(("method", "precondition", "teacher (s)", "passes", "error",
                                          "warm round (s)", "passes", "error", "failure"), rows)))
    facts = _report.machine_facts(out.get("load_average_at_start"))
    return _report.render("Soft-target solver benchmark", intro, sections, facts, quick)


if __name__ == "__main__":
    main()
