"""AppTest harness: run app.py (or one page) headless over the demo clinic as a given user.

``app_as("therapist.anna")`` returns an AppTest of app.py logged in as that demo account,
and ``app_as(None)`` a logged-out one. Use ``at.switch_page("pages/patient.py")`` and
``at.query_params["patient"] = "P00001"`` before ``at.run()``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.access import Actor
from db.engine import make_engine, session_factory
from db.models import Account
from ui import cache as ui_cache

if TYPE_CHECKING:
    from starlette.testclient import TestClient

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TIMEOUT = 60


def actor_for(db_url: str, name: str) -> Actor:
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        account = session.query(Account).filter_by(name=name).one()
        actor = Actor.from_account(account)
    engine.dispose()
    return actor


#: Where an AppTest keeps its browser's session cookie: AppTest cannot send cookies, so the
#: ``cookie_jar`` fixture makes ``ui.session.request_token`` read this key instead (tests only).
TEST_COOKIE = "_test_session_cookie"


@pytest.fixture(autouse=True)
def cookie_jar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AppTest's "browser cookie" is ``at.session_state[TEST_COOKIE]`` (see :func:`log_in`)."""
    import ui.session

    monkeypatch.setattr(ui.session, "request_token", lambda: st.session_state.get(TEST_COOKIE))


def log_in(at: AppTest, db_url: str, name: str, *, now: dt.datetime | None = None) -> str:
    """Log ``at`` in as ``name``: a real server-side session (as ``POST /session/login`` makes),
    its token put where the ``cookie_jar`` fixture reads the cookie. Returns the token."""
    import ui.session
    from db.engine import transaction
    from db.sessions import create_session

    when = now or dt.datetime.now(dt.UTC)
    engine = make_engine(db_url)
    with transaction(engine) as session:
        token = create_session(session, actor=actor_for(db_url, name), clock=lambda: when,
                               lifetime=ui.session.ABSOLUTE_TIMEOUT, user_agent="AppTest")
    engine.dispose()
    at.session_state[TEST_COOKIE] = token
    return token


def is_login_form(at: AppTest) -> bool:
    """Whether the run shows the login form (the HTML form that posts to /session/login)."""
    return any('action=\\"/session/login\\"' in str(e.proto) or 'action="/session/login"' in str(e.proto)
               for e in at.get("html"))


@pytest.fixture
def app_as(demo_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], AppTest]]:
    """Factory of AppTests of app.py over the demo clinic, logged in as ``name`` (None: logged out)."""
    monkeypatch.setenv("ALLIANCE_DB_URL", demo_db)
    st.cache_data.clear()
    ui_cache.clear()

    def make(name: str | None, *, script: str = "app.py") -> AppTest:
        at = AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT)
        if name is not None:  # on the database the app will use (writable_demo may have replaced it)
            log_in(at, __import__("os").environ.get("ALLIANCE_DB_URL", demo_db), name)
        return at

    yield make
    st.cache_data.clear()
    ui_cache.clear()


def shown(markdown: str) -> str:
    """A Markdown string as its reader sees it: the backslash escapes that ``core.markdown.text``
    puts before punctuation resolved (``therapist\\.anna`` reads ``therapist.anna``)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def main_text(at: AppTest) -> str:
    """All markdown, titles, captions, errors, infos and warnings of a run, joined, as read."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "info", "warning", "success"):
        parts += [shown(str(e.value)) for e in getattr(at, kind)]
    return "\n".join(parts)


async def _app_page(request):  # type: ignore[no-untyped-def]
    from starlette.responses import PlainTextResponse

    return PlainTextResponse("THE APP")


@pytest.fixture
def client(writable_demo: str) -> Iterator[TestClient]:
    """The login routes and the gate in front of a stand-in for Streamlit's own routes."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    import ui.session
    import ui.web

    ui.session._engine_for.clear()
    stand_in = [Route("/", _app_page), Route("/patient", _app_page), Route("/media/{name}", _app_page),
                Route("/_stcore/upload_file/{sid}/{fid}", _app_page, methods=["PUT"])]
    app = Starlette(routes=[*ui.web.ROUTES, *stand_in], middleware=ui.web.MIDDLEWARE)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c
    ui.session._engine_for.clear()
