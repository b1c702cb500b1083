"""Load scenario: many clinicians browsing their caseloads at once, in real browser sessions.

    python bench/load.py [--db URL] [--users 10] [--rounds 3]

Starts ``streamlit run app.py`` on a free loopback port over the generated 10,000-patient
clinic (bench/common.py), then drives ``--users`` Playwright browser contexts in one Chromium
concurrently (Streamlit talks over a websocket, so each context is a real session). Each
simulated therapist logs in, waits for My patients, opens a patient from the picker and waits
for the chart, ``--rounds`` times. Bounded: fixed users and rounds, loopback only, and every
wait has a timeout. Prints the median and 95th percentile time to a rendered page and the
error count, and the app process's peak memory. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from common import BENCH_PASSWORD, clinic_database, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server

TIMEOUT_MS = 60_000


async def clinician(browser, base: str, name: str, rounds: int, timings: list, errors: list) -> None:  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        began = time.perf_counter()
        await page.goto(base)
        await page.get_by_role("textbox", name="Username").fill(name)
        await page.get_by_role("textbox", name="Password").fill(BENCH_PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("heading", name="My patients").wait_for()
        await page.locator("[data-testid='stDataFrame']").first.wait_for()
        timings.append(("my patients (login + first paint)", time.perf_counter() - began))
        for _ in range(rounds):
            began = time.perf_counter()
            await page.get_by_role("button", name="Open patient").click()  # the most urgent patient
            await page.locator(".js-plotly-plot .main-svg").first.wait_for()
            timings.append(("patient page", time.perf_counter() - began))
            began = time.perf_counter()
            await page.get_by_role("link", name="My patients").click()
            await page.locator(".js-plotly-plot").first.wait_for(state="detached")
            await page.locator("[data-testid='glide-cell-0-0']").first.wait_for(state="attached")
            timings.append(("my patients (again)", time.perf_counter() - began))
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        await context.close()


async def run(base: str, users: int, rounds: int) -> tuple[list, list]:
    from playwright.async_api import async_playwright

    timings: list = []
    errors: list = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        await asyncio.gather(*(clinician(browser, base, f"bench.t{i:04d}", rounds, timings, errors)
                               for i in range(users)))
        await browser.close()
    return timings, errors


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident set size (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench.db")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clinic_database(args.db)
    log = Path("/tmp/alliance-load-streamlit.log")
    proc, base = start_server(args.db, log)
    try:
        began = time.perf_counter()
        timings, errors = asyncio.run(run(base, args.users, args.rounds))
        wall = time.perf_counter() - began
        peak = peak_memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"machine: {machine()}; {args.users} concurrent sessions x {args.rounds} rounds; wall {wall:.1f} s")
    for label in dict.fromkeys(t[0] for t in timings):
        values = sorted(v for k, v in timings if k == label)
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        print(f"{label:34s} n={len(values):3d}  median {statistics.median(values):6.2f} s  p95 {p95:6.2f} s")
    print(f"peak memory of the app process (VmHWM): {peak:.0f} MB  (target < 500 MB)")
    print(f"errors: {len(errors)}")
    for e in errors[:10]:
        print("  " + e)


if __name__ == "__main__":
    main()
