"""The one-page PDF report and its HTML fallback (core/reports.py)."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest

from core import static_export
from core.reports import (
    ReportHeader,
    build_patient_report,
    build_report_html,
    count_pdf_pages,
    week_by_week,
)
from core.static_export import NO_BROWSER_MESSAGE, ChartUnavailable
from tests.core.test_figures import COURSE, scores
from tests.core.test_repair import flag, frame

HEADER = ReportHeader(patient_code="P00001", therapist="Anna", status="active", made_by="therapist.anna",
                      made_at=dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC))


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (100, 53), "white").save(buffer, format="PNG")
    return buffer.getvalue()


TINY_PNG = _png()


def fake_render(fig) -> bytes:  # type: ignore[no-untyped-def]
    return TINY_PNG


def flags_frame(n_more: int = 0) -> pd.DataFrame:
    rows = [flag(6), flag(3, kind="risk_item", status="open", instrument="PHQ-9", severity="urgent",
                         explanation="PHQ-9 item 9 was answered 1 (above 0): ask about risk today.")]
    rows += [flag(1 + i % 6, kind="caseness", status="open", instrument="SPIN", severity="medium",
                  explanation="SPIN is at or past the clinical cut-off of 19 " * 3) for i in range(n_more)]
    return frame(*rows)


def test_the_report_is_a_pdf_of_exactly_one_page() -> None:
    data = build_patient_report(scores(COURSE), flags_frame(), header=HEADER, render=fake_render)
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert count_pdf_pages(data) == 1


def test_many_flags_still_fit_on_one_page() -> None:
    data = build_patient_report(scores(COURSE), flags_frame(n_more=80), header=HEADER, render=fake_render)
    assert count_pdf_pages(data) == 1


def test_without_a_browser_the_pdf_says_so_and_the_html_has_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_browser(fig) -> bytes:  # type: ignore[no-untyped-def]
        raise ChartUnavailable(NO_BROWSER_MESSAGE)

    data = build_patient_report(scores(COURSE), flags_frame(), header=HEADER, render=no_browser)
    assert count_pdf_pages(data) == 1
    monkeypatch.setattr(static_export, "find_browser", lambda: None)
    assert not static_export.chart_available()
    with pytest.raises(ChartUnavailable, match="no Chromium browser was found"):
        static_export.render_png(build_patient_report.__globals__["report_figure"](scores(COURSE), flags_frame()))
    html = build_report_html(scores(COURSE), flags_frame(), header=HEADER).decode()
    assert "<h1>Alliance Monitor: patient P00001</h1>" in html and "plotly" in html.lower()
    assert "What fell: Alliance with the therapist (WAI-SR) in week 6" in html
    assert "PHQ-9 item 9 was answered 1" in html


def test_pages_are_counted_not_the_pages_tree() -> None:
    assert count_pdf_pages(b"<< /Type /Pages /Kids [3 0 R 4 0 R] >> << /Type /Page >> << /Type/Page >>") == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="No Chromium for the static chart export.")
def test_with_chromium_the_chart_is_drawn_into_the_pdf() -> None:
    data = build_patient_report(scores(COURSE), flags_frame(), header=HEADER)
    assert count_pdf_pages(data) == 1
    assert b"/Subtype /Image" in data
    assert len(data) > 20_000


def test_week_by_week_has_a_row_per_week_and_items_on_demand() -> None:
    table = week_by_week(scores(COURSE, items=True))
    assert table.columns.tolist() == ["week", "WAI-SR", "WAI-P", "SPIN"]
    assert table["week"].tolist() == [1, 2, 3, 4, 5, 6] and table.loc[3, ["WAI-SR", "SPIN"]].isna().all()
    wide = week_by_week(scores(COURSE, items=True), items=True)
    assert wide.columns.tolist()[:6] == ["week", "WAI-SR", "WAI-P", "SPIN", "WAI-SR 1", "WAI-SR 2"]
    assert wide["WAI-SR 3"].iloc[0] == 2 and np.isnan(wide["WAI-SR 3"].iloc[3])
    assert week_by_week(scores(COURSE).iloc[0:0]).columns.tolist() == ["week"]


FIVE = {**COURSE, "PHQ-9": {1: 14, 2: 13, 3: 12, 5: 11, 6: 10}, "GAD-7": {1: 12, 2: 11, 3: 11, 5: 9, 6: 9}}


def test_the_report_carries_every_instrument_the_subscales_the_flags_and_the_week_table() -> None:
    # issue 15: the PDF showed WAI-SR, WAI-P and SPIN only; PHQ-9, GAD-7, the subscales and the week
    # table were missing and 40% of the page was blank
    from core.reports import compose_patient_report, report_figure

    data = scores(FIVE, items=True)
    fig = report_figure(data, flags_frame())
    assert {a.text for a in fig.layout.annotations} >= {
        "Therapist alliance (WAI-SR)", "Alliance with the programme (WAI-P)", "Social Phobia Inventory",
        "PHQ-9 (depression)", "Generalized Anxiety Disorder-7"}
    drawn: list = []

    def render(figure):  # type: ignore[no-untyped-def]
        drawn.append(figure)
        return TINY_PNG

    report = compose_patient_report(data, flags_frame(), header=HEADER, render=render, compress=False)
    assert report.instruments == ["WAI-SR", "WAI-P", "SPIN", "PHQ-9", "GAD-7"]
    assert report.sections == ["chart", "subscales", "week table", "ruptures", "flags"]
    assert {t.name for t in drawn[1].data} == {"Bond", "Goal", "Task"}
    raw = bytes(report.pdf.output())
    for text in (b"Week by week", b"(GAD-7)", b"(PHQ-9)", b"ask about risk today"):
        assert text in raw, text
    assert report.content_bottom > 0.6 * report.pdf.h  # the page is used, not 40% blank
    assert count_pdf_pages(raw) == 1


def test_the_report_says_the_repair_state_and_apart_that_it_was_addressed() -> None:
    # issue 15: after "addressed in feedback" the card and PDF said "Repair: addressed in feedback"
    from core.reports import compose_patient_report
    from tests.core.test_repair import flag, frame

    at = pd.Timestamp("2026-11-23 10:00")
    flags = frame(flag(6, status="addressed", computed_status="unrepaired", note="Asked how it feels",
                       note_by="anna", note_at=at))
    raw = bytes(compose_patient_report(scores(COURSE), flags, header=HEADER, render=fake_render,
                                       compress=False).pdf.output())
    assert b"Repair: not repaired" in raw and b"Addressed in feedback by anna on 23 Nov 2026." in raw
    assert b"Repair: addressed" not in raw
    assert b"(high, not repaired - addressed in feedback)" in raw.replace(b"\\(", b"(").replace(b"\\)", b")")


def test_the_meeting_handout_lays_out_what_it_is_given() -> None:
    # issue 15: a handout of the clinic page, with the suppression of the screen (the page passes
    # the already-suppressed tables; the handout adds nothing of its own)
    import plotly.graph_objects as go

    from core.reports import HandoutSection, build_meeting_handout, handout_summary

    summary = {"patients": "36", "patients_with_rupture": "≤10", "rupture_rate": "≤28%", "repair_rate": "n ≤ 10",
               "median_weeks_to_repair": "n ≤ 10"}
    table = pd.DataFrame({"Therapist": ["Therapist A", "Therapist B", "total"], "Open alerts": ["≤10", "≤10", "15"]})
    fig = go.Figure(go.Bar(x=[1, 2], y=[12, 14]))
    fig.update_layout(height=360)
    sections = [HandoutSection("Alerts and ruptures", table=handout_summary(summary), text="Rupture flags: 21."),
                HandoutSection("Alerts per 4 weeks", figure=fig), HandoutSection("By therapist", table=table)]
    raw = build_meeting_handout(sections, title="Clinic meeting (meeting mode)", subtitle="Team North.",
                                made_by="supervisor.sara", made_at=HEADER.made_at, render=fake_render, compress=False)
    assert raw.startswith(b"%PDF-") and count_pdf_pages(raw) >= 1
    raw = raw.replace(b"\\(", b"(").replace(b"\\)", b")")
    for text in (b"Clinic meeting (meeting mode)", b"Therapist A", b"<=28%", b"n <= 10", b"By therapist"):
        assert text in raw, text
    assert b"P0" not in raw and b"therapist." not in raw


def test_the_note_under_the_chart_says_what_the_dotted_line_is() -> None:
    # found looking at the PDF: with the expected courses drawn, the note still said "running average"
    from core.flags import expected_courses
    from core.reports import CHART_NOTE, CHART_NOTE_EXPECTED, compose_patient_report

    data = scores(FIVE)
    plain = bytes(compose_patient_report(data, flags_frame(), header=HEADER, render=fake_render,
                                         compress=False).pdf.output())
    drawn = bytes(compose_patient_report(data, flags_frame(), header=HEADER, render=fake_render, compress=False,
                                         expected=expected_courses(data)).pdf.output())
    assert b"running average of the weeks" in plain and b"expected for this patient" not in plain
    assert b"expected for this patient" in drawn
    assert CHART_NOTE != CHART_NOTE_EXPECTED
