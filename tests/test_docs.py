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
    assert "seed-demo" in start and "streamlit run app.py" in start
    assert "pytest" in test and "chromium" in test


VENV = "python3 -m venv --upgrade-deps .venv && . .venv/bin/activate && "


def test_both_commands_install_the_hashed_lock_into_a_virtual_environment() -> None:
    """A stock Debian python3 refuses pip outside a venv (PEP 668): both commands make one first."""
    start, test = readme_commands()
    assert start.startswith(VENV + "python -m pip install --require-hashes -r requirements.lock && "), start
    assert VENV + "python -m pip install -q --require-hashes -r requirements-dev.lock && python -m pytest" in test
    assert "python3-venv" in test.split(" > /dev/null")[0]  # apt-get installs venv for Debian's python3
    after_venv = [start.split(VENV, 1)[1], test.split(VENV, 1)[1]]
    assert all("python3" not in part for part in after_venv), "after activating, `python` is the venv's"


def test_the_readme_states_the_python_version_the_locks_are_made_for() -> None:
    version = re.search(r'python_version = "(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert re.search(rf"## Start it \(fresh machine, Python {re.escape(version)},", README)
    assert re.search(rf"## Test it \(fresh machine, Python {re.escape(version)},", README)
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert f"--python-version {version}" in (ROOT / lock).read_text().splitlines()[1], lock


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci
    # a failure anywhere in the command's `&&` chain, not only in pytest, fails CI: `set -e`
    # alone ignores every command of an `&&` list but the last (a failed install ran no tests)
    assert readme_commands()[1] + " \\\n  || {" in ci and 'exit "$status"' in ci


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
