"""Rupture cards and repair prompts for a text-based, internet-delivered therapy.

A **rupture card** summarises one rupture episode of one alliance series: what fell, by how
much in points and in the patient's own SDs, against which baseline, which subscale fell most,
what the symptoms did the week after, and whether the alliance came back (repair). Weeks in
a row that are all flagged as ruptures of the same series form one episode (the later weeks
say the alliance *stayed* down); the card is keyed on the episode's first week.

The **repair prompts** follow the rupture-resolution literature, adapted to weekly written
feedback in guided internet CBT:

* Safran & Muran (2000), *Negotiating the therapeutic alliance: a relational treatment guide*
  (Guilford): *immediate* (direct) strategies for disagreements about tasks and goals
  (clarify the rationale, change the task or goal together) and *expressive* (exploratory)
  strategies for strains in the bond (invite the patient to say how the work feels,
  acknowledge one's own part, validate the patient's reaction).
* Muran & Barber (Eds.) (2011), *The therapeutic alliance: an evidence-based guide to
  practice* (Guilford), the chapters on rupture repair.
* Safran, Muran & Eubanks-Carter (2011), Repairing alliance ruptures, *Psychotherapy* 48:80–87,
  doi:10.1037/a0022140; Eubanks, Muran & Safran (2018), Alliance rupture repair: a
  meta-analysis, *Psychotherapy* 55:508–519, doi:10.1037/pst0000185.

The wording is the project's; it is a prompt for the therapist's own judgement, not a script.
"""

from __future__ import annotations

import pandas as pd

from core import instruments
from core.caseload import flag_status_words, kind_words

#: Short references shown under the prompts.
REFERENCES = (
    "Safran & Muran (2000), Negotiating the therapeutic alliance, Guilford",
    "Muran & Barber (2011), The therapeutic alliance: an evidence-based guide to practice, Guilford",
    "Safran, Muran & Eubanks-Carter (2011), Psychotherapy 48:80, doi:10.1037/a0022140",
    "Eubanks, Muran & Safran (2018), Psychotherapy 55:508, doi:10.1037/pst0000185",
)

_BOND = (
    "Invite: in this week's feedback, ask openly how the work together has felt lately, e.g. "
    "\"Your answers this week suggest our contact may have felt less helpful. I would really like to "
    "hear how my messages have come across to you.\"",
    "Acknowledge your part: name something in your own messages that may have missed the mark (a short "
    "or general reply, a late answer) without over-apologising.",
    "Validate: thank the patient for any criticism and say why their reaction makes sense; a "
    "disagreement voiced in writing is a chance to repair, not a failure.",
    "Keep the door open: say that doubts are welcome at any time and offer a phone or video contact "
    "if the programme allows one.",
)
_GOAL = (
    "Revisit the goal: ask what the patient most wants from treatment now, and whether that still "
    "matches what the programme works on.",
    "Link the work to their goal: explain in plain words how this week's module serves the goal "
    "they named.",
    "Agree together: propose a revised or smaller goal and ask whether it fits; let the patient "
    "have the last word.",
)
_TASK = (
    "Ask about the homework: was this week's exercise too much, too hard, unclear, or beside the point "
    "for them?",
    "Adjust it together: offer a smaller step, another exercise or more time, and let the patient "
    "choose.",
    "Give the reason: explain briefly why the exercise is meant to help, and check that it makes sense "
    "to them.",
)
_ANY = (
    "Ask openly in this week's feedback how the programme and your contact have felt lately, and "
    "whether anything should change.",
    "Acknowledge your own part in anything that did not work, and validate the patient's reaction.",
    "Check that the goals and this week's homework still fit, and adjust them together.",
)
#: Prompts per subscale that fell most (``None``: no item data, so no subscale is known).
PROMPTS: dict[str | None, tuple[str, ...]] = {"bond": _BOND, "goal": _GOAL, "task": _TASK, None: _ANY}
#: A closing prompt for every card.
FOLLOW_UP = ("Look at next week's questionnaire: the rupture counts as repaired when the alliance is "
             "back within one reliable change of the baseline and has won back at least half of the fall.")

_SERIES_LABELS = {"WAI-SR": "Alliance with the therapist (WAI-SR)", "WAI-P": "Alliance with the programme (WAI-P)"}
CARD_STATUS_WORDS = {"open": "not yet known (too soon to tell)", "unrepaired": "not repaired",
                     "repaired": "repaired", "addressed": "addressed in feedback"}


def repair_prompts(subscale: str | None) -> tuple[str, ...]:
    """Repair prompts matched to the subscale that fell most (``bond``, ``goal``, ``task``).

    An unknown or missing subscale (no item data) gets the general prompts. The last prompt
    is always :data:`FOLLOW_UP`.
    """
    key = subscale.lower() if isinstance(subscale, str) and subscale.lower() in PROMPTS else None
    return PROMPTS[key] + (FOLLOW_UP,)


def rupture_episodes(flags: pd.DataFrame) -> pd.DataFrame:
    """Rupture flags with an ``episode`` number (per patient and instrument) and ``first_week``.

    Flags of consecutive treatment weeks in the same series belong to one episode.
    """
    rup = flags[flags["kind"].eq("rupture")].sort_values(["patient_id", "instrument", "week"])
    series = rup["patient_id"].astype(str) + "|" + rup["instrument"].astype(str)
    new_series = series.ne(series.shift())
    gap = rup["week"].diff().ne(1)
    episode = (new_series | gap).cumsum()
    return rup.assign(episode=episode.to_numpy(),
                      first_week=rup.groupby(episode)["week"].transform("min").to_numpy())


def rupture_cards(flags: pd.DataFrame, *, last_week: int | None = None) -> pd.DataFrame:
    """One row per rupture episode: every episode gets a card (a repaired one is shown collapsed).

    Parameters
    ----------
    flags
        One patient's flags (``core.flags.compute_flags`` columns, optionally with ``note``,
        ``note_by``, ``note_at`` and ``computed_status`` from ``db.flags.read_flags``).
    last_week
        The patient's latest stored week (for "no questionnaire since week t"). ``None``: not known.

    Returns
    -------
    DataFrame
        ``patient_id, instrument, series, week`` (first week), ``weeks`` (all flagged weeks of
        the episode, a list), ``score, baseline, drop, drop_sd, rule, subscale, subscale_drop,
        symptom_instrument, symptom_change_next_week, repaired_week, status, repair_status,
        repair_words, addressed, status_words, confirmed, explanation, note, note_by, note_at,
        prompts`` (a sequence of sentences), the most urgent first.

        Two separate things: ``repair_status`` is what the *alliance* did (``unrepaired``,
        ``open`` or ``repaired``: the most urgent among the episode's weeks, from
        ``computed_status`` where the flags carry it), ``addressed`` what the *therapist* did
        (every week of the episode marked "addressed in feedback"). ``status`` is ``addressed``
        when ``addressed``, else ``repair_status`` (as the flags' ``status``); ``repair_words``
        says the repair state in words, ``status_words`` adds "addressed in feedback".
    """
    columns = ["patient_id", "instrument", "series", "week", "weeks", "score", "baseline", "drop", "drop_sd",
               "rule", "subscale", "subscale_drop", "symptom_instrument", "symptom_change_next_week",
               "repaired_week", "status", "repair_status", "repair_words", "addressed", "status_words", "confirmed",
               "explanation", "note", "note_by", "note_at", "prompts"]
    if flags.empty or not flags["kind"].eq("rupture").any():
        return pd.DataFrame(columns=columns)
    rup = rupture_episodes(flags)
    for col in ("note", "note_by", "note_at"):
        if col not in rup.columns:
            rup[col] = None
    computed = rup["computed_status"] if "computed_status" in rup.columns else rup["status"]
    # an "addressed" flag without its computed status (an old frame): the repair week still tells
    computed = computed.where(computed.ne("addressed"),
                              pd.Series("repaired", index=rup.index).where(rup["repaired_week"].notna(), "open"))
    rank = {"unrepaired": 0, "open": 1, "repaired": 2}
    rup = rup.assign(rank=computed.map(rank).fillna(1).astype(int), is_addressed=rup["status"].eq("addressed"))
    grouped = rup.groupby("episode", sort=False)
    first = grouped.head(1).set_index("episode")
    repair_status = grouped["rank"].min().map({v: k for k, v in rank.items()})
    addressed = grouped["is_addressed"].all()
    notes = rup[rup["is_addressed"]].sort_values("note_at").groupby("episode").tail(1).set_index("episode")
    cards = first.assign(
        weeks=grouped["week"].agg(list),
        repair_status=repair_status,
        addressed=addressed.astype(bool),
        repaired_week=grouped["repaired_week"].max(),
        note=notes["note"].reindex(first.index),
        note_by=notes["note_by"].reindex(first.index),
        note_at=notes["note_at"].reindex(first.index),
    )
    cards["status"] = cards["repair_status"].where(~cards["addressed"], "addressed")
    cards["series"] = cards["instrument"].map(_SERIES_LABELS).fillna(cards["instrument"])
    words = cards["repair_status"].map(CARD_STATUS_WORDS).astype(str)
    repaired = cards["repair_status"].eq("repaired") & cards["repaired_week"].notna()
    words = words.mask(repaired, "repaired in week " + cards["repaired_week"].astype("Int64").astype(str))
    if last_week is not None:  # rupture then silence: the window passed without any questionnaire
        end = cards["weeks"].map(max)
        silent = cards["repair_status"].eq("unrepaired") & end.ge(int(last_week))
        words = words.mask(silent, "not repaired: no questionnaire since week " + end.astype(str)
                           + ", and the repair window has passed")
    cards["repair_words"] = words
    cards["status_words"] = words.where(~cards["addressed"], words + "; addressed in feedback")
    cards["prompts"] = cards["subscale"].map(repair_prompts)
    cards = (cards.assign(rank=cards["repair_status"].map(rank), done=cards["addressed"])
             .sort_values(["rank", "done", "week"], ascending=[True, True, False]))
    return cards.reset_index(drop=True)[columns]


def describe_card(card: pd.Series) -> list[str]:
    """The card in plain sentences (used by the patient page and the PDF report).

    The repair state (what the alliance did) and whether the therapist addressed the rupture in
    feedback are two separate lines.
    """
    lines = []
    score, baseline = card["score"], card["baseline"]
    drop_sd = card["drop_sd"]
    sd_words = f", {drop_sd:.1f} of the patient's own SDs" if pd.notna(drop_sd) else ""
    lines.append(f"What fell: {card['series']} in week {int(card['week'])}, to {score:g} from a baseline of "
                 f"{baseline:.1f} ({card['drop']:.1f} points{sd_words}).")
    later = [int(w) for w in card["weeks"] if int(w) != int(card["week"])]
    if later:
        lines.append(f"Still below the patient's own level in week{'s' if len(later) > 1 else ''} "
                     f"{', '.join(map(str, later))}.")
    if isinstance(card["subscale"], str) and card["subscale"]:
        size = f" ({card['subscale_drop']:.1f} points)" if pd.notna(card["subscale_drop"]) else ""
        lines.append(f"Subscale that fell most: {card['subscale']}{size}.")
    else:
        lines.append("Subscale that fell most: not known (no item answers stored).")
    change, symptom = card["symptom_change_next_week"], card["symptom_instrument"]
    if isinstance(symptom, str) and pd.notna(change):
        better_up = symptom in instruments.registry() and instruments.get(symptom).higher_is_better
        worse = change < 0 if better_up else change > 0
        direction = "unchanged" if change == 0 else ("worse" if worse else "better")
        scale = "higher = better" if better_up else "higher = worse"
        unit = "point" if abs(change) == 1 else "points"
        lines.append(f"Symptoms the week after: {symptom} {change:+g} {unit} ({direction}; {scale}).")
    else:
        lines.append("Symptoms the week after: no questionnaire yet.")
    words = card["repair_words"] if "repair_words" in card.index else card["status_words"]
    lines.append(f"Repair: {words}.")
    if bool(card.get("addressed", card["status"] == "addressed")):
        by = f" by {card['note_by']}" if isinstance(card.get("note_by"), str) and card["note_by"] else ""
        at = card.get("note_at")
        when = f" on {pd.Timestamp(at):%d %b %Y}" if at is not None and pd.notna(at) else ""
        lines.append(f"Addressed in feedback{by}{when}.")
    else:
        lines.append("Addressed in feedback: not yet.")
    return lines


def risk_alerts(flags: pd.DataFrame) -> pd.DataFrame:
    """The risk-item flags (e.g. PHQ-9 item 9 > 0), latest first, with ``message`` for a banner.

    ``addressed`` is True for those marked addressed in feedback (the page shows them more
    quietly; every other status stays an unmissable banner).
    """
    risk = flags[flags["kind"].eq("risk_item")].sort_values("week", ascending=False)
    message = ("Week " + risk["week"].astype(str) + ", " + risk["instrument"].astype(str) + ": "
               + risk["explanation"].fillna("").astype(str))
    return risk.assign(message=message, addressed=risk["status"].eq("addressed").to_numpy())


def addressable_flags(flags: pd.DataFrame) -> pd.DataFrame:
    """Flags a therapist can mark addressed (every alert), with a ``label`` in words.

    Good-news signals (improvement) are left out. Patient-level flags (missed questionnaires)
    have no instrument; their label says "all questionnaires".
    """
    keep = ~flags["kind"].isin(["improvement"])
    chosen = flags[keep].sort_values(["week", "instrument", "kind"], ascending=[False, True, True],
                                     na_position="first")
    status = chosen["status"].map(CARD_STATUS_WORDS | {"open": "open"}).fillna(chosen["status"]).astype(str)
    questionnaire = chosen["instrument"].astype("string").fillna("all questionnaires").astype(str)
    label = ("Week " + chosen["week"].astype(str) + " · " + questionnaire + " · "
             + chosen["kind"].astype(str).str.replace("_", " ") + " (" + status + ")")
    return chosen.assign(label=label.to_numpy())


def flag_table(flags: pd.DataFrame) -> pd.DataFrame:
    """The patient page's flags table: the flags (a copy) with ``kind_words``, ``status_words``
    and blanks, not missing values, in ``instrument``, ``note`` and ``note_by``.

    ``status_words`` says what the alliance did and, separately, what the therapist did:
    "not repaired · addressed in feedback" (from ``computed_status`` where the flags carry it).
    """
    out = flags.copy()
    out["kind_words"] = kind_words(out["kind"])
    computed = out["computed_status"] if "computed_status" in out.columns else out["status"]
    words = flag_status_words(computed.where(computed.ne("addressed"), pd.NA))
    addressed = out["status"].eq("addressed").fillna(False).astype(bool)
    out["status_words"] = words.where(~addressed, (words + " · addressed in feedback").str.lstrip(" ·"))
    for col in ("instrument", "note", "note_by"):
        if col in out.columns:
            out[col] = out[col].astype(object).where(out[col].notna(), "")
    return out
