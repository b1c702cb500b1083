"""Per-patient summaries stored with the flags: what My patients and Patients show of each course.

``core.caseload.course_summary`` (latest alliance, programme and main symptom scores, the
sparkline points, the latest week) and ``core.notices.clinical_range`` of each patient's scores
of ``core.caseload.SUMMARY_INSTRUMENTS``, one row per patient in ``patient_summaries``. Like the
flags they depend on that patient's scores alone, so ``db.flagstore`` recomputes the rows of the
patients a write touched, in the write's transaction (``refresh_patients``), and all of them with
the flags (``refresh_all``); ``refresh-flags --check`` compares them too (``db.flagstore.check``). A caseload list then
reads 10,000 short rows, not 900,000 scores (issue 19: the admin's Patients page read every
score after each write, 4.3 s, and the read set the server's memory high-water mark).

Stored form: numbers as numbers, the two trends as JSON lists of floats, the clinical-range
states as a JSON list of ``[instrument, since_week, latest, cutoff]``. ``json.dumps`` writes a
float so that ``json.loads`` gives the same float back: what is read equals what was computed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.caseload import SUMMARY_COLUMNS, SUMMARY_INSTRUMENTS, course_summary
from core.notices import RANGE_COLUMNS, clinical_range
from db.access import Actor, visible_patients
from db.columnar import CHUNK, driver_values, insert_columns
from db.models import Patient, PatientSummary
from db.queries import fetch_rows

#: Part of what ``db.flagstore`` records as computed (``COMPUTED_FOR``): a release that changes
#: what a summary holds bumps it, and its first start recomputes flags and summaries once.
SUMMARY_REVISION = 1
#: The stored columns, in order.
STORED = ["patient_id", *SUMMARY_COLUMNS, "clinical_range"]


def compute(scores: pd.DataFrame) -> pd.DataFrame:
    """The stored form of the summaries of ``scores`` (core column contract; other instruments
    are left out): one row per patient with a score of ``SUMMARY_INSTRUMENTS``, ``patient_id``
    the code, trends and clinical-range states as JSON text. Pure."""
    sel = scores.loc[scores["instrument"].isin(SUMMARY_INSTRUMENTS), ["patient_id", "instrument", "week", "score"]]
    if sel.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in STORED})
    summary = course_summary(sel)
    finite = bool(np.isfinite(sel["score"].to_numpy(dtype="float64")).all())  # the trends are its floats
    ranges = clinical_range(sel)
    states: dict[str, list] = {}
    for code, instrument, since, latest, cutoff in zip(
            ranges["patient_id"].astype(str).tolist(), ranges["instrument"].astype(str).tolist(),
            ranges["since_week"].tolist(), ranges["latest"].tolist(), ranges["cutoff"].tolist(), strict=True):
        states.setdefault(code, []).append([instrument, int(since), float(latest), float(cutoff)])
    codes = [str(c) for c in summary.index.tolist()]
    return pd.DataFrame({
        "patient_id": codes,
        "latest_alliance": summary["latest_alliance"].to_numpy(dtype="float64"),
        "latest_program": summary["latest_program"].to_numpy(dtype="float64"),
        "main_symptom": summary["main_symptom"].astype(object).where(summary["main_symptom"].notna(), None).to_numpy(),
        "latest_symptom": summary["latest_symptom"].to_numpy(dtype="float64"),
        "alliance_trend": _json_lists(summary["alliance_trend"].tolist(), finite),
        "symptom_trend": _json_lists(summary["symptom_trend"].tolist(), finite),
        "last_questionnaire": summary["last_questionnaire"].to_numpy(),
        "clinical_range": [json.dumps(states.get(c, [])) for c in codes],
    })


def _json_lists(lists: list[list[float]], finite: bool) -> list[str]:
    """``json.dumps`` of each list; of finite floats (``finite``) written directly, ``repr``
    being what ``json`` writes of a float: 20,000 lists in 0.15 s instead of 0.4 s."""
    if not finite:
        return [json.dumps(t) for t in lists]
    return ["[" + ", ".join(map(float.__repr__, t)) + "]" for t in lists]


def write(session: Session, summaries: pd.DataFrame, pids: dict[str, int],
          patient_ids: Sequence[int] | None) -> None:
    """Replace the stored summaries of ``patient_ids`` (every patient when ``None``) by
    ``summaries`` (:func:`compute` of their scores), in the caller's transaction."""
    if patient_ids is None:
        session.execute(delete(PatientSummary))
    else:
        ids = sorted({int(p) for p in patient_ids})
        for start in range(0, len(ids), CHUNK):
            session.execute(delete(PatientSummary).where(PatientSummary.patient_id.in_(ids[start:start + CHUNK])))
    if summaries.empty:
        return
    codes = summaries["patient_id"].map(pids).astype("int64").tolist()
    insert_columns(session, PatientSummary.__table__,
                   {"patient_id": codes, **{c: driver_values(summaries[c]) for c in STORED[1:]}})


def read_stored(session: Session, *, actor: Actor | None, patient_codes: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored summaries of the patients ``actor`` may see (default-deny, in SQL), in stored
    form (:func:`compute`'s columns), sorted by code."""
    table = PatientSummary.__table__
    stmt = (select(Patient.code, *[table.c[c] for c in STORED[1:]])
            .join(Patient, Patient.id == table.c.patient_id)
            .where(table.c.patient_id.in_(visible_patients(actor)))
            .order_by(Patient.code))
    if patient_codes is not None:
        stmt = stmt.where(Patient.code.in_(list(patient_codes)))
    frame = pd.DataFrame.from_records(fetch_rows(session, stmt), columns=STORED)
    for c in ("latest_alliance", "latest_program", "latest_symptom"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


def read(session: Session, *, actor: Actor | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a caseload list needs of the visible patients' courses, without reading a score.

    Returns ``course_summary``'s frame (index ``patient_id``) and ``clinical_range``'s rows, the
    same as those functions give of the patients' scores of ``SUMMARY_INSTRUMENTS``.
    """
    stored = read_stored(session, actor=actor)
    summary = pd.DataFrame({
        "latest_alliance": stored["latest_alliance"].to_numpy(),
        "latest_program": stored["latest_program"].to_numpy(),
        "main_symptom": stored["main_symptom"].to_numpy(dtype=object),
        "latest_symptom": stored["latest_symptom"].to_numpy(),
        "alliance_trend": _objects([json.loads(t) for t in stored["alliance_trend"].tolist()]),
        "symptom_trend": _objects([json.loads(t) for t in stored["symptom_trend"].tolist()]),
        "last_questionnaire": pd.to_numeric(stored["last_questionnaire"]).to_numpy(),
    }, index=pd.Index(stored["patient_id"].astype(str).tolist(), name="patient_id"))
    rows = [[code, *state] for code, text in zip(stored["patient_id"].tolist(), stored["clinical_range"].tolist(),
                                                 strict=True) for state in json.loads(text)]
    ranges = pd.DataFrame(rows, columns=RANGE_COLUMNS)
    ranges["since_week"] = ranges["since_week"].astype("int64")
    ranges["latest"] = ranges["latest"].astype("float64")
    ranges["cutoff"] = ranges["cutoff"].astype("float64")
    return summary, ranges


def _objects(values: list) -> np.ndarray:
    """A 1-d object array of ``values`` (lists stay lists; ``np.array`` would make a matrix)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
