"""Layering rules (STYLE.md): core/ is pure; pages/ reach data only through db/ via ui/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def violations(folder: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = imported_modules(path) & forbidden
        if bad:
            found.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    return found


def test_core_imports_neither_streamlit_nor_sqlalchemy() -> None:
    assert violations("core", {"streamlit", "sqlalchemy", "alembic", "db", "ui"}) == []


def test_pages_import_no_sqlalchemy_and_write_no_sql() -> None:
    assert violations("pages", {"sqlalchemy", "alembic", "psycopg", "sqlite3"}) == []
    for path in (ROOT / "pages").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "session.execute" not in text and "SELECT " not in text, path.name


def test_db_does_not_import_streamlit() -> None:
    assert violations("db", {"streamlit", "ui"}) == []


def test_every_page_guards_itself() -> None:
    for path in (ROOT / "pages").glob("*.py"):
        assert "require(" in path.read_text(encoding="utf-8"), f"{path.name} does not call ui.session.require"


@pytest.mark.parametrize("source", ["import streamlit as st\n", "from sqlalchemy import select\n"])
def test_the_checker_catches_a_forbidden_import(tmp_path: Path, source: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert imported_modules(path) & {"streamlit", "sqlalchemy"}


def test_every_environment_variable_the_app_reads_is_documented_configuration() -> None:
    # issue 14: a test hook (ALLIANCE_IMPORT_PAUSE_AFTER_BATCH) lived in db/writes.py. What the app
    # reads from the environment is configuration, documented for the clinic's IT; tests inject
    # what they need themselves.
    import re

    root = Path(__file__).resolve().parents[1]
    sources = [*root.glob("core/**/*.py"), *root.glob("db/**/*.py"), *root.glob("ui/**/*.py"),
               *root.glob("pages/**/*.py"), *root.glob("mail/**/*.py"), root / "manage.py", root / "app.py"]
    names = {m for f in sources for m in re.findall(r"\"(ALLIANCE_[A-Z0-9_]+)\"", f.read_text(encoding="utf-8"))}
    assert "ALLIANCE_DB_URL" in names  # the scan sees what it must
    docs = "\n".join(f.read_text(encoding="utf-8") for f in [root / "README.md", *root.glob("docs/*.md")])
    undocumented = sorted(n for n in names if n not in docs)
    assert not undocumented, f"read by the app but documented nowhere in README.md or docs/: {undocumented}"
    assert not [n for n in names if re.search(r"PAUSE|TEST|HOOK|FAKE", n)], names


def test_mail_does_not_import_streamlit() -> None:
    # mail/ is the notification worker: it runs from manage.py (cron, systemd) without the app.
    assert violations("mail", {"streamlit", "ui", "pages"}) == []
