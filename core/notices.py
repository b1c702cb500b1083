"""What a clinician should know about a patient that is not an alert: states and blind spots.

Three notices, shown on the patient page, My patients and the caseload, never counted as
alerts (docs/flags.md, "Notices"):

* **self-harm item not checked** - questionnaires of an instrument with a risk item (PHQ-9
  item 9) stored without item answers, whose total does not imply the item (a PHQ-9 total of
  25 or more does, and raises ``risk_item``): the risk question was not answered or not
  imported, so the monitor cannot check it;
* **no treatment calendar** - an active or paused patient without a start date: the monitor
  cannot tell which weeks were expected, so it cannot detect missed questionnaires after the
  last stored week;
* **in the clinical range since week k** - the latest score of a symptom measure is at or past
  its caseness cut-off; k is the first week of the run at or past it that reaches the latest
  score (week 1 when the patient started there and never left). The ``caseness`` *flag* marks
  a new crossing; this is the state, which a patient who started above the cut-off otherwise
  never shows.

Every function is vectorised over patients (sorts and grouped cumulative maxima, no loop over
patients).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import instruments

__all__ = ["calendar_notices", "clinical_range", "notice_labels", "patient_notices", "risk_notices"]

_COLUMNS = ["patient_id", "notice", "label", "text"]


def _frame(patient_id: pd.Series, notice: str, label: pd.Series, text: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": patient_id.astype(str).to_numpy(), "notice": notice,
                         "label": label.astype(str).to_numpy(), "text": text.astype(str).to_numpy()})


def risk_notices(coverage: pd.DataFrame) -> pd.DataFrame:
    """Notices for questionnaires whose risk item could not be checked.

    Parameters
    ----------
    coverage : DataFrame
        ``patient_id, instrument, unchecked, stored, last_unchecked_week, last_week`` (as
        ``db.queries.risk_item_coverage`` gives them).

    Returns
    -------
    DataFrame
        ``patient_id, notice`` ("risk_unchecked"), ``label`` (a few words for a table) and
        ``text`` (the sentence for the patient page).
    """
    if coverage.empty:
        return pd.DataFrame(columns=_COLUMNS)
    reg = instruments.registry()
    item = coverage["instrument"].map(lambda c: " and ".join(f"item {i}" for i in reg[c].risk_items)
                                      if c in reg else "the risk item")
    n, of = coverage["unchecked"].astype(int).astype(str), coverage["stored"].astype(int).astype(str)
    week = coverage["last_unchecked_week"].astype(int).astype(str)
    all_of = coverage["unchecked"].eq(coverage["stored"])
    count = pd.Series(np.where(all_of, "any of the " + of, n + " of " + of), index=coverage.index)
    label = "self-harm item not checked (" + coverage["instrument"] + ", latest week " + week + ")"
    text = ("Self-harm question not checked: " + coverage["instrument"] + " " + item + " was not answered or not "
            "imported in " + count + " " + coverage["instrument"] + " questionnaires (latest week " + week
            + "), so the monitor cannot check it. This is a notice, not an alert: ask about thoughts of "
              "self-harm directly, and import the item answers if the clinic has them.")
    return _frame(coverage["patient_id"], "risk_unchecked", label, text)


def calendar_notices(patients: pd.DataFrame) -> pd.DataFrame:
    """Notices for active or paused patients without a start date (``patient_id, status, start_date``)."""
    if patients.empty:
        return pd.DataFrame(columns=_COLUMNS)
    start = pd.to_datetime(patients["start_date"], errors="coerce")
    hit = patients[start.isna() & patients["status"].isin(["active", "paused"])]
    label = pd.Series("no start date: missed weeks not detected", index=hit.index)
    text = pd.Series("No treatment calendar: no start date is stored, so the monitor cannot tell which weeks were "
                     "expected and cannot detect missed questionnaires after the last stored one. An admin sets "
                     "the start date on the admin page (Patients) or with manage.py set-patient.", index=hit.index)
    return _frame(hit["patient_id"], "no_calendar", label, text)


#: The columns of :func:`clinical_range`.
RANGE_COLUMNS = ["patient_id", "instrument", "since_week", "latest", "cutoff"]


def clinical_range(scores: pd.DataFrame) -> pd.DataFrame:
    """Symptom measures whose latest score is at or past the caseness cut-off, and since when.

    Parameters
    ----------
    scores : DataFrame
        Core column contract (``patient_id, instrument, week, score``). Not modified.

    Returns
    -------
    DataFrame
        ``patient_id, instrument, since_week, latest, cutoff`` - one row per (patient,
        instrument) in the clinical range at its latest score; ``since_week`` is the first week
        of the unbroken run of scores at or past the cut-off that ends at the latest score.
    """
    cols = RANGE_COLUMNS
    reg = instruments.registry()
    cut = {c: (i.caseness, i.higher_is_better) for c, i in reg.items() if i.caseness is not None}
    sel = scores.loc[scores["instrument"].isin(list(cut)) & scores["score"].notna(),
                     ["patient_id", "instrument", "week", "score"]]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    # one integer per (patient, instrument), not a joined text per row (63 MB of strings at 10,000 x 52);
    # sorted on those integers (ranked codes), and each instrument's cut-off looked up once
    p_code, _ = pd.factorize(sel["patient_id"], sort=True)
    i_code, i_distinct = pd.factorize(sel["instrument"], sort=True)
    order = np.lexsort((sel["week"].to_numpy(), i_code, p_code))
    sel = sel.take(order).reset_index(drop=True)
    p_code, i_code = p_code[order], i_code[order]
    cutoff = np.array([cut[str(c)][0] for c in i_distinct], dtype="float64")[i_code]
    better_up = np.array([bool(cut[str(c)][1]) for c in i_distinct], dtype=bool)[i_code]
    score = sel["score"].astype("float64")
    inside = np.where(better_up, score <= cutoff, score >= cutoff)
    group = p_code.astype(np.int64) * (len(i_distinct) + 1) + i_code
    pos = np.arange(len(sel))
    last_outside = pd.Series(np.where(inside, -1, pos)).groupby(group).cummax().to_numpy()
    is_last = np.r_[group[1:] != group[:-1], True]
    first_pos = pd.Series(pos).groupby(group).transform("min").to_numpy()
    hit = is_last & inside
    start = np.maximum(last_outside[hit] + 1, first_pos[hit])
    return pd.DataFrame({
        "patient_id": sel["patient_id"].to_numpy()[hit], "instrument": sel["instrument"].to_numpy()[hit],
        "since_week": sel["week"].to_numpy()[start].astype("int64"), "latest": score.to_numpy()[hit],
        "cutoff": cutoff[hit]}, columns=cols).reset_index(drop=True)


def _range_notices(ranges: pd.DataFrame) -> pd.DataFrame:
    if ranges.empty:
        return pd.DataFrame(columns=_COLUMNS)
    since = ranges["since_week"].astype(int).astype(str)
    cutoff = ranges["cutoff"].map(lambda v: f"{v:g}")
    latest = ranges["latest"].map(lambda v: f"{v:g}")
    label = ranges["instrument"] + " since week " + since
    text = ("In the clinical range on " + ranges["instrument"] + " since week " + since + " (latest " + latest
            + "; cut-off " + cutoff + ").")
    return _frame(ranges["patient_id"], "clinical_range", label, text)


def patient_notices(patients: pd.DataFrame, *, coverage: pd.DataFrame | None = None,
                    scores: pd.DataFrame | None = None, ranges: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every notice of the patients: the clinical-range states first, then the blind spots.

    ``patients`` as ``db.queries.list_patients`` gives them; ``coverage`` as
    ``db.queries.risk_item_coverage``; ``scores`` in the core column contract (for the clinical
    range), or ``ranges``, :func:`clinical_range` of them ready made (``db.flagstore.read_summaries``).
    Returns ``patient_id, notice, label, text``.
    """
    if ranges is None and scores is not None:
        ranges = clinical_range(scores)
    parts = [_range_notices(ranges) if ranges is not None else None,
             risk_notices(coverage) if coverage is not None else None,
             calendar_notices(patients)]
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return pd.DataFrame(columns=_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def notice_labels(notices: pd.DataFrame, *, states: bool | None = None) -> pd.Series:
    """``"; "``-joined table labels per patient (index ``patient_id``), in the order given.

    ``states=True`` keeps only the clinical-range states (labels such as "SPIN since week 1"),
    ``False`` only the blind spots, ``None`` both.
    """
    if states is not None and len(notices):
        notices = notices[notices["notice"].eq("clinical_range") == states]
    if notices.empty:
        return pd.Series(dtype="string")
    return notices.groupby("patient_id", sort=False)["label"].agg("; ".join).astype("string")
