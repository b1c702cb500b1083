"""Docs and code must agree (datasette style): the README's commands, the CI script, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from manage import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    """The single-line commands in the README's "Start it" and "Test it" sections."""
    blocks = re.findall(r"## (Start it|Test it)[^\n]*\n\n```\n(.+?)\n```", README, flags=re.S)
    return [body.strip() for _, body in blocks]


def test_readme_gives_exactly_two_commands_for_a_fresh_machine() -> None:
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    start, test = commands
    assert "requirements.txt" in start and "seed-demo" in start and "streamlit run app.py" in start
    assert "requirements-dev.txt" in test and "pytest" in test and "chromium" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci


def test_every_contract_command_exists_with_its_options() -> None:
    runner = CliRunner()
    expected = {
        "init-db": [], "seed-demo": ["--force"], "import-scores": ["--dry-run", "--replace"],
        "flags": ["--as-of-week", "--format"], "analyze": ["--symptom", "--alliance", "--format"],
        "create-user": ["--role", "--team", "--password-stdin"], "assign": ["--therapist"],
        "export": ["--patient", "--format"], "audit": ["--since", "--format", "--verify"],
        "backup": [], "restore": [],
        "create-api-client": ["--can-replace"], "revoke-api-client": [], "api-clients": [],
        "send-notifications": ["--once", "--interval"],
    }
    for command, options in expected.items():
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
        assert result.exit_code == 0, command
        for option in options + ["--db"]:
            assert option in result.output, (command, option)
        assert f"manage.py {command}" in README, f"README does not list {command}"
