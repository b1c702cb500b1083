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

from core.caseload import NOT_ALERTS
from core.figures import build_patient_figure, instrument_order
from core.repair import describe_card, rupture_cards
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


def report_figure(scores: pd.DataFrame, flags: pd.DataFrame) -> go.Figure:
    """The report's chart: the alliance series and the main symptom measure (at most three panels)."""
    codes = instrument_order(sorted(scores["instrument"].unique().tolist())) if len(scores) else []
    alliance = [c for c in codes if c in ("WAI-SR", "WAI-P")]
    symptoms = [c for c in codes if c not in alliance]
    shown = alliance[:2] + symptoms[:1]
    fig = build_patient_figure(scores, flags=flags[~flags["kind"].isin(NOT_ALERTS)] if len(flags) else flags,
                               instruments_shown=shown, panel_height=150)
    fig.update_layout(legend={"orientation": "h", "y": -0.12, "font": {"size": 10}},
                      margin={"l": 70, "r": 15, "t": 30, "b": 30})
    return fig


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
                         render: Callable[[go.Figure], bytes] | None = None) -> bytes:
    """A one-page A4 PDF: the chart, the rupture cards, the open flags with explanations and notes.

    Parameters
    ----------
    scores, flags
        One patient's scores (core column contract) and flags (``db.flags.read_flags``).
    header
        Patient code, therapist, status, who made the report and when (UTC).
    render
        Turns the figure into PNG bytes (default :func:`render_png`); may raise
        :class:`ChartUnavailable`, in which case the page says so instead of showing the chart.

    Returns
    -------
    bytes
        The PDF.
    """
    render = render or (lambda fig: render_png(fig, width=1000, height=int(fig.layout.height or 530)))
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    bottom = pdf.h - 14
    width = pdf.w - 24

    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(width, 8, _latin1(f"Alliance Monitor - patient {header.patient_code}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    weeks = f"weeks {int(scores['week'].min())}-{int(scores['week'].max())}" if len(scores) else "no scores yet"
    pdf.cell(width, 5, _latin1(f"Therapist: {header.therapist or 'none'} - status: {header.status.replace('_', ' ')}"
                               f" - {weeks} - made by {header.made_by} on "
                               f"{header.made_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)

    if len(scores):
        fig = report_figure(scores, flags)
        try:
            png = render(fig)
        except ChartUnavailable as exc:
            pdf.set_font("Helvetica", "I", 9)
            pdf.multi_cell(width, 4.5, _latin1(str(exc)), new_x="LMARGIN", new_y="NEXT")
        else:
            img_h = width * float(fig.layout.height or 530) / 1000
            pdf.image(png, x=12, y=pdf.get_y(), w=width, h=img_h)
            pdf.set_y(pdf.get_y() + img_h + 1)
        pdf.set_font("Helvetica", "I", 7.5)
        pdf.multi_cell(width, 3.5, _latin1(
            "Solid line: the week's score; dotted line and band: the patient's running average of the weeks "
            "before and +/-1 of their own SD; marked points are flags. Gaps are missing weeks."),
            new_x="LMARGIN", new_y="NEXT")

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
    if len(cards):
        pdf.ln(1)
        paragraph("Ruptures", style="B", size=11, line_h=6)
        for _, card in cards.iterrows():
            text = " ".join(describe_card(card))
            if isinstance(card["note"], str) and card["note"]:
                text += f" Feedback note ({card['note_by']}): {card['note']}"
            if not paragraph(text):
                break
    shown = _open_flags(flags)
    pdf.ln(1)
    paragraph(f"Open and addressed flags ({len(shown)})", style="B", size=11, line_h=6)
    if shown.empty:
        paragraph("No open flags.")
    left = len(shown)
    for row in shown.itertuples(index=False):
        status = "addressed in feedback" if row.status == "addressed" else row.status
        kind = str(row.kind).replace("_", " ")
        text = f"Week {row.week}, {row.instrument}, {kind} ({row.severity}, {status}): {row.explanation}"
        note = getattr(row, "note", None)
        if isinstance(note, str) and note:
            text += f" Note by {getattr(row, 'note_by', '')}: {note}"
        if not fits(2, 4.0) or not paragraph(text, size=8):
            break
        left -= 1
    if left:
        pdf.set_y(min(pdf.get_y(), bottom - 4))
        pdf.set_font("Helvetica", "I", 8)
        pdf.cell(width, 4, _latin1(f"... and {left} more flags: see the patient page."), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(pdf.h - 11)
    pdf.set_font("Helvetica", "I", 7)
    pdf.cell(width, 4, _latin1("Confidential: pseudonymised clinical record. Flags support, never replace, "
                               "clinical judgement."), align="C")
    return bytes(pdf.output())


def build_report_html(scores: pd.DataFrame, flags: pd.DataFrame, *, header: ReportHeader) -> bytes:
    """The same report as a self-contained HTML file (interactive chart; no browser needed to make it)."""
    parts = [f"<h1>Alliance Monitor: patient {html.escape(header.patient_code)}</h1>",
             f"<p>Therapist: {html.escape(header.therapist or 'none')}; status: {html.escape(header.status)}; "
             f"made by {html.escape(header.made_by)} on {header.made_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC</p>"]
    if len(scores):
        parts.append(report_figure(scores, flags).to_html(full_html=False, include_plotlyjs=True))
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


def week_by_week(scores: pd.DataFrame, *, items: bool = False) -> pd.DataFrame:
    """One row per week, one column per instrument (scores in the instrument's units).

    With ``items`` the item answers follow, one column per instrument and item
    (``WAI-SR 1`` …). Missing weeks from the first to the last stored week appear as empty rows.
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
    return wide.reset_index()
