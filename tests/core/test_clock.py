"""core.clock: the clinic's day, fixed by ALLIANCE_TODAY or the server's date."""

from __future__ import annotations

import datetime as dt

import pytest

from core import clock
from sample_data.generate import DEMO_TODAY


def test_alliance_today_fixes_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.TODAY_ENV, "2026-03-02")
    assert clock.today() == dt.date(2026, 3, 2)


def test_without_it_the_day_is_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.TODAY_ENV, " ")
    assert clock.today() == dt.date.today()
    monkeypatch.delenv(clock.TODAY_ENV)
    assert clock.today() == dt.date.today()


def test_a_value_that_is_not_a_date_says_how_to_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.TODAY_ENV, "23/11/2026")
    with pytest.raises(ValueError, match=r"ALLIANCE_TODAY='23/11/2026' is not a date; write it YYYY-MM-DD"):
        clock.today()


def test_the_tests_run_on_the_demo_clinics_day() -> None:
    # tests/conftest.py fixes the day so that the demo's repair windows and missed weeks hold still
    assert clock.today() == DEMO_TODAY
