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
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients with a rupture"] == SUPPRESSED  # 3 of 36 in team North
    assert metrics["Rupture rate"] == SUPPRESSED


def test_too_little_data_says_so(app_as) -> None:  # type: ignore[no-untyped-def]
    at = _run(app_as("admin"))
    next(t for t in at.toggle if t.label == "Only patients who started in a period").set_value(True).run()
    import datetime as dt

    at.date_input[0].set_value((dt.date(2026, 10, 1), dt.date(2026, 10, 31))).run()
    assert not at.exception
    assert any("Too little data for the models" in w.value for w in at.warning)
