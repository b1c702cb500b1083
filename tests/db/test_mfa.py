"""Two-step login (db/mfa.py), on SQLite and PostgreSQL: enrolment, codes (±1 step, never twice),
single-use recovery codes, the throttle, the clinic setting, and who may reset whom (issue 14)."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest
from sqlalchemy import Engine, select

from db import mfa
from db.auth import authenticate, login_wait
from db.engine import session_factory, transaction
from db.models import AuditEvent, MfaEnrolment, Setting
from db.sessions import create_session, resume_session
from db.writes import PermissionDenied
from tests.db.helpers import PASSWORD, build_clinic, enrol_mfa

T0 = dt.datetime(2026, 12, 4, 9, 0, 15, tzinfo=dt.UTC)


def at(seconds: float):  # type: ignore[no-untyped-def]
    return lambda: T0 + dt.timedelta(seconds=seconds)


def code_at(secret: str, seconds: float) -> str:
    return pyotp.TOTP(secret).at(T0 + dt.timedelta(seconds=seconds))


def enrol(engine: Engine, actor) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Enrol ``actor`` at T0: the secret and the ten recovery codes (made anew at T0)."""
    secret = enrol_mfa(engine, actor, when=T0)
    with transaction(engine) as session:
        codes = mfa.renew_recovery_codes(session, actor=actor, clock=at(0))
    return secret, codes


def verify(engine: Engine, actor, code: str, seconds: float) -> str | None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        return mfa.verify_code(session, actor=actor, code=code, address="10.0.0.7", clock=at(seconds))


def actions(engine: Engine) -> list[str]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_enrolment_stores_the_secret_encrypted_and_gives_ten_single_use_codes_once(engine: Engine) -> None:
    actors = build_clinic(engine)
    secret, codes = enrol(engine, actors["ther.a"])
    assert len(codes) == 10 and len(set(codes)) == 10 and all(len(c) == 11 and c[5] == "-" for c in codes)
    with session_factory(engine)() as session:
        row = session.get(MfaEnrolment, actors["ther.a"].id)
        assert row is not None and row.confirmed_at is not None
        assert secret not in row.secret  # encrypted at rest
        status = mfa.mfa_status(session, actor=actors["ther.a"])
        assert status.enrolled and not status.required and status.recovery_left == 10
        hashes = [h for (h,) in session.execute(select(mfa.MfaRecoveryCode.code_hash))]
    assert not any(c.replace("-", "") in h for c in codes for h in hashes)
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert "mfa_enrolled" in actions(engine)


def test_a_wrong_first_code_does_not_turn_it_on_and_is_audited(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        mfa.begin_enrolment(session, actor=actors["ther.a"], clock=at(0))
    with pytest.raises(mfa.MfaError, match="That code is not right"), transaction(engine) as session:
        mfa.confirm_enrolment(session, actor=actors["ther.a"], code="000000", clock=at(0))
    with transaction(engine) as session:  # caught inside the transaction, the refusal's audit row stays
        try:
            mfa.confirm_enrolment(session, actor=actors["ther.a"], code="123456", clock=at(0))
        except mfa.MfaError as exc:
            assert "authenticator app" in str(exc)
    with session_factory(engine)() as session:
        assert not mfa.mfa_status(session, actor=actors["ther.a"]).enrolled
        assert mfa.login_step(session, actors["ther.a"]) == "off"
    assert "mfa_failed" in actions(engine)


@pytest.mark.parametrize(("typed_at", "checked_at", "ok"), [
    (0, 0, True), (-30, 0, True), (30, 0, True),  # one step either side: clock drift
    (-60, 0, False), (60, 0, False),  # two steps away
])
def test_a_code_is_accepted_one_step_either_side(engine: Engine, typed_at: int, checked_at: int, ok: bool) -> None:
    actors = build_clinic(engine)
    secret, _ = enrol(engine, actors["ther.a"])
    # the enrolment used T0's step; check at a later minute so that step is not the last used
    later = 300
    assert (verify(engine, actors["ther.a"], code_at(secret, later + typed_at), later + checked_at) == "totp") is ok


def test_the_same_code_is_refused_the_second_time_and_older_steps_too(engine: Engine) -> None:
    actors = build_clinic(engine)
    secret, _ = enrol(engine, actors["ther.a"])
    code = code_at(secret, 120)
    assert verify(engine, actors["ther.a"], code, 120) == "totp"
    assert verify(engine, actors["ther.a"], code, 125) is None  # replay within the same 30 s
    assert verify(engine, actors["ther.a"], code_at(secret, 90), 125) is None  # an older step
    assert verify(engine, actors["ther.a"], code_at(secret, 0), 10) is None  # the enrolment's own code
    assert verify(engine, actors["ther.a"], code_at(secret, 150), 150) == "totp"  # the next step works


def test_a_recovery_code_works_once_with_or_without_its_dash(engine: Engine) -> None:
    actors = build_clinic(engine)
    _, codes = enrol(engine, actors["ther.a"])
    assert verify(engine, actors["ther.a"], codes[3].upper().replace("-", " "), 60) == "recovery"
    assert verify(engine, actors["ther.a"], codes[3], 61) is None
    with session_factory(engine)() as session:
        assert mfa.mfa_status(session, actor=actors["ther.a"]).recovery_left == 9
    with transaction(engine) as session:
        fresh = mfa.renew_recovery_codes(session, actor=actors["ther.a"])
    assert verify(engine, actors["ther.a"], codes[4], 62) is None  # the old set is gone
    assert verify(engine, actors["ther.a"], fresh[0], 63) == "recovery"


def test_wrong_codes_count_with_the_password_throttle(engine: Engine) -> None:
    actors = build_clinic(engine)
    secret, _ = enrol(engine, actors["ther.a"])
    with session_factory(engine)() as session:
        assert login_wait(session, name="ther.a", address="10.0.0.7", clock=at(60)) == dt.timedelta(0)
    for i in range(5):
        assert verify(engine, actors["ther.a"], "000000" if code_at(secret, 60) != "000000" else "111111",
                      60 + i) is None
    with session_factory(engine)() as session:
        wait = login_wait(session, name="ther.a", address="10.0.0.7", clock=at(65))
    assert wait > dt.timedelta(minutes=10)
    # a right password does not start the count afresh while a second step is pending
    with transaction(engine) as session:
        assert authenticate(session, name="ther.a", password=PASSWORD, address="10.0.0.7", clock=at(20 * 60)) \
            is not None
    assert verify(engine, actors["ther.a"], "000000" if code_at(secret, 1201) != "000000" else "111111",
                  20 * 60 + 1) is None  # the sixth failure in a row: the next wait doubles
    with session_factory(engine)() as session:
        assert login_wait(session, name="ther.a", address="10.0.0.7", clock=at(20 * 60 + 2)) > dt.timedelta(
            minutes=25)
    assert "password_ok" in actions(engine)


def test_the_clinic_setting_defaults_to_admins_and_is_audited(engine: Engine) -> None:
    actors = build_clinic(engine)
    with session_factory(engine)() as session:
        assert mfa.required_roles(session) == {"admin"}
        assert mfa.login_step(session, actors["admin"]) == "enrol"
        assert mfa.login_step(session, actors["sup.north"]) == "off"
    with transaction(engine) as session:
        mfa.set_required_roles(session, actor=actors["admin"], roles=["supervisor", "admin"])
    with session_factory(engine)() as session:
        assert session.get(Setting, "mfa_required_roles").value == "supervisor,admin"  # type: ignore[union-attr]
        assert mfa.login_step(session, actors["sup.north"]) == "enrol"
    assert "setting" in actions(engine)
    with pytest.raises(PermissionDenied), transaction(engine) as session:
        mfa.set_required_roles(session, actor=actors["ther.a"], roles=[])
    with pytest.raises(mfa.MfaError, match="is not a role"):
        mfa.parse_roles("admin,boss")


def test_a_required_role_cannot_turn_it_off_an_optional_one_can(engine: Engine) -> None:
    actors = build_clinic(engine)
    enrol(engine, actors["admin"])
    enrol(engine, actors["ther.a"])
    with pytest.raises(mfa.MfaError, match="requires two-step login"), transaction(engine) as session:
        mfa.disable_mfa(session, actor=actors["admin"])
    with transaction(engine) as session:
        mfa.disable_mfa(session, actor=actors["ther.a"])
    with session_factory(engine)() as session:
        assert mfa.login_step(session, actors["admin"]) == "verify"
        assert mfa.login_step(session, actors["ther.a"]) == "off"


def test_an_admin_reset_ends_every_session_of_the_account_and_is_audited(engine: Engine) -> None:
    actors = build_clinic(engine)
    enrol(engine, actors["sup.north"])
    with transaction(engine) as session:
        token = create_session(session, actor=actors["sup.north"], clock=at(0))
    with transaction(engine) as session:
        assert mfa.reset_mfa(session, actor=actors["admin"], name="sup.north", clock=at(60)) == 1
    with transaction(engine) as session:
        resumed = resume_session(session, token=token, clock=at(61))
    assert resumed.actor is None and resumed.reason == "account"
    with session_factory(engine)() as session:
        assert mfa.login_step(session, actors["sup.north"]) == "off"
        detail = session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "mfa_reset"))
    assert detail is not None and "sup.north" in detail


@pytest.mark.parametrize("who", ["ther.a", "sup.north"])
def test_only_an_admin_may_reset_someone_elses_two_step_login(engine: Engine, who: str) -> None:
    actors = build_clinic(engine)
    enrol(engine, actors["ther.b"])
    with pytest.raises(PermissionDenied), transaction(engine) as session:
        mfa.reset_mfa(session, actor=actors[who], name="ther.b")
    with session_factory(engine)() as session:
        assert mfa.login_step(session, actors["ther.b"]) == "verify"


def test_nobody_enrols_or_reads_another_accounts_enrolment(engine: Engine) -> None:
    actors = build_clinic(engine)
    forged = actors["ther.a"].__class__(id=actors["ther.b"].id, name="ther.a", role="therapist")
    with pytest.raises(PermissionDenied), transaction(engine) as session:
        mfa.begin_enrolment(session, actor=forged)
    with pytest.raises(PermissionDenied), session_factory(engine)() as session:
        mfa.mfa_status(session, actor=forged)


def test_a_challenge_lasts_five_minutes_and_is_used_once(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        token = mfa.start_challenge(session, account_id=actors["admin"].id, purpose="enrol", clock=at(0))
    with transaction(engine) as session:
        assert mfa.read_challenge(session, token=token, clock=at(299)) is not None
        assert mfa.read_challenge(session, token=token, clock=at(300)) is None
        assert mfa.read_challenge(session, token=token + "x", clock=at(1)) is None
        found = mfa.read_challenge(session, token=token, clock=at(1))
        assert found is not None and found[1].name == "admin"
        mfa.consume_challenge(session, found[0], clock=at(2))
    with session_factory(engine)() as session:
        assert mfa.read_challenge(session, token=token, clock=at(3)) is None


def test_the_commands_set_the_rule_and_reset_an_account(db_url: str, engine: Engine) -> None:
    from typer.testing import CliRunner

    from manage import app

    actors = build_clinic(engine)
    enrol(engine, actors["sup.north"])
    runner = CliRunner()
    required = runner.invoke(app, ["mfa-require", "--roles", "admin,supervisor", "--db", db_url])
    assert required.exit_code == 0 and "required for: supervisor, admin" in required.output
    with session_factory(engine)() as session:
        assert mfa.required_roles(session) == {"admin", "supervisor"}
    bad = runner.invoke(app, ["mfa-require", "--roles", "admin,boss", "--db", db_url])
    assert bad.exit_code == 2 and "boss is not a role" in bad.output
    with session_factory(engine)() as session:
        assert mfa.required_roles(session) == {"admin", "supervisor"}  # nothing written
    reset = runner.invoke(app, ["reset-mfa", "sup.north", "--reason", "lost phone", "--db", db_url])
    assert reset.exit_code == 0 and "Reset the two-step login of sup.north" in reset.output
    with session_factory(engine)() as session:
        assert mfa.login_step(session, actors["sup.north"]) == "enrol"  # required, so enrolment next
    again = runner.invoke(app, ["reset-mfa", "sup.north", "--db", db_url])
    assert again.exit_code == 2 and "has no two-step login to reset" in again.output
    unknown = runner.invoke(app, ["reset-mfa", "nobody", "--db", db_url])
    assert unknown.exit_code == 2 and "There is no account 'nobody'" in unknown.output
    none = runner.invoke(app, ["mfa-require", "--roles", "none", "--db", db_url])
    assert none.exit_code == 0 and "no role" in none.output


def test_a_secret_the_key_cannot_read_says_an_admin_must_reset_it(engine: Engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    actors = build_clinic(engine)
    secret, _ = enrol(engine, actors["ther.a"])
    other = Fernet(Fernet.generate_key())
    monkeypatch.setattr(mfa, "secret_box", lambda session: other)  # as if the audit key had been replaced
    with pytest.raises(mfa.MfaError, match="manage.py reset-mfa ther.a"):
        verify(engine, actors["ther.a"], code_at(secret, 300), 300)


def test_a_demo_clinic_without_the_setting_requires_it_of_nobody(engine: Engine) -> None:
    from db.access import SYSTEM
    from db.writes import set_setting

    actors = build_clinic(engine)
    with transaction(engine) as session:
        set_setting(session, actor=SYSTEM, key="demo", value="1")
    with session_factory(engine)() as session:
        assert mfa.required_roles(session) == frozenset()
        assert mfa.login_step(session, actors["admin"]) == "off"
