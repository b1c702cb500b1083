"""Figures of the caseload scan and the clinic meeting: pure functions returning plotly figures.

Colours are the Okabe-Ito palette of :mod:`core.figures`. None of these figures shows a
patient code unless it is given one: the small multiples take their panel titles from the
caller, who passes pseudonyms in meeting mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import instruments
from core.caseload import KIND_LABELS
from core.figures import INSTRUMENT_COLOURS, OKABE_ITO, _hex_to_rgba
from core.models import PUBLISHED, AnalysisResult, PublishedResults

__all__ = ["KIND_COLOURS", "TERM_TABLE_NOTES", "build_alerts_per_week_figure", "build_courses_figure",
           "build_forest_figure", "build_small_multiples", "forest_rows"]

KIND_COLOURS = {"rupture": OKABE_ITO["vermillion"], "risk_item": "#000000", "deterioration": OKABE_ITO["orange"],
                "low_alliance": OKABE_ITO["blue"], "missed": OKABE_ITO["grey"], "caseness": OKABE_ITO["purple"],
                "not_on_track": OKABE_ITO["yellow"]}
_TERM_LABELS = {
    ("total", "symptom_t"): "total: symptom this week",
    ("total", "alliance_t"): "total: alliance this week",
    ("within", "symptom_within_t"): "within: own symptom deviation",
    ("within", "alliance_within_t"): "within (trial's): alliance off own average",
    ("within", "alliance_between"): "within model: person-mean alliance (≈0 by construction)",
    ("between", "alliance_between"): "between: person-mean alliance",
    ("detrended", "symptom_within_t"): "adjusted for week: own symptom deviation",
    ("detrended", "alliance_detrended_t"): "adjusted for week: alliance off own course",
    ("detrended", "week"): "adjusted for week: treatment week",
}
#: Short notes for the models table (the full sentence is ``core.models.WITHIN_BETWEEN_NOTE``).
TERM_TABLE_NOTES = {
    ("within", "alliance_between"): "About 0 by construction: the outcome is each patient's distance from their own "
                                    "average, so nothing between patients is left to explain. Not a between-person "
                                    "effect, here or in the trial (same specification); see the between model.",
    ("within", "alliance_within_t"): "The trial's specification: keeps each patient's trend over the weeks inside "
                                     "the within part.",
    ("detrended", "alliance_detrended_t"): "Sensitivity model (not in the trial): each patient's own straight-line "
                                           "alliance course taken out, treatment week in the model. Read this one "
                                           "when alliance and symptoms both trend.",
    ("detrended", "symptom_within_t"): "Sensitivity model (not in the trial).",
    ("detrended", "week"): "Average change in next week's symptom score per treatment week, beyond the rest.",
}


def build_alerts_per_week_figure(counts: pd.DataFrame, *, suppressed_marker: str = "≤10",
                                 weeks_per_bar: int = 1) -> go.Figure:
    """Stacked bars of alerts per calendar week (or per ``weeks_per_bar`` weeks) by kind.

    ``counts``: index = week start (dates), one column per kind; ``<NA>`` marks a suppressed
    count (meeting mode), drawn as no bar with ``suppressed_marker`` in the hover text and a
    note under the chart. A ``total`` row or column, if present, is ignored.
    """
    frame = counts.drop(index="total", columns="total", errors="ignore")
    fig = go.Figure()
    any_hidden = False
    for kind in frame.columns:
        values = pd.to_numeric(frame[kind], errors="coerce").astype("float64")
        hidden = values.isna()
        any_hidden |= bool(hidden.any())
        text = np.where(hidden, suppressed_marker, values.fillna(0).astype(int).astype(str))
        label = KIND_LABELS.get(str(kind), str(kind).replace("_", " "))
        fig.add_trace(go.Bar(x=[str(i) for i in frame.index], y=values.fillna(0), name=label,
                             marker_color=KIND_COLOURS.get(str(kind), OKABE_ITO["sky"]), customdata=text,
                             hovertemplate=("Week of" if weeks_per_bar == 1 else f"{weeks_per_bar} weeks from")
                             + " %{x}: %{customdata}<extra>" + label + "</extra>"))
    # the legend stands to the right of the bars, clear of the axis titles under and beside them
    per = "week" if weeks_per_bar == 1 else f"{weeks_per_bar} weeks"
    by = "every kind together" if list(frame.columns) == ["all alerts"] else "by kind"
    fig.update_layout(barmode="stack", template="plotly_white", height=360, title=f"Alerts per {per}, {by}",
                      xaxis_title="Week starting (Monday)" if weeks_per_bar == 1 else
                      f"{weeks_per_bar} weeks starting (Monday)", yaxis_title="Alerts raised",
                      legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1, "yanchor": "top",
                              "title": {"text": "Kind"}},
                      margin={"l": 60, "r": 20, "t": 60, "b": 50})
    if any_hidden:
        fig.add_annotation(text=f"Counts from 1 to 10 (and counts that would reveal them) are not drawn "
                                f"({suppressed_marker}).", xref="paper", yref="paper", x=0, y=1.08,
                           showarrow=False, font={"size": 11, "color": OKABE_ITO["grey"]}, xanchor="left")
    return fig


def build_courses_figure(courses: pd.DataFrame, *, published: PublishedResults = PUBLISHED,
                         title: str = "Average courses by treatment week", few_n: int = 20) -> go.Figure:
    """One panel per instrument: the clinic's week means with ±1 SD between patients (band)
    and the published trial's week means (dashed), from ``core.meeting.average_courses``.

    Every point's hover gives its number of patients; weeks with fewer than ``few_n`` patients
    say "n=k" above the point, so a mean of few patients is not read like one of many."""
    codes = list(dict.fromkeys(courses["instrument"].astype(str))) if len(courses) else []
    # short panel titles (the full names do not fit above a half-width panel)
    names = [c if c not in instruments.registry() or len(instruments.get(c).name) > 40 else instruments.get(c).name
             for c in codes] if codes else ["No scores"]
    fig = make_subplots(rows=1, cols=max(len(codes), 1), subplot_titles=names, horizontal_spacing=0.08)
    for col, code in enumerate(codes, start=1):
        part = courses[courses["instrument"] == code].sort_values("week")
        colour = INSTRUMENT_COLOURS.get(code, OKABE_ITO["grey"])
        # the band is one closed shape (upper edge forward, lower edge back), so it stays one band
        # around the mean line; weeks without an SD (a single patient) are left out of it
        band = part.dropna(subset=["lo", "hi"])
        fig.add_trace(go.Scatter(x=[*band["week"], *band["week"][::-1]], y=[*band["hi"], *band["lo"][::-1]],
                                 mode="lines", line={"width": 0}, fill="toself", fillcolor=_hex_to_rgba(colour, 0.18),
                                 name=f"{code}: ±1 SD between patients", hoverinfo="skip"), row=1, col=col)
        few = part["n"] < few_n
        fig.add_trace(go.Scatter(x=part["week"], y=part["mean"], mode="lines+markers+text",
                                 line={"color": colour, "width": 2.5}, name=f"{code}: this clinic",
                                 text=np.where(few, "n=" + part["n"].astype(str), ""), textposition="top center",
                                 textfont={"size": 10, "color": OKABE_ITO["grey"]},
                                 customdata=part["n"].to_numpy(),
                                 hovertemplate=f"Week %{{x}}: mean {code} %{{y:.1f}} (n = %{{customdata}} patients)"
                                               "<extra></extra>"), row=1, col=col)
        pub = part.dropna(subset=["published_mean"])
        if len(pub):
            fig.add_trace(go.Scatter(x=pub["week"], y=pub["published_mean"], mode="lines+markers",
                                     line={"color": "black", "dash": "dash", "width": 1.5}, marker={"size": 5},
                                     name=f"{code}: published trial (n = {published.n_patients})",
                                     hovertemplate=f"Week %{{x}}: trial mean {code} %{{y:.2f}}<extra></extra>"),
                          row=1, col=col)
        if code in instruments.registry():
            inst = instruments.get(code)
            direction = "higher = better" if inst.higher_is_better else "higher = worse"
            fig.update_yaxes(title_text=f"{code} ({inst.total_min:g}–{inst.total_max:g}, {direction})",
                             row=1, col=col, title_font={"size": 11})
        fig.update_xaxes(title_text="Treatment week", tickformat="d", row=1, col=col)
    fig.update_layout(template="plotly_white", height=400, title=title, legend={"orientation": "h", "y": -0.2},
                      margin={"l": 60, "r": 20, "t": 70, "b": 40})
    return fig


def build_on_track_figure(table: pd.DataFrame, *, instrument: str = "SPIN", few_n: int = 20) -> go.Figure:
    """Share of patients on track by week (bars, with n) beside the mean score and the mean expected
    for those patients' starting scores (lines), from ``core.meeting.on_track_by_week``."""
    from plotly.subplots import make_subplots as _subplots

    fig = _subplots(specs=[[{"secondary_y": True}]])
    if len(table):
        few = table["n"] < few_n
        fig.add_trace(go.Bar(x=table["week"], y=100 * table["share"], name="% of patients on track",
                             marker={"color": _hex_to_rgba(OKABE_ITO["green"], 0.55)},
                             text=np.where(few, "n=" + table["n"].astype(str), ""), textposition="outside",
                             customdata=np.stack([table["on_track"], table["n"]], axis=-1),
                             hovertemplate="Week %{x}: %{y:.0f}% on track (%{customdata[0]} of %{customdata[1]})"
                                           "<extra></extra>"), secondary_y=False)
        colour = INSTRUMENT_COLOURS.get(instrument, OKABE_ITO["grey"])
        fig.add_trace(go.Scatter(x=table["week"], y=table["observed"], mode="lines+markers",
                                 line={"color": colour, "width": 2.5}, name=f"{instrument}: mean of these patients",
                                 hovertemplate=f"Week %{{x}}: mean {instrument} %{{y:.1f}}<extra></extra>"),
                      secondary_y=True)
        fig.add_trace(go.Scatter(x=table["week"], y=table["expected"], mode="lines",
                                 line={"color": "black", "dash": "dash", "width": 1.5},
                                 name=f"{instrument}: expected for their starting scores",
                                 hovertemplate=f"Week %{{x}}: expected {instrument} %{{y:.1f}}<extra></extra>"),
                      secondary_y=True)
    fig.update_yaxes(title_text="% on track", range=[0, 115], tickvals=[0, 20, 40, 60, 80, 100], secondary_y=False,
                     title_font={"size": 11})
    fig.update_yaxes(title_text=f"{instrument} (higher = worse)", secondary_y=True, title_font={"size": 11},
                     showgrid=False, tickformat=".0f", tickmode="auto", nticks=6)
    fig.update_xaxes(title_text="Treatment week", tickformat="d")
    fig.update_layout(template="plotly_white", height=380, title=f"On track ({instrument}) by treatment week",
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 60, "t": 60, "b": 40},
                      bargap=0.3)
    return fig


def forest_rows(result: AnalysisResult, *, published: PublishedResults = PUBLISHED) -> pd.DataFrame:
    """The clinic's and the published terms side by side, one row per model term.

    The three CONTRACT models, then the sensitivity model adjusted for treatment week
    (``model == "detrended"``, no published values: the trial did not fit it). Columns
    ``model, term, label, estimate, se, ci_low, ci_high, p, published_estimate, published_se,
    published_ci_low, published_ci_high, published_p, note`` (published CIs are
    ``B ± 1.96·SE``; NaN where the trial did not use these instruments; ``note`` from
    :data:`TERM_TABLE_NOTES`, empty elsewhere).
    """
    frame = result.to_frame()
    same = result.symptom == published.symptom and result.alliance == published.alliance
    pub = published.to_frame().rename(columns={"estimate": "published_estimate", "se": "published_se",
                                               "p": "published_p"})
    if not same:
        pub = pub.iloc[0:0]
    out = frame.merge(pub, on=["model", "term"], how="left")
    out["published_ci_low"] = out["published_estimate"] - 1.96 * out["published_se"]
    out["published_ci_high"] = out["published_estimate"] + 1.96 * out["published_se"]
    keys = list(zip(out["model"], out["term"], strict=True))
    out["label"] = [_TERM_LABELS.get((m, t), f"{m}: {t}") for m, t in keys]
    out["note"] = [TERM_TABLE_NOTES.get(k, "") for k in keys]
    cols = ["model", "term", "label", "estimate", "se", "ci_low", "ci_high", "p", "published_estimate",
            "published_se", "published_ci_low", "published_ci_high", "published_p", "note"]
    return out[cols]


def build_forest_figure(result: AnalysisResult, *, published: PublishedResults = PUBLISHED,
                        terms: Sequence[tuple[str, str]] | None = None) -> go.Figure:
    """Forest plot: each alliance term's estimate and 95% CI for this clinic and the trial.

    By default the alliance effects only: total, the within model's (the trial's
    specification) with the model adjusted for treatment week right under it, and between.
    Left out by default: the autoregressive symptom terms (near 0.8–0.9, they would squash
    the scale) and the within model's person-mean alliance, which is about 0 by construction
    (``core.models.WITHIN_BETWEEN_NOTE``) and would look like a between-person effect beside
    the trial's −0.028. Pass ``terms`` as ``(model, term)`` pairs to choose.
    """
    rows = forest_rows(result, published=published)
    chosen = terms or [("total", "alliance_t"), ("within", "alliance_within_t"), ("detrended", "alliance_detrended_t"),
                       ("between", "alliance_between")]
    key = pd.MultiIndex.from_frame(rows[["model", "term"]])
    rows = rows.set_index(key).reindex(pd.MultiIndex.from_tuples(chosen)).dropna(subset=["label"]).iloc[::-1]
    fig = go.Figure()
    fig.add_vline(x=0, line={"color": OKABE_ITO["grey"], "width": 1})
    y = rows["label"].tolist()
    fig.add_trace(go.Scatter(
        x=rows["estimate"], y=y, mode="markers", name="this clinic", marker={"size": 11, "color": OKABE_ITO["blue"]},
        error_x={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["estimate"],
                 "arrayminus": rows["estimate"] - rows["ci_low"], "thickness": 2},
        offsetgroup="clinic", hovertemplate="%{y}: %{x:.3f}<extra>this clinic</extra>"))
    if rows["published_estimate"].notna().any():
        fig.add_trace(go.Scatter(
            x=rows["published_estimate"], y=y, mode="markers", name=f"published trial (n = {published.n_patients})",
            marker={"size": 10, "symbol": "diamond", "color": OKABE_ITO["vermillion"]},
            error_x={"type": "data", "symmetric": False,
                     "array": rows["published_ci_high"] - rows["published_estimate"],
                     "arrayminus": rows["published_estimate"] - rows["published_ci_low"], "thickness": 2},
            offsetgroup="published", hovertemplate="%{y}: %{x:.3f}<extra>published</extra>"))
    fig.update_layout(template="plotly_white", height=120 + 60 * len(y), scattermode="group",
                      title=f"Alliance terms with 95% CIs ({result.symptom} on {result.alliance})",
                      xaxis_title=f"{result.symptom} points per {result.alliance} point", legend={"orientation": "h",
                                                                                                  "y": -0.3},
                      margin={"l": 290, "r": 20, "t": 50, "b": 40})
    return fig


def build_small_multiples(courses: pd.DataFrame, *, titles: Mapping[int, str] | None = None,
                          flags: pd.DataFrame | None = None, cols: int = 4) -> go.Figure:
    """Small multiples of flagged patients' alliance courses, one panel per patient.

    Parameters
    ----------
    courses : DataFrame
        ``core.meeting.flagged_courses`` rows (``panel``, ``instrument``, ``week``, ``score``).
    titles : mapping panel → str, optional
        Panel titles; default the panel's ``patient_id``.
    flags : DataFrame, optional
        Rupture/low-alliance flags with ``patient_id``, ``week``, ``instrument`` and ``kind``;
        flagged weeks are marked. Matched to panels through ``courses``' ``patient_id``.
    """
    panels = sorted(int(p) for p in courses["panel"].unique()) if len(courses) else []
    if titles is None:
        titles = dict(zip(courses["panel"].astype(int), courses["patient_id"].astype(str), strict=True))
    n = max(len(panels), 1)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=min(cols, n), shared_yaxes=True, vertical_spacing=0.12 if rows > 1 else 0.1,
                        horizontal_spacing=0.03, subplot_titles=[titles.get(p, "") for p in panels] or ["No flags"])
    shown: set[str] = set()
    for i, p in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        part = courses[courses["panel"] == p]
        for code, series in part.groupby("instrument", sort=True):
            colour = INSTRUMENT_COLOURS.get(str(code), OKABE_ITO["grey"])
            grid = series.set_index("week")["score"].reindex(range(int(series["week"].min()),
                                                                  int(series["week"].max()) + 1))
            fig.add_trace(go.Scatter(x=grid.index, y=grid.to_numpy(), mode="lines+markers", connectgaps=False,
                                     line={"color": colour, "width": 2}, marker={"size": 4}, name=str(code),
                                     legendgroup=str(code), showlegend=str(code) not in shown,
                                     hovertemplate=f"Week %{{x}}: {code} %{{y:.0f}}<extra></extra>"), row=r, col=c)
            shown.add(str(code))
        if flags is not None and len(flags):
            pid = part["patient_id"].iloc[0]
            marks = flags[(flags["patient_id"] == pid) & flags["kind"].isin(["rupture", "low_alliance"])]
            marks = marks[["instrument", "week"]].drop_duplicates().merge(
                part[["instrument", "week", "score"]], on=["instrument", "week"], how="inner")
            if len(marks):
                fig.add_trace(go.Scatter(x=marks["week"], y=marks["score"], mode="markers", name="flagged week",
                                         legendgroup="flag", showlegend="flag" not in shown,
                                         marker={"symbol": "triangle-down", "size": 10,
                                                 "color": OKABE_ITO["vermillion"],
                                                 "line": {"width": 1, "color": "black"}},
                                         hovertemplate="Week %{x}: flagged<extra></extra>"), row=r, col=c)
                shown.add("flag")
    fig.update_xaxes(dtick=2, showgrid=False)
    fig.update_yaxes(range=[11, 61])
    # the legend sits above the first row's panel titles (which stand ~20 px over their panels)
    top, bottom, height = 80, 30, 170 * rows + 120
    fig.update_layout(template="plotly_white", height=height, margin={"l": 40, "r": 10, "t": top, "b": bottom},
                      legend={"orientation": "h", "x": 0, "y": 1 + 32 / (height - top - bottom),
                              "yanchor": "bottom"}, font={"size": 11})
    return fig
