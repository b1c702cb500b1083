"""Start-up of the command line: ``python manage.py --help`` as a whole process.

    python bench/startup.py [--runs 9]

Prints the median, min and max wall time of ``--runs`` runs (issue 19's target: <= 0.5 s) and
the modules that cost most to import (``python -X importtime``), best first. Not part of the
pass/fail suite; tests/test_cli_startup.py checks that --help loads none of the heavy modules.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", "--help"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    print(f"manage.py --help: median {statistics.median(times):.2f} s, min {min(times):.2f}, max {max(times):.2f} "
          f"({args.runs} runs; target <= 0.5 s)")
    out = subprocess.run([sys.executable, "-X", "importtime", "manage.py", "--help"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    rows = [line.split("|") for line in out.stderr.splitlines() if line.startswith("import time:")]
    top = sorted(((int(r[1]), r[2].rstrip()) for r in rows if r[1].strip().isdigit()), reverse=True)[:8]
    for micros, name in top:
        print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
