"""The demo login page lists the seeded demo accounts only, and only on the demo clinic (issue 15)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from db.engine import make_engine, session_factory
from db.queries import DEMO_ACCOUNTS_FILE, demo_accounts
from manage import app

runner = CliRunner()


def _listed(url: str) -> list[str] | None:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        table = demo_accounts(session)
    engine.dispose()
    return None if table is None else sorted(table["name"])


def test_only_seeded_demo_accounts_are_listed_and_only_in_demo_mode(db_url: str) -> None:
    assert runner.invoke(app, ["init-db", "--db", db_url]).exit_code == 0
    runner.invoke(app, ["create-user", "real.admin", "--role", "admin", "--password-stdin", "--db", db_url],
                  input="a long enough passphrase\n")
    assert _listed(db_url) is None  # not the demo clinic: nothing is listed
    seeded = runner.invoke(app, ["seed-demo", "--force", "--db", db_url])
    assert seeded.exit_code == 0, seeded.output + seeded.stderr
    added = runner.invoke(app, ["create-user", "dr.real", "--role", "therapist", "--password-stdin", "--db", db_url],
                          input="another long passphrase\n")
    assert added.exit_code == 0, added.output + added.stderr
    names = sorted(pd.read_csv(DEMO_ACCOUNTS_FILE, dtype=str)["name"])
    assert _listed(db_url) == names
    assert "dr.real" not in names and "real.admin" not in names
