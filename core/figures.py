"""Figures: pure functions returning ``plotly.graph_objects.Figure``; pages only show them.

Colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies).
"""

from __future__ import annotations

import copy
import functools
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import instruments
from core.centering import running_stats

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "purple": "#CC79A7", "sky": "#56B4E9", "yellow": "#F0E442", "grey": "#666666"}
INSTRUMENT_COLOURS = {"WAI-SR": OKABE_ITO["blue"], "WAI-P": OKABE_ITO["sky"], "SPIN": OKABE_ITO["vermillion"],
                      "PHQ-9": OKABE_ITO["purple"], "GAD-7": OKABE_ITO["orange"]}
FLAG_SYMBOLS = {"rupture": "triangle-down", "low_alliance": "square", "deterioration": "triangle-up",
                "not_on_track": "triangle-up-open", "risk_item": "x", "missed": "circle-open", "caseness": "diamond",
                "improvement": "star"}
_INSTRUMENT_ORDER = ("WAI-SR", "WAI-P", "SPIN", "PHQ-9", "GAD-7")
#: Marker colour of a flag by severity (good news in green).
SEVERITY_COLOURS = {"urgent": OKABE_ITO["vermillion"], "high": OKABE_ITO["vermillion"],
                    "medium": OKABE_ITO["orange"], "low": OKABE_ITO["grey"]}
SUBSCALE_COLOURS = {"bond": OKABE_ITO["vermillion"], "goal": OKABE_ITO["green"], "task": OKABE_ITO["purple"]}
_STATUS_WORDS = {"open": "open", "unrepaired": "not repaired", "repaired": "repaired",
                 "addressed": "addressed in feedback", "back_on_track": "back on track"}


def _wrap(text: pd.Series, width: int = 60) -> pd.Series:
    """Hover text broken into lines of about ``width`` characters (plotly does not wrap)."""
    return text.fillna("").astype(str).map(lambda t: "<br>".join(textwrap.wrap(t, width)) or "")


def _flag_hover(group: pd.DataFrame) -> pd.Series:
    kind = group["kind"].astype(str).str.replace("_", " ").str.capitalize()
    status = group["status"].map(_STATUS_WORDS).fillna(group["status"]).astype(str)
    text = kind + " (" + status + "): " + group["explanation"].fillna("").astype(str)
    if "note" in group.columns:
        note = group["note"].astype(object).where(group["note"].notna(), None)
        text = text + note.map(lambda n: f" Feedback note: {n}" if isinstance(n, str) and n else "")
    return _wrap(text)


def _week_reasons(flags: pd.DataFrame | None, code: str, weeks: pd.Series) -> np.ndarray:
    """Per week of ``weeks``: ``"<br>"`` + the hover text of that week's flags of ``code`` ("" without)."""
    if flags is None or flags.empty:
        return np.full(len(weeks), "", dtype=object)
    own = flags[flags["instrument"].eq(code).fillna(False).astype(bool)]
    if own.empty:
        return np.full(len(weeks), "", dtype=object)
    text = pd.Series(_flag_hover(own).to_numpy(), index=own["week"].astype("int64").to_numpy())
    joined = text.groupby(level=0).agg("<br>".join)
    return ("<br>" + joined.reindex(weeks.astype("int64").to_numpy())).fillna("").to_numpy(dtype=object)


def _hex_to_rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


#: Panel titles of the alliance series (their registry names are too long for a phone).
_PANEL_TITLES = {"WAI-SR": "Therapist alliance (WAI-SR)", "WAI-P": "Alliance with the programme (WAI-P)"}


def panel_title(code: str, *, longest: int = 32) -> str:
    """A panel's title that fits above a phone-wide chart: the instrument's name when short
    enough, else its code with the name's parenthesis ("PHQ-9 (depression)")."""
    if code in _PANEL_TITLES:
        return _PANEL_TITLES[code]
    name = instruments.get(code).name
    if len(name) <= longest:
        return name
    inner = name[name.find("(") + 1:name.rfind(")")] if "(" in name and name.endswith(")") else ""
    return f"{code} ({inner})" if inner else code


@functools.lru_cache(maxsize=64)
def _grid_layout(rows: int, cols: int, shared_xaxes: bool, shared_yaxes: bool, vertical_spacing: float | None,
                 horizontal_spacing: float | None, titles: tuple[str, ...]) -> dict[str, Any]:
    """``make_subplots``' layout for a grid (axes, domains, title annotations), without template."""
    layout = make_subplots(rows=rows, cols=cols, shared_xaxes=shared_xaxes, shared_yaxes=shared_yaxes,
                           vertical_spacing=vertical_spacing, horizontal_spacing=horizontal_spacing,
                           subplot_titles=list(titles) or None).layout.to_plotly_json()
    layout.pop("template", None)
    return layout


@functools.lru_cache(maxsize=8)
def _template(name: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Plotly's template ``name`` with only the trace defaults of ``kinds``: the same look for a
    figure of those traces, a fifth of the size to validate and to send to the browser."""
    import plotly.io as pio

    full = pio.templates[name].to_plotly_json()
    return {"layout": full["layout"], "data": {k: v for k, v in full["data"].items() if k in kinds}}


def _merge(into: dict[str, Any], props: dict[str, Any]) -> None:
    """``props`` merged into ``into``, nested dictionaries key by key (as plotly's ``update``)."""
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class FigureSpec:
    """A figure assembled as plain dictionaries and validated once, by :meth:`figure`.

    ``make_subplots`` followed by ``add_trace(row=, col=)`` and ``update_*axes`` validates every
    property on every call (plotly's graph objects): 0.1-0.3 s for a patient's chart of a dozen
    traces, most of a chart rerun's time on the server (issue 19). The same figure built here
    costs one validation, ~15 ms. The grid's layout is ``make_subplots``' own (cached per shape),
    so axes, domains and panel titles are exactly those of the graph-object way.
    """

    def __init__(self, rows: int = 1, cols: int = 1, *, shared_xaxes: bool = False, shared_yaxes: bool = False,
                 vertical_spacing: float | None = None, horizontal_spacing: float | None = None,
                 subplot_titles: list[str] | tuple[str, ...] = ()) -> None:
        self.cols = cols
        self.layout = copy.deepcopy(_grid_layout(rows, cols, shared_xaxes, shared_yaxes, vertical_spacing,
                                                 horizontal_spacing, tuple(subplot_titles)))
        self.data: list[dict[str, Any]] = []

    def _suffix(self, row: int, col: int) -> str:
        n = (row - 1) * self.cols + col
        return "" if n == 1 else str(n)

    def add(self, trace: dict[str, Any], *, row: int = 1, col: int = 1) -> None:
        """One trace (plotly's trace properties as a dict; a scatter unless it says its ``type``)
        in the panel at ``row``, ``col``."""
        suffix = self._suffix(row, col)
        self.data.append({"type": "scatter", **trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})

    def axis(self, letter: str, props: dict[str, Any], *, row: int | None = None, col: int = 1) -> None:
        """Update the ``letter`` ("x" or "y") axis of one panel, or of every panel without ``row``."""
        if row is not None:
            _merge(self.layout.setdefault(f"{letter}axis{self._suffix(row, col)}", {}), props)
            return
        for key in [k for k in self.layout if k.startswith(f"{letter}axis")]:
            _merge(self.layout[key], copy.deepcopy(props))

    def figure(self, **layout: Any) -> go.Figure:
        """The validated figure, with ``layout`` (nested dictionaries) merged into the grid's."""
        template = layout.pop("template", None)
        _merge(self.layout, layout)
        if isinstance(template, str):
            self.layout["template"] = copy.deepcopy(_template(template, tuple(sorted({t["type"] for t in self.data}))))
        elif template is not None:
            self.layout["template"] = template
        return go.Figure({"data": self.data, "layout": self.layout})


def instrument_order(codes: list[str]) -> list[str]:
    """Alliance first (therapist, program), then symptoms, then any clinic-added instrument."""
    known = [c for c in _INSTRUMENT_ORDER if c in codes]
    return known + sorted(c for c in codes if c not in known)


def _weekly_grid(series: pd.DataFrame) -> pd.DataFrame:
    """One row per week from the first to the last, NaN in missing weeks (so lines break)."""
    weeks = pd.RangeIndex(int(series["week"].min()), int(series["week"].max()) + 1, name="week")
    return series.set_index("week").reindex(weeks).reset_index()


#: What the dotted line and band of a panel show, by the kind of expectation behind them.
EXPECTED_LABELS = {
    "alliance": "expected for this patient, ±1 own SD",
    "symptom": "expected for their start, band: the usual range",
    "running": "average of the weeks before, ±1 own SD",
    "full": "average of the whole course, ±1 own SD",
}


#: Up to this many weeks on the x axis, every week has its tick and label.
EVERY_WEEK_UP_TO = 16


def week_ticks(n_weeks: int) -> dict[str, Any]:
    """The week axis's ticks: every week of a short course; plotly's own integer steps (2, 5, 10)
    on a longer one, which stay readable on a phone and draw in half the time (a tick and grid
    line per week of a 52-week course took half of the chart's 0.2 s in the browser)."""
    return {"dtick": 1} if n_weeks <= EVERY_WEEK_UP_TO else {"tickformat": "d"}


def build_patient_figure(scores: pd.DataFrame, *, flags: pd.DataFrame | None = None,
                         average: str = "running", title: str | None = None,
                         instruments_shown: list[str] | None = None, panel_height: int = 200,
                         last_weeks: int | None = None, expected: pd.DataFrame | None = None) -> go.Figure:
    """The patient's weekly course, one panel per instrument, each on its instrument's scale.

    Parameters
    ----------
    scores
        One patient's scores (core column contract).
    flags
        That patient's flags (``core.flags.compute_flags`` columns); flagged weeks are marked and
        their ``explanation`` is shown on hover.
    average
        ``"running"`` (default): the mean and ±1 SD of the weeks *before* each week (what the
        flags compare with; prospective); ``"full"``: the mean and ±1 SD of the whole course
        (a retrospective look).
    title
        Optional figure title.
    instruments_shown
        Only these instruments (default: all the patient has), alliance first.
    panel_height
        Pixels per panel.
    last_weeks
        Show only the latest ``last_weeks`` weeks (the x axis starts there; the running average
        still uses every week before). ``None``: the whole course.
    expected
        ``core.flags.expected_courses`` of the patient: with ``average="running"``, a panel that has
        an expectation draws it (alliance: the patient's own level plus the clinic's course, ±1
        own SD, which ``below_expected`` compares with; symptoms: the course expected for the
        intake and the corridor where patients who started alike usually are, ``not_on_track``)
        instead of the plain running average. ``None``: the running average everywhere.

    Notes
    -----
    Missing weeks are gaps in the line (never joined across) and get a small grey tick at the
    bottom of their panel ("no questionnaire"). Flag markers are coloured by severity
    (vermillion urgent/high, orange medium, grey low, green for improvement) and say the
    flag's status and, when addressed, the therapist's note on hover.
    """
    if average not in ("running", "full"):
        raise ValueError("average must be 'running' or 'full'.")
    if instruments_shown is not None:
        scores = scores[scores["instrument"].isin(instruments_shown)]
    codes = instrument_order(sorted(scores["instrument"].unique().tolist())) if len(scores) else []
    spec = FigureSpec(rows=max(len(codes), 1), cols=1, shared_xaxes=True, vertical_spacing=0.05,
                      subplot_titles=[panel_title(c) for c in codes] or ["No scores yet"])
    if not codes:
        return spec.figure(height=240, template="plotly_white")
    stats = running_stats(scores)
    legend_kinds: set[str] = set()
    for row, code in enumerate(codes, start=1):
        inst = instruments.get(code)
        colour = INSTRUMENT_COLOURS.get(code, OKABE_ITO["grey"])
        series = stats[stats["instrument"] == code].sort_values("week")
        exp = expected[expected["instrument"] == code] if expected is not None and average == "running" \
            else pd.DataFrame()
        if len(exp):
            on = exp.drop_duplicates("week").set_index("week").reindex(series["week"].to_numpy())
            lo_v, hi_v = on["lo"].to_numpy(dtype="float64"), on["hi"].to_numpy(dtype="float64")
            banded = series.assign(centre=on["expected"].to_numpy(dtype="float64"), lo=lo_v, hi=hi_v)
            kind = str(exp["what"].iloc[0])
        elif average == "running":
            banded = series.assign(centre=series["running_mean"], lo=series["running_mean"] - series["running_sd"],
                                   hi=series["running_mean"] + series["running_sd"])
            kind = "running"
        else:
            centre = pd.Series(series["score"].mean(), index=series.index)
            spread = pd.Series(series["score"].std(ddof=1), index=series.index)
            banded = series.assign(centre=centre, lo=centre - spread, hi=centre + spread)
            kind = "full"
        label = EXPECTED_LABELS[kind]
        grid = _weekly_grid(banded)
        weeks = grid["week"].to_numpy()
        spec.add({"x": weeks, "y": grid["hi"].to_numpy(), "mode": "lines", "line": {"width": 0},
                  "hoverinfo": "skip", "showlegend": False, "connectgaps": False}, row=row)
        spec.add({"x": weeks, "y": grid["lo"].to_numpy(), "mode": "lines", "line": {"width": 0},
                  "fill": "tonexty", "fillcolor": _hex_to_rgba(colour, 0.15), "hoverinfo": "skip",
                  "name": f"±1 own SD ({code})", "showlegend": False, "connectgaps": False}, row=row)
        word = "expected" if kind in ("alliance", "symptom") else "average"
        spec.add({"x": weeks, "y": grid["centre"].to_numpy(), "mode": "lines",
                  "line": {"color": colour, "dash": "dot", "width": 1.5},
                  "name": f"dotted: {label}", "legendgroup": f"average-{kind}",
                  "showlegend": kind not in legend_kinds,
                  "customdata": np.stack([grid["lo"], grid["hi"]], axis=-1),
                  "hovertemplate": f"Week %{{x}}: {code} {word} %{{y:.1f}} "
                                   "(band %{customdata[0]:.1f}–%{customdata[1]:.1f})<extra></extra>"}, row=row)
        legend_kinds.add(kind)
        # the flags' reasons ride on the score's own point as well as on their marker, so that the
        # pointer on the marker shows the reason whichever of the two plotly picks
        reasons = _week_reasons(flags, code, grid["week"])
        spec.add({"x": weeks, "y": grid["score"].to_numpy(), "mode": "lines+markers",
                  "line": {"color": colour, "width": 2.5}, "marker": {"size": 7}, "name": code,
                  "connectgaps": False, "customdata": np.stack([reasons], axis=-1),
                  "hovertemplate": f"Week %{{x}}: {code} %{{y:.0f}}%{{customdata[0]}}<extra></extra>"}, row=row)
        missing = grid.loc[grid["score"].isna(), "week"]
        if len(missing):
            spec.add({"x": missing.to_numpy(), "y": np.full(len(missing), inst.total_min), "mode": "markers",
                      "showlegend": False, "name": "no questionnaire",
                      "marker": {"symbol": "line-ns-open", "size": 12, "color": OKABE_ITO["grey"]},
                      "hovertemplate": f"Week %{{x}}: no {code} questionnaire<extra></extra>"}, row=row)
        if flags is not None and len(flags):
            marked = flags[(flags["instrument"] == code)].merge(series[["week", "score"]], on="week",
                                                                 how="left", suffixes=("_flag", ""))
            for kind, group in marked.groupby("kind"):
                y = group["score"].where(group["score"].notna(), inst.total_min)
                colour = (OKABE_ITO["green"] if kind == "improvement"
                          else group["severity"].map(SEVERITY_COLOURS).fillna(OKABE_ITO["vermillion"]).tolist())
                spec.add({
                    "x": group["week"].to_numpy(), "y": y.to_numpy(), "mode": "markers",
                    "name": f"flag: {str(kind).replace('_', ' ')}",
                    "legendgroup": f"flag-{kind}", "showlegend": str(kind) not in legend_kinds,
                    "marker": {"symbol": FLAG_SYMBOLS.get(str(kind), "circle"), "size": 14,
                               "color": colour, "line": {"width": 1.5, "color": "black"}},
                    "customdata": np.stack([_flag_hover(group), group["score"].map(
                        lambda v: f"{v:.0f}" if pd.notna(v) else "no score").to_numpy(dtype=object)], axis=-1),
                    "hovertemplate": f"Week %{{x}}: {code} %{{customdata[1]}}<br>%{{customdata[0]}}<extra></extra>"},
                    row=row)
                legend_kinds.add(str(kind))
        direction = "higher = better" if inst.higher_is_better else "higher = worse"
        spec.axis("y", {"title": {"text": f"{code}<br>{inst.total_min:g}–{inst.total_max:g}, {direction}",
                                  "font": {"size": 11}},
                        "range": [inst.total_min - 0.5, inst.total_max + 0.5]}, row=row)
    first, last = int(scores["week"].min()), int(scores["week"].max())
    if last_weeks is not None:
        if last_weeks < 1:
            raise ValueError("last_weeks must be at least 1 week.")
        first = max(first, last - last_weeks + 1)
        spec.axis("x", {"range": [first - 0.5, last + 0.5]})
    spec.axis("x", {"title": {"text": "Treatment week"}, **week_ticks(last - first + 1)}, row=len(codes))
    return spec.figure(height=panel_height * len(codes) + 80, template="plotly_white", hovermode="closest",
                       margin={"l": 60, "r": 20, "t": 60 if title else 40, "b": 40},
                       title={"text": title} if title else {},
                       # the legend ~70 px under the panels, below the week axis's title, however many panels
                       legend={"orientation": "h", "y": -72 / (panel_height * len(codes))})


def build_subscale_figure(scores: pd.DataFrame, *, instrument: str = "WAI-SR") -> go.Figure:
    """The bond, goal and task subscales of one alliance instrument over the weeks.

    Each subscale is the sum of its items (``core.instruments.subscale_scores``), drawn on its
    own scale (items × item range, e.g. 4–20 for a WAI-SR subscale of four items scored 1–5).
    Weeks without item answers are gaps.
    """
    inst = instruments.get(instrument)
    rows = scores[scores["instrument"] == instrument].sort_values("week")
    fig = go.Figure()
    if rows.empty or not inst.subscales:
        fig.update_layout(height=200, template="plotly_white",
                          title=f"No {instrument} subscales stored for this patient")
        return fig
    subs = instruments.subscale_scores(rows, instrument=instrument).assign(week=rows["week"].to_numpy())
    grid = _weekly_grid(subs)
    sizes = {name: len(numbers) for name, numbers in inst.subscales.items()}
    low = min(sizes.values()) * inst.item_min
    high = max(sizes.values()) * inst.item_max
    for name in inst.subscales:
        colour = SUBSCALE_COLOURS.get(name, OKABE_ITO["grey"])
        fig.add_trace(go.Scatter(x=grid["week"], y=grid[name], mode="lines+markers", name=name.capitalize(),
                                 line={"color": colour, "width": 2.5}, marker={"size": 7}, connectgaps=False,
                                 hovertemplate=f"Week %{{x}}: {name} %{{y:.0f}}<extra></extra>"))
    span = f", {next(iter(sizes.values()))} items each" if len(set(sizes.values())) == 1 else ""
    direction = "higher = better" if inst.higher_is_better else "higher = worse"
    fig.update_yaxes(title_text=f"{instrument} subscale ({low:g}–{high:g}{span}; {direction})",
                     range=[low - 0.5, high + 0.5], title_font={"size": 11})
    fig.update_xaxes(title_text="Treatment week", **week_ticks(int(rows["week"].max()) - int(rows["week"].min()) + 1))
    fig.update_layout(height=300, template="plotly_white", hovermode="x unified",
                      margin={"l": 60, "r": 20, "t": 30, "b": 40}, legend={"orientation": "h", "y": 1.12})
    return fig
