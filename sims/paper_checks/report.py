"""Running every check, rendering paper_checks.md, reading its key numbers back, and the command line."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from .._cli import OneLineParser, check_output_file, write_text
from . import evidence  # light: its heavy imports are inside its functions

# The check modules import theory/ (sympy derivations, seconds to import); they are imported in run_all, so that
# argument and --out errors come back at once.

PROG = "python -m sims.paper_checks"
DEFAULT_OUT = Path("paper_checks.md")  # relative to the working directory (the repository root)
JSON_MARK = "<!-- key numbers (compared by `python -m sims.paper_checks --check`; do not edit) -->"
CACHED_KEY = "cached"  # key-number section of evidence read from results/ caches (see evidence.py)

MODULES = {
    "P1": "sims/paper_checks/p1_label_averaging.py", "P2": "sims/paper_checks/p2_clustering.py",
    "P3": "sims/paper_checks/p3_perfect_accuracy.py", "P4": "sims/paper_checks/p4_pll.py",
    "P5": "sims/paper_checks/p5_approximations.py", "P6": "sims/paper_checks/p6_real_features.py",
    "P7": "sims/paper_checks/p7_cost.py", "F1": "sims/paper_checks/findings.py", "F2": "sims/paper_checks/findings.py",
    "F3": "sims/paper_checks/findings.py", "F4": "sims/paper_checks/findings.py",
}

DIFFERENCES = [
    "Solver: the paper minimises the squared fixed-point residual with Adam (lr 1e-3, stop below 1e-5 or after 100 000 "
    "iterations); the suite solves the convex problem by Newton's method to a fixed-point residual <= 1e-10 and raises "
    "if it does not converge (benchmarks/bench_solver.py compares the two).",
    "Correlation matrix: the paper's perturbed matrix is not a Gram matrix (F1); the suite uses the Gram matrix of "
    "Gaussian-mixture features with the same off-diagonal spread.",
    "PLL loss: the paper's experiments train the PLL student with generalised cross-entropy (q = 0.7) started from the "
    "teacher's weights; the theory uses cross-entropy on the 1/2-1/2 target. The suite offers both (`--pll-loss`) and "
    "reports both (P4, P6); they differ most for two-class superclasses.",
    "Rounds: the teacher is round 0 and round t is the (t+1)-th fit throughout; the closed form uses A^(t+1).",
    "Label noise: the suite supports exact counts (balanced, the theory's setting) and sampled labels (unbalanced; F2).",
]


def run_all(progress: bool = True, cached: dict | None = None) -> tuple[list, dict]:
    """Run every check; returns (checks in report order, cached evidence {name: Evidence}; read from results/
    unless given)."""
    from . import findings, p1_label_averaging, p2_clustering, p3_perfect_accuracy, p4_pll, p5_approximations
    from . import p6_real_features, p7_cost
    from . import sweep as sweep_mod

    steps = ["sweep", "digits", "probe", "cached", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "F1", "F2", "F3", "F4"]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc="paper checks", file=sys.stderr)
    state: dict = {}
    out = []
    for name in steps:
        if bar is not None:
            bar.set_postfix_str(name)
        if name == "sweep":
            state["sweep"] = sweep_mod.run()
        elif name == "digits":
            state["digits"] = p6_real_features.run_digits()
        elif name == "probe":
            state["probe"] = p6_real_features.run_cv(state["digits"].data)
        elif name == "cached":
            state["cached"] = evidence.load_all() if cached is None else cached
        elif name == "P1":
            out.append(p1_label_averaging.check_p1())
        elif name == "P2":
            out.append(p2_clustering.check_p2())
        elif name == "P3":
            out.append(p3_perfect_accuracy.check_p3(state["sweep"], evidence.live_exact_level()))
        elif name == "P4":
            out.append(p4_pll.check_p4(state["sweep"], state["digits"]))
        elif name == "P5":
            out.append(p5_approximations.check_p5(evidence.live_exact_level()))
        elif name == "P6":
            out.append(p6_real_features.check_p6(state["digits"], state["probe"]))
        elif name == "P7":
            out.append(p7_cost.check_p7())
        else:
            out.append(getattr(findings, f"finding_{name.lower()}")())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out, state["cached"]


# What the finite-D level adds to the neighbours (stated in the report and, shorter, in the README).
POSITIONING = (
    "Neighbours. The paper's theory is the block model, the D -> infinity limit of a Gaussian mixture; this suite adds "
    "a finite-D level (theory.finite_dim, theory.finite_dim_pll: deterministic equivalents of the mixture's Gram "
    "matrix, any D/N including D < N), checked against Monte Carlo in P3, P4 and F3. Takanami, Takahashi and Sakata "
    "(arXiv 2501.16226, 2025) analyse multi-stage self-distillation of a linear classifier on a two-class noisy Gaussian "
    "mixture with the replica method, in the proportional limit and with hyperparameters tuned per stage; the suite's "
    "theory covers K classes and the paper's soft-target rounds at a fixed ridge, and predicts per sample size (n, D) "
    "instead of in a limit. Pareek, Du and Oh (NeurIPS 2024) and Dang, Patil and Rinaldo (arXiv 2602.17565, 2026) study "
    "repeated self-distillation of ridge regression (squared loss, regression targets); their spectral filters are the "
    "ones of the linearised operator here, their risk is a regression error, not classification accuracy. No "
    "published number of these works is reproduced here. Takanami et al.'s numbers are for the binary mixture with a "
    "bias, the loss's exact (not linearised) minimiser and hyperparameters optimised at every stage, in the "
    "proportional limit; the suite's two-class theory is linearised at a fixed ridge. Pareek et al.'s pure-teacher "
    "repeated ridge is the linearised operator here (A^(t+1) applied to the targets), but their numbers are excess "
    "risks of regression with per-step tuned mixing weights; a reproduction was not attempted."
)


def render(checks, cached=None) -> str:
    """The markdown file; a pure function of the checks (same checks -> same bytes)."""
    cached = cached or {}
    lines = [
        "# Paper checks",
        "",
        "Generated by `python -m sims.paper_checks` from the checks it runs; do not edit by hand. CI runs "
        "`python -m sims.paper_checks --check`, which fails when a verdict or key number below no longer matches the code.",
        "",
        "Paper: H. Jeong and H. W. Chung, \"Rethinking Self-Distillation: Label Averaging and Enhanced Soft Label "
        "Refinement with Partial Labels\", ICLR 2025. Claims are paraphrased from the paper: P1 from its Theorem 2.1 (the t-th student's outputs in closed form), P3 from its Theorem 4.1 (condition Eq. 10), the others from its text and experiments. Two notions of "
        "accuracy are used and named in every entry: (a) predictions on the training instances against their true "
        "labels, (b) accuracy on fresh samples of the same distribution. Agreement between the theory's verdict "
        "(100 % or not) and the observed one is always counted on informative cells, where either side says 100 %, "
        "with all four counts (both / only theory / only observed / neither).",
        "",
        "Each claim's entry names its check module (sims/paper_checks/), its theory, its tests and its figures. "
        "Every verdict comes from a verdict function whose rule is printed with it.",
        "",
        POSITIONING,
        "",
        "| id | claim | verdict |",
        "| --- | --- | --- |",
    ]
    for ch in checks:
        lines.append(f"| [{ch.id}](#{ch.id.lower()}) | {ch.title} | {ch.verdict} |")
    lines.append("")
    for ch in checks:
        lines += [f"## {ch.id}", "", f"**{ch.title}.** " + (f"Claim: {ch.claim}" if ch.claim != "-" else ""), ""]
        if ch.accuracy != "-":
            lines.append(f"- Accuracy notion: {ch.accuracy}.")
        if ch.id in MODULES:
            lines.append(f"- Check: `{MODULES[ch.id]}`.")
        if ch.theory:
            lines.append(f"- Theory: {ch.theory}.")
        lines.append("- Tests and commands: " + "; ".join(f"`{h}`" for h in ch.how) + ".")
        if ch.figure:
            lines.append(f"- Figure: {ch.figure}.")
        lines.append(f"- Verdict: **{ch.verdict}**.")
        lines.append("")
        lines += ch.lines
        lines.append("")
    lines += evidence.render_section(cached)
    lines += ["## Where this suite and the paper's own code differ", ""]
    lines += [f"- {d}" for d in DIFFERENCES]
    lines += ["", JSON_MARK, "```json", json.dumps(key_numbers(checks, cached), indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def key_numbers(checks, cached=None) -> dict:
    out = {ch.id: {"verdict": ch.verdict, **ch.numbers} for ch in checks}
    out[CACHED_KEY] = {name: ev.numbers for name, ev in sorted((cached or {}).items()) if ev.numbers}
    return out


def read_key_numbers(text: str) -> dict:
    if JSON_MARK not in text:
        raise ValueError("paper_checks.md has no key-number block; regenerate it with python -m sims.paper_checks")
    block = text.split(JSON_MARK, 1)[1]
    body = block.split("```json", 1)[1].split("```", 1)[0]
    return json.loads(body)


def compare(recorded: dict, current: dict) -> list:
    """Differences between two key-number dicts (verdicts and ints exact, floats rel 1e-6 / abs 1e-9).

    The cached-evidence section is not compared here (see :func:`compare_cached`)."""
    diffs = []
    for cid in sorted((set(recorded) | set(current)) - {CACHED_KEY}):
        a, b = recorded.get(cid), current.get(cid)
        if a is None or b is None:
            diffs.append(f"{cid}: present in only one of the file and the run")
            continue
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
            if isinstance(va, float) and isinstance(vb, float):
                if not math.isclose(va, vb, rel_tol=1e-6, abs_tol=1e-9):
                    diffs.append(f"{cid}.{key}: file {va!r}, now {vb!r}")
            elif va != vb:
                diffs.append(f"{cid}.{key}: file {va!r}, now {vb!r}")
    return diffs


def compare_cached(recorded: dict, cached: dict) -> tuple[list, list]:
    """(differences, notes) for the cached evidence: entries whose cache is present are compared exactly like
    the rest; entries whose cache is absent are reported as not verified (a note, not a failure)."""
    rec = recorded.get(CACHED_KEY, {})
    diffs, notes = [], []
    for name in sorted(set(rec) | set(cached) | set(evidence.SOURCES)):
        ev = cached.get(name)
        if ev is None or not ev.numbers:
            src = evidence.SOURCES.get(name)
            how = f"run `{src.command}` to produce {src.path}" if src else "unknown source"
            notes.append(f"not verified: {name} (its cache is missing; {how})")
            continue
        diffs += compare({name: rec.get(name, {})}, {name: ev.numbers}) if name in rec else [
            f"{CACHED_KEY}.{name}: in the run but not in the file"]
    return diffs, notes


# ----------------------------------------------------------------------------- command line


def check_out_path(path, for_reading: bool) -> str | None:
    """Why ``path`` cannot be the report file (one sentence), or None if it can; called before any computing.

    Writing: :func:`sims._cli.check_output_file` (not a folder, not under a file, its folder can be created and
    written into -- tested with a probe file). Reading (--check): an existing, readable regular file."""
    p = Path(path)
    if not for_reading:
        try:
            check_output_file("--out", p)
        except ValueError as err:
            return str(err)
        return None
    shown = f"--out == {str(p)!r}"
    if p.is_dir():
        return f"{shown} is a folder, must be the report file"
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{shown} lies under the file {str(parent)!r}"
            break
    if not p.exists():
        return f"{shown} does not exist (generate it with {PROG})"
    try:
        with open(p, "rb"):
            pass
    except OSError as err:
        return f"{shown} cannot be read ({err.strerror or type(err).__name__})"
    return None


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description="Generate paper_checks.md: every claim of the paper, how the suite "
                      "checks it, the numbers, the verdict.")
    p.add_argument("--check", action="store_true",
                   help="recompute and compare with the file's key numbers; exit 1 on any difference")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="the markdown file to write (or, with --check, to read)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    problem = check_out_path(out, for_reading=args.check)
    if problem:  # before any computing
        parser.error(problem)
    recorded = None
    if args.check:
        try:
            recorded = read_key_numbers(out.read_text())
        except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as err:
            parser.error(f"--out: {out}: {err}")
    try:
        cached = evidence.load_all()
    except ValueError as err:
        parser.error(str(err))
    t0 = time.perf_counter()
    try:
        checks, cached = run_all(progress=not args.no_progress, cached=cached)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except RuntimeError as err:  # sims.engine.NotConvergedError: never report an unconverged result
        print(f"{PROG}: error: solver failed: {err}", file=sys.stderr)
        return 3
    if args.check:
        diffs = compare(recorded, key_numbers(checks, cached))
        cdiffs, notes = compare_cached(recorded, cached)
        for note in notes:
            print(f"{PROG}: {note}", file=sys.stderr)
        if diffs or cdiffs:
            print(f"{out} is out of date ({len(diffs) + len(cdiffs)} differences):", file=sys.stderr)
            for line in diffs + cdiffs:
                print(f"  {line}", file=sys.stderr)
            return 1
        verified = sum(1 for ev in cached.values() if ev.numbers)
        print(f"{out} matches the code: {len(checks)} checks recomputed and compared; evidence from cached runs: "
              f"{verified} compared, {len(notes)} not verified (listed above) ({time.perf_counter() - t0:.0f} s)")
        return 0
    write_text(out, render(checks, cached))
    print(f"wrote {out} ({len(checks)} checks, {time.perf_counter() - t0:.0f} s)")
    return 0
