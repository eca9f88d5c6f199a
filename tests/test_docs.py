"""README.md and docs/ against the files they describe: verdicts, the two commands, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

MAIN_JOB = "python -m venv .venv && . .venv/bin/activate && pip install -e . && python -m sims.phase_diagram"
TESTS = 'python -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest -n auto'
CI_MARK = 'keep in sync with README.md "Run the tests"'


def _verdicts(text: str) -> dict:
    """{claim id: verdict} from the rows of a markdown table whose first cell links a claim id P1-P7."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\| \[(P\d)\]\([^)]*\) \| [^|]+ \| (.+) \|$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_readme_verdicts_are_the_ones_paper_checks_states():
    readme = _verdicts(README.read_text())
    checks = _verdicts((ROOT / "paper_checks.md").read_text())
    assert sorted(readme) == [f"P{i}" for i in range(1, 8)]
    assert readme == {cid: checks[cid] for cid in readme}


def test_readme_keeps_the_two_commands():
    text = README.read_text()
    assert MAIN_JOB in _section(text, "Run the main job (phase diagram)")
    assert TESTS in _section(text, "Run the tests")


def test_ci_runs_the_readme_test_command():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if CI_MARK in line]
    assert len(marks) == 1
    command = lines[marks[0] + 1].strip()
    # .ci/run may add pytest options (the Hypothesis profile); the rest is the README's command
    base = re.sub(r"( --\S+)*$", "", command)
    assert TESTS.endswith(base)


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_to_files(doc):
    text = doc.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (doc.parent / t).exists()]
    assert not missing
