"""Issue 18 on the pages: the import preview names a therapist the import will not apply and lists
at most 100 problems; the login form says when attempts must wait; the client address a login
is throttled by; the default server address."""

from __future__ import annotations

import tomllib

import pytest

from core.validation import MAX_REPORTED_ERRORS
from tests.app.conftest import ROOT, main_text, shown
from ui.session import client_address

H = "patient_id,therapist_id,week,instrument,score"


def test_the_preview_says_when_a_row_names_another_therapist(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("admin", script="pages/import.py").run()
    data = f"{H}\nP00001,therapist.ben,60,WAI-SR,40\nP09998,therapist.ben,1,SPIN,20\n".encode()
    at.file_uploader[0].set_value(("moved.csv", data, "text/csv")).run()
    assert not at.exception
    warning, calendar = [shown(w.value) for w in at.warning]  # shown as typed (core.markdown.text)
    # the new patient P09998 comes without dates: no treatment calendar (issue 13); P00001 has one
    assert calendar.startswith("1 patient has no treatment calendar (P09998)")
    assert warning.startswith("1 patient stays on the caseload it is on, not that of the therapist the file names: "
                              "P00001 (row 2: file therapist.ben, stays with therapist.anna).")
    assert [m.value for m in at.metric] == ["2", "0", "0"]


def test_the_preview_and_the_import_refuse_a_therapist_themselves(app_as, demo_db: str) -> None:  # type: ignore[no-untyped-def]
    # issue 14: preview_upload checked no role (the page guard was the only fence)
    from tests.app.conftest import actor_for
    from ui import dataio

    app_as(None)  # points the app at the demo clinic
    anna = actor_for(demo_db, "therapist.anna")
    data = f"{H}\nP00011,therapist.anna,60,WAI-SR,40\n".encode()
    preview = dataio.preview_upload(anna, "mine.csv", data)
    assert preview.n_problems == 1 and preview.rows.empty
    assert preview.errors["problem"].tolist() == ["Only an admin may import scores; ask your clinic's admin."]
    assert dataio.run_upload(anna, "mine.csv", data, replace=False) == (False, dataio.ADMINS_ONLY)
    admin_preview = dataio.preview_upload(actor_for(demo_db, "admin"), "mine.csv", data)
    assert admin_preview.n_problems == 0 and admin_preview.new == 1  # the same file, for an admin


def test_the_preview_lists_the_first_hundred_problems_and_counts_the_rest(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("admin", script="pages/import.py").run()
    data = (H + "\n" + "".join(f"P{i:05d},therapist.anna,0,SPIN,99\n" for i in range(1000))).encode()
    at.file_uploader[0].set_value(("bad.csv", data, "text/csv")).run()
    assert "cannot be imported: 2,000 problems, listed below" in main_text(at)
    assert len(at.dataframe[0].value) == MAX_REPORTED_ERRORS
    assert "… and 1,900 more problems (only the first 100 are listed)" in main_text(at)


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("203.0.113.5", {"X-Real-Ip": "10.0.0.1"}, "203.0.113.5"),  # a remote client's headers are ignored
    (None, {"X-Real-Ip": "198.51.100.7"}, "198.51.100.7"),  # behind the proxy of docs/deploy.md
    (None, {"x-forwarded-for": "1.2.3.4, 198.51.100.8"}, "198.51.100.8"),  # the hop the proxy added
    (None, {"X-Real-Ip": "not an address", "X-Forwarded-For": "2001:DB8::1"}, "2001:db8::1"),
    (None, {}, None), ("fe80::1%eth0", {}, "fe80::1"),
])
def test_the_client_address_a_login_is_throttled_by(peer: str | None, headers: dict[str, str],
                                                    expected: str | None) -> None:
    assert client_address(peer, headers) == expected


def test_the_default_server_listens_on_this_machine_only() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "localhost"


def test_the_preview_warns_of_a_new_account_and_its_new_patients(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: a mistyped therapist (therapist.fridda) showed as plain new rows
    at = app_as("admin", script="pages/import.py").run()
    data = (f"{H}\nP09991,therapist.fridda,1,SPIN,20\nP09992,therapist.fridda,1,SPIN,22\n"
            "P00001,therapist.anna,60,WAI-SR,40\n").encode()
    at.file_uploader[0].set_value(("typo.csv", data, "text/csv")).run()
    assert not at.exception
    warnings = [shown(w.value) for w in at.warning]
    assert warnings[0].startswith("This import will create 1 new therapist account that does not exist yet: "
                                  "therapist.fridda (with 2 new patients: P09991, P09992).")
    assert "If a name is mistyped, correct the file" in warnings[0]
    quiet = app_as("admin", script="pages/import.py").run()  # known therapist, known patient: no such warning
    quiet.file_uploader[0].set_value(("ok.csv", f"{H}\nP00001,therapist.anna,60,WAI-SR,40\n".encode(),
                                      "text/csv")).run()
    assert not any("new therapist account" in shown(w.value) for w in quiet.warning)


def test_a_conflict_shows_the_stored_value_beside_the_files(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("admin", script="pages/import.py").run()
    data = f"{H}\nP00001,therapist.anna,1,WAI-SR,13\nP00001,therapist.anna,60,WAI-SR,40\n".encode()
    at.file_uploader[0].set_value(("conflict.csv", data, "text/csv")).run()
    rows = at.dataframe[0].value
    conflict = rows[rows["change"].str.startswith("conflict")].iloc[0]
    assert conflict["score"] == 13 and conflict["stored_score"] not in (13, None) and conflict["stored_score"] > 0
    assert rows.loc[~rows["change"].str.startswith("conflict"), "stored_score"].isna().all()
    assert "1 row conflicts with scores already stored" in main_text(at)
    assert "stored score beside the file's" in main_text(at)


def test_one_more_problem_is_one_problem() -> None:
    # issue 15: "… and 1 more problems"
    from core.validation import RowError, ValidationResult, more_problems

    errors = tuple(RowError(i + 2, "score", "bad", "row") for i in range(3))
    result = ValidationResult(scores=None, errors=errors, error_count=4)  # type: ignore[arg-type]
    assert more_problems(result) == ("… and 1 more problem (only the first 3 are listed); correct these, then "
                                     "check the file again.")
