"""Figures (core/figures.py): scales on every axis, gaps, flag markers with explanations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.figures import OKABE_ITO, build_patient_figure, build_subscale_figure, instrument_order


def scores(weeks: dict[str, dict[int, float]], *, items: bool = False) -> pd.DataFrame:
    rows = [{"patient_id": "P1", "therapist_id": "t", "instrument": code, "week": w, "score": s,
             "administered_on": None} for code, course in weeks.items() for w, s in course.items()]
    frame = pd.DataFrame(rows)
    if items:  # WAI-SR items: bond items 3,5,7,9 = 2, all others 4
        for n in range(1, 13):
            frame[f"item_{n}"] = np.where(frame["instrument"].eq("WAI-SR"), 2.0 if n in (3, 5, 7, 9) else 4.0, np.nan)
    return frame


COURSE = {"WAI-SR": {1: 44, 2: 46, 3: 47, 5: 47, 6: 34}, "SPIN": {1: 40, 2: 38, 3: 37, 5: 36, 6: 39},
          "WAI-P": {1: 40, 2: 41, 3: 41, 5: 42, 6: 42}}
FLAGS = pd.DataFrame({"patient_id": ["P1"], "instrument": ["WAI-SR"], "week": [6], "kind": ["rupture"],
                      "severity": ["high"], "status": ["unrepaired"],
                      "explanation": ["Therapist alliance fell from 47 to 34 (13 points)."],
                      "note": ["Asked how the work feels"]})


def test_alliance_first_then_symptoms_each_on_its_own_scale() -> None:
    fig = build_patient_figure(scores(COURSE))
    assert instrument_order(["SPIN", "WAI-P", "WAI-SR", "ZZZ"]) == ["WAI-SR", "WAI-P", "SPIN", "ZZZ"]
    titles = [fig.layout[f"yaxis{'' if i == 1 else i}"].title.text for i in (1, 2, 3)]
    assert titles == ["WAI-SR<br>12–60, higher = better", "WAI-P<br>12–60, higher = better",
                      "SPIN<br>0–68, higher = worse"]
    assert list(fig.layout.yaxis.range) == [11.5, 60.5] and list(fig.layout.yaxis3.range) == [-0.5, 68.5]
    assert fig.layout.xaxis3.title.text == "Treatment week"


def test_missing_weeks_are_gaps_and_marked() -> None:
    fig = build_patient_figure(scores(COURSE))
    line = next(t for t in fig.data if t.name == "WAI-SR")
    assert list(line.x) == [1, 2, 3, 4, 5, 6] and np.isnan(line.y[3]) and line.connectgaps is False
    ticks = [t for t in fig.data if t.name == "no questionnaire"]
    assert len(ticks) == 3 and all(list(t.x) == [4] for t in ticks)


def test_running_average_uses_only_earlier_weeks_and_full_uses_all() -> None:
    running = build_patient_figure(scores(COURSE), instruments_shown=["WAI-SR"])
    centre = next(t for t in running.data if t.legendgroup == "average-running")
    assert np.isnan(centre.y[0]) and centre.y[2] == pytest.approx(45.0)  # week 3: mean of weeks 1-2
    assert centre.y[5] == pytest.approx(np.mean([44, 46, 47, 47]))  # week 6 compares with weeks before
    full = build_patient_figure(scores(COURSE), instruments_shown=["WAI-SR"], average="full")
    centre = next(t for t in full.data if t.legendgroup == "average-full")
    assert centre.y[0] == pytest.approx(np.mean([44, 46, 47, 47, 34]))
    with pytest.raises(ValueError, match="average must be"):
        build_patient_figure(scores(COURSE), average="median")


def test_the_expected_course_is_drawn_where_the_rules_have_one() -> None:
    from dataclasses import replace

    from core.flags import DEFAULT_CONFIG, expected_courses

    data = scores({**COURSE, "SPIN": dict(enumerate([44, 44, 45, 44, 45, 44], start=1))})
    expected = expected_courses(data, config=replace(DEFAULT_CONFIG, rc_params=(("SPIN", 10.0, None),)))
    assert set(expected["what"]) == {"alliance", "symptom"}
    fig = build_patient_figure(data, expected=expected)
    alliance = next(t for t in fig.data if t.legendgroup == "average-alliance")
    week6 = expected[(expected["instrument"] == "WAI-SR") & (expected["week"] == 6)].iloc[0]
    assert alliance.y[5] == pytest.approx(week6["expected"])  # the line is what below_expected compared with
    assert "expected for this patient" in alliance.name
    symptom = next(t for t in fig.data if t.legendgroup == "average-symptom")
    assert "the usual range" in symptom.name
    assert symptom.y[0] == pytest.approx(44.0)  # week 1: the intake itself
    # without an expectation (or on "whole course") the running average stays
    plain = build_patient_figure(data, expected=expected, average="full")
    assert not any(t.legendgroup in ("average-alliance", "average-symptom") for t in plain.data)


def test_flagged_weeks_are_marked_with_the_explanation_status_and_note_on_hover() -> None:
    fig = build_patient_figure(scores(COURSE), flags=FLAGS)
    marker = next(t for t in fig.data if t.name == "flag: rupture")
    assert list(marker.x) == [6] and list(marker.y) == [34]
    hover = marker.customdata[0][0].replace("<br>", " ")
    assert "Rupture (not repaired)" in hover and "fell from 47 to 34" in hover and "Asked how the work feels" in hover
    assert marker.marker.color[0] == OKABE_ITO["vermillion"]


def test_instruments_shown_and_panel_height() -> None:
    fig = build_patient_figure(scores(COURSE), instruments_shown=["WAI-SR", "SPIN"], panel_height=150)
    assert {t.name for t in fig.data if t.mode == "lines+markers"} == {"WAI-SR", "SPIN"}
    assert fig.layout.height == 2 * 150 + 80


def test_no_scores_gives_an_empty_panel_not_an_error() -> None:
    fig = build_patient_figure(scores(COURSE).iloc[0:0])
    assert fig.layout.annotations[0].text == "No scores yet"


def test_subscales_bond_goal_task_on_their_scale() -> None:
    fig = build_subscale_figure(scores(COURSE, items=True))
    assert [t.name for t in fig.data] == ["Task", "Bond", "Goal"] or sorted(t.name for t in fig.data) == [
        "Bond", "Goal", "Task"]
    bond = next(t for t in fig.data if t.name == "Bond")
    assert list(bond.x) == [1, 2, 3, 4, 5, 6] and bond.y[0] == 8 and np.isnan(bond.y[3])
    assert list(fig.layout.yaxis.range) == [3.5, 20.5]
    assert fig.layout.yaxis.title.text.startswith("WAI-SR subscale (4–20, 4 items each")


def test_subscales_without_items_say_so() -> None:
    fig = build_subscale_figure(scores({"SPIN": {1: 3}}))
    assert "No WAI-SR subscales" in fig.layout.title.text


def test_the_score_point_under_a_flag_marker_carries_the_reason() -> None:
    # issue 15: hovering exactly on a flag marker showed only the score (the score's own point won
    # the hover); the reason appeared 4-6 px off. Now the score's point says it too.
    fig = build_patient_figure(scores(COURSE), flags=FLAGS)
    line = next(t for t in fig.data if t.name == "WAI-SR")
    reasons = dict(zip(line.x, (c[0] for c in line.customdata), strict=True))
    assert "Therapist alliance fell from 47 to<br>34" in reasons[6] and "Rupture (not repaired)" in reasons[6]
    assert reasons[5] == "" and "%{customdata[0]}" in line.hovertemplate
    marker = next(t for t in fig.data if t.name == "flag: rupture")
    assert "WAI-SR 34" in marker.hovertemplate.replace("%{customdata[1]}", "34")
    assert marker.customdata[0][1] == "34"


def test_a_week_range_shows_the_latest_weeks_of_a_long_course() -> None:
    long = scores({"WAI-SR": {w: 40 + w % 3 for w in range(1, 31)}})
    fig = build_patient_figure(long, last_weeks=12)
    assert list(fig.layout.xaxis.range) == [18.5, 30.5]
    assert fig.layout.xaxis.range is not None and build_patient_figure(long).layout.xaxis.range is None
    short = build_patient_figure(scores(COURSE), last_weeks=12)  # shorter than the range: the whole course
    assert list(short.layout.xaxis.range) == [0.5, 6.5]
    with pytest.raises(ValueError, match="at least 1 week"):
        build_patient_figure(long, last_weeks=0)


def test_short_courses_label_every_week_long_ones_take_plotlys_integer_steps() -> None:
    short = build_patient_figure(scores(COURSE))
    assert short.layout.xaxis3.dtick == 1  # the bottom panel carries the week axis
    long = scores({"WAI-SR": {w: 40 + w % 3 for w in range(1, 53)}, "SPIN": {w: 30 for w in range(1, 53)}})
    whole = build_patient_figure(long)
    assert whole.layout.xaxis2.dtick is None and whole.layout.xaxis2.tickformat == "d"
    assert build_patient_figure(long, last_weeks=12).layout.xaxis2.dtick == 1  # 12 weeks shown: every week


def test_the_figure_spec_grid_is_make_subplots_own() -> None:
    from plotly.subplots import make_subplots

    from core.figures import FigureSpec

    spec = FigureSpec(rows=3, cols=2, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=["a", "b", "c"])
    spec.add({"x": [1, 2], "y": [3, 4], "name": "one"}, row=3, col=2)
    spec.axis("y", {"range": [0, 10], "title": {"text": "Y"}}, row=3, col=2)
    spec.axis("x", {"showgrid": False})
    ours = spec.figure(height=300, template="plotly_white")
    theirs = make_subplots(rows=3, cols=2, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=["a", "b", "c"])
    theirs.add_scatter(x=[1, 2], y=[3, 4], name="one", row=3, col=2)
    theirs.update_yaxes(range=[0, 10], title_text="Y", row=3, col=2)
    theirs.update_xaxes(showgrid=False)
    theirs.update_layout(height=300, template="plotly_white")
    assert ours.data[0].xaxis == theirs.data[0].xaxis == "x6" and ours.data[0].yaxis == "y6"
    mine, other = ours.to_plotly_json()["layout"], theirs.to_plotly_json()["layout"]
    assert mine.pop("template")["layout"] == other.pop("template")["layout"]  # the look; trace defaults trimmed
    assert mine == other
