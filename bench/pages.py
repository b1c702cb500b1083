"""Pages on stored flags in Chromium, 10,000 patients x 52 weeks: first paint and filter reruns.

    python bench/pages.py [--db URL] [--repeat 5]

Builds (once, then reuses) the generated clinic of bench/common.py (10,000 patients x 52 weeks,
WAI-SR and SPIN, 200 therapists of 50 patients each, plus ``bench.admin`` who sees all 10,000),
makes sure every flag is stored (``db.flagstore.ensure_current``), starts ``streamlit run app.py``
on a free loopback port and drives one headless Chromium with Playwright.

Every time is measured inside the page (bench/paint.py): from the user's click or key press
until the page is *painted* (title and main table on screen, Streamlit's script state back to
``notRunning``), polled on every animation frame. Targets (the issue):

* (a) **Caseload, admin** (every alert of 10,000 patients): click on "Caseload" in the menu ->
  painted; "first visit" is the first for this data version (the loader's cache is empty),
  "again" the later ones (cached per user and data version). Target 1.5 s.
* (b) **My patients, therapist** (50 patients): click on "Log in" -> painted (first login of
  the run: cache empty; second login: cached), and click on "My patients" in the menu from another
  page -> painted. Target 1.5 s.
* (c) **Caseload, admin, right after one new weekly score was written**: while the admin's
  "Patients" page is on screen, ``python3 manage.py import-scores`` imports a one-row file (the
  next week of a patient whose course stopped early, a different patient each time); then click
  on "Caseload" -> painted. Target 1.5 s.
* (d) **Filter reruns**: Caseload (admin) severity filter on / cleared; My patients (therapist
  and admin) attention filter on / cleared -> painted with the caption the filter must show.
  Target 0.3 s.

Before anything is timed, ``bench.t0199`` logs in once (untimed), so that the server has
imported its modules as a server that has been running has; "first visit" then means the first
for that user and data version, not the first after the server started.

Also shown (no target): the admin's "Patients" (all 10,000) after login and from the menu.
The server's resident memory (``VmRSS``, and its peak ``VmHWM``) after the admin's pages and
after each write: ``--repeat 10`` gives ten data revisions (issue 19's target: <= 500 MB).
Prints n, median, min and max per row and the 1-minute load average before and after.
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_PASSWORD, clinic_database, machine
from paint import ARM_JS, IDLE_JS, INIT_JS, painted_ms, want

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server  # noqa: E402

TIMEOUT_MS = int(os.environ.get("BENCH_TIMEOUT_MS", "120000"))
THERAPIST = "bench.t0000"
WARM_UP = "bench.t0199"
ADMIN = "bench.admin"

#: Caption regexes ("shown" and "of" as groups 1 and 2).
CASELOAD_CAPTION = r"^(\d+) of (\d+) alerts"
MY_PATIENTS_CAPTION = r"(\d+) of (\d+) patients shown"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def memory_mb(pid: int) -> tuple[float, float]:
    """The server process's resident memory now and its peak (``VmRSS``, ``VmHWM``), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def settle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait (untimed) until Streamlit has been idle for a second."""
    page.wait_for_function(IDLE_JS, arg=1000, polling=100)


def log_in(page, base: str, name: str, title: str) -> float:  # type: ignore[no-untyped-def]
    """Open the login page, fill it in, then time click on "Log in" -> the landing page painted."""
    page.goto(base)
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(BENCH_PASSWORD)
    page.evaluate(ARM_JS)
    page.get_by_role("button", name="Log in").click()
    return painted_ms(page, want(title), TIMEOUT_MS) / 1000


def log_out(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()


def navigate(page, link: str, title: str) -> float:  # type: ignore[no-untyped-def]
    """Click on ``link`` in the menu -> the page titled ``title`` painted."""
    settle(page)
    page.evaluate(ARM_JS)
    page.get_by_role("link", name=link, exact=True).click()
    ms = painted_ms(page, want(title), TIMEOUT_MS)
    settle(page)
    return ms / 1000


def away(page) -> None:  # type: ignore[no-untyped-def]
    """Go to "How flags work" (no table) and wait until it is idle (untimed)."""
    page.get_by_role("link", name="How flags work").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stMain\"] [data-testid=\"stDataFrame\"]')"
                           " && document.querySelector('[data-testid=\"stApp\"]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'", polling="raf")
    settle(page)


def caseload_filter(page) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Caseload: choose the first severity offered (the most urgent), then clear it; each until painted."""
    settle(page)
    box = page.locator("[data-testid='stMultiSelect']").filter(has_text="Severity")
    box.locator("input").click()
    option = page.get_by_role("option").filter(has_not_text="Select all").first
    option.wait_for()
    page.evaluate(ARM_JS)
    option.click()
    on = painted_ms(page, want("Caseload", caption=CASELOAD_CAPTION, fewer=True), TIMEOUT_MS)
    page.keyboard.press("Escape")
    settle(page)
    page.evaluate(ARM_JS)
    box.locator("[aria-label='Clear all']").click()
    off = painted_ms(page, want("Caseload", caption=CASELOAD_CAPTION, all_rows=True), TIMEOUT_MS)
    settle(page)
    return on / 1000, off / 1000


def my_patients_filter(page, title: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """My patients: choose the first attention reason offered, then clear it; each until painted."""
    settle(page)
    page.get_by_role("combobox", name="Show only patients with").click()
    option = page.get_by_role("option").filter(has_not_text="Select all").first
    option.wait_for()
    page.evaluate(ARM_JS)
    option.click()
    on = painted_ms(page, want(title, caption=MY_PATIENTS_CAPTION, fewer=True), TIMEOUT_MS)
    page.keyboard.press("Escape")
    settle(page)
    page.evaluate(ARM_JS)
    page.locator("[data-testid='stMultiSelect'] [aria-label='Clear all']").first.click()
    off = painted_ms(page, want(title, caption=MY_PATIENTS_CAPTION, absent=True), TIMEOUT_MS)
    settle(page)
    return on / 1000, off / 1000


def next_weeks(url: str, n: int) -> list[tuple[str, str, int, dt.date]]:
    """``n`` new weekly scores to write: (patient, therapist, week, date) of patients whose WAI-SR
    course stopped before week 52, the week after their last one (one patient each)."""
    from sqlalchemy import func, select

    from db.engine import make_engine, session_factory
    from db.models import Account, Patient, Score

    engine = make_engine(url)
    with session_factory(engine)() as session:
        last = (select(Score.patient_id, func.max(Score.week).label("w")).where(Score.instrument == "WAI-SR")
                .group_by(Score.patient_id).subquery())
        rows = session.execute(
            select(Patient.code, Account.name, last.c.w, Patient.start_date)
            .join(last, last.c.patient_id == Patient.id).join(Account, Account.id == Patient.therapist_id)
            .where(last.c.w < 40).order_by(Patient.id).limit(n)).all()
    engine.dispose()
    return [(c, t, int(w) + 1, start + dt.timedelta(weeks=int(w))) for c, t, w, start in rows]


def import_one(url: str, row: tuple[str, str, int, dt.date]) -> float:
    """Write one new weekly score through ``manage.py import-scores``; returns its seconds."""
    code, therapist, week, day = row
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("patient_id,therapist_id,week,instrument,score,administered_on\n"
                f"{code},{therapist},{week},WAI-SR,44,{day:%Y-%m-%d}\n")
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "manage.py", "import-scores", f.name, "--db", url], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - began
    os.unlink(f.name)
    if out.returncode != 0 or "1 new" not in out.stdout:
        raise SystemExit(f"import failed: {out.stdout}{out.stderr}")
    return took


TARGETS = {"(a)": 1.5, "(b)": 1.5, "(c)": 1.5, "(d)": 0.3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench-pages.db")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    engine = clinic_database(args.db)
    from db.engine import session_factory
    from db.flagstore import ensure_current, stored_count

    ensure_current(engine)
    with session_factory(engine)() as session:
        stored = stored_count(session)
    engine.dispose()
    writes = next_weeks(args.db, args.repeat)
    proc, base = start_server(args.db, Path("/tmp/alliance-bench-pages-streamlit.log"))
    results: dict[str, list[float]] = {}
    imports: list[float] = []
    memory: list[tuple[str, float, float]] = []
    load_before = loadavg()

    def add(label: str, value: float) -> None:
        results.setdefault(label, []).append(value)

    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def new_page():  # type: ignore[no-untyped-def]
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(INIT_JS)
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                return context, page

            # A server that has been running: its modules imported by a therapist who is not measured.
            context, page = new_page()
            log_in(page, base, WARM_UP, "My patients")
            settle(page)
            context.close()

            # (b) the therapist
            context, page = new_page()
            add("(b) My patients, therapist: login -> painted (first visit)",
                log_in(page, base, THERAPIST, "My patients"))
            for _ in range(args.repeat):
                on, off = my_patients_filter(page, "My patients")
                add("(d) My patients, therapist: filter on", on)
                add("(d) My patients, therapist: filter cleared", off)
                away(page)
                add("(b) My patients, therapist: from the menu (cached)", navigate(page, "My patients", "My patients"))
            for _ in range(max(1, args.repeat // 2)):
                log_out(page)
                add("(b) My patients, therapist: login -> painted (cached)",
                    log_in(page, base, THERAPIST, "My patients"))
            context.close()

            # (a), (c), (d) the admin
            context, page = new_page()
            add("    Patients, admin (10,000): login -> painted (first visit)",
                log_in(page, base, ADMIN, "Patients"))
            settle(page)
            add("(a) Caseload, admin: from the menu (first visit)", navigate(page, "Caseload", "Caseload"))
            for _ in range(args.repeat):
                on, off = caseload_filter(page)
                add("(d) Caseload, admin: severity filter on", on)
                add("(d) Caseload, admin: severity filter cleared", off)
                add("    Patients, admin (10,000): from the menu (cached)", navigate(page, "My patients", "Patients"))
                add("(a) Caseload, admin: from the menu (cached)", navigate(page, "Caseload", "Caseload"))
            navigate(page, "My patients", "Patients")
            for _ in range(args.repeat):
                on, off = my_patients_filter(page, "Patients")
                add("(d) Patients, admin (10,000): filter on", on)
                add("(d) Patients, admin (10,000): filter cleared", off)
            memory.append(("after the admin's pages, before the writes", *memory_mb(proc.pid)))
            for row in writes:
                imports.append(import_one(args.db, row))
                add("(c) Caseload, admin: from the menu right after one new score",
                    navigate(page, "Caseload", "Caseload"))
                add("    Patients, admin (10,000): from the menu after that write",
                    navigate(page, "My patients", "Patients"))
                memory.append((f"after data revision {len(imports)} and the admin's two pages", *memory_mb(proc.pid)))
            context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load_after = loadavg()
    print(f"machine: {machine()}; 10,000 patients x 52 weeks, {stored:,} stored flags "
          f"({args.db.split('@')[-1]}); 1-min load average {load_before} before, {load_after} after")
    print(f"one-row imports through manage.py: median {statistics.median(imports):.2f} s (process start included)")
    for label, rss, peak in memory:
        print(f"server memory {label}: {rss:.0f} MB (peak so far {peak:.0f} MB)")
    if memory:
        peak = max(m[2] for m in memory)
        print(f"server peak memory over {len(imports)} data revisions: {peak:.0f} MB (target <= 500 MB) "
              f"{'PASS' if peak <= 500 else 'MISS'}")
    for label, values in sorted(results.items(), key=lambda kv: kv[0].strip()[:3] + kv[0]):
        target = TARGETS.get(label[:3])
        verdict = "" if target is None else ("PASS" if statistics.median(values) <= target else "MISS")
        print(f"{label:66s} n={len(values):2d}  median {statistics.median(values):5.2f} s  "
              f"min {min(values):5.2f}  max {max(values):5.2f}  {verdict}")


if __name__ == "__main__":
    main()
