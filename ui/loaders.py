"""Cached loaders for the pages.

``st.cache_data`` is shared by every user of the server, so each loader takes the acting
user (:class:`db.access.Actor`) among its arguments: a result is only ever returned to the
user it was computed for. ``version`` (``db.queries.data_version``) is part of the key too,
so results are recomputed once per data change, not on every rerun.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db import audit
from db.access import Actor
from db.engine import session_factory, transaction
from db.flags import read_flags
from db.queries import PatientInfo, data_version, list_patients, patient_info, read_scores
from ui.session import get_engine


def current_version() -> tuple[int, ...]:
    with session_factory(get_engine())() as session:
        return data_version(session)


@st.cache_data(show_spinner=False, max_entries=64)
def load_patients(actor: Actor, version: tuple[int, ...]) -> pd.DataFrame:
    with session_factory(get_engine())() as session:
        return list_patients(session, actor=actor)


@st.cache_data(show_spinner="Checking every patient's course…", max_entries=64)
def load_flags(actor: Actor, version: tuple[int, ...]) -> pd.DataFrame:
    with session_factory(get_engine())() as session:
        return read_flags(session, actor=actor)


@st.cache_data(show_spinner=False, max_entries=256)
def load_patient(actor: Actor, code: str, version: tuple[int, ...]) -> tuple[PatientInfo | None,
                                                                              pd.DataFrame, pd.DataFrame]:
    """Patient, scores (with items) and flags; (None, empty, empty) alike for unknown and forbidden."""
    with session_factory(get_engine())() as session:
        info = patient_info(session, actor=actor, code=code)
        if info is None:
            return None, pd.DataFrame(), pd.DataFrame()
        scores = read_scores(session, actor=actor, patient_code=code, with_items=True)
        flags = read_flags(session, actor=actor, patient_code=code)
    return info, scores, flags


def audit_view(actor: Actor, code: str) -> None:
    """Record that ``actor`` viewed patient ``code`` (once per session and patient)."""
    seen: set[str] = st.session_state.setdefault("audited_views", set())
    if code in seen:
        return
    with transaction(get_engine()) as session:
        audit.record(session, actor=actor, action="view_patient", patient_code=code)
    seen.add(code)
