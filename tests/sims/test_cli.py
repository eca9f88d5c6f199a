"""Tests of the pieces shared by the command-line tools (sims/_cli.py) and of sims.distill's first-use output."""

import errno
import os

import pytest

from sims import _cli
from sims.studies import distill as Dm
from tests.theorems.strategies import raises_naming


def test_check_output_dir_creates_and_accepts_a_writable_folder(tmp_path):
    target = tmp_path / "a" / "b"
    assert _cli.check_output_dir("--out", target) == target
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file is removed


def test_check_output_dir_rejects_files_and_paths_under_files(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with raises_naming("--out", repr(str(a_file))):
        _cli.check_output_dir("--out", a_file)
    with raises_naming("--out", repr(str(a_file / "sub" / "deeper")), repr(str(a_file))):
        _cli.check_output_dir("--out", a_file / "sub" / "deeper")
    assert a_file.read_text() == "x"


def test_check_output_dir_probes_by_writing(read_only_dir):
    """A folder nobody can write into (see the fixture: chattr +i as root) is rejected, named, with the reason."""
    with raises_naming("--out", repr(str(read_only_dir))) as info:
        _cli.check_output_dir("--out", read_only_dir)
    assert any(os.strerror(e) in str(info.value) for e in (errno.EACCES, errno.EPERM, errno.EROFS)), info.value
    with raises_naming("--out", repr(str(read_only_dir / "x.md")), repr(str(read_only_dir))):
        _cli.check_output_file("--out", read_only_dir / "x.md")


def test_check_output_dir_follows_what_a_write_does_not_the_permission_bits(tmp_path):
    """chmod 0o555 stops other users but not root: the check accepts the folder exactly when a write works."""
    folder = tmp_path / "r-x"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").write_text("x")
            writable = True
        except PermissionError:
            writable = False
        if writable:  # root
            assert _cli.check_output_dir("--out", folder) == folder
        else:
            with raises_naming("--out", repr(str(folder))):
                _cli.check_output_dir("--out", folder)
    finally:
        folder.chmod(0o755)


def test_check_output_file(tmp_path):
    assert _cli.check_output_file("--out", tmp_path / "new" / "x.md") == tmp_path / "new" / "x.md"
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "x.md").exists()
    with raises_naming("--out", repr(str(tmp_path))):
        _cli.check_output_file("--out", tmp_path)
    (tmp_path / "f").write_text("x")
    with raises_naming("--out", repr(str(tmp_path / "f" / "x.md")), repr(str(tmp_path / "f"))):
        _cli.check_output_file("--out", tmp_path / "f" / "x.md")


def test_progress_bar_gives_no_estimate_until_warmup(capsys):
    bar = _cli.ProgressBar(100, "cells", enabled=True, warmup=3)
    for _ in range(2):
        bar.update()
        assert "estimating the time left" in str(bar._bar) and "<" not in str(bar._bar)
    bar.update()
    assert "estimating" not in str(bar._bar) and "<" in str(bar._bar)  # tqdm's "elapsed<remaining"
    bar.close()
    off = _cli.ProgressBar(10, "cells", enabled=False)
    off.update()
    off.close()
    assert off.n == 0


def test_one_line_parser_error_form(capsys):
    parser = _cli.OneLineParser(prog="python -m sims.something")
    parser.add_argument("--k", type=int)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--k", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m sims.something: error: ") and len(err.strip().splitlines()) == 1


def test_distill_default_rounds_reach_the_theory_minimum():
    """The default scenario shows the paper's effect: its rounds cover the theory's minimum round."""
    import theory

    s = Dm.Scenario()
    assert s.rounds >= theory.min_rounds(s.K, s.n, s.c, s.d, s.lam, theory.symmetric(s.K, s.eta))
    assert Dm._build_parser().parse_args([]).rounds == s.rounds


def test_distill_zero_pll_row_says_why(capsys):
    rc = Dm.main(["--per-class", "20", "--rounds", "1", "--noise", "superclass", "--eta", "0.3", "--pll",
                  "--exact-counts"])
    out = capsys.readouterr().out
    assert rc == 0
    pll = [line for line in out.splitlines() if line.startswith("pll")]
    assert pll and all(line.split()[3] == "0.00" for line in pll)
    assert "note: PLL row at 0 %" in out and "tie exactly" in out
    # no such note when the PLL student is not at 0 %
    assert Dm.main(["--per-class", "20", "--rounds", "1", "--eta", "0.3", "--pll", "--exact-counts"]) == 0
    assert "PLL row at 0 %" not in capsys.readouterr().out


def test_code_fingerprint_is_the_source_of_theory_and_the_engine(tmp_path, monkeypatch):
    """Every .py file under theory/ and sims/engine/ (nested folders too) goes into the resume caches'
    fingerprint, and nothing else unless named: a study's help text does not invalidate the caches."""
    from pathlib import Path

    import sims
    import theory

    root = Path(sims.__file__).parent
    files = {f.relative_to(root.parent).as_posix() for f in _cli.source_files(Path(theory.__file__).parent,
                                                                              root / "engine")}
    assert {"theory/validate.py", "sims/engine/rounds.py", "sims/engine/fit/solver.py",
            "sims/engine/fit/gram.py"} <= files
    assert not any(f.startswith("sims/studies/") or f == "sims/_cli.py" for f in files)
    assert all(f.endswith(".py") for f in files)

    before = _cli.code_fingerprint()
    assert before == _cli.code_fingerprint() and len(before) == 64
    extra = tmp_path / "study.py"
    extra.write_text("x = 1\n")
    with_extra = _cli.code_fingerprint(extra)
    assert with_extra != before
    extra.write_text("x = 2\n")
    assert _cli.code_fingerprint(extra) != with_extra
    # a change to an engine file changes it
    real = _cli.source_files
    fake = tmp_path / "engine_extra.py"
    fake.write_text("y = 0\n")
    monkeypatch.setattr(_cli, "source_files", lambda *pk: [*real(*pk), fake])
    assert _cli.code_fingerprint() != before
