"""The command line of :mod:`sims.figures`: ``python -m sims.figures [--quick] [--only a,c] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .._cli import OneLineParser, ProgressBar, check_output_dir, write_text
from ._common import DEFAULT_OUT, DEFAULT_RESULTS, _jsonable
from .fig_a_simplex import fig_a_simplex
from .fig_b_spectral_filter import fig_b_spectral_filter
from .fig_c_paper_experiment import fig_c_paper_experiment
from .fig_d_correlations import fig_d_correlations
from .fig_e_distillation_gain import fig_e_distillation_gain
from .fig_f_min_rounds import fig_f_min_rounds
from .fig_g_phase_diagram import fig_g_phase_diagram

__all__ = ["FIGURES", "build_parser", "main"]

FIGURES = {
    "a": ("fig_a_simplex", fig_a_simplex),
    "b": ("fig_b_spectral_filter", fig_b_spectral_filter),
    "c": ("fig_c_paper_experiment", fig_c_paper_experiment),
    "d": ("fig_d_correlations", fig_d_correlations),
    "e": ("fig_e_distillation_gain", fig_e_distillation_gain),
    "f": ("fig_f_min_rounds", fig_f_min_rounds),
    "g": ("phase_diagram", fig_g_phase_diagram),
}


def _only(text):
    letters = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not letters:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one figure letter among {', '.join(FIGURES)}")
    for v in letters:
        if v not in FIGURES:
            raise argparse.ArgumentTypeError(f"unknown figure {v!r}, must be among {', '.join(FIGURES)}")
    return tuple(dict.fromkeys(letters))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sims.figures",
                description="Rebuild every figure of the suite (PNG; the phase diagram also as PDF).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes for CI; files get a _quick suffix, so full figures are not overwritten")
    p.add_argument("--out", default=None, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--only", type=_only, default=tuple(FIGURES), help="comma list of figure letters (a-g)")
    p.add_argument("--seed", type=int, default=0, help="the one random seed (>= 0)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel joblib workers for figures e, f, g (-1: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed == {args.seed}, must be >= 0")
    if args.jobs == 0 or args.jobs < -1:
        parser.error(f"--jobs == {args.jobs}, must be >= 1 or -1 (all cores)")
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    out_given = args.out is not None
    out_dir = Path(args.out) if out_given else DEFAULT_OUT
    numbers_dir = out_dir if out_given else DEFAULT_RESULTS
    option = "--out" if out_given else "output folder"
    try:  # every folder this run writes, before any computing
        for folder in dict.fromkeys((out_dir, numbers_dir)):
            check_output_dir(option, folder)
        if "g" in args.only and not out_given:
            from ..studies import phase_diagram as pd

            for folder in dict.fromkeys((pd.DEFAULT_FIG_DIR, pd.DEFAULT_RESULTS_DIR / "cache")):
                check_output_dir("output folder", folder)
    except ValueError as err:
        parser.error(str(err))
    progress = not args.no_progress
    rng = np.random.default_rng(args.seed)
    children = dict(zip(FIGURES, rng.spawn(len(FIGURES))))
    numbers_path = numbers_dir / f"figures{'_quick' if args.quick else ''}.json"
    numbers = {}
    if numbers_path.exists():
        try:
            numbers = json.loads(numbers_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            numbers = {}
    total_start = time.perf_counter()
    bar = ProgressBar(len(args.only), "figures", enabled=progress, warmup=1)
    done = []
    try:
        for letter in args.only:
            name, fn = FIGURES[letter]
            bar.set_postfix_str(name)
            start = time.perf_counter()
            kw = dict(quick=args.quick, jobs=jobs, progress=progress)
            if letter == "g":
                res = fn(out_dir, children[letter], seed=args.seed, out_given=out_given, **kw)
            else:
                res = fn(out_dir, children[letter], **kw)
            elapsed = time.perf_counter() - start
            res["seconds"] = elapsed
            numbers[letter] = _jsonable(res)
            done.append(letter)
            print(f"{letter}: {res['file']} ({elapsed:.1f} s)", flush=True)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        if done:
            write_text(numbers_path, json.dumps(_jsonable(numbers), indent=1))
        print(f"{parser.prog}: interrupted; figures {','.join(done) or 'none'} are written (the phase diagram "
              "keeps its finished cells); run the same command again to finish", file=sys.stderr, flush=True)
        return 130
    bar.close()
    write_text(numbers_path, json.dumps(_jsonable(numbers), indent=1))
    print(f"numbers: {numbers_path}\ntotal: {time.perf_counter() - total_start:.1f} s", flush=True)
    return 0
