"""How .ci/audit.py reads pip-audit's answers: a finding fails, an unreachable database is said."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
assert spec is not None and spec.loader is not None
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

CLEAN = {"name": "streamlit", "version": "1.67.0", "vulns": []}
VULNERABLE = {"name": "foo", "version": "1.0", "vulns": [{"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": ["1.1"]}]}
NOT_ON_PYPI = {"name": "bar", "skip_reason": "Dependency not found on PyPI and could not be audited: bar (2.0)"}


def test_the_ignore_file_in_the_repository_parses() -> None:
    assert isinstance(audit.read_ignored(audit.IGNORE.read_text(encoding="utf-8")), dict)


def test_an_ignored_vulnerability_needs_a_reason() -> None:
    text = "# a comment\n\nGHSA-1  no fix yet (2026-12-03)\n"
    assert audit.read_ignored(text) == {"GHSA-1": "no fix yet (2026-12-03)"}
    with pytest.raises(ValueError, match="needs a reason"):
        audit.read_ignored("GHSA-1\n")


@pytest.mark.parametrize("stdout", ["", "Traceback (most recent call last):\n  ...ConnectionError",
                                    json.dumps({"dependencies": [NOT_ON_PYPI, NOT_ON_PYPI]}),
                                    json.dumps({"dependencies": []})])
def test_no_answer_from_the_database_is_none(stdout: str) -> None:
    assert audit.read_report(stdout) is None


def test_findings_name_package_version_id_and_fix() -> None:
    dependencies = audit.read_report(json.dumps({"dependencies": [CLEAN, VULNERABLE, NOT_ON_PYPI]}))
    assert dependencies is not None
    assert audit.findings(dependencies) == ["foo 1.0: GHSA-aaaa-bbbb-cccc (fixed in 1.1)"]


def test_a_finding_fails_and_an_unreachable_database_does_not(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(audit, "run_audit", lambda service, ignored: [CLEAN, VULNERABLE])
    assert audit.main() == 1
    assert "GHSA-aaaa-bbbb-cccc" in capsys.readouterr().out
    monkeypatch.setattr(audit, "run_audit", lambda service, ignored: [CLEAN])
    assert audit.main() == 0
    monkeypatch.setattr(audit, "run_audit", lambda service, ignored: None)
    assert audit.main() == 0
    assert "no vulnerability database could be reached" in capsys.readouterr().out
