"""AppTest harness: run app.py (or one page) headless over the demo clinic as a given user.

``app_as("therapist.anna")`` returns an AppTest of app.py logged in as that demo account,
and ``app_as(None)`` a logged-out one. Use ``at.switch_page("pages/patient.py")`` and
``at.query_params["patient"] = "P00001"`` before ``at.run()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.access import Actor
from db.engine import make_engine, session_factory
from db.models import Account

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TIMEOUT = 60


def actor_for(db_url: str, name: str) -> Actor:
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        account = session.query(Account).filter_by(name=name).one()
        actor = Actor.from_account(account)
    engine.dispose()
    return actor


@pytest.fixture
def app_as(demo_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], AppTest]]:
    """Factory of AppTests of app.py over the demo clinic, logged in as ``name`` (None: logged out)."""
    monkeypatch.setenv("ALLIANCE_DB_URL", demo_db)
    st.cache_data.clear()

    def make(name: str | None, *, script: str = "app.py") -> AppTest:
        at = AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT)
        if name is not None:
            import datetime as dt

            now = dt.datetime.now(dt.UTC)
            at.session_state["actor"] = actor_for(demo_db, name)
            at.session_state["login_at"] = now
            at.session_state["last_seen"] = now
        return at

    yield make
    st.cache_data.clear()


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
