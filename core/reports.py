"""The one-page patient report (PDF) for the record or supervision, and its HTML fallback.

The chart is the patient page's figure (:func:`core.figures.build_patient_figure`), drawn to
PNG by :mod:`core.static_export` (kaleido driving the system's Chromium, bounded in time).
Where no browser is available, or it fails, the PDF still comes out with a sentence in place
of the chart, and :func:`build_report_html` gives the interactive chart as
a self-contained HTML file.

The PDF is A4 portrait and always exactly one page: the text is cut to fit, with a line
saying how many flags did not fit (``tests/core/test_reports.py`` counts the pages).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from fpdf import FPDF

from core import instruments
from core.caseload import NOT_ALERTS
from core.figures import build_patient_figure, build_subscale_figure, instrument_order
from core.repair import describe_card, flag_table, rupture_cards
from core.static_export import ChartUnavailable, render_png

_LATIN1 = str.maketrans({"–": "-", "—": "-", "…": "...", "≥": ">=", "≤": "<=", "’": "'", "‘": "'",
                         "“": '"', "”": '"', "−": "-", "·": "-", "→": "->"})


@dataclass(frozen=True)
class ReportHeader:
    """Who the report is about and who made it (no health data)."""

    patient_code: str
    therapist: str | None
    status: str
    made_by: str
    made_at: dt.datetime


#: The note under the report's chart: against the running average (no expected courses given) ...
CHART_NOTE = ("Solid line: the week's score; dotted line and band: the patient's running average of the weeks "
              "before and +/-1 of their own SD; marked points are flags. Gaps are missing weeks.")
#: ... and against the expected courses (the patient page's default, "Compare with: Expected").
CHART_NOTE_EXPECTED = (
    "Solid line: the week's score. Dotted line and band: for the alliance, what is expected for this patient "
    "(their own level so far plus the clinic's usual course) +/-1 of their own week-to-week SD; for a symptom "
    "scale with an expected course, what is expected for their starting score and the usual range around it; "
    "otherwise the running average of the weeks before +/-1 of their own SD. Marked points are flags. Gaps are "
    "missing weeks.")


def report_figure(scores: pd.DataFrame, flags: pd.DataFrame, expected: pd.DataFrame | None = None) -> go.Figure:
    """The report's chart: every instrument of the patient, one compact panel each, alliance first
    (with ``expected``, ``core.flags.expected_courses``: what the rules expected, as on the page)."""
    fig = build_patient_figure(scores, flags=flags[~flags["kind"].isin(NOT_ALERTS)] if len(flags) else flags,
                               panel_height=REPORT_PANEL_HEIGHT, expected=expected)
    plot_h = float(fig.layout.height) - 40 - 75
    # the legend under the week axis, clear of the panel titles; short axis titles for short panels
    fig.update_layout(legend={"orientation": "h", "y": -34 / plot_h, "yanchor": "top", "x": 0, "font": {"size": 10}},
                      margin={"l": 60, "r": 15, "t": 40, "b": 75}, font={"size": 11},
                      height=float(fig.layout.height) + 35)
    fig.for_each_yaxis(lambda axis: axis.update(title_text=str(axis.title.text or "").split("<br>")[0]))
    return fig


def report_subscale_figure(scores: pd.DataFrame, *, instrument: str = "WAI-SR") -> go.Figure | None:
    """The bond, goal and task subscales for the report (``None`` without item answers)."""
    rows = scores[scores["instrument"] == instrument]
    if rows.empty or instrument not in instruments.registry():
        return None
    items = [f"item_{i}" for i in range(1, instruments.get(instrument).n_items + 1)]
    if not set(items) <= set(rows.columns) or not rows[items].notna().all(axis=1).any():
        return None
    fig = build_subscale_figure(scores, instrument=instrument)
    fig.update_layout(height=REPORT_SUBSCALE_HEIGHT, title={"text": f"Bond, goal and task ({instrument})",
                                                            "font": {"size": 13}, "x": 0.01, "y": 0.97},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0.6},
                      margin={"l": 60, "r": 15, "t": 40, "b": 35}, font={"size": 11})
    low, high = (v + d for v, d in zip(fig.layout.yaxis.range, (0.5, -0.5), strict=True))
    fig.update_yaxes(title_text=f"points ({low:g}-{high:g})")
    return fig


#: Pixels per instrument panel and of the subscale chart in the report (drawn 1000 px wide).
REPORT_PANEL_HEIGHT = 95
REPORT_SUBSCALE_HEIGHT = 190
#: The report's week table shows at most this many of the latest weeks.
REPORT_WEEKS = 16


def _latin1(text: object) -> str:
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _open_flags(flags: pd.DataFrame) -> pd.DataFrame:
    if flags.empty:
        return flags
    keep = ~flags["kind"].isin(NOT_ALERTS) & flags["status"].isin(["open", "unrepaired", "addressed"])
    order = {"urgent": 0, "high": 1, "medium": 2, "low": 3}
    return (flags[keep].assign(_rank=flags["severity"].map(order).fillna(9))
            .sort_values(["_rank", "week"], ascending=[True, False]).drop(columns="_rank"))


def build_patient_report(scores: pd.DataFrame, flags: pd.DataFrame, *, header: ReportHeader,
                         render: Callable[[go.Figure], bytes] | None = None,
                         expected: pd.DataFrame | None = None) -> bytes:
    """A one-page A4 PDF of the patient (see :func:`compose_patient_report`).

    Parameters
    ----------
    scores, flags
        One patient's scores (core column contract, with item answers) and flags
        (``db.flags.read_flags``).
    header
        Patient code, therapist, status, who made the report and when (UTC).
    render
        Turns a figure into PNG bytes (default :func:`render_png`); may raise
        :class:`ChartUnavailable`, in which case the page says so instead of showing the chart.
    expected
        ``core.flags.expected_courses`` of the patient, drawn behind the course as on the page.

    Returns
    -------
    bytes
        The PDF.
    """
    return bytes(compose_patient_report(scores, flags, header=header, render=render, expected=expected).pdf.output())


@dataclass
class ComposedReport:
    """The laid-out report: the PDF object, what it holds and where its content ends."""

    pdf: FPDF
    #: The instruments of the chart, the sections written ("chart", "subscales", "week table",
    #: "ruptures", "flags") and how many flags did not fit.
    instruments: list[str]
    sections: list[str]
    flags_left_out: int
    #: Where the last line of content ends (mm from the top of the page, before the footer).
    content_bottom: float


def compose_patient_report(scores: pd.DataFrame, flags: pd.DataFrame, *, header: ReportHeader,
                           render: Callable[[go.Figure], bytes] | None = None, compress: bool = True,
                           expected: pd.DataFrame | None = None) -> ComposedReport:
    """Lay out the one-page A4 report, top to bottom:

    1. who and when; 2. the course of **every** instrument of the patient (one compact panel
    each, flags marked); 3. the bond/goal/task subscales (when item answers are stored); 4. the
    week table (one row per instrument, the latest :data:`REPORT_WEEKS` weeks, "-" for a
    missing week); 5. the rupture cards (the repair state and, apart, whether it was addressed
    in feedback); 6. the open and addressed flags with their explanation, cut to fit with a line
    saying how many more there are. ``compress=False`` leaves the text readable in the bytes
    (for tests).
    """
    render = render or (lambda fig: render_png(fig, width=1000, height=int(fig.layout.height or 530)))
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    bottom = pdf.h - 14
    width = pdf.w - 24
    sections: list[str] = []

    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(width, 8, _latin1(f"Alliance Monitor - patient {header.patient_code}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    weeks = f"weeks {int(scores['week'].min())}-{int(scores['week'].max())}" if len(scores) else "no scores yet"
    pdf.cell(width, 5, _latin1(f"Therapist: {header.therapist or 'none'} - status: {header.status.replace('_', ' ')}"
                               f" - {weeks} - made by {header.made_by} on "
                               f"{header.made_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    codes = instrument_order(sorted(scores["instrument"].unique().tolist())) if len(scores) else []

    def image(fig: go.Figure, name: str) -> bool:
        try:
            png = render(fig)
        except ChartUnavailable as exc:
            if name == "chart":
                pdf.set_font("Helvetica", "I", 9)
                pdf.multi_cell(width, 4.5, _latin1(str(exc)), new_x="LMARGIN", new_y="NEXT")
            return False
        img_h = width * float(fig.layout.height or 530) / 1000
        pdf.image(png, x=12, y=pdf.get_y(), w=width, h=img_h)
        pdf.set_y(pdf.get_y() + img_h + 0.5)
        sections.append(name)
        return True

    if len(scores):
        if image(report_figure(scores, flags, expected), "chart"):
            pdf.set_font("Helvetica", "I", 7.5)
            pdf.multi_cell(width, 3.5, _latin1(CHART_NOTE_EXPECTED if expected is not None else CHART_NOTE),
                           new_x="LMARGIN", new_y="NEXT")
        subscales = report_subscale_figure(scores)
        if subscales is not None:
            image(subscales, "subscales")
        _week_table(pdf, scores, codes=codes, width=width)
        sections.append("week table")

    def fits(lines: int, line_h: float) -> bool:
        return pdf.get_y() + lines * line_h <= bottom

    def paragraph(text: str, *, style: str = "", size: float = 8.5, line_h: float = 4.0) -> bool:
        pdf.set_font("Helvetica", style, size)
        lines = pdf.multi_cell(width, line_h, _latin1(text), dry_run=True, output="LINES")
        if not isinstance(lines, list) or not fits(len(lines), line_h):
            return False
        pdf.multi_cell(width, line_h, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        return True

    cards = rupture_cards(flags, last_week=int(scores["week"].max()) if len(scores) else None)
    if len(cards) and fits(3, 5):
        pdf.ln(1)
        paragraph("Ruptures", style="B", size=10.5, line_h=5.5)
        sections.append("ruptures")
        for _, card in cards.iterrows():
            if card["repair_status"] == "repaired":  # collapsed, as on the page
                text = (f"Week {int(card['week'])}, {card['series']}: {card['repair_words']}"
                        + ("; addressed in feedback." if card["addressed"] else "."))
            else:
                text = " ".join(describe_card(card))
                if isinstance(card["note"], str) and card["note"]:
                    text += f" Feedback note ({card['note_by']}): {card['note']}"
            if not paragraph(text, size=8):
                break
    shown = _open_flags(flags)
    left = len(shown)
    if fits(2, 5.5):
        pdf.ln(1)
        paragraph(f"Open and addressed flags ({len(shown)})", style="B", size=10.5, line_h=5.5)
        sections.append("flags")
        if shown.empty:
            paragraph("No open flags.")
        table = flag_table(shown)
        for row in table.itertuples(index=False):
            where = f", {row.instrument}" if row.instrument else ""
            text = f"Week {row.week}{where}, {row.kind_words} ({row.severity}, {row.status_words}): {row.explanation}"
            if row.note:
                text += f" Note by {row.note_by}: {row.note}"
            if not fits(2, 3.8) or not paragraph(text, size=8, line_h=3.8):
                break
            left -= 1
    if left:
        pdf.set_y(min(pdf.get_y(), bottom - 4))
        pdf.set_font("Helvetica", "I", 8)
        pdf.cell(width, 4, _latin1(f"... and {left} more flags: see the patient page."), new_x="LMARGIN", new_y="NEXT")
    content_bottom = pdf.get_y()
    pdf.set_y(pdf.h - 11)
    pdf.set_font("Helvetica", "I", 7)
    pdf.cell(width, 4, _latin1("Confidential: pseudonymised clinical record. Flags support, never replace, "
                               "clinical judgement."), align="C")
    return ComposedReport(pdf=pdf, instruments=codes if "chart" in sections else [], sections=sections,
                          flags_left_out=left, content_bottom=content_bottom)


def _week_table(pdf: FPDF, scores: pd.DataFrame, *, codes: list[str], width: float) -> None:
    """The week table: one row per instrument, one column per week (the latest :data:`REPORT_WEEKS`)."""
    wide = week_by_week(scores).set_index("week")
    wide = wide.iloc[-REPORT_WEEKS:]
    label_w = 22.0
    cell_w = min(12.0, (width - label_w) / max(len(wide), 1))
    pdf.ln(1)
    pdf.set_font("Helvetica", "B", 10.5)
    first, last = int(wide.index.min()), int(wide.index.max())
    title = "Week by week" + (f" (the latest {len(wide)} weeks, {first}-{last})" if len(wide) < len(
        week_by_week(scores)) else "")
    pdf.cell(width, 5.5, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 7.5)
    pdf.set_fill_color(235, 235, 235)
    pdf.cell(label_w, 4, "Week", border=1, fill=True)
    for week in wide.index:
        pdf.cell(cell_w, 4, str(int(week)), border=1, align="C", fill=True)
    pdf.ln(4)
    for code in codes:
        pdf.set_font("Helvetica", "B", 7.5)
        pdf.cell(label_w, 4, _latin1(code), border=1)
        pdf.set_font("Helvetica", "", 7.5)
        for value in wide[code]:
            pdf.cell(cell_w, 4, "-" if pd.isna(value) else f"{value:g}", border=1, align="C")
        pdf.ln(4)


def build_report_html(scores: pd.DataFrame, flags: pd.DataFrame, *, header: ReportHeader,
                      expected: pd.DataFrame | None = None) -> bytes:
    """The same report as a self-contained HTML file (interactive chart; no browser needed to make it)."""
    parts = [f"<h1>Alliance Monitor: patient {html.escape(header.patient_code)}</h1>",
             f"<p>Therapist: {html.escape(header.therapist or 'none')}; status: {html.escape(header.status)}; "
             f"made by {html.escape(header.made_by)} on {header.made_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC</p>"]
    if len(scores):
        parts.append(report_figure(scores, flags, expected).to_html(full_html=False, include_plotlyjs=True))
        subscales = report_subscale_figure(scores)
        if subscales is not None:
            parts.append(subscales.to_html(full_html=False, include_plotlyjs=False))
    for _, card in rupture_cards(flags, last_week=int(scores["week"].max()) if len(scores) else None).iterrows():
        parts.append("<h2>Rupture</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in describe_card(card))
                     + "</ul>")
    shown = _open_flags(flags)
    parts.append(f"<h2>Open and addressed flags ({len(shown)})</h2><ul>")
    for row in shown.itertuples(index=False):
        parts.append(f"<li>Week {row.week}, {html.escape(row.instrument)}, {html.escape(row.kind)} "
                     f"({html.escape(row.status)}): {html.escape(str(row.explanation))}</li>")
    parts.append("</ul>")
    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Patient {html.escape(header.patient_code)}"
            f"</title></head><body style='font-family:sans-serif;max-width:1000px;margin:auto'>{body}</body></html>"
            ).encode()


def count_pdf_pages(data: bytes) -> int:
    """Number of page objects in a PDF (``/Type /Page``, not ``/Pages``)."""
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def week_by_week(scores: pd.DataFrame, *, items: bool = False, newest_first: bool = False) -> pd.DataFrame:
    """One row per week, one column per instrument (scores in the instrument's units).

    With ``items`` the item answers follow, one column per instrument and item
    (``WAI-SR 1`` …). Missing weeks from the first to the last stored week appear as empty rows.
    ``newest_first`` puts the latest week on top (the patient page).
    """
    if scores.empty:
        return pd.DataFrame(columns=["week"])
    codes = instrument_order(sorted(scores["instrument"].unique().tolist()))
    wide = scores.pivot_table(index="week", columns="instrument", values="score", aggfunc="first")[codes]
    weeks = pd.RangeIndex(int(scores["week"].min()), int(scores["week"].max()) + 1, name="week")
    wide = wide.reindex(weeks)
    wide.columns = list(wide.columns)
    if items:
        item_cols = [c for c in scores.columns if c.startswith("item_") and scores[c].notna().any()]
        long = scores.melt(id_vars=["week", "instrument"], value_vars=item_cols, var_name="item").dropna(
            subset=["value"])
        long["column"] = long["instrument"].astype(str) + " " + long["item"].str.removeprefix("item_")
        order = {c: i for i, c in enumerate(codes)}
        long = long.assign(o1=long["instrument"].map(order), o2=long["item"].str.removeprefix("item_").astype(int))
        columns = long.sort_values(["o1", "o2"])["column"].drop_duplicates().tolist()
        items_wide = long.pivot_table(index="week", columns="column", values="value", aggfunc="first")
        wide = wide.join(items_wide.reindex(columns=columns))
    if newest_first:
        wide = wide.iloc[::-1]
    return wide.reset_index()


@dataclass(frozen=True)
class HandoutSection:
    """One part of the meeting handout: a heading, then a figure, a table (display strings) and/or text."""

    heading: str
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None
    text: str = ""


def build_meeting_handout(sections: list[HandoutSection], *, title: str, subtitle: str, made_by: str,
                          made_at: dt.datetime, render: Callable[[go.Figure], bytes] | None = None,
                          compress: bool = True) -> bytes:
    """The clinic page as an A4 handout (PDF, as many pages as it needs).

    The sections come as the page shows them, already suppressed and pseudonymised in meeting
    mode (``core.meeting``): this function only lays out what it is given, so the handout can
    never show more than the screen. A figure that cannot be drawn (no browser) is replaced by a
    sentence saying so.
    """
    render = render or (lambda fig: render_png(fig, width=1000, height=int(fig.layout.height or 450)))
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, margin=14)
    pdf.add_page()
    width = pdf.w - 24
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(width, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(width, 4.5, _latin1(f"{subtitle} Made by {made_by} on {made_at.astimezone(dt.UTC):%Y-%m-%d %H:%M}"
                                       " UTC."), new_x="LMARGIN", new_y="NEXT")
    for section in sections:
        # a heading never stands alone at the foot of a page: what follows it must fit too
        first_h = (width * float(section.figure.layout.height or 450) / 1000 if section.figure is not None else 20.0)
        if pdf.get_y() + 8 + first_h > pdf.h - 14:
            pdf.add_page()
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(width, 6, _latin1(section.heading), new_x="LMARGIN", new_y="NEXT")
        if section.figure is not None:
            try:
                png = render(section.figure)
            except ChartUnavailable as exc:
                pdf.set_font("Helvetica", "I", 8.5)
                pdf.multi_cell(width, 4, _latin1(str(exc)), new_x="LMARGIN", new_y="NEXT")
            else:
                img_h = width * float(section.figure.layout.height or 450) / 1000
                if pdf.get_y() + img_h > pdf.h - 14:
                    pdf.add_page()
                pdf.image(png, x=12, y=pdf.get_y(), w=width, h=img_h)
                pdf.set_y(pdf.get_y() + img_h + 1)
        if section.table is not None and len(section.table.columns):
            _handout_table(pdf, section.table, width=width)
        if section.text:
            pdf.set_font("Helvetica", "", 8.5)
            pdf.multi_cell(width, 4, _latin1(section.text.replace("**", "")), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _handout_table(pdf: FPDF, table: pd.DataFrame, *, width: float) -> None:
    """A table of display strings, columns sized by their longest entry, wrapped to ``width``."""
    cells = table.astype(object).where(table.notna(), "").astype(str)
    header = [str(c) for c in cells.columns]
    pdf.set_font("Helvetica", "", 7.5)
    longest = [max([pdf.get_string_width(_latin1(h)) + 3] + [pdf.get_string_width(_latin1(v)) + 3
                                                            for v in cells[c]]) for h, c in zip(header, cells.columns,
                                                                                                strict=True)]
    scale = min(1.0, width / sum(longest))
    widths = [w * scale for w in longest]
    pdf.set_font("Helvetica", "B", 7.5)
    pdf.set_fill_color(235, 235, 235)
    for h, w in zip(header, widths, strict=True):
        pdf.cell(w, 4.5, _latin1(h), border=1, fill=True)
    pdf.ln(4.5)
    pdf.set_font("Helvetica", "", 7.5)
    for row in cells.itertuples(index=False):
        for v, w in zip(row, widths, strict=True):
            text = _latin1(v)
            while text and pdf.get_string_width(text) > w - 1:
                text = text[:-2] + "."
            pdf.cell(w, 4.5, text, border=1)
        pdf.ln(4.5)


def handout_summary(summary: dict[str, str]) -> pd.DataFrame:
    """The clinic page's five rupture figures (``core.meeting.summary_display``) as a one-row table."""
    names = {"patients": "Patients", "patients_with_rupture": "With a rupture", "rupture_rate": "Rupture rate",
             "repair_rate": "Repair rate", "median_weeks_to_repair": "Weeks to repair (median)"}
    return pd.DataFrame({label: [summary[key]] for key, label in names.items()})


def handout_columns(table: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """``table`` with its columns renamed for a reader (``names``; others kept), as display strings."""
    return table.rename(columns=names).astype("string").fillna("")
