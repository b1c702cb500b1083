"""First paint and rerun time of My patients and the patient page, in Chromium, 10,000 patients stored.

    python bench/pages.py [--db URL] [--repeat 5]

Builds (once, then reuses) the generated clinic of bench/common.py (10,000 patients x 52 weeks,
WAI-SR and SPIN, 200 therapists of 50 patients each, plus ``bench.admin`` who sees all 10,000),
starts ``streamlit run app.py`` on a free loopback port and drives Chromium with Playwright.

Measured (PRODUCT.md targets: first paint < 1.5 s, rerun < 0.3 s):

* **My patients, first paint**: from ``page.goto("/")`` (logged in) until the table's first row is
  in the page; "cold" is the first visit after the server started (flags computed), "warm" the
  following visits (cached per user and data version).
* **My patients, rerun**: choosing a filter until the filtered count is shown.
* **Patient page, first paint**: from ``page.goto("/patient?patient=CODE")`` until the chart is drawn.
* **Patient page, rerun**: flipping "Compare with the whole course's average" until the chart
  shows the new average.
* **Caseload** (admin, every alert of 10,000 patients): from the menu until the alert table is
  there and the page is idle (its chart of flagged patients included); a severity filter rerun.

Each is timed ``--repeat`` times for a therapist (50 patients); My patients also for the admin
(all 10,000 patients). Prints medians. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import BENCH_PASSWORD, clinic_database, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server

TIMEOUT_MS = 120_000
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def log_in(page, base: str, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base)
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(BENCH_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("[data-testid='glide-cell-0-0']").first.wait_for(state="attached")


def time_my_patients(page) -> float:  # type: ignore[no-untyped-def]
    """From clicking "My patients" in the sidebar until the table's first row is there."""
    began = time.perf_counter()
    page.get_by_role("link", name="My patients").click()
    page.locator(".js-plotly-plot").first.wait_for(state="detached")  # the patient page is gone
    page.locator("[data-testid='glide-cell-0-0']").first.wait_for(state="attached")
    page.wait_for_function(IDLE_JS)
    return time.perf_counter() - began


def time_caseload(page) -> tuple[float, float]:
    """Caseload (supervisors and admins): from the menu until the alert table is there, then a
    filter rerun (the first severity offered) until the table is back."""
    began = time.perf_counter()
    page.get_by_role("link", name="Caseload").click()
    page.get_by_role("heading", name="Caseload").wait_for()
    page.locator("[data-testid='glide-cell-0-0']").first.wait_for(state="attached")
    page.wait_for_function(IDLE_JS)
    first = time.perf_counter() - began
    began = time.perf_counter()
    page.locator("[data-testid='stMultiSelect']").filter(has_text="Severity").locator("input").click()
    page.get_by_role("option").first.click()
    page.keyboard.press("Escape")
    page.wait_for_function(IDLE_JS)
    page.locator("[data-testid='glide-cell-0-0']").first.wait_for(state="attached")
    return first, time.perf_counter() - began


def time_filter_reruns(page) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Choosing a filter, then clearing it again: two reruns."""
    box = page.get_by_role("combobox", name="Show only patients with")
    box.click()
    option = page.get_by_role("option").filter(has_not_text="Select all").first
    option.wait_for()
    began = time.perf_counter()
    option.click()
    page.get_by_text("patients shown.").wait_for()
    page.wait_for_function(IDLE_JS)
    chose = time.perf_counter() - began
    page.keyboard.press("Escape")
    began = time.perf_counter()
    page.locator("[data-testid='stMultiSelect'] [aria-label='Clear all']").first.click()
    page.get_by_text("patients shown.").wait_for(state="detached")
    page.wait_for_function(IDLE_JS)
    cleared = time.perf_counter() - began
    return chose, cleared


def time_patient(page) -> float:  # type: ignore[no-untyped-def]
    """From "Open patient" on My patients until the chart is drawn."""
    began = time.perf_counter()
    page.get_by_role("button", name="Open patient").click()
    page.locator(".js-plotly-plot .main-svg").first.wait_for()
    page.wait_for_function(IDLE_JS)
    return time.perf_counter() - began


def time_toggle_rerun(page, *, to_full: bool) -> float:  # type: ignore[no-untyped-def]
    wanted = "average of the whole course" if to_full else "running average of the weeks before"
    began = time.perf_counter()
    page.get_by_text("Compare with the whole course's average").click()
    page.locator(".js-plotly-plot .legendtext", has_text=wanted).first.wait_for()
    page.wait_for_function(IDLE_JS)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench-pages.db")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    clinic_database(args.db)
    proc, base = start_server(args.db, Path("/tmp/alliance-bench-pages-streamlit.log"))
    results: dict[str, list[float]] = {}

    def add(label: str, value: float) -> None:
        results.setdefault(label, []).append(value)

    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for who, label in (("bench.t0000", "therapist (50 patients)"), ("bench.admin", "admin (10,000)")):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                began = time.perf_counter()
                log_in(page, base, who)
                add(f"My patients, {label}: login + cold first paint", time.perf_counter() - began)
                for _ in range(args.repeat):
                    chose, cleared = time_filter_reruns(page)
                    add(f"My patients, {label}: rerun (filter on)", chose)
                    add(f"My patients, {label}: rerun (filter off)", cleared)
                    add(f"Patient page, {label}: first paint", time_patient(page))
                    add(f"Patient page, {label}: rerun (average switch)", time_toggle_rerun(page, to_full=True))
                    add(f"Patient page, {label}: rerun (average switch)", time_toggle_rerun(page, to_full=False))
                    add(f"My patients, {label}: first paint (from the sidebar)", time_my_patients(page))
                if who == "bench.admin":  # the caseload of the whole clinic: the worst case
                    for _ in range(args.repeat):
                        shown, rerun = time_caseload(page)
                        add("Caseload, admin (10,000; every alert): first paint", shown)
                        add("Caseload, admin (10,000; every alert): rerun (filter)", rerun)
                        time_my_patients(page)
                context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"machine: {machine()}; 10,000 patients x 52 weeks stored ({args.db.split('@')[-1]})")
    for label, values in results.items():
        print(f"{label:58s} n={len(values):2d}  median {statistics.median(values):6.2f} s  "
              f"max {max(values):6.2f} s")


if __name__ == "__main__":
    main()
