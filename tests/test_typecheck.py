"""mypy, as pyproject.toml configures it (``files = ["core", "db"]``), finds no error.

Part of the README's test command, so CI runs it; a new release of a typed dependency
(SQLAlchemy, numpy) can bring new errors: fix them with real types, or a targeted
``# type: ignore[code]`` that says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_finds_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api", reason="pip install --require-hashes -r requirements-dev.lock (mypy)")
    monkeypatch.chdir(ROOT)  # the configuration's files are relative to the project folder
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, stdout + stderr
