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
