""""My sessions" in the sidebar: a user sees their own live sessions and ends one, or all others."""

from __future__ import annotations

from db.engine import make_engine, session_factory
from db.models import LoginSession
from db.sessions import token_id
from tests.app.conftest import is_login_form, log_in, main_text


def _fresh_start(url: str) -> None:
    """End the sessions other tests left for therapist.anna in the copied demo clinic."""
    from db.engine import transaction
    from db.sessions import revoke_account_sessions
    from tests.app.conftest import actor_for

    engine = make_engine(url)
    with transaction(engine) as session:
        revoke_account_sessions(session, account_id=actor_for(url, "therapist.anna").id, reason="test setup")
    engine.dispose()


def _revoked(url: str, token: str) -> str | None:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        reason = session.get(LoginSession, token_id(token)).revoke_reason
    engine.dispose()
    return reason


def test_a_user_sees_their_sessions_and_ends_one_then_all_others(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    _fresh_start(writable_demo)
    laptop = app_as("therapist.anna")
    phone, tablet = app_as("therapist.anna"), app_as("therapist.anna")
    phone_token = phone.session_state["_test_session_cookie"]
    tablet_token = tablet.session_state["_test_session_cookie"]
    laptop.run()
    assert not laptop.exception
    (expander,) = [e for e in laptop.sidebar.expander if e.label.startswith("My sessions")]
    assert expander.label == "My sessions (3)"
    assert "This browser" in main_text(laptop) or any("This browser" in str(c.value) for c in laptop.sidebar.caption)
    ends = [b for b in laptop.sidebar.button if b.label == "End"]
    assert len(ends) == 3
    mine = laptop.session_state["login_session_id"]
    other = next(b for b in ends if not b.key.endswith(mine[:16]))
    other.click().run()
    ended = [t for t in (phone_token, tablet_token) if _revoked(writable_demo, t) == "ended by user"]
    assert len(ended) == 1
    assert not is_login_form(laptop)
    laptop.sidebar.button(key="end_other_sessions").click().run()
    assert _revoked(writable_demo, phone_token) == _revoked(writable_demo, tablet_token) == "ended by user"
    assert not is_login_form(laptop)  # this browser stays logged in
    phone.run()
    assert is_login_form(phone) and "Your login was ended" in main_text(phone)


def test_ending_this_browser_s_own_session_logs_it_out(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    _fresh_start(writable_demo)
    at = app_as("therapist.anna").run()
    token = at.session_state["_test_session_cookie"]
    own = [b for b in at.sidebar.button if b.label == "End"]
    assert len(own) == 1
    own[0].click().run()
    assert _revoked(writable_demo, token) == "ended by user"
    assert is_login_form(at)
    # no trace of the account's data, and a copy of the old cookie is worth nothing
    assert "My patients" not in main_text(at)
    log_in(at, writable_demo, "therapist.anna")
    at.run()
    assert not is_login_form(at)
