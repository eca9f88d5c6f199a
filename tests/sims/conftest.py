"""Fixtures shared by the tests of the command-line tools."""

import os
import subprocess

import pytest

from sims import _cli
from tests.theorems.strategies import raises_naming


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A folder into which no file can be created, even by root.

    Permission bits do not stop root (these tests run as root in CI containers), so as root the folder is
    made immutable with ``chattr +i`` (ext4 and most Linux file systems). As another user, ``chmod 0o555``
    is enough. If neither works, file creation in that folder is made to fail by patching
    ``tempfile.mkstemp`` as sims._cli sees it. The fixture checks that creating a file there really fails.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    undo = None
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    else:  # pragma: no cover - depends on the file system
        real = _cli.tempfile.mkstemp

        def refuse(*a, dir=None, **k):
            if dir is not None and os.path.realpath(dir) == os.path.realpath(folder):
                raise PermissionError(13, "Permission denied")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(_cli.tempfile, "mkstemp", refuse)
    with raises_naming("--out", repr(str(folder))):
        _cli.check_output_dir("--out", folder)
    try:
        yield folder
    finally:
        if undo is not None:
            undo()
