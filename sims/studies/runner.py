"""The resumable runner of the sweeps (:mod:`.phase_diagram`, :mod:`.convergence`).

A sweep is a list of *units* of work, each writing its rows to one cache file. :func:`run_units` runs the
units that are not cached (one after the other, or in parallel with joblib, on a Dask cluster through
joblib's "dask" backend), with a progress bar, and collects every unit's rows:

* settings key -- :func:`settings_key` hashes the settings a unit's rows depend on together with
  :func:`sims._cli.code_fingerprint` (the source of theory/ and of the engine), so that a cache written
  by other settings or by code that computes differently is never reused; the sweep's cache folder is
  named by it;
* one corrupt-file rule -- a cache file that cannot be read as rows (not UTF-8 JSON, not a list of rows,
  or rows without the expected columns) is renamed ``<name>.json.corrupt`` (kept for inspection) and its
  unit recomputed, with a one-line warning;
* cache files are written atomically, so an interrupted run leaves none half-written and resumes when
  started again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .._cli import ProgressBar, code_fingerprint, write_text

__all__ = ["settings_key", "Unit", "read_rows", "cached_rows", "RunResult", "run_units"]


def settings_key(settings: dict, fingerprint: str | None = None) -> str:
    """16 hex digits of SHA-256 over the settings (JSON, sorted keys) and the code fingerprint
    (default: :func:`sims._cli.code_fingerprint`)."""
    blob = json.dumps(settings, sort_keys=True) + (code_fingerprint() if fingerprint is None else fingerprint)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``fn(*args)`` returns its rows (a list of dicts), cached at ``path``; a cached
    file's rows must have exactly ``columns`` as keys (when given)."""

    path: Path
    fn: object
    args: tuple
    columns: tuple | None = None


def read_rows(path: Path, columns=None) -> list[dict]:
    """The rows of a cache file; ValueError (one line) if it is not a JSON list of rows (with exactly
    ``columns`` as keys, when given)."""
    try:
        rows = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(" ".join(str(err).split())) from None
    if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
        raise ValueError("valid JSON, but not a list of rows")
    if columns is not None and not all(set(r) == set(columns) for r in rows):
        raise ValueError("valid JSON, but not a list of rows with the CSV's columns")
    return rows


def cached_rows(unit: Unit) -> tuple[list[dict], float | None, str | None]:
    """A unit's rows, from its cache file if that can be read, else computed and cached.

    Returns (rows, seconds spent computing them or None when they came from the cache, a one-line
    warning or None)."""
    path = Path(unit.path)
    warning = None
    if path.exists():
        try:
            return read_rows(path, unit.columns), None, None
        except ValueError as err:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            warning = f"cache file {path} is corrupt ({err}); set aside as {aside.name}, recomputing its unit"
    start = time.perf_counter()
    rows = unit.fn(*unit.args)
    write_text(path, json.dumps(rows))
    return rows, time.perf_counter() - start, warning


@dataclass
class RunResult:
    rows: list
    computed: int  # units computed in this run
    from_cache: int  # units read from the cache
    compute_seconds: float  # time spent computing units (summed over workers)
    warnings: list  # one line per corrupt cache file set aside


def run_units(units, *, jobs: int = 1, backend: str | None = None, progress: bool = True, desc: str = "units",
              prog: str = "") -> RunResult:
    """Run every unit (cached ones are read); ``jobs`` > 1 or a joblib ``backend`` ("dask": needs an
    active dask.distributed Client; then every worker of the cluster is used) run them in parallel.

    The rows are returned in completion order: sort them. Warnings are also printed (prefixed by
    ``prog``) without breaking the progress bar."""
    units = list(units)
    # no time-left estimate until a few units are done: the first units are often the slowest
    bar = ProgressBar(len(units), desc, enabled=progress)
    out = RunResult([], 0, 0, 0.0, [])

    def collect(results):
        for rows, seconds, warning in results:
            out.rows.extend(rows)
            if seconds is None:
                out.from_cache += 1
            else:
                out.computed += 1
                out.compute_seconds += seconds
            if warning is not None:
                out.warnings.append(warning)
                bar.write(f"{prog}: warning: {warning}" if prog else f"warning: {warning}")
            bar.update(1)

    try:
        if jobs == 1 and backend is None:
            collect(cached_rows(u) for u in units)
        else:
            from joblib import Parallel, delayed, parallel_backend

            with parallel_backend(backend) if backend else contextlib.nullcontext():
                par = Parallel(n_jobs=-1 if backend else jobs, return_as="generator_unordered")
                collect(par(delayed(cached_rows)(u) for u in units))
    finally:  # also on Ctrl-C, so that the bar's line ends before the caller's one-line message
        bar.close()
    return out


DASK_CONNECT_TIMEOUT = "5s"


def dask_client(address: str):
    """A dask.distributed Client of the scheduler at ``address``; ValueError (one line) if dask is missing,
    the address is malformed or nothing answers within DASK_CONNECT_TIMEOUT."""
    shown = f"--dask-scheduler == {address!r}"
    if not address.strip():  # dask would start a local cluster for an empty address
        raise ValueError(f"{shown}: cannot connect (give a scheduler address such as tcp://HOST:8786)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError(f"{shown}: dask.distributed is not installed "
                         "(pip install -e \".[test]\" or pip install \"dask[distributed]\")") from None
    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except Exception as err:  # malformed (ValueError, TypeError) or unreachable (OSError, TimeoutError)
        why = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{shown}: cannot connect ({why[:200]})") from None
