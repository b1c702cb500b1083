"""An import killed half-way (SIGKILL, a separate process) leaves the store exactly as before.

The import runs as ``manage.py import-scores`` in a subprocess through tests/db/paused_import.py,
which wraps the score insert: after writing its first 2,000 rows (inside the still-open
transaction) it says so on stderr and sleeps. The test waits for that
line, so the kill lands reliably mid-write, then compares a full dump of the store.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from manage import app
from tests.db.test_import_bad_files import BASELINE, H, dump_store

ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_mid_import_leaves_the_store_as_before(db_url: str, tmp_path: Path) -> None:
    base = tmp_path / "baseline.csv"
    base.write_text(BASELINE, encoding="utf-8")
    assert CliRunner().invoke(app, ["import-scores", str(base), "--db", db_url]).exit_code == 0
    big = tmp_path / "big.csv"
    big.write_text(H + "\n" + "".join(f"Q{p:05d},ther.k,{w},SPIN,{(p + w) % 69}\n"
                                      for p in range(600) for w in range(1, 51)), encoding="utf-8")
    before = dump_store(db_url)

    env = {**os.environ, "ALLIANCE_IMPORT_BATCH_ROWS": "2000"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "db" / "paused_import.py"), "import-scores", str(big),
                             "--db", db_url],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()  # type: ignore[union-attr]
                if "paused after the first batch" in line or not line:
                    break
        assert "paused after the first batch (2000 rows written" in line, line or proc.poll()
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # PostgreSQL rolls the dead connection's transaction back; give the server a moment.
    for _ in range(50):
        after = dump_store(db_url)
        if after == before:
            break
        time.sleep(0.2)
    assert after == before  # the whole store, the flags table and per-patient facts included
    check = CliRunner().invoke(app, ["refresh-flags", "--check", "--db", db_url])
    assert check.exit_code == 0, check.output
    # The store is usable afterwards: the same import, unpaused, goes through completely.
    done = CliRunner().invoke(app, ["import-scores", str(big), "--db", db_url])
    assert done.exit_code == 0, done.output
    assert "30000 new" in done.stdout
    check = CliRunner().invoke(app, ["refresh-flags", "--check", "--db", db_url])
    assert check.exit_code == 0, check.output
    verify = CliRunner().invoke(app, ["audit", "--verify", "--db", db_url])
    assert verify.exit_code == 0, verify.output
