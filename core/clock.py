"""The clinic's calendar day: the one place the app asks what day it is.

Treatment weeks, repair windows, missed questionnaires and alert ages count from "today"
(``core.caseload.current_weeks``). Normally that is the server's date. ``ALLIANCE_TODAY``
(``YYYY-MM-DD``) sets it instead, for a training or demo clinic shown as it stood on one day
(the demo clinic's day is 2026-11-23, ``sample_data/CATALOG.md``) and for tests, which would
otherwise change their answers as the calendar moves on. The command line's ``--today``
option does the same for one command. Timestamps (audit, sessions, ``raised_at``) always use
the real clock.
"""

from __future__ import annotations

import datetime as dt
import os

#: The environment variable that fixes the clinic's day.
TODAY_ENV = "ALLIANCE_TODAY"


def today() -> dt.date:
    """``ALLIANCE_TODAY`` when set, else the server's date."""
    value = os.environ.get(TODAY_ENV, "").strip()
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{TODAY_ENV}={value!r} is not a date; write it YYYY-MM-DD (e.g. 2026-11-23) "
                         f"or unset it to use the server's date.") from None
