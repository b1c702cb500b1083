"""``manage.py --help`` answers without loading pandas, SQLAlchemy, Alembic or SciPy (issue 19:
start-up of the command line; the time itself is a figure of bench/startup.py, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sqlalchemy", "alembic", "scipy", "numpy", "db.audit", "db.models")


def test_help_loads_none_of_the_heavy_modules() -> None:
    probe = ("import runpy, sys, json\n"
             "sys.argv = ['manage.py', '--help']\n"
             "try:\n"
             "    runpy.run_path('manage.py', run_name='__main__')\n"
             "except SystemExit:\n"
             "    pass\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Usage" in out.stdout and "import-scores" in out.stdout, out.stdout + out.stderr
    loaded = json.loads(out.stderr.strip().splitlines()[-1])
    assert loaded == [], f"manage.py --help imported {loaded}"
