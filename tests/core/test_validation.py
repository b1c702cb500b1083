"""The one validator: accepts exactly what the instrument ranges allow (hypothesis), reads files."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import instruments
from core.validation import MAX_WEEK, read_scores_csv, read_scores_file, summarise_items, validate_scores

CODES = sorted(instruments.registry())


def _row(code: str, week: str, score: str, items: list[str] | None = None) -> pd.DataFrame:
    cells = {"patient_id": "P1", "therapist_id": "ther.x", "week": week, "instrument": code, "score": score}
    for n, v in enumerate(items or [], start=1):
        cells[f"item_{n}"] = v
    return pd.DataFrame([cells], dtype="string")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.sampled_from(CODES), score=st.one_of(st.integers(-5, 80), st.floats(-5, 80, allow_nan=False)),
       week=st.one_of(st.integers(-2, MAX_WEEK + 2), st.floats(0, 5, allow_nan=False)))
def test_totals_are_accepted_exactly_within_the_range(code: str, score: float, week: float) -> None:
    inst = instruments.get(code)
    result = validate_scores(_row(code, str(week), str(score)))
    # a week is written with digits only ("2.0" is refused); every registry total is a sum of whole items
    week_ok = isinstance(week, int) and 1 <= week <= MAX_WEEK
    score_ok = inst.total_min <= score <= inst.total_max and float(score).is_integer()
    assert result.ok == (week_ok and score_ok), result.errors
    if result.ok:
        assert result.scores.loc[0, "score"] == float(score) and result.scores.loc[0, "week"] == int(week)
    else:
        columns = {e.column for e in result.errors}
        assert ("week" in columns) == (not week_ok) and ("score" in columns) == (not score_ok)


@st.composite
def item_rows(draw: st.DrawFn) -> tuple[str, list[int], int | None]:
    code = draw(st.sampled_from(CODES))
    inst = instruments.get(code)
    items = draw(st.lists(st.integers(inst.item_min - 2, inst.item_max + 2), min_size=inst.n_items,
                          max_size=inst.n_items))
    total = draw(st.one_of(st.none(), st.just(sum(items)), st.integers(-3, 90)))
    return code, items, total


@settings(max_examples=300, deadline=None)
@given(item_rows())
def test_items_are_accepted_exactly_within_the_item_range_and_must_sum(case: tuple[str, list[int], int | None]) -> None:
    code, items, total = case
    inst = instruments.get(code)
    result = validate_scores(_row(code, "1", "" if total is None else str(total), [str(v) for v in items]))
    items_ok = all(inst.item_min <= v <= inst.item_max for v in items)
    total_ok = total is None or (total == sum(items) and inst.total_min <= total <= inst.total_max)
    assert result.ok == (items_ok and total_ok), result.errors
    if result.ok:
        assert result.scores.loc[0, "score"] == sum(items)
        assert result.scores.loc[0, "score"] == instruments.score_totals(result.scores).loc[0]


def test_every_problem_in_the_file_is_reported_not_only_the_first() -> None:
    raw = read_scores_csv(b"patient_id,therapist_id,week,instrument,score\n"
                          b"P1,t,0,SPIN,99\nP2,t,1,XYZ,1\nP3,,1,SPIN,1\n")
    errors = validate_scores(raw).errors
    assert [(e.row, e.column) for e in errors] == [(2, "score"), (2, "week"), (3, "instrument"),
                                                   (4, "therapist_id")]
    assert str(errors[0]).startswith("row 2, column score: ")


def test_blank_lines_keep_file_row_numbers() -> None:
    raw = read_scores_file(b"patient_id,therapist_id,week,instrument,score\n\nP1,t,1,SPIN,1\n\nP1,t,2,SPIN,99\n",
                           name="x.csv")
    assert [e.row for e in validate_scores(raw).errors] == [5]


def test_summarise_items_while_typing() -> None:
    total, subs = summarise_items("WAI-SR", [5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, None])
    assert total is None and subs["bond"] == 4 + 4 + 3 + 3 and subs["task"] is None
    total, subs = summarise_items("WAI-SR", [5] * 12)
    assert total == 60 and subs == {"task": 20, "bond": 20, "goal": 20}
