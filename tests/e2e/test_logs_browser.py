"""No health data in a real server's log: the sentinel database of tests/test_logs.py, a browser
session that opens the sentinel patient's page, Streamlit at debug level."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_logs
from tests.test_logs import PASSWORD, PATTERN, SENTINEL_PATIENT

sentinel_db = test_logs.sentinel_db


@pytest.mark.browser
def test_a_real_server_logs_no_health_data(sentinel_db, tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    """A browser session opens the sentinel patient's page; the server's log stays clean."""
    from tests.e2e.conftest import log_in, start_server

    db, _ = sentinel_db
    log = tmp_path / "server.log"
    proc, base = start_server(db, log, env_extra={"STREAMLIT_LOGGER_LEVEL": "debug"})
    try:
        page.goto(f"{base}/patient?patient={SENTINEL_PATIENT}")
        log_in(page, "therapist.zed", PASSWORD)
        page.get_by_role("heading", name=f"Patient {SENTINEL_PATIENT}").wait_for()
        page.locator(".js-plotly-plot .main-svg").first.wait_for()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "debug" in text.lower() or len(text) > 0
    assert not PATTERN.search(text), PATTERN.search(text)
