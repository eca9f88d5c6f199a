"""The resumable runner shared by the sweeps (sims.studies.runner)."""

from __future__ import annotations

import json

import pytest

from sims.studies import runner


def _rows(k):
    return [{"k": k, "square": k * k}]


def _units(folder, ks, columns=("k", "square")):
    return [runner.Unit(folder / f"u{k}.json", _rows, (k,), columns) for k in ks]


def test_units_are_computed_once_then_read_from_the_cache(tmp_path):
    first = runner.run_units(_units(tmp_path, range(3)), progress=False)
    assert sorted(r["k"] for r in first.rows) == [0, 1, 2]
    assert (first.computed, first.from_cache, first.warnings) == (3, 0, [])
    again = runner.run_units(_units(tmp_path, range(4)), progress=False)
    assert (again.computed, again.from_cache) == (1, 3)
    assert sorted(map(json.dumps, again.rows)) == sorted(json.dumps(_rows(k)[0]) for k in range(4))


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe", b'{"a": 1}', b"[]", b'[{"k": 1}]'])
def test_one_rule_for_a_corrupt_cache_file(tmp_path, garbage, capsys):
    runner.run_units(_units(tmp_path, [5]), progress=False)
    path = tmp_path / "u5.json"
    path.write_bytes(garbage)  # not JSON, not UTF-8, not a list of rows, no rows, rows without the columns
    res = runner.run_units(_units(tmp_path, [5]), progress=False, prog="python -m x")
    assert res.computed == 1 and res.rows == _rows(5)
    (warning,) = res.warnings
    assert str(path) in warning and "corrupt" in warning and "\n" not in warning
    assert path.with_name("u5.json.corrupt").read_bytes() == garbage
    assert json.loads(path.read_text()) == _rows(5)
    assert "python -m x: warning: cache file" in capsys.readouterr().err


def test_parallel_run_gives_the_same_rows(tmp_path):
    seq = runner.run_units(_units(tmp_path / "a", range(5)), progress=False)
    par = runner.run_units(_units(tmp_path / "b", range(5)), jobs=2, progress=False)
    assert sorted(map(json.dumps, seq.rows)) == sorted(map(json.dumps, par.rows)) and par.computed == 5


def test_settings_key_depends_on_settings_and_code():
    a = runner.settings_key({"n": 1, "eta": 0.5}, "code")
    assert a == runner.settings_key({"eta": 0.5, "n": 1}, "code") and len(a) == 16
    assert a != runner.settings_key({"n": 2, "eta": 0.5}, "code")
    assert a != runner.settings_key({"n": 1, "eta": 0.5}, "other code")
    assert runner.settings_key({"n": 1}) == runner.settings_key({"n": 1})  # the real fingerprint, stable
