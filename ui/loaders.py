"""Cached loaders for the pages.

The cache (:mod:`ui.cache`) is shared by every user of the server, so each loader takes the
acting user (:class:`db.access.Actor`) among its arguments: a result is only ever returned to
the user it was computed for. ``version`` (``db.queries.data_version``) decides whether the
entry is current: results are recomputed once per data change, not on every rerun, and the
older version's result is dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from core.caseload import attention_table, open_counts
from core.exporting import scores_for_export, to_csv_bytes
from core.notices import patient_notices
from core.reports import ReportHeader, build_patient_report, build_report_html, render_png
from db import audit
from db.access import Actor
from db.engine import session_factory, transaction
from db.flags import read_flags
from db.notes import mark_flag
from db.queries import PatientInfo, data_version, list_patients, patient_info, read_scores, risk_item_coverage
from db.summaries import read as read_summaries
from db.visits import record_visit
from ui.cache import cached
from ui.session import get_engine, guard_download


def current_version() -> tuple[int, ...]:
    with session_factory(get_engine())() as session:
        return data_version(session)


@cached()
def load_patients(actor: Actor, version: tuple[int, ...]) -> pd.DataFrame:
    with session_factory(get_engine())() as session:
        return list_patients(session, actor=actor)


@cached()
def load_flags(actor: Actor, version: tuple[int, ...]) -> pd.DataFrame:
    with session_factory(get_engine())() as session:
        return read_flags(session, actor=actor)


@cached()
def load_patient(actor: Actor, code: str, version: tuple[int, ...]) -> tuple[PatientInfo | None,
                                                                              pd.DataFrame, pd.DataFrame]:
    """Patient, scores (with items) and flags; (None, empty, empty) alike for unknown and forbidden."""
    with session_factory(get_engine())() as session:
        try:
            return _patient_data(session, actor, code)
        except LookupError:
            return None, pd.DataFrame(), pd.DataFrame()


@cached()
def load_expected(actor: Actor, code: str, version: tuple[int, ...]) -> pd.DataFrame:
    """What the rules expected of each of the patient's weeks (``core.flags.expected_courses``)."""
    info, scores, _ = load_patient(actor, code, version)
    if info is None or scores.empty:
        return pd.DataFrame()
    with session_factory(get_engine())() as session:
        return _expected(session, scores)


@cached()
def load_course_figure(actor: Actor, code: str, version: tuple[int, ...], *, compare: str,
                       last_weeks: int | None) -> object:
    """The patient page's course chart (``core.figures.build_patient_figure``), built once per
    patient, data version and choice of the page's two switches: flipping them back and forth
    costs no rebuild. ``compare``: "expected" (what the flags compare with), "running" or "full".

    The figure is the cache's own object, shared by every rerun of this user: show it
    (``st.plotly_chart``), never change it.
    """
    from core.figures import build_patient_figure

    info, scores, flags = load_patient(actor, code, version)
    expected = load_expected(actor, code, version) if compare == "expected" and info is not None else None
    return build_patient_figure(scores, flags=flags, average="full" if compare == "full" else "running",
                                last_weeks=last_weeks, expected=expected)


def _expected(session: Session, scores: pd.DataFrame) -> pd.DataFrame:
    """``expected_courses`` under the clinic's rule set in force (its frozen courses and settings)."""
    from core.flags import expected_courses
    from db.parameters import current_rule_set, flag_config

    rule_set = current_rule_set(session)
    return expected_courses(scores, config=flag_config(rule_set)) if rule_set is not None \
        else expected_courses(scores)


def previous_visit(actor: Actor, page: str) -> dt.datetime | None:
    """The actor's previous visit of ``page`` (``None`` the first time), for "new since your last visit".

    Read and replaced by now once per browser session and page (``db.visits``), so the marks
    stay while the user filters and reruns, and the next session compares with this one.
    """
    key = f"previous_visit:{page}"
    if key not in st.session_state:
        with transaction(get_engine()) as session:
            st.session_state[key] = record_visit(session, actor=actor, page=page)
    return st.session_state[key]


def audit_view(actor: Actor, code: str) -> None:
    """Record that ``actor`` viewed patient ``code`` (once per session and patient)."""
    seen: set[str] = st.session_state.setdefault("audited_views", set())
    if code in seen:
        return
    with transaction(get_engine()) as session:
        audit.record(session, actor=actor, action="view_patient", patient_code=code)
    seen.add(code)


# --- The therapist's week: caseload, flag actions, report and CSV downloads -------------------

@cached()
def load_caseload(actor: Actor, version: tuple[int, ...]) -> tuple[pd.DataFrame, pd.Series]:
    """The attention table with latest scores and sparklines, and the open count by reason."""
    patients = load_patients(actor, version)
    flags = load_flags(actor, version)
    with session_factory(get_engine())() as session:  # the stored summaries: no score is read
        summary, ranges = read_summaries(session, actor=actor)
        coverage = risk_item_coverage(session, actor=actor)
    notices = patient_notices(patients, coverage=coverage, ranges=ranges)
    return attention_table(patients, flags, summary=summary, notices=notices), open_counts(patients, flags)


@cached()
def load_patient_notices(actor: Actor, code: str, version: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patient's row of ``list_patients`` and their risk-item coverage (for ``core.notices``)."""
    with session_factory(get_engine())() as session:
        return (list_patients(session, actor=actor, patient_code=code),
                risk_item_coverage(session, actor=actor, patient_code=code))


def mark_flags(actor: Actor, code: str, keys: list[tuple[str, int, str]], *, action: str, note: str) -> str | None:
    """Mark flags ``(instrument, week, kind)`` of patient ``code`` addressed or reopened, all or none.

    Returns ``None`` on success, else the sentence to show the user.
    """
    try:
        with transaction(get_engine()) as session:
            for instrument, week, kind in keys:
                mark_flag(session, actor=actor, patient_code=code, instrument=instrument, week=int(week),
                          kind=kind, action=action, note=note)
    except LookupError:
        return ("No such patient. Check the code, or choose a patient from the list; you can only open "
                "patients on your own caseload (supervisors: your team's).")
    except ValueError as exc:
        return str(exc)
    return None


def _patient_data(session: Session, actor: Actor, code: str) -> tuple[PatientInfo, pd.DataFrame, pd.DataFrame]:
    info = patient_info(session, actor=actor, code=code)
    if info is None:
        raise LookupError("No such patient")
    scores = read_scores(session, actor=actor, patient_code=code, with_items=True)
    flags = read_flags(session, actor=actor, patient_code=code)  # the clinic's stored flags
    return info, scores, flags


def _header(info: PatientInfo, actor: Actor) -> ReportHeader:
    return ReportHeader(patient_code=info.code, therapist=info.therapist_display or info.therapist,
                        status=info.status, made_by=actor.name, made_at=dt.datetime.now(dt.UTC))


def report_download(actor: Actor, code: str, *, kind: str) -> Callable[[], bytes]:
    """A callable for ``st.download_button(data=...)``: builds the report when clicked and audits it.

    ``kind`` is ``"pdf"`` (one page; the chart through the system's Chromium), ``"html"``
    (interactive chart, no browser needed) or ``"csv"`` (the patient's scores in the
    weekly-scores format, formulas escaped). When clicked, the login that drew the button must
    still be live and its account may still see the patient (``ui.session.guard_download``);
    the data are read again with the account's rights as they are then.
    """
    engine = get_engine()

    def build(fresh: Actor) -> bytes:
        with transaction(engine) as session:
            info, scores, flags = _patient_data(session, fresh, code)
            if kind == "pdf":
                data = build_patient_report(
                    scores, flags, header=_header(info, fresh), expected=_expected(session, scores),
                    render=lambda fig: render_png(fig, height=int(fig.layout.height or 530), persistent=True))
            elif kind == "html":
                data = build_report_html(scores, flags, header=_header(info, fresh),
                                         expected=_expected(session, scores))
            else:
                data = to_csv_bytes(scores_for_export(scores))
            audit.record(session, actor=fresh, action="export", patient_code=code, format=kind,
                         what="patient report" if kind != "csv" else "scores", rows=len(scores))
        return data

    return guard_download(actor, build, patients=[code])
