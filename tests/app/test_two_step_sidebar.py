""""Two-step login" in the sidebar: a user enrols (QR code, key, first code), sees the recovery
codes once, makes new ones and turns it off where the role allows; an admin whose role requires
it cannot turn it off (issue 14)."""

from __future__ import annotations

import pyotp

from db import mfa
from db.access import SYSTEM
from db.engine import make_engine, session_factory, transaction
from tests.app.conftest import actor_for, is_login_form
from tests.db.helpers import enrol_mfa


def _expander(at):  # type: ignore[no-untyped-def]
    (found,) = [e for e in at.sidebar.expander if e.label == "Two-step login"]
    return found


def _texts(element) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(str(c.value) for kind in ("caption", "code", "warning", "error")
                     for c in getattr(element, kind))


def test_a_therapist_enrols_sees_the_codes_once_renews_them_and_turns_it_off(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna").run()
    assert not at.exception and "Off" in _texts(_expander(at))
    at.sidebar.button(key="mfa_begin").click().run()
    section = _expander(at)
    assert section.proto.expanded and [c for c in section.children.values() if type(c).__name__ == "Image"]
    secret = section.code[0].value.replace(" ", "")
    at.sidebar.text_input(key="mfa_first_code").input("000000" if pyotp.TOTP(secret).now() != "000000"
                                                       else "111111")
    at.sidebar.button(key="mfa_confirm").click().run()
    assert "That code is not right" in _texts(_expander(at))
    at.sidebar.text_input(key="mfa_first_code").input(pyotp.TOTP(secret).now())
    at.sidebar.button(key="mfa_confirm").click().run()
    shown = _texts(_expander(at))
    assert "shown only this once" in shown and "10 unused recovery codes left" in shown
    codes = [c for c in _expander(at).code[0].value.split("\n") if c]
    assert len(codes) == 10
    at.run()  # the next run no longer shows them
    assert "shown only this once" not in _texts(_expander(at)) and codes[0] not in _texts(_expander(at))
    at.sidebar.button(key="mfa_renew").click().run()
    renewed = [c for c in _expander(at).code[0].value.split("\n") if c]
    assert len(renewed) == 10 and not set(renewed) & set(codes)
    at.sidebar.button(key="mfa_off").click().run()
    assert "Off" in _texts(_expander(at)) and not is_login_form(at)
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        assert mfa.login_step(session, actor_for(writable_demo, "therapist.anna")) == "off"
    engine.dispose()


def test_an_admin_whose_role_requires_it_cannot_turn_it_off(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        mfa.set_required_roles(session, actor=SYSTEM, roles=["admin"])
    enrol_mfa(engine, actor_for(writable_demo, "admin"))
    engine.dispose()
    at = app_as("admin").run()
    assert not at.exception
    assert "cannot be turned off" in _texts(_expander(at))
    assert not [b for b in at.sidebar.button if b.key == "mfa_off"]
    assert [b for b in at.sidebar.button if b.key == "mfa_renew"]
