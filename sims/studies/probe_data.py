"""Features and labels from files for :mod:`sims.studies.probe`: .npy / .npz / .csv / .parquet.

Every function raises ``ValueError`` with one line that names the option, the file and the problem; the
command prints it and exits with status 2.

* ``.npy`` -- memory-mapped (``np.load(mmap_mode="r")``), pickles refused;
* ``.npz`` -- one array, or the array named ``features`` / ``X`` (features), ``labels`` / ``y`` (labels);
* ``.csv`` -- comma-separated; features: numbers, an optional header row (a first row that is not
  numeric); labels: one column, an optional header cell ``label``, ``labels``, ``y``, ``target`` or
  ``class``; a label that reads as an integer (or a real number) is that number, otherwise the text;
* ``.parquet`` -- pandas with pyarrow; features: every column numeric; labels: one column, or the
  column named ``label`` / ``labels`` / ``y``.

Labels of any type are encoded by scikit-learn's LabelEncoder fitted on the noisy training labels; other
label files are mapped with the same encoder, and a label it has not seen is an error.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = ["FORMATS", "read_features", "read_labels", "check_features", "LabelCodec", "class_counts_check"]

FORMATS = (".npy", ".npz", ".csv", ".parquet")
_FEATURE_KEYS = ("features", "X")
_LABEL_KEYS = ("labels", "y", "label")
_LABEL_HEADERS = ("label", "labels", "y", "target", "class")


def _shown(option: str, path: Path) -> str:
    return f"{option} == {str(path)!r}"


def _existing(option: str, path) -> tuple[Path, str]:
    path = Path(path)
    shown = _shown(option, path)
    if not path.exists():
        raise ValueError(f"{shown}: no such file")
    if path.is_dir():
        raise ValueError(f"{shown} is a folder, must be a file")
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ValueError(f"{shown}: unsupported extension {path.suffix or '(none)'!r}, must be one of "
                         f"{', '.join(FORMATS)}")
    return path, shown


def _why(err: Exception) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__


def _npy(path: Path, shown: str):
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as err:
        raise ValueError(f"{shown}: cannot read ({_why(err)})") from None
    if magic != b"\x93NUMPY":
        raise ValueError(f"{shown} is not a .npy file (no NumPy header)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise ValueError(f"{shown}: an object (pickled) array, must be numbers or strings") from None
        raise ValueError(f"{shown} is not a readable .npy file ({_why(err)})") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{shown} is not a readable .npy file ({_why(err)})") from None


def _npz(path: Path, shown: str, keys):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{shown} is not a .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if not names:
                raise ValueError(f"{shown}: the archive holds no array")
            if len(names) == 1:
                name = names[0]
            else:
                found = [k for k in keys if k in names]
                if not found:
                    raise ValueError(f"{shown} holds several arrays ({', '.join(names[:6])}); name the one to "
                                     f"use {' or '.join(repr(k) for k in keys)}")
                name = found[0]
            return z[name]
    except ValueError as err:
        if str(err).startswith(shown):
            raise
        raise ValueError(f"{shown} is not a readable .npz file ({_why(err)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{shown} is not a readable .npz file ({_why(err)})") from None


def _csv_lines(path: Path, shown: str) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{shown} is not a .csv file (not UTF-8 text)") from None
    except OSError as err:
        raise ValueError(f"{shown}: cannot read ({_why(err)})") from None
    if "\x00" in text:
        raise ValueError(f"{shown} is not a .csv file (binary content)")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError(f"{shown}: the file is empty")
    return lines


def _numeric_row(cells) -> bool:
    try:
        [float(c) for c in cells]
        return True
    except ValueError:
        return False


def _csv_features(path: Path, shown: str) -> np.ndarray:
    lines = _csv_lines(path, shown)
    rows = [ln.split(",") for ln in lines]
    if not _numeric_row(rows[0]):
        rows = rows[1:]  # a header row
        if not rows:
            raise ValueError(f"{shown}: a header row and no data")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{shown}: data row {i + 1} has {len(r)} columns, the first has {width}")
        if not _numeric_row(r):
            bad = next(c for c in r if not _numeric_row([c]))
            raise ValueError(f"{shown}: data row {i + 1} has the non-numeric cell {bad.strip()!r}")
    return np.array([[float(c) for c in r] for r in rows], dtype=np.float64)


def _typed_labels(cells: list[str]) -> np.ndarray:
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=str)


def _csv_labels(path: Path, shown: str) -> np.ndarray:
    lines = _csv_lines(path, shown)
    cells = [ln.split(",") for ln in lines]
    if any(len(c) != 1 for c in cells):
        i = next(i for i, c in enumerate(cells) if len(c) != 1)
        raise ValueError(f"{shown}: line {i + 1} has {len(cells[i])} columns, a label file must have one")
    cells = [c[0].strip().strip('"') for c in cells]
    if cells[0].lower() in _LABEL_HEADERS:
        cells = cells[1:]
    if not cells:
        raise ValueError(f"{shown}: a header and no labels")
    return _typed_labels(cells)


def _parquet(path: Path, shown: str):
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PAR1":
        raise ValueError(f"{shown} is not a .parquet file (no PAR1 header)")
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise ValueError(f"{shown}: reading .parquet needs pandas and pyarrow") from None
    try:
        return pd.read_parquet(path)
    except ImportError as err:  # pragma: no cover - pyarrow is a dependency
        raise ValueError(f"{shown}: reading .parquet needs pyarrow ({_why(err)})") from None
    except Exception as err:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"{shown} is not a readable .parquet file ({_why(err)})") from None


def read_features(option: str, path) -> np.ndarray:
    """The (N, D) feature array of a file (a read-only memory map for .npy), checked by
    :func:`check_features`."""
    path, shown = _existing(option, path)
    ext = path.suffix.lower()
    if ext == ".npy":
        X = _npy(path, shown)
    elif ext == ".npz":
        X = _npz(path, shown, _FEATURE_KEYS)
    elif ext == ".csv":
        X = _csv_features(path, shown)
    else:
        df = _parquet(path, shown)
        bad = [str(c) for c in df.columns if not np.issubdtype(df[c].dtype, np.number)]
        if bad:
            raise ValueError(f"{shown}: non-numeric column(s) {', '.join(bad[:5])}; features must be numbers")
        X = df.to_numpy(dtype=np.float64)
    return check_features(shown, X)


def check_features(shown: str, X) -> np.ndarray:
    """A 2-D float64 array (a memory map stays one when it already is float64) with finite entries."""
    if X.dtype.kind not in "iufb":
        raise ValueError(f"{shown}: dtype {X.dtype}, features must be numbers")
    if X.ndim != 2:
        raise ValueError(f"{shown}: shape {X.shape}, features must be a 2-D array (N instances, D features)")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{shown}: shape {X.shape}, needs at least one row and one column")
    if X.dtype != np.float64:
        X = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(X)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        n_bad = int((~finite).sum())
        raise ValueError(f"{shown}: {n_bad} non-finite value(s) (NaN or inf), the first at row {i}, column {j} "
                         f"({X[i, j]}); features must be finite")
    return X


def read_labels(option: str, path) -> np.ndarray:
    """The (N,) label array of a file (numbers or strings)."""
    path, shown = _existing(option, path)
    ext = path.suffix.lower()
    if ext == ".npy":
        y = np.asarray(_npy(path, shown))
    elif ext == ".npz":
        y = np.asarray(_npz(path, shown, _LABEL_KEYS))
    elif ext == ".csv":
        y = _csv_labels(path, shown)
    else:
        df = _parquet(path, shown)
        if df.shape[1] == 1:
            col = df.columns[0]
        else:
            found = [k for k in _LABEL_KEYS if k in df.columns]
            if not found:
                raise ValueError(f"{shown} has {df.shape[1]} columns; a label file has one, or one named "
                                 f"{' or '.join(repr(k) for k in _LABEL_KEYS)}")
            col = found[0]
        y = df[col].to_numpy()
        if y.dtype == object:
            y = y.astype(str)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"{shown}: shape {y.shape}, labels must be a 1-D array")
    if y.size == 0:
        raise ValueError(f"{shown}: no labels")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{shown}: NaN or inf among the labels")
    if y.dtype.kind not in "iufbUS":
        raise ValueError(f"{shown}: dtype {y.dtype}, labels must be numbers or strings")
    return y


class LabelCodec:
    """scikit-learn's LabelEncoder fitted on the noisy training labels; :meth:`encode` maps any other label
    file with it (ValueError naming the first unseen label)."""

    def __init__(self, option: str, labels):
        from sklearn.preprocessing import LabelEncoder

        self.option = option
        self.encoder = LabelEncoder().fit(labels)
        self.classes = self.encoder.classes_

    def encode(self, shown: str, labels) -> np.ndarray:
        labels = np.asarray(labels)
        known = np.isin(labels, self.classes)
        if not known.all():
            first = labels[~known][0]
            raise ValueError(f"{shown}: label {first.item()!r} (index {int(np.flatnonzero(~known)[0])}) does not "
                             f"occur in the {self.option} labels the encoder was fitted on")
        return self.encoder.transform(labels).astype(np.int64)

    def name(self, k: int):
        return self.classes[k].item()


def class_counts_check(shown: str, y, K: int, minimum: int = 2, why: str = "", names=None) -> np.ndarray:
    """Instances per class; ValueError (naming the class, by ``names[k]`` when given) if a class has fewer
    than ``minimum``."""
    counts = np.bincount(y, minlength=K)
    if counts.min() < minimum:
        k = int(np.argmin(counts))
        name = k if names is None else names[k]
        raise ValueError(f"{shown}: class {name!r} has {int(counts[k])} instance(s), every class needs at least "
                         f"{minimum}{why}")
    return counts
