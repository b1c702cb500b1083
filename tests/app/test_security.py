"""Access from the user's side: the role × page × record-owner matrix, tampered codes, session
timeouts with an injected clock, log out everywhere, and caches that never cross users.

Pages are listed from ``pages/`` at run time, so a page another change adds is covered without
editing this file. Each page is run the way a freshly started server may serve it: the page file
on its own (``AppTest.from_file("pages/x.py")``), without app.py having run.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import re
from collections.abc import Callable, Iterator

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import ui.session
from db import accounts
from db.access import SYSTEM, visible_patients
from db.engine import make_engine, session_factory, transaction
from db.models import Patient
from tests.app.conftest import ROOT, TIMEOUT, actor_for, log_in, main_text
from tests.app.conftest import is_login_form as _is_login_form
from tests.conftest import writable_copy
from ui import cache as ui_cache

PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
USERS = ["therapist.anna", "therapist.david", "supervisor.sara", "admin"]
NONEXISTENT = "P99999"
TAMPERED = ["P00001' OR '1'='1", "../P00002", "P00002\x00", "<script>alert(1)</script>"]
LOGIN_LABELS = ["Username", "Password"]
ROLE_REFUSAL = "This page is not part of your role"
CODE = re.compile(r"P\d{5}")


def _role(user: str) -> str:
    """The demo account's role (demo names start with it: therapist.anna, supervisor.sara, admin)."""
    return user.split(".")[0]


def page_roles() -> dict[str, tuple[str, ...]]:
    """app.py's PAGES dict (file -> roles), read without running app.py."""
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            pages = ast.literal_eval(node.value)
            return {file: tuple(roles) for file, _title, _icon, roles in pages.values()}
    raise AssertionError("app.py has no PAGES dict")


@pytest.fixture(scope="module")
def clinic(demo_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, writable demo clinic on the backend of ``demo_db`` (which stays untouched)."""
    with writable_copy(demo_db, tmp_path_factory.mktemp("security")) as url:
        yield url


@pytest.fixture(scope="module")
def ownership(clinic: str) -> dict[str, set[str]]:
    """Every demo user's visible patient codes, and ``"all"``, straight from db.access."""
    engine = make_engine(clinic)
    with session_factory(engine)() as session:
        result = {"all": set(session.scalars(select(Patient.code)))}
        for name in USERS:
            actor = actor_for(clinic, name)
            result[name] = set(session.scalars(select(Patient.code).where(Patient.id.in_(visible_patients(actor)))))
    engine.dispose()
    return result


@pytest.fixture
def app_for(clinic: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    """AppTests over the private clinic: ``app_for(name, script=..., patient=...)``."""
    monkeypatch.setenv("ALLIANCE_DB_URL", clinic)
    st.cache_data.clear()
    ui_cache.clear()

    def make(name: str | None, *, script: str = "app.py", patient: str | None = None,
             now: dt.datetime | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT)
        if name is not None:
            log_in(at, clinic, name, now=now)
        if patient is not None:
            at.query_params["patient"] = patient
        return at

    yield make
    st.cache_data.clear()
    ui_cache.clear()


def rendered(at: AppTest, *, skip_widget_values: bool = False, main_only: bool = False) -> str:
    """Everything the run sent to the browser (every element's protobuf, data frames and charts
    included) as one string (``main_only``: the main area's, without the sidebar)."""
    parts = []
    for node in (at.main if main_only else at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        if skip_widget_values and type(node).__name__ == "TextInput":
            continue
        parts.append(str(proto))
    return "\n".join(parts)


_VOLATILE = re.compile(r'(id: "\$\$ID-[0-9a-f]+-[^"]*"|file_id: "[0-9a-f]+"|url: "/media/[^"]*")')
#: Pages whose content changes by itself between two runs (the admin page shows the audit trail,
#: which grows with every view); they are checked for codes shown, not compared run to run.
LIVE_PAGES = {"pages/admin.py"}


#: "New since your last visit" sentences: each run is a new visit, so they differ run to run.
_VISIT = re.compile(r'(body|value): "[^"\n]*(since your last visit|your next visit)[^"\n]*"')


def normalised(at: AppTest, code: str) -> str:
    """:func:`rendered` with ``code`` replaced and run-specific parts (widget ids, media files, the
    previous-visit sentence and toggle) removed."""
    # the main area only: the sidebar's "My sessions" grows with every AppTest (each is a new login)
    text = _VISIT.sub("<VISIT>", rendered(at, main_only=True).replace(code, "<CODE>"))
    return _VOLATILE.sub("<ID>", text)


#: The login form's hidden "go back to" field: the URL the user asked for, echoed as typed
#: (the same for a patient that exists and one that does not), not something the app shows.
_NEXT_FIELD = re.compile(r'name=\\?"next\\?" value=\\?"[^"\\]*')


def codes_shown(at: AppTest, **kwargs: bool) -> set[str]:
    return set(CODE.findall(_NEXT_FIELD.sub("", rendered(at, **kwargs))))


def is_login_form(at: AppTest) -> bool:
    return _is_login_form(at)


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- the matrix -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_logged_out_every_page_shows_only_the_login_form(app_for, page: str) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_for(None, script=page, patient="P00001"))
    assert is_login_form(at)
    assert not at.dataframe and not at.get("plotly_chart") and not at.get("arrow_data_frame")
    assert codes_shown(at) == set()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("page", PAGES)
def test_role_page_owner_matrix(app_for, ownership, page: str, user: str) -> None:  # type: ignore[no-untyped-def]
    """No unexpected allow: a page outside the role refuses and shows nothing; a page inside it
    shows no patient of another caseload, whatever code the URL carries, and answers a
    forbidden code exactly as a code that does not exist."""
    roles = page_roles().get(page, ui.session.ALL_ROLES)
    role = _role(user)
    visible = ownership[user]
    forbidden = sorted(ownership["all"] - visible)
    own = sorted(visible)
    if role not in roles:
        for code in [None, own[0] if own else NONEXISTENT]:
            at = _run(app_for(user, script=page, patient=code))
            assert any(ROLE_REFUSAL in e.value for e in at.error), main_text(at)
            assert codes_shown(at) == set(), (page, user)
            assert not at.dataframe and not at.get("plotly_chart")
        return
    baseline = _run(app_for(user, script=page, patient=NONEXISTENT))
    assert not is_login_form(baseline)
    assert codes_shown(baseline) <= visible | {NONEXISTENT}, (page, user)
    expected = normalised(baseline, NONEXISTENT)
    samples = [forbidden[0], forbidden[len(forbidden) // 2], forbidden[-1]] if forbidden else []
    for code in samples + TAMPERED:
        at = _run(app_for(user, script=page, patient=code))
        shown = codes_shown(at)
        assert shown <= visible | ({code} & set(CODE.findall(code))), (page, user, code, shown - visible)
        if page not in LIVE_PAGES:
            assert normalised(at, code) == expected, (page, user, code)


WIDGET_CASES = [(page, user) for page in PAGES for user in ("therapist.anna", "supervisor.sara")
                if _role(user) in page_roles().get(page, ui.session.ALL_ROLES)]


@pytest.mark.parametrize(("page", "user"), WIDGET_CASES)
def test_tampered_codes_typed_into_widgets_show_nothing(app_for, ownership, page: str, user: str) -> None:  # type: ignore[no-untyped-def]
    """Every free-text box of every page the user may open gets another caseload's code (and a
    tampered one): nothing of another caseload appears."""
    forbidden = sorted(ownership["all"] - ownership[user])
    at = _run(app_for(user, script=page))
    labels = [t.label for t in at.text_input]
    for i in range(len(labels)):
        for code in (forbidden[0], TAMPERED[0]):
            at = _run(app_for(user, script=page))
            at.text_input[i].input(code)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert codes_shown(at, skip_widget_values=True) <= ownership[user], (page, labels[i], code)


# --- timeouts with an injected clock ------------------------------------------------------------------


T0 = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


def _at_time(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    monkeypatch.setattr(ui.session, "clock", lambda: when)


def test_idle_timeout_logs_out_and_activity_keeps_the_session(app_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = app_for("therapist.anna", now=T0)
    for minutes in (0, 29, 58, 87):  # a click every 29 minutes keeps the session alive
        _at_time(monkeypatch, T0 + dt.timedelta(minutes=minutes))
        _run(at)
        assert not is_login_form(at), (minutes, main_text(at))
    _at_time(monkeypatch, T0 + dt.timedelta(minutes=87 + 31))
    _run(at)
    assert is_login_form(at)
    assert "logged out after a period without activity" in main_text(at)
    assert codes_shown(at) == set()


def test_absolute_timeout_logs_out_even_an_active_session(app_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = app_for("therapist.anna", now=T0)
    minute = 0
    while minute < 12 * 60:
        _at_time(monkeypatch, T0 + dt.timedelta(minutes=minute))
        _run(at)
        assert not is_login_form(at), minute
        minute += 25 * 6  # 150 minutes: idle limit raised below so only the absolute limit applies
        monkeypatch.setattr(ui.session, "IDLE_TIMEOUT", dt.timedelta(hours=3))
    _at_time(monkeypatch, T0 + dt.timedelta(hours=12, minutes=1))
    _run(at)
    assert is_login_form(at)
    assert "maximum length" in main_text(at)


def test_timeouts_are_configurable_by_environment() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import ui.session as s; print(s.IDLE_TIMEOUT, s.ABSOLUTE_TIMEOUT)"],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "ALLIANCE_IDLE_MINUTES": "5", "ALLIANCE_SESSION_HOURS": "2"})
    assert out.stdout.split() == ["0:05:00", "2:00:00"]


# --- log out everywhere ------------------------------------------------------------------------------------


def _admin_change(clinic: str, action: Callable[..., object], **kwargs: object) -> None:
    engine = make_engine(clinic)
    with transaction(engine) as session:
        action(session, actor=actor_for(clinic, "admin"), **kwargs)
    engine.dispose()


@pytest.mark.parametrize("change", ["password", "deactivation"])
def test_password_reset_or_deactivation_logs_out_every_session(app_for, clinic: str, change: str) -> None:  # type: ignore[no-untyped-def]
    user = "therapist.eva" if change == "password" else "therapist.carla"
    laptop, phone = app_for(user), app_for(user, script="pages/patient.py")
    for at in (laptop, phone):
        _run(at)
        assert not is_login_form(at)
    if change == "password":
        _admin_change(clinic, accounts.reset_password, name=user, password="another long passphrase")
    else:  # a therapist with patients must hand them over first
        engine = make_engine(clinic)
        with session_factory(engine)() as session:
            codes = list(session.scalars(select(Patient.code).join(Patient.therapist).where(
                Patient.therapist.has(name=user))))
        engine.dispose()
        _admin_change(clinic, accounts.move_patients, codes=codes, therapist="therapist.ben")
        _admin_change(clinic, accounts.deactivate_account, name=user, reason="test")
    for at in (laptop, phone):
        _run(at)
        assert is_login_form(at)
        assert "Your account was changed or deactivated" in main_text(at)
        assert codes_shown(at) == set()


# --- caches never cross users ------------------------------------------------------------------------------


def _cached_functions() -> list[tuple[str, Callable[..., object]]]:
    """Every loader of ui/ modules cached by ``ui.cache.cached``."""
    import importlib

    found = []
    for path in sorted((ROOT / "ui").glob("*.py")):
        module = importlib.import_module(f"ui.{path.stem}")
        for name, obj in vars(module).items():
            if getattr(obj, "cached_loader", False) and getattr(obj, "__module__", "") == module.__name__:
                found.append((f"ui.{path.stem}.{name}", obj))
    return found


def test_every_cached_loader_takes_the_actor() -> None:
    """Patient data is cached only under the identity it was computed for."""
    cached = _cached_functions()
    assert len(cached) >= 14, f"cached loaders missing: did ui/loaders.py move? {[n for n, _ in cached]}"
    for name, func in cached:
        params = inspect.signature(func.__wrapped__).parameters  # type: ignore[attr-defined]
        assert "actor" in params, f"{name} is cached and shared by every user but does not take the actor"
    # st.cache_data keeps a pickled copy per data version (issue 19): nothing in ui/ or pages/ uses it
    with_cache_data = [str(p.relative_to(ROOT)) for p in [*(ROOT / "ui").glob("*.py"), *(ROOT / p for p in PAGES)]
                       if "@st.cache_data" in p.read_text(encoding="utf-8")]
    assert with_cache_data == [], f"st.cache_data is not for patient data: {with_cache_data}"
    pages_with_cache = [p for p in PAGES if "cached(" in (ROOT / p).read_text(encoding="utf-8")]
    assert pages_with_cache == [], f"pages may not cache on their own: {pages_with_cache}"


def test_two_sessions_never_share_cached_patient_data(app_for, ownership, clinic: str) -> None:  # type: ignore[no-untyped-def]
    """Anna's session fills the caches, then David's (other team) runs the same pages on the same
    server process: none of Anna's patients reach him. Then a patient moves from Anna to David
    and Anna's next rerun no longer shows it, though nothing else changed."""
    anna_code = sorted(ownership["therapist.anna"])[0]
    anna = _run(app_for("therapist.anna"))
    anna_patient = _run(app_for("therapist.anna", script="pages/patient.py", patient=anna_code))
    assert anna_code in codes_shown(anna) and f"Patient {anna_code}" in main_text(anna_patient)
    david = _run(app_for("therapist.david"))
    david_patient = _run(app_for("therapist.david", script="pages/patient.py", patient=anna_code))
    assert codes_shown(david) & ownership["therapist.anna"] == set()
    assert codes_shown(david_patient) & ownership["therapist.anna"] == set()
    assert any(e.value.startswith("No such patient") for e in david_patient.error)
    moved = sorted(ownership["therapist.anna"])[1]
    _admin_change(clinic, accounts.move_patients, codes=[moved], therapist="therapist.david", reason="cache test")
    _run(anna)
    assert moved not in codes_shown(anna)
    _run(david)
    assert moved in codes_shown(david)
    # hand it back so the other tests of this module see the demo caseloads
    _admin_change(clinic, accounts.move_patients, codes=[moved], therapist="therapist.anna", reason="cache test")


def test_system_actor_is_never_a_web_actor() -> None:
    """The command line's SYSTEM actor has id 0, which no account has, so a web session can never
    be refreshed into it."""
    assert SYSTEM.id == 0
