"""Small pieces shared by the command-line entry points: atomic file writes, one-line argument errors and
output-path checks made before any computing starts."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_text", "OneLineParser", "ProgressBar", "check_output_dir", "check_output_file",
           "code_fingerprint", "source_files", "csv_text"]


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file in the target's folder, then rename it onto ``path``.

    A reader never sees a half-written file, and an interrupted run leaves none behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path, text: str) -> Path:
    def w(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    return atomic_write(path, w)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (naming the option), exit status 2, no usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def fail(self, message, status: int = 2) -> int:
        """The same one line as :meth:`error`, returned as the exit status (for a ``main`` that returns it)."""
        print(f"{self.prog}: error: {message}", file=sys.stderr, flush=True)
        return status


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _check_dir(shown: str, path: Path) -> None:
    """Create folder ``path`` (with parents) and write and remove a probe file in it; ValueError starting
    with ``shown`` otherwise."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{shown} is a file, must be a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{shown} lies under the file {str(parent)!r}")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{shown}: cannot create the folder {str(path)!r} ({_why(err)})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(f"{shown}: cannot write into the folder {str(path)!r} ({_why(err)})") from None


def check_output_dir(option: str, path) -> Path:
    """Check that ``path`` is, or can be made, a folder we can write files into; create it; return it as a Path.

    Call it before any computing, so that a bad ``--out`` costs nothing; a CLI turns the ``ValueError``
    (naming the option, the value and the reason: a file, under a file, cannot be created, cannot be
    written) into its one-line error and exit status 2. Writability is tested by creating and removing a
    probe file, the one test that sees every reason a write fails (permission bits do not stop root; an
    immutable folder, a read-only mount or a full disk do).
    """
    path = Path(path)
    _check_dir(f"{option} == {str(path)!r}", path)
    return path


def check_output_file(option: str, path) -> Path:
    """Check that a file can be written at ``path``: not a folder, and its folder passes the checks of
    :func:`check_output_dir` (which creates it). Returns ``path`` as a Path."""
    path = Path(path)
    shown = f"{option} == {str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{shown} is a folder, must be a file path")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{shown} lies under the file {str(parent)!r}")
    _check_dir(shown, parent)
    return path


class ProgressBar:
    """A tqdm bar on stderr that shows no time-left estimate until ``warmup`` units are done.

    tqdm extrapolates its first estimate from the first unit, and the first units of our runs are often
    the slowest (a sweep's stacked linear cells, the first fit's factorisation): a 30-second job would
    first say 8 minutes. Until ``warmup`` units (default: 3, or a tenth of the total if more) the bar says
    "estimating"; from then on tqdm's smoothed rate (exponential moving average) gives the estimate.
    ``enabled=None`` shows the bar only on a terminal (tqdm's ``disable=None``).
    """

    EARLY_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, estimating the time left]"

    def __init__(self, total: int, desc: str, enabled=True, warmup: int | None = None, leave: bool = True):
        self.warmup = max(3, total // 10) if warmup is None else int(warmup)
        self._bar = None
        if enabled is not False:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=leave,
                             disable=None if enabled is None else False,
                             bar_format=self.EARLY_FORMAT if self.warmup > 0 else None)

    @property
    def n(self) -> int:
        return 0 if self._bar is None else int(self._bar.n)

    def update(self, k: int = 1) -> None:
        if self._bar is None or self._bar.disable:  # (a disabled tqdm has no format attributes)
            return
        self._bar.update(k)
        if self._bar.bar_format is not None and self._bar.n >= self.warmup:
            self._bar.bar_format = None  # tqdm's default format, with the time left
            self._bar.refresh()

    __call__ = update

    def set_postfix_str(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def write(self, line: str) -> None:
        """Print one line on stderr without breaking the bar."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def source_files(*packages) -> list[Path]:
    """Every ``.py`` file under the given package folders (recursively), in a fixed order."""
    files = []
    for folder in packages:
        folder = Path(folder).resolve()
        files += sorted(folder.rglob("*.py"), key=lambda f: f.relative_to(folder).as_posix())
    return files


def code_fingerprint(*extra_files) -> str:
    """SHA-256 of the source of theory/ and of sims/engine/ (every ``.py`` file, recursively) and of
    ``extra_files`` (paths): resume caches are keyed on it, so that a cache written by code that computes
    differently is never reused."""
    import hashlib

    import theory

    h = hashlib.sha256()
    engine = Path(__file__).resolve().parent / "engine"
    for f in [*source_files(Path(theory.__file__).parent, engine), *map(Path, extra_files)]:
        h.update(f.read_bytes())
    return h.hexdigest()


def csv_text(rows: list, columns) -> str:
    """Tidy CSV of ``rows`` (dicts) in ``columns`` order: None as empty, booleans as true/false, floats
    by ``repr`` (every digit, so that byte identity means numerical identity), anything else by ``str``."""
    lines = [",".join(columns)]
    for r in rows:
        vals = []
        for col in columns:
            v = r[col]
            if v is None:
                vals.append("")
            elif isinstance(v, bool):
                vals.append("true" if v else "false")
            elif isinstance(v, float):
                vals.append(repr(v))
            else:
                vals.append(str(v))
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"
