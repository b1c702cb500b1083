"""Rupture cards and repair prompts (core/repair.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from core.repair import (
    FOLLOW_UP,
    PROMPTS,
    REFERENCES,
    addressable_flags,
    describe_card,
    repair_prompts,
    risk_alerts,
    rupture_cards,
    rupture_episodes,
)


def flag(week: int, *, kind: str = "rupture", status: str = "unrepaired", instrument: str = "WAI-SR",
         subscale: str | None = "bond", **extra: object) -> dict:
    row = {"patient_id": "P1", "therapist_id": "t", "week": week, "instrument": instrument, "kind": kind,
           "rule": "reliable_drop", "severity": "high", "score": 34.0, "baseline": 47.0, "drop": 13.0,
           "status": status, "drop_sd": 4.3, "subscale": subscale, "subscale_drop": 10.0,
           "symptom_instrument": "SPIN", "symptom_change_next_week": 5.0, "confirmed": True,
           "repaired_week": pd.NA, "explanation": f"{kind} in week {week}", "note": None, "note_by": None,
           "note_at": None}
    row.update(extra)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows)).astype({"repaired_week": "Int64", "subscale": "string"})


@pytest.mark.parametrize("subscale,first_word", [("bond", "Invite"), ("goal", "Revisit"), ("task", "Ask about"),
                                                 ("Bond", "Invite"), (None, "Ask openly"), ("other", "Ask openly"),
                                                 (pd.NA, "Ask openly")])
def test_prompts_match_the_subscale_and_end_with_the_follow_up(subscale, first_word: str) -> None:  # type: ignore[no-untyped-def]
    prompts = repair_prompts(subscale)
    assert prompts[0].startswith(first_word)
    assert prompts[-1] == FOLLOW_UP
    assert len(prompts) >= 3


def test_bond_prompts_invite_acknowledge_validate_and_goal_task_prompts_adjust() -> None:
    bond = " ".join(PROMPTS["bond"]).lower()
    assert all(w in bond for w in ("how the work together", "acknowledge", "validate"))
    assert "goal" in " ".join(PROMPTS["goal"]).lower() and "adjust" in " ".join(PROMPTS["task"]).lower()
    assert all("feedback" in " ".join(p).lower() or "message" in " ".join(p).lower()
               for p in (PROMPTS["bond"], PROMPTS[None]))
    joined = " ".join(REFERENCES)
    assert "Muran & Barber (2011)" in joined and "Safran & Muran (2000)" in joined


def test_consecutive_rupture_weeks_form_one_episode_a_gap_starts_another() -> None:
    flags = frame(flag(9), flag(10), flag(11), flag(14), flag(9, instrument="WAI-P"), flag(3, kind="caseness"))
    ep = rupture_episodes(flags)
    assert len(ep) == 5
    by = ep.set_index(["instrument", "week"])
    assert by.loc[("WAI-SR", 10), "first_week"] == 9 and by.loc[("WAI-SR", 11), "first_week"] == 9
    assert by.loc[("WAI-SR", 14), "first_week"] == 14
    assert by.loc[("WAI-P", 9), "episode"] != by.loc[("WAI-SR", 9), "episode"]


def test_cards_one_per_episode_most_urgent_first_with_plain_sentences() -> None:
    flags = frame(flag(9), flag(10, status="open"), flag(11, status="open"),
                  flag(5, status="repaired", subscale="task", repaired_week=6),
                  flag(3, kind="risk_item", status="open"))
    cards = rupture_cards(flags, last_week=12)
    assert cards["week"].tolist() == [9, 5]
    first = cards.iloc[0]
    assert first["weeks"] == [9, 10, 11] and first["status"] == "unrepaired"
    assert first["series"] == "Alliance with the therapist (WAI-SR)"
    assert list(first["prompts"]) == list(repair_prompts("bond"))
    lines = describe_card(first)
    assert lines[0] == ("What fell: Alliance with the therapist (WAI-SR) in week 9, to 34 from a baseline of 47.0 "
                        "(13.0 points, 4.3 of the patient's own SDs).")
    assert "Still below the patient's own level in weeks 10, 11." in lines
    assert "Subscale that fell most: bond (10.0 points)." in lines
    assert "Symptoms the week after: SPIN +5 points (worse; higher = worse)." in lines
    assert lines[-2:] == ["Repair: not repaired.", "Addressed in feedback: not yet."]
    assert describe_card(cards.iloc[1])[-2] == "Repair: repaired in week 6."


def test_a_repaired_rupture_gets_a_card_too_after_the_open_ones() -> None:
    # issue 15: a repaired rupture got no card at all (the page shows it collapsed)
    flags = frame(flag(2, status="repaired", repaired_week=3), flag(4, status="unrepaired"))
    cards = rupture_cards(flags, last_week=12)
    assert cards["week"].tolist() == [4, 2]
    assert cards["repair_status"].tolist() == ["unrepaired", "repaired"]
    assert cards.iloc[1]["repair_words"] == "repaired in week 3"


def test_an_episode_is_addressed_only_when_every_week_is_and_carries_the_note() -> None:
    at = pd.Timestamp("2026-11-23 10:00")
    both = frame(flag(9, status="addressed", note="Asked", note_by="anna", note_at=at, computed_status="unrepaired"),
                 flag(10, status="addressed", note="Asked", note_by="anna", note_at=at, computed_status="unrepaired"))
    card = rupture_cards(both, last_week=12).iloc[0]
    assert (card["status"], card["note"], card["note_by"], card["status_words"]) == (
        "addressed", "Asked", "anna", "not repaired; addressed in feedback")
    half = frame(flag(9, status="addressed", note="Asked", note_by="anna", note_at=at, computed_status="open"),
                 flag(10, status="open", computed_status="open"))
    assert rupture_cards(half, last_week=12).iloc[0]["status"] == "open"


def test_addressed_is_what_the_therapist_did_repaired_what_the_alliance_did() -> None:
    # issue 15: after "addressed in feedback" the card said "Repair: addressed in feedback"
    at = pd.Timestamp("2026-11-23 10:00")
    for computed, words in (("repaired", "repaired in week 10"), ("open", "not yet known (too soon to tell)"),
                            ("unrepaired", "not repaired")):
        card = rupture_cards(frame(flag(9, status="addressed", note="Asked", note_by="anna", note_at=at,
                                        computed_status=computed, repaired_week=10 if computed == "repaired"
                                        else pd.NA)), last_week=12).iloc[0]
        assert card["repair_status"] == computed and bool(card["addressed"])
        lines = describe_card(card)
        assert f"Repair: {words}." in lines
        assert "Addressed in feedback by anna on 23 Nov 2026." in lines
        assert not any(line.startswith("Repair: addressed") for line in lines)


def test_no_item_data_no_symptom_week_after_says_so() -> None:
    card = rupture_cards(frame(flag(9, subscale=None, symptom_change_next_week=float("nan"), drop_sd=float("nan"))),
                         last_week=9).iloc[0]
    lines = describe_card(card)
    assert "Subscale that fell most: not known (no item answers stored)." in lines
    assert "Symptoms the week after: no questionnaire yet." in lines
    assert "own SDs" not in lines[0]
    assert list(card["prompts"]) == list(repair_prompts(None))


def test_no_ruptures_no_cards() -> None:
    assert rupture_cards(frame(flag(3, kind="caseness"))).empty
    assert rupture_cards(pd.DataFrame()).empty


def test_risk_alerts_latest_first_and_addressed_ones_apart() -> None:
    flags = frame(flag(3, kind="risk_item", status="open", instrument="PHQ-9"),
                  flag(7, kind="risk_item", status="addressed", instrument="PHQ-9"), flag(9))
    risks = risk_alerts(flags)
    assert risks["week"].tolist() == [7, 3]
    assert risks["addressed"].tolist() == [True, False]
    assert risks["message"].iloc[1] == "Week 3, PHQ-9: risk_item in week 3"


def test_addressable_flags_leave_out_good_news_and_name_patient_level_flags() -> None:
    flags = frame(flag(9), flag(4, kind="improvement", status="open"),
                  flag(6, kind="missed", status="open", instrument=None))
    choices = addressable_flags(flags)
    assert choices["label"].tolist() == ["Week 9 · WAI-SR · rupture (not repaired)",
                                         "Week 6 · all questionnaires · missed (open)"]
