"""Mutation testing of theory/ and sims/engine/measures.py with mutmut, on a seeded random sample of the mutants.

mutmut (configured in pyproject.toml, [tool.mutmut]) generates every mutant;
running all of them (about 6500) takes hours on 2 cores, so this script runs a
stratified random sample (the same share of every file, seeded) and reports
the kill rate per file with a 95 % Wilson interval, and every survivor with
its diff. Results stay in mutants/ (ignored by git); the summary is also written
as a markdown report (``--report``, default mutants/sample_summary.md) that says
how the sample was drawn and on which machine.

    pip install -e ".[mutation]"
    python benchmarks/mutation_sample.py --share 0.1 --seed 0 --report docs/mutation.md

Steps: ``mutmut run`` with a name that matches no mutant (generates the
mutants and records which tests call which function), then ``mutmut run`` on
the sample, then the summary (``--summary-only`` rewrites the report from the
last sample).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _report  # noqa: E402

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked"}


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _mutmut_env() -> dict:
    """The environment of the mutmut runs: one BLAS thread per worker unless the caller chose otherwise."""
    env = dict(os.environ)
    for var in BLAS_THREAD_VARS:
        env.setdefault(var, "1")
    return env


def _metas():
    return sorted(Path("mutants").rglob("*.py.meta"))


def _load():
    out = {}
    for meta in _metas():
        data = json.loads(meta.read_text())
        src = str(meta.relative_to("mutants"))[: -len(".meta")]
        for name, code in data["exit_code_by_key"].items():
            out[name] = (src, code, data.get("durations_by_key", {}).get(name))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def sample(names_by_file: dict, share: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    chosen = []
    for src in sorted(names_by_file):
        names = sorted(names_by_file[src])
        k = max(1, round(share * len(names)))
        chosen += [names[i] for i in sorted(rng.choice(len(names), size=min(k, len(names)), replace=False))]
    return chosen


def _pragma_lines() -> list[tuple[str, str]]:
    """Every `# pragma: no mutate` line in the mutated sources, with the reason given on the line above."""
    out = []
    for src in sorted([*Path("theory").glob("*.py"), Path("sims/engine/measures.py")]):
        text = src.read_text().splitlines()
        for i, line in enumerate(text):
            if "# pragma: no mutate" in line:
                block = []  # the comment lines right above, the first of which starts "# no mutate:"
                j = i - 1
                while j >= 0 and text[j].strip().startswith("#"):
                    block.insert(0, text[j].strip().lstrip("#").strip())
                    j -= 1
                starts = [k for k, ln in enumerate(block) if ln.startswith("no mutate:")]
                reason = " ".join(block[starts[-1]:])[len("no mutate:"):].strip() if starts else "NO REASON GIVEN"
                out.append((f"{src}:{i + 1}", reason))
    return out


def summary(chosen: list[str]) -> str:
    res = _load()
    missing = [name for name in chosen if name not in res]
    chosen = [name for name in chosen if name in res]
    wall = Path("mutants/sample_wall.txt")
    lines = [f"Sample: {len(chosen)} mutants; mutmut run wall time "
             f"{wall.read_text().strip() + ' s' if wall.exists() else 'not recorded'}.\n"]
    lines += ["| file | sampled | killed (incl. timeout) | survived | no tests | score | 95 % interval |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    per = {}
    for name in chosen:
        src, code, _ = res[name]
        per.setdefault(src, []).append(STATUS.get(code, "suspicious"))
    tot_k = tot_n = 0
    theory_k = theory_n = 0
    for src, st in sorted(per.items()):
        k = sum(s in ("killed", "timeout") for s in st)
        n = sum(s in ("killed", "timeout", "survived", "no tests", "suspicious") for s in st)
        lo, hi = wilson(k, n)
        lines.append(f"| {src} | {len(st)} | {k} | {st.count('survived')} | {st.count('no tests')} | "
                     f"{k / n:.1%} | {lo:.1%} - {hi:.1%} |" if n else f"| {src} | {len(st)} | - | - | - | - | - |")
        tot_k += k
        tot_n += n
        if src.startswith("theory"):
            theory_k += k
            theory_n += n
    for label, k, n in (("theory/ (all sampled)", theory_k, theory_n), ("all sampled", tot_k, tot_n)):
        lo, hi = wilson(k, n)
        lines.append(f"| **{label}** | | {k} | | | **{k / max(n, 1):.1%}** | {lo:.1%} - {hi:.1%} |")
    if missing:
        lines.append(f"\n{len(missing)} sampled mutants no longer exist (their source changed after sampling).")
    unchecked = [name for name in chosen if res[name][1] is None]
    if unchecked:
        lines.append(f"\n{len(unchecked)} sampled mutants were not checked (run interrupted).")
    surv = [name for name in chosen if STATUS.get(res[name][1]) in ("survived", "no tests", "suspicious")]
    pragmas = _pragma_lines()
    lines.append(f"\nLines excluded from mutation by `# pragma: no mutate` ({len(pragmas)}), each with its reason:")
    lines += [f"- {where}: {reason}" for where, reason in pragmas]
    lines.append(f"\nSurvivors ({len(surv)}):")
    for name in surv:
        diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
        changed = [ln for ln in diff.splitlines() if ln.startswith(("-    ", "+    ", "- ", "+ ")) and not ln.startswith(("---", "+++"))]
        lines.append(f"- `{name}` ({STATUS.get(res[name][1])}): " + " / ".join(ln.strip() for ln in changed[:2]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mutation_sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--share", type=float, default=0.1, help="share of each file's mutants to run (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--max-children", type=int, default=2, help="parallel mutmut workers (default 2)")
    p.add_argument("--only", default=None, help="comma-separated source files to sample from (e.g. theory/pll.py)")
    p.add_argument("--summary-only", action="store_true",
                   help="only print the summary of the last sample (and rewrite its report)")
    p.add_argument("--report", default="mutants/sample_summary.md", metavar="FILE",
                   help="markdown report of the sample (default mutants/sample_summary.md)")
    args = p.parse_args(argv)
    if not 0 < args.share <= 1:
        p.error(f"--share == {args.share}, must be in (0, 1]")
    problem = _report.check_writable(args.report)
    if problem:
        p.error(f"--report: {problem}")
    if not args.summary_only:
        if not _metas():
            subprocess.run(["mutmut", "run", "--max-children", str(args.max_children), "no-such-mutant"], check=False,
                           env=_mutmut_env())
        res = _load()
        if not res:
            print("mutation_sample: error: mutmut generated no mutants (see its output above)", file=sys.stderr)
            return 2
        by_file = {}
        for name, (src, _, _) in res.items():
            if args.only is None or src in args.only.split(","):
                by_file.setdefault(src, []).append(name)
        chosen = sample(by_file, args.share, args.seed)
        Path("mutants/sample.json").write_text(json.dumps(chosen))
        Path(SETTINGS).write_text(json.dumps({
            "share": args.share, "seed": args.seed, "only": args.only, "max_children": args.max_children,
            "sampled": len(chosen), "generated": sum(map(len, by_file.values())),
            "blas_threads": {var: _mutmut_env()[var] for var in BLAS_THREAD_VARS},
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}))
        print(f"running {len(chosen)} of {sum(map(len, by_file.values()))} mutants (mutmut's counter below counts "
              f"the mutants of every file, {len(res)}, with the results of earlier runs; only the sample runs)",
              flush=True)
        start = time.monotonic()
        subprocess.run(["mutmut", "run", "--max-children", str(args.max_children), *chosen], check=False,
                       env=_mutmut_env())
        Path("mutants/sample_wall.txt").write_text(f"{time.monotonic() - start:.0f}\n")
    try:
        chosen = json.loads(Path("mutants/sample.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"mutation_sample: error: no readable sample in mutants/sample.json ({exc.__class__.__name__}); "
              "run without --summary-only first", file=sys.stderr)
        return 2
    text = summary(chosen)
    _report.write(args.report, render_report(text))
    print(text)
    print(f"wrote {args.report}")
    return 0


SETTINGS = "mutants/sample_settings.json"


def _threads(st: dict) -> str:
    threads = st.get("blas_threads")
    return ", ".join(f"{k}={v}" for k, v in threads.items()) if threads else "not recorded"


def render_report(text: str) -> str:
    """The summary as a markdown report: how the sample was drawn, what mutmut ran, the machine."""
    try:
        st = json.loads(Path(SETTINGS).read_text())
    except (OSError, ValueError):
        st = None
    if st is None:
        drawn = ["How the sample was drawn was not recorded (mutants/sample_settings.json is missing)."]
        load = None
    else:
        cmd = f"python benchmarks/mutation_sample.py --share {st['share']} --seed {st['seed']}"
        if st.get("only"):
            cmd += f" --only {st['only']}"
        drawn = [f"Sample drawn and run by `{cmd}` (max {st['max_children']} mutmut workers): "
                 f"{st['sampled']} of the {st['generated']} mutants mutmut generated, the same share of every "
                 f"file, with {_threads(st)} for each worker. Each mutant is run against the test selection of `[tool.mutmut]` in pyproject.toml; "
                 "a mutant counts as killed when a test fails or it times out."]
        load = st.get("load_average_at_start")
    sections = [("Summary", [text])]
    facts = _report.machine_facts(load)
    return _report.render("Mutation testing", drawn, sections, facts)


if __name__ == "__main__":
    sys.exit(main())
