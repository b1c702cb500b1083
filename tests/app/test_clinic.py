"""AppTest of the clinic meeting page (/clinic): roles, meeting mode, and the numbers of analyze."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from core.meeting import SUPPRESSED
from manage import app as cli
from tests.app.conftest import main_text


def _all_text(at) -> str:  # type: ignore[no-untyped-def]
    """Every text, table cell and metric of a run."""
    parts = [main_text(at)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [df.value.to_string() for df in at.dataframe]
    return "\n".join(parts)


def _array(values):  # type: ignore[no-untyped-def]
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata"}`` (base64)."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return values


def _run(at, *, meeting: bool = False):  # type: ignore[no-untyped-def]
    at.switch_page("pages/clinic.py")
    at.run()
    if meeting:
        next(t for t in at.toggle if t.label == "Meeting mode").set_value(True).run()
    assert not at.exception, at.exception
    return at


def test_a_therapist_cannot_reach_the_clinic_page(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna")
    at.switch_page("pages/clinic.py")
    at.run()
    assert "This page is not part of your role" in main_text(at)
    assert not at.dataframe and not at.metric
    direct = app_as("therapist.anna", script="pages/clinic.py").run()
    assert "This page is not part of your role" in main_text(direct)
    assert not direct.dataframe


def test_the_supervisor_gets_team_north_only(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("supervisor.sara"))
    assert [o for o in at.selectbox[0].options] == ["Team North"]
    assert next(m for m in at.metric if m.label == "Patients").value == "36"
    by_therapist = next(df.value for df in at.dataframe if "alerts" in df.value.columns)
    assert set(by_therapist["therapist_id"]) == {"therapist.anna", "therapist.ben", "therapist.carla"}


def test_the_clinic_numbers_equal_analyze(app_as, demo_db: str) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["analyze", "--db", demo_db, "--format", "json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(result.output)
    at = _run(app_as("admin"))  # the admin's default scope is the whole clinic, as analyze
    table = next(df.value for df in at.dataframe if "Estimate" in df.value.columns)
    assert len(table) == 6 + 3  # the three CONTRACT models, then the sensitivity model
    models = {**expected["models"], **expected["sensitivity"]}
    assert table["Model"].tolist()[6:] == ["detrended"] * 3
    for row in table.to_dict("records"):
        term = models[row["Model"]]["terms"][row["Term"]]
        assert row["Estimate"] == f"{term['estimate']:.3f}"
        assert row["SE"] == f"{term['se']:.3f}"
        assert row["95% CI"] == f"{term['ci_low']:.3f} to {term['ci_high']:.3f}"
        assert row["p"] == ("<.001" if term["p"] < 0.001 else f"{term['p']:.3f}")
    n_obs = expected["models"]["total"]["n_obs"]
    assert f"{n_obs} week pairs of {expected['n_patients']} patients" in main_text(at)
    # the published values stand beside them
    published = table.set_index(["Model", "Term"])
    assert published.loc[("within", "alliance_within_t"), "Published B"] == "-0.060"
    # the within model's person-mean alliance is ~0 by construction, and says so beside the trial's -0.028
    assert published.loc[("within", "alliance_between"), "Published B"] == "-0.028"
    assert published.loc[("within", "alliance_between"), "Note"].startswith("About 0 by construction")
    assert published.loc[("detrended", "alliance_detrended_t"), "Published B"] == ""
    assert "read this one when alliance and symptoms both trend" in \
        published.loc[("detrended", "alliance_detrended_t"), "Note"].lower()
    text = main_text(at)
    assert "What the within-person estimate means" in text
    assert "not a between-person effect" in text
    assert "When alliance and symptoms both trend over the weeks, read the adjusted estimate" in text
    # the demo clinic's alliance rises and its SPIN falls: the reading says to read the adjusted estimate
    adjusted = models["detrended"]["terms"]["alliance_detrended_t"]["estimate"]
    assert f"{abs(adjusted):.3f} points lower" in text and "so read the adjusted one" in text
    assert "points off the patient's own course" in text
    assert "matches" not in text.lower() and "with a caveat" in text


def test_meeting_mode_hides_codes_names_and_small_counts(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("supervisor.sara"), meeting=True)
    text = _all_text(at)
    assert not re.search(r"P\d{5}", text)
    for name in ("anna", "ben", "carla", "Anna", "Ben", "Carla"):
        assert name not in text
    assert SUPPRESSED in text
    # no displayed count from 1 to 10 in the count tables
    by_therapist = next(df.value for df in at.dataframe if "alerts" in df.value.columns)
    cells = by_therapist.drop(columns="therapist_id").to_numpy().ravel().tolist()
    assert all(c == SUPPRESSED or c == "0" or int(c) > 10 for c in cells)
    assert set(by_therapist["therapist_id"]) == {"Therapist A", "Therapist B", "Therapist C", "total"}


def test_meeting_mode_suppresses_counts_not_rates(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: "Rupture rate ≤10" read as "at most 10%": a rate is shown when its denominator
    # (36 patients) is above 10, as a percentage or the bound a hidden count allows
    at = _run(app_as("supervisor.sara"), meeting=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == "36"
    for label in ("Rupture rate", "Repair rate"):
        assert re.fullmatch(r"≤?\d+%|n ≤ 10|–", metrics[label]), (label, metrics[label])
        assert metrics[label] != SUPPRESSED
    assert metrics["Rupture rate"].endswith("%")
    assert re.fullmatch(r"\d+(\.\d+)?|n ≤ 10|–", metrics["Weeks to repair"])


def test_pseudonymised_therapists_in_pseudonym_order_zeros_hidden(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("supervisor.sara"), meeting=True)
    by_therapist = next(df.value for df in at.dataframe if "alerts" in df.value.columns)
    assert by_therapist["therapist_id"].tolist() == ["Therapist A", "Therapist B", "Therapist C", "total"]
    rows = by_therapist[by_therapist["therapist_id"].ne("total")].drop(columns="therapist_id")
    assert not rows.isin(["0"]).any().any()  # a zero tells the room who a pseudonym is
    # no hidden cell is alone in its column under a shown total (it could be worked out)
    for column in rows.columns:
        hidden = rows[column].eq(SUPPRESSED).sum()
        total = by_therapist.loc[by_therapist["therapist_id"].eq("total"), column].iloc[0]
        assert hidden != 1 or total == SUPPRESSED, column


def test_meeting_mode_lasts_across_pages_until_switched_off(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: meeting mode switched itself off when another page was visited
    at = _run(app_as("supervisor.sara"), meeting=True)
    assert "meeting mode on" in main_text(at)
    at.switch_page("pages/caseload.py")
    at.run()
    at.switch_page("pages/clinic.py")
    at.run()
    assert not at.exception
    assert next(t for t in at.toggle if t.label == "Meeting mode").value is True
    assert "Clinic meeting · meeting mode on" in main_text(at)
    assert not re.search(r"P\d{5}|therapist\.", _all_text(at))
    next(t for t in at.toggle if t.label == "Meeting mode").set_value(False).run()
    at.switch_page("pages/caseload.py")
    at.run()
    at.switch_page("pages/clinic.py")
    at.run()
    assert next(t for t in at.toggle if t.label == "Meeting mode").value is False
    assert "meeting mode on" not in main_text(at)


def test_the_alerts_chart_is_not_empty_for_a_small_team_in_meeting_mode(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: for the 36-patient team North every weekly count was from 1 to 10, so every bar was hidden
    at = _run(app_as("supervisor.sara"), meeting=True)
    spec = json.loads(next(c for c in at.get("plotly_chart") if "Alerts per" in c.proto.spec).proto.spec)
    values = [float(v) for trace in spec["data"] for v in _array(trace["y"])]
    assert any(v > 10 for v in values)
    assert all(v == 0 or v > 10 for v in values)  # no small count drawn


def test_the_average_courses_band_is_one_shape_and_small_weeks_say_their_n(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("supervisor.sara"))
    spec = json.loads(next(c for c in at.get("plotly_chart") if "Average courses" in c.proto.spec).proto.spec)
    bands = [t for t in spec["data"] if "±1 SD" in t.get("name", "")]
    assert bands and all(t["fill"] == "toself" for t in bands)
    means = [t for t in spec["data"] if t.get("name", "").endswith("this clinic")]
    assert all("n = %{customdata}" in t["hovertemplate"] for t in means)
    assert any(str(label).startswith("n=") for t in means for label in t["text"])


def test_the_share_on_track_by_week_beside_the_expected_curve(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("admin"))
    spec = json.loads(next(c for c in at.get("plotly_chart") if "On track (SPIN)" in c.proto.spec).proto.spec)
    bars = next(t for t in spec["data"] if t.get("type") == "bar")
    weeks, shares = _array(bars["x"]), _array(bars["y"])
    assert weeks and min(weeks) >= 3 and all(0 <= v <= 100 for v in shares)
    names = {t.get("name") for t in spec["data"]}
    assert {"SPIN: mean of these patients", "SPIN: expected for their starting scores"} <= names
    assert "the share whose course is on track for their starting score" in main_text(at)
    # meeting mode: no week of 1-10 judged patients is drawn
    meeting = _run(app_as("admin"), meeting=True)
    chart = next((c for c in meeting.get("plotly_chart") if "On track (SPIN)" in c.proto.spec), None)
    if chart is not None:
        import numpy as np

        custom = [t for t in json.loads(chart.proto.spec)["data"] if t.get("type") == "bar"][0]["customdata"]
        if isinstance(custom, dict):  # a typed array
            custom = np.array(_array(custom)).reshape([int(v) for v in str(custom["shape"]).split(",")])
        assert all(row[1] > 10 for row in custom), custom


def test_a_meeting_handout_pdf_is_offered(app_as) -> None:  # type: ignore[no-untyped-def]
    import shutil

    at = _run(app_as("supervisor.sara"), meeting=True)
    labels = [b.proto.label for b in at.get("download_button")]
    if shutil.which("chromium"):
        assert "Meeting handout (PDF)" in labels


def test_too_little_data_says_so(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("admin"))
    next(t for t in at.toggle if t.label == "Only patients who started in a period").set_value(True).run()
    import datetime as dt

    at.date_input[0].set_value((dt.date(2026, 10, 1), dt.date(2026, 10, 31))).run()
    assert not at.exception
    assert any("Too little data for the models" in w.value for w in at.warning)
