"""``python tests/db/paused_import.py ARGS…``: ``manage.py ARGS…`` with an import that pauses
mid-write, for tests/db/test_import_kill.py.

The pause is injected here, not in db/writes.py (no test hook in production code): the score
insert (``db.writes._insert_new``) is wrapped so that it writes its first ``PAUSE_AFTER`` rows,
says so on stderr and sleeps with the transaction still open; the test kills the process then.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAUSE_AFTER = 2000
PAUSE_SECONDS = 120

sys.path.insert(0, str(ROOT))
from db import writes  # noqa: E402 - after the path

_insert_new = writes._insert_new


def _paused(session, new, patient_ids, **kwargs) -> None:  # type: ignore[no-untyped-def]
    _insert_new(session, new.iloc[:PAUSE_AFTER], patient_ids, **kwargs)
    print(f"import: paused after the first batch ({min(PAUSE_AFTER, len(new))} rows written, not committed)",
          file=sys.stderr, flush=True)
    time.sleep(PAUSE_SECONDS)
    _insert_new(session, new.iloc[PAUSE_AFTER:], patient_ids, **kwargs)


writes._insert_new = _paused
sys.argv = [str(ROOT / "manage.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "manage.py"), run_name="__main__")
