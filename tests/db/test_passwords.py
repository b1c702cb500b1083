"""Issue 18: weak passwords are refused wherever a password is set (create_account, reset_password,
``manage.py create-user``), the demo password outside the demo clinic too; the blocklist is
reproducible from ``tests/db/make_common_passwords.py``."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db import accounts
from db.access import SYSTEM
from db.auth import DEMO_PASSWORD, MAX_PASSWORD_LENGTH, authenticate, check_password_policy, common_passwords
from db.engine import session_factory, transaction
from db.models import Account
from db.writes import create_account, set_setting
from manage import app
from tests.db import make_common_passwords
from tests.db.helpers import PASSWORD, build_clinic

runner = CliRunner()

REFUSED = [  # (password, what the sentence says)
    ("", "only spaces"), (" " * 12, "only spaces"), ("\t \u00a0" * 5, "only spaces"),
    ("Sh0rt!pass", "at least 12"), ("x" * (MAX_PASSWORD_LENGTH + 1), "at most 256"), ("y" * 1_000_000, "at most 256"),
    ("password1234", "common passwords"), ("Password1234", "common passwords"), ("P@ssw0rd2026!", "common passwords"),
    ("Welcome2026!", "common passwords"), ("qwertyuiop123", "common passwords"), ("1qaz2wsx3edc", "common passwords"),
    ("123456789012", "common passwords"), ("iloveyou forever", "common passwords"),
    ("passwordpassword", "common passwords"), ("Therapist2026", "common passwords"),
    ("AllianceMonitor!", "common passwords"), ("letmein letmein", "common passwords"),
    ("aaaaaaaaaaaaaaaa", "repeats"), ("abababababababab", "repeats"), ("zzzzzzzzzzzz1", "repeats"),
    (DEMO_PASSWORD, "demo clinic's public password"),
]
ACCEPTED = [PASSWORD, "a brand new long passphrase", "lilac tractor umbrella", "Ünïcödé pässwörd ok",
            "x" * 11 + "yz!" + "w" * 100, "7 quiet rivers of Orkney", "z" * 4 + "correct staple 9"]


@pytest.mark.parametrize(("password", "says"), REFUSED, ids=[f"{i}-{r[1][:12]}" for i, r in enumerate(REFUSED)])
def test_weak_passwords_are_refused_with_a_sentence(password: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        check_password_policy(password)
    message = str(info.value)
    assert message.endswith(".")
    if password.strip():
        assert password not in message  # a refused password is never echoed


@pytest.mark.parametrize("password", ACCEPTED)
def test_ordinary_long_passwords_are_accepted(password: str) -> None:
    check_password_policy(password)


def test_the_demo_password_is_allowed_in_demo_mode_only() -> None:
    check_password_policy(DEMO_PASSWORD, demo=True)
    with pytest.raises(ValueError, match="demo"):
        check_password_policy(DEMO_PASSWORD)


def test_the_shipped_blocklist_is_what_the_script_makes() -> None:
    shipped = make_common_passwords.OUT.read_text(encoding="utf-8").splitlines()
    entries = [line for line in shipped if not line.startswith("#")]
    assert entries == make_common_passwords.generate()
    assert 2_000 <= len(entries) <= 20_000 and set(entries) == common_passwords()
    assert all(e == e.lower() and e.strip() == e for e in entries)
    assert "demopassword" not in entries and "correcthorsebattery" not in entries  # the demo's and the tests'


def test_every_place_that_sets_a_password_applies_the_policy(engine: Engine) -> None:
    actors = build_clinic(engine)
    admin = actors["admin"]
    for bad in ("password1234", " " * 16, DEMO_PASSWORD, "q" * 300):
        with pytest.raises(ValueError), transaction(engine) as session:
            create_account(session, actor=admin, name="new.person", role="therapist", password=bad)
        with pytest.raises(ValueError), transaction(engine) as session:
            accounts.reset_password(session, actor=admin, name="ther.b", password=bad)
    with session_factory(engine)() as session:
        assert session.scalar(select(Account).where(Account.name == "new.person")) is None
    with transaction(engine) as session:  # the old password still works: nothing was changed
        assert authenticate(session, name="ther.b", password=PASSWORD) is not None


def test_the_demo_clinic_may_keep_its_public_password(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        set_setting(session, actor=SYSTEM, key="demo", value="1")
        create_account(session, actor=SYSTEM, name="demo.person", role="therapist", password=DEMO_PASSWORD)
        accounts.reset_password(session, actor=actors["admin"], name="ther.b", password=DEMO_PASSWORD)
    with transaction(engine) as session:
        assert authenticate(session, name="ther.b", password=DEMO_PASSWORD) is not None


@pytest.mark.parametrize(("stdin", "says"), [("password1234\n", "common passwords"), (" " * 20 + "\n", "only spaces"),
                                             (DEMO_PASSWORD + "\n", "demo clinic"),
                                             ("v" * 1_000_000 + "\n", "at most 256")])
def test_create_user_refuses_weak_passwords_in_one_line(db_url: str, stdin: str, says: str) -> None:
    result = runner.invoke(app, ["create-user", "ther.z", "--role", "therapist", "--password-stdin", "--db", db_url],
                           input=stdin)
    assert result.exit_code == 2 and says in result.stderr, result.output
    assert len(result.stderr.splitlines()) == 1 and len(result.stderr) < 400
