"""Small pieces shared by the command-line entry points: atomic file writes and one-line argument errors."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_text", "OneLineParser"]


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
