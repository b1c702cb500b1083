"""The patient chart in Chromium, 10,000 patients x 52 weeks: first paint and "Compare with" reruns.

Builds (once, then reuses) the generated clinic of bench/common.py, starts one app server on it,
logs a therapist in and opens a 52-week patient of theirs (WAI-SR and SPIN). Each time is measured
inside the page (bench/paint.py): from the click until the course chart of the run is laid out
with a trace drawn and its legend shows what the click asked for, with Streamlit's script state
back to ``notRunning``:

* **open**: the patient's page at its address (``/patient?patient=CODE``, a new document: the
  websocket, the script run, plotly.js loaded and the chart laid out) from the navigation's start
  -> chart painted;
* **rerun**: "Compare with" switched Average so far -> Whole course -> Expected -> ..., each click
  until the chart shows the new comparison (target 0.3 s, issue 19). The first round after the
  page opened is the first time each comparison is drawn; later rounds repeat them.

    python bench/chart.py [--db URL] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clinic_database, machine
from paint import ARM_JS, INIT_JS, painted_ms, want

from pages import THERAPIST, TIMEOUT_MS, loadavg, log_in, memory_mb, settle

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server  # noqa: E402

#: The "Compare with" choices in the order clicked, and the legend text each must bring.
SWITCHES = (("Average so far", "average of the weeks before"), ("Whole course", "average of the whole course"),
            ("Expected", "expected for this patient"))


#: In a document just loaded: time zero is its navigation start.
OPENED_JS = "() => { const am = window.__am; am.armed = true; am.t0 = 0; am.ran = true; am.paintedAt = null; }"


def long_patient(url: str) -> str:
    """A patient of :data:`THERAPIST` with the longest course."""
    from sqlalchemy import func, select

    from db.engine import make_engine, session_factory
    from db.models import Account, Patient, Score

    engine = make_engine(url)
    with session_factory(engine)() as session:
        code = session.scalar(
            select(Patient.code).join(Account, Account.id == Patient.therapist_id)
            .join(Score, Score.patient_id == Patient.id)
            .where(Account.name == THERAPIST).group_by(Patient.code)
            .order_by(func.count().desc(), Patient.code).limit(1))
    engine.dispose()
    assert code is not None, f"{THERAPIST} has no patients in {url}"
    return str(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench-pages.db")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--user", default=THERAPIST, help=f"who looks (default {THERAPIST}; bench.admin sees all "
                                                         "10,000 patients in the page's patient picker)")
    args = parser.parse_args()
    clinic_database(args.db).dispose()
    code = long_patient(args.db)
    proc, base = start_server(args.db, Path("/tmp/alliance-bench-chart-streamlit.log"))
    opens: list[float] = []
    reruns: dict[str, list[float]] = {}
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_init_script(INIT_JS)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            log_in(page, base, args.user, "Patients" if args.user == "bench.admin" else "My patients")
            settle(page)
            for attempt in range(args.repeat):
                # time zero is the new document's navigation start (performance.now() == 0)
                page.goto(f"{base}/patient?patient={code}", wait_until="commit")
                page.evaluate(OPENED_JS)
                opens.append(painted_ms(page, want(f"Patient {code}", chart=True), TIMEOUT_MS) / 1000)
                settle(page)
                group = page.get_by_role("radiogroup", name="Compare with")
                for label, legend in SWITCHES:
                    page.evaluate(ARM_JS)
                    group.get_by_role("radio", name=label, exact=True).click()
                    ms = painted_ms(page, want(f"Patient {code}", chart=True, legend=legend), TIMEOUT_MS)
                    reruns.setdefault("first round" if attempt == 0 else "later rounds", []).append(ms / 1000)
                    settle(page)
            rss, peak = memory_mb(proc.pid)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"machine: {machine()}; load average {loadavg()}; patient {code} of {THERAPIST}, seen by {args.user}")
    print(f"open the patient page -> chart painted: first {opens[0]:.2f} s, then median "
          f"{statistics.median(opens[1:] or opens):.2f} s ({', '.join(f'{v:.2f}' for v in opens)})")
    for label, values in reruns.items():
        print(f"'Compare with' rerun, {label}: median {statistics.median(values):.2f} s, max {max(values):.2f} s "
              f"({', '.join(f'{v:.2f}' for v in values)}); target 0.3 s")
    print(f"server RSS {rss:.0f} MB, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
