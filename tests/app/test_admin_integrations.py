"""The admin page's "API clients" and "Notifications" tabs, and "My notifications" in the sidebar
(issue 17), in AppTest over a private copy of the demo clinic: a client is created with its token
shown once and stored hashed, listed, and revoked after a confirmation; the alert e-mails' state
says that no mail server is configured; a user chooses a daily digest."""

from __future__ import annotations

import pytest

from db.api_clients import token_hash
from db.models import ApiClient, NotificationSetting
from tests.app import test_security
from tests.app.conftest import actor_for, main_text, shown
from tests.app.test_admin import _last_event, _one, _widget

clinic = test_security.clinic
app_for = test_security.app_for

PAGE = "pages/admin.py"


def test_create_list_and_revoke_an_api_client(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    assert not at.exception, at.exception
    _widget(at.text_input, "Client name").input("platform-x")
    _widget(at.checkbox, "May replace stored scores").check()
    _widget(at.button, "Create client and show its token").click().run()
    assert not at.exception, at.exception
    (code,) = at.code
    token = code.value
    assert token.startswith("amc_") and len(token) > 40
    assert "will not be shown again" in main_text(at)
    row = _one(clinic, ApiClient, ApiClient.name == "platform-x")
    assert row is not None and row.can_replace and row.token_hash == token_hash(token) and token not in row.token_hash
    assert _last_event(clinic, "create_api_client") == {"actor": "admin", "patient_code": None,
                                                        "client": "platform-x", "can_replace": True}
    listed = [df.value for df in at.dataframe if "can_replace" in df.value.columns]
    assert listed and "platform-x" in listed[0]["name"].tolist()
    # shown once: the next run has no token on the page
    at.run()
    assert not at.code and token not in main_text(at)

    # revoking asks for a confirmation first
    _widget(at.selectbox, "Client to revoke").set_value("platform-x").run()
    button = _widget(at.button, "Revoke platform-x")
    assert button.disabled
    confirm = [c for c in at.checkbox if shown(c.label).startswith("Yes, revoke platform-x")]
    confirm[0].check().run()
    _widget(at.button, "Revoke platform-x").click().run()
    assert not at.exception, at.exception
    assert any("Revoked the API client platform-x" in s.value for s in at.success)
    assert _one(clinic, ApiClient, ApiClient.name == "platform-x").revoked_at is not None
    assert _last_event(clinic, "revoke_api_client")["client"] == "platform-x"
    # a refused name says why, and nothing is created
    _widget(at.text_input, "Client name").input("platform-x")
    _widget(at.button, "Create client and show its token").click().run()
    assert any("already an API client named platform-x" in shown(e.value) for e in at.error)
    assert not at.code


def test_the_notifications_tab_says_that_no_mail_server_is_configured_and_lists_undeliverable(
        app_for, clinic: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from manage import app

    for name in ("ALLIANCE_SMTP_HOST", "ALLIANCE_SMTP_FROM"):
        monkeypatch.delenv(name, raising=False)
    # a risk item for a patient of therapist.anna, who has no e-mail address in the demo clinic
    path = tmp_path / "risk.csv"
    path.write_text("patient_id,therapist_id,week,instrument,score," + ",".join(f"item_{i}" for i in range(1, 10))
                    + "\nP09900,therapist.anna,1,PHQ-9,10," + ",".join(["1"] * 8 + ["2"]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import-scores", str(path), "--db", clinic])
    assert result.exit_code == 0, result.output
    at = app_for("admin", script=PAGE).run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("no SMTP server is configured" in w and "ALLIANCE_SMTP_HOST" in w for w in warnings), warnings
    metrics = {m.label: m.value for m in at.metric}
    assert {"Waiting to be sent", "Failed (gave up)", "Undeliverable", "Sent"} <= set(metrics)
    assert int(metrics["Undeliverable"]) >= 1
    stuck = [df.value for df in at.dataframe if "last_error" in df.value.columns][0]
    mine = stuck[stuck["patient_id"] == "P09900"]
    assert set(mine["account"]) == {"therapist.anna", "supervisor.sara"}
    assert set(mine["status"]) == {"undeliverable"} and set(mine["event"]) == {"Risk item"}
    assert mine["last_error"].str.contains("no e-mail address").all()


def test_the_notifications_tab_says_when_the_link_address_is_missing(app_for,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ALLIANCE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ALLIANCE_SMTP_FROM", "monitor@clinic.test")
    monkeypatch.delenv("ALLIANCE_PUBLIC_URL", raising=False)
    at = app_for("admin", script=PAGE).run()
    assert any("ALLIANCE_PUBLIC_URL" in w.value for w in at.warning)
    monkeypatch.setenv("ALLIANCE_PUBLIC_URL", "https://alliance.clinic.test")
    at = app_for("admin", script=PAGE).run()
    assert any("Alert e-mails are configured" in s.value for s in at.success)


def test_a_user_chooses_a_daily_digest_in_the_sidebar(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("therapist.anna", script="pages/my_patients.py").run()
    assert not at.exception, at.exception
    assert [e.label for e in at.sidebar.expander if e.label == "My notifications"] == ["My notifications"]
    control = at.segmented_control(key="notify_mode")
    assert control.value == "immediate"
    assert any("no e-mail address" in shown(str(c.value)) for c in at.sidebar.caption)  # the demo has none
    control.set_value("digest").run()
    assert not at.exception, at.exception
    anna = actor_for(clinic, "therapist.anna")
    row = _one(clinic, NotificationSetting, NotificationSetting.account_id == anna.id)
    assert row is not None and row.mode == "digest"
    assert _last_event(clinic, "set_notifications")["new"] == "digest"
