"""Cached loaders and audited downloads of the caseload scan (``/caseload``) and the clinic
meeting (``/clinic``).

As in :mod:`ui.loaders`, every cached loader takes the acting user (:class:`db.access.Actor`)
and the data version (``db.queries.data_version``) among its arguments: the cache
(:mod:`ui.cache`) is shared by every user of the server, so a result only goes back to the
user it was made for, and it is recomputed once per data change. The multilevel analysis is cached per
(actor, version, symptom, alliance, scope): a rerun of the clinic page does not refit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.exporting import to_csv_bytes
from core.meeting import NOT_ALERTS, caseload_table
from core.models import AnalysisResult, Progress, fit_within_between, too_little_data
from core.notices import patient_notices
from core.reports import HandoutSection, build_meeting_handout
from core.static_export import render_png
from db import audit
from db.access import Actor
from db.caseload import list_teams, read_alerts, read_scope
from db.engine import session_factory, transaction
from db.queries import list_patients, read_scores, risk_item_coverage
from ui.cache import cached
from ui.loaders import current_version
from ui.session import get_engine, guard_download

__all__ = ["audit_once", "csv_download", "current_version", "handout_download", "load_alerts", "load_blind_spots",
           "load_caseload_table", "load_course_scores", "load_analysis", "load_scope", "load_scope_alerts",
           "load_scope_expected", "load_teams", "png_download"]


@cached(spinner="Checking every patient's course…")
def load_alerts(actor: Actor, version: tuple[int, ...], today: dt.date) -> pd.DataFrame:
    """Every flag of the patients ``actor`` may see, with age in days (``db.caseload.read_alerts``)."""
    with session_factory(get_engine())() as session:
        return read_alerts(session, actor=actor, today=today)


@cached(spinner="Reading every open alert…")
def load_caseload_table(actor: Actor, version: tuple[int, ...], today: dt.date) -> pd.DataFrame:
    """The caseload scan's table: ``core.meeting.caseload_table`` of ``db.caseload.read_alerts``.

    Cached as the table the page shows (the open and addressed alerts, 7,188 rows for an admin of
    10,000 patients, ~2 MB pickled) rather than every stored flag (37k rows, ~14 MB): a cache
    hit unpickles the whole result on every rerun.
    """
    with session_factory(get_engine())() as session:
        return caseload_table(read_alerts(session, actor=actor, today=today, without_kinds=NOT_ALERTS))


@cached()
def load_blind_spots(actor: Actor, version: tuple[int, ...]) -> pd.DataFrame:
    """What the monitor cannot check for the visible patients (``core.notices``: a risk item not
    answered or not imported, no start date); no scores are read."""
    with session_factory(get_engine())() as session:
        patients = list_patients(session, actor=actor)
        coverage = risk_item_coverage(session, actor=actor)
    return patient_notices(patients, coverage=coverage)


#: The series of the caseload page's small multiples.
COURSE_INSTRUMENTS = ["WAI-SR", "WAI-P"]


@cached()
def load_course_scores(actor: Actor, version: tuple[int, ...], codes: tuple[str, ...]) -> pd.DataFrame:
    """The WAI-SR and WAI-P scores of the patients ``codes`` (those the small multiples draw),
    read in one query with ``actor``'s rights: a patient ``actor`` may not see contributes no rows."""
    with session_factory(get_engine())() as session:
        return read_scores(session, actor=actor, patient_codes=codes, instruments=COURSE_INSTRUMENTS)


@cached()
def load_teams(actor: Actor, version: tuple[int, ...]) -> list[str]:
    """The teams whose patients ``actor`` may see."""
    with session_factory(get_engine())() as session:
        return list_teams(session, actor=actor)


@cached()
def load_scope(actor: Actor, version: tuple[int, ...], team: str | None, started_from: dt.date | None,
               started_to: dt.date | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(patients, scores) of a clinic-meeting scope within what ``actor`` may see."""
    with session_factory(get_engine())() as session:
        return read_scope(session, actor=actor, team=team, started_from=started_from, started_to=started_to)


@cached()
def load_scope_expected(actor: Actor, version: tuple[int, ...], team: str | None, started_from: dt.date | None,
                        started_to: dt.date | None) -> pd.DataFrame:
    """What the rules expected of each week in a clinic-meeting scope (``core.flags.expected_courses``)."""
    from ui.loaders import _expected

    _, scores = load_scope(actor, version, team, started_from, started_to)
    if scores.empty:
        return pd.DataFrame()
    with session_factory(get_engine())() as session:
        return _expected(session, scores)


@cached()
def load_scope_alerts(actor: Actor, version: tuple[int, ...], today: dt.date, team: str | None,
                      started_from: dt.date | None, started_to: dt.date | None) -> pd.DataFrame:
    """The flags (with ages) of the patients in a clinic-meeting scope."""
    patients, _ = load_scope(actor, version, team, started_from, started_to)
    alerts = load_alerts(actor, version, today)
    return alerts[alerts["patient_id"].isin(patients["patient_id"])].reset_index(drop=True)


#: Fitted analyses by (actor, version, symptom, alliance, scope), newest last. A plain LRU
#: rather than ``st.cache_data``: the fit reports progress to an ``st.progress`` bar made
#: by the page, and ``st.cache_data`` would try to replay that element on a cache hit.
_ANALYSES: OrderedDict[tuple, AnalysisResult | str] = OrderedDict()
_ANALYSES_MAX = 32
_ANALYSES_LOCK = threading.Lock()


def load_analysis(actor: Actor, version: tuple[int, ...], symptom: str, alliance: str, team: str | None,
                  started_from: dt.date | None, started_to: dt.date | None,
                  progress: Progress | None = None) -> AnalysisResult | str:
    """The three models on the scope's scores, or a sentence saying why there are too few data.

    Cached per (actor, version, symptom, alliance, team, period); ``progress`` (not part of
    the key) is called while fitting, for ``st.progress``.
    """
    key = (actor, version, symptom, alliance, team, started_from, started_to)
    with _ANALYSES_LOCK:
        if key in _ANALYSES:
            _ANALYSES.move_to_end(key)
            return _ANALYSES[key]
    _, scores = load_scope(actor, version, team, started_from, started_to)
    result: AnalysisResult | str | None = too_little_data(scores, symptom=symptom, alliance=alliance)
    if not result:
        result = fit_within_between(scores[scores["instrument"].isin([symptom, alliance])], symptom=symptom,
                                    alliance=alliance, progress=progress)
    with _ANALYSES_LOCK:
        _ANALYSES[key] = result
        while len(_ANALYSES) > _ANALYSES_MAX:
            _ANALYSES.popitem(last=False)
    return result


def audit_once(actor: Actor, action: str, **detail: object) -> None:
    """Record ``action`` (e.g. ``view_caseload``) once per session and detail."""
    key = (action, tuple(sorted((k, str(v)) for k, v in detail.items())))
    seen: set = st.session_state.setdefault("audited_meeting_views", set())
    if key in seen:
        return
    with transaction(get_engine()) as session:
        audit.record(session, actor=actor, action=action, **detail)
    seen.add(key)


def csv_download(actor: Actor, frame: pd.DataFrame, *, what: str) -> Callable[[], bytes]:
    """A ``st.download_button`` data callable: records the export in the audit trail (with
    the patient codes it holds) when the user downloads, and returns the formula-escaped CSV."""
    engine = get_engine()
    codes = sorted(frame["patient_id"].dropna().astype(str).unique().tolist()) if "patient_id" in frame else []

    def make() -> bytes:
        with transaction(engine) as session:
            audit.record(session, actor=actor, action="export", what=what, rows=len(frame), format="csv",
                         patients=codes)
        return to_csv_bytes(frame)

    return guard_download(actor, lambda _fresh: make(), patients=codes)  # issue 14: live login, each patient


def handout_download(actor: Actor, sections: list[HandoutSection], *, title: str, subtitle: str,
                     meeting: bool) -> Callable[[], bytes]:
    """A ``st.download_button`` data callable: the clinic page as a PDF handout
    (:func:`core.reports.build_meeting_handout`, figures through the app's kept browser), audited
    once it is made. ``sections`` hold what the page shows, suppressed in meeting mode."""
    engine = get_engine()

    def make() -> bytes:
        pdf = build_meeting_handout(
            sections, title=title, subtitle=subtitle, made_by=actor.name, made_at=dt.datetime.now(dt.UTC),
            render=lambda fig: render_png(fig, width=1000, height=int(fig.layout.height or 450), scale=2,
                                          persistent=True))
        with transaction(engine) as session:
            audit.record(session, actor=actor, action="export", what="clinic_handout", format="pdf",
                         meeting_mode=meeting)
        return pdf

    return make


def png_download(actor: Actor, figure: go.Figure, *, what: str) -> Callable[[], bytes]:
    """A ``st.download_button`` data callable: the figure as PNG (:mod:`core.static_export`, the
    app's kept browser, bounded in time), audited once it is made. When the browser fails the
    download fails (Streamlit says the file could not be made) and nothing is audited."""
    engine = get_engine()

    def make() -> bytes:
        png = render_png(figure, width=1200, height=int(figure.layout.height or 500), scale=2, persistent=True)
        with transaction(engine) as session:
            audit.record(session, actor=actor, action="export", what=what, format="png")
        return png

    return guard_download(actor, lambda _fresh: make())  # issue 14: only while the login is live
