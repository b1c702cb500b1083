"""Load scenario: clinicians browsing at once in real browser sessions, on one or more app processes.

    python bench/load.py [--db URL] [--servers 2] [--users 10] [--rounds 3]

Builds (once, then reuses) the generated 10,000-patient clinic (bench/common.py) in ``--db`` and
makes sure every flag is stored (``db.flagstore.ensure_current``), then starts ``--servers``
``streamlit run app.py`` processes on free loopback ports over that one database (PostgreSQL for
two or more: docs/deploy.md section 5; SQLite is for one server) with one shared cookie secret,
and drives ``--users`` Playwright browser contexts in one headless Chromium concurrently (each a
real websocket session). Users are split between the processes in turn (user i on process
i mod N), as nginx's sticky routing would spread them. Each simulated therapist (``bench.tNNNN``,
50 patients) logs in and waits for My patients, then ``--rounds`` times opens the most urgent
patient and comes back to My patients from the menu.

Every time is measured inside the page (bench/paint.py): from the click on "Log in", "Open
patient" or the menu link until the page is painted (title, the main table's first row drawn
- on the patient page the course chart - and Streamlit's script state ``notRunning``).

Before the measured users, each process serves one therapist who is not measured
(``bench.t0199``, ``bench.t0198``: login, My patients, a patient page), so that its modules are
imported as on a server that has been running; ``--cold`` leaves that out (the first users then
also wait for the imports, ~36% of the servers' samples in py-spy).

Bounded: fixed users and rounds, loopback only, every wait times out (60 s), and the whole run
is cut off after ``--deadline`` seconds (default 600). Prints the median and 95th percentile
per step, the errors (browser-side failures and tracebacks in the servers' logs), each app
process's peak resident memory (VmHWM) and the 1-minute load average before and after. Not part
of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

from common import BENCH_PASSWORD, clinic_database, machine
from paint import ARM_JS, INIT_JS, painted_ms_async, want

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server

TIMEOUT_MS = 60_000
FIRST = "my patients: login -> painted"
PATIENT = "patient page: Open patient -> chart"
AGAIN = "my patients: from the menu -> painted"


async def clinician(browser, base: str, name: str, rounds: int, timings: list, errors: list) -> None:  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    await context.add_init_script(INIT_JS)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        await page.goto(base)
        await page.get_by_role("textbox", name="Username").fill(name)
        await page.get_by_role("textbox", name="Password").fill(BENCH_PASSWORD)
        await page.evaluate(ARM_JS)
        await page.get_by_role("button", name="Log in").click()
        timings.append((FIRST, await painted_ms_async(page, want("My patients"), TIMEOUT_MS) / 1000))
        for _ in range(rounds):
            await page.evaluate(ARM_JS)
            await page.get_by_role("button", name="Open patient").click()  # the most urgent patient
            timings.append((PATIENT, await painted_ms_async(page, want("Patient P", prefix=True, chart=True),
                                                            TIMEOUT_MS) / 1000))
            await page.evaluate(ARM_JS)
            await page.get_by_role("link", name="My patients").click()
            timings.append((AGAIN, await painted_ms_async(page, want("My patients"), TIMEOUT_MS) / 1000))
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        await context.close()


async def run(bases: list[str], users: int, rounds: int, warm: bool) -> tuple[list, list]:
    from playwright.async_api import async_playwright

    timings: list = []
    errors: list = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        if warm:  # a server that has been running: its modules imported (untimed, one therapist not measured)
            warm_errors: list = []
            await asyncio.gather(*(clinician(browser, base, f"bench.t{199 - n:04d}", 1, [], warm_errors)
                                   for n, base in enumerate(bases)))
            errors += [f"warm-up: {e}" for e in warm_errors]
        await asyncio.gather(*(clinician(browser, bases[i % len(bases)], f"bench.t{i:04d}", rounds, timings, errors)
                               for i in range(users)))
        await browser.close()
    return timings, errors


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident set size (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores, /proc/stat), in seconds."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench.db")
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up: the users reach just-started processes (module imports included)")
    parser.add_argument("--deadline", type=float, default=600, help="cut the whole run off after this many seconds")
    args = parser.parse_args()
    if args.servers > 1 and args.db.startswith("sqlite"):
        print("note: SQLite is documented for one server (docs/deploy.md section 5); use PostgreSQL for two",
              flush=True)
    engine = clinic_database(args.db)
    from db.flagstore import ensure_current

    ensure_current(engine)
    engine.dispose()
    env = {"STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_hex(32)}
    servers = []
    try:
        for n in range(args.servers):
            log = Path(f"/tmp/alliance-load-streamlit-{n}.log")
            servers.append((*start_server(args.db, log, env), log))
        bases = [base for _, base, _ in servers]
        load_before = loadavg()
        cpu_before = [cpu_seconds(proc.pid) for proc, _, _ in servers]
        machine_before = machine_cpu_seconds()
        began = time.perf_counter()
        try:
            scenario = run(bases, args.users, args.rounds, not args.cold)
            timings, errors = asyncio.run(asyncio.wait_for(scenario, args.deadline))
        except TimeoutError:
            timings, errors = [], [f"the whole run took over {args.deadline:.0f} s and was cut off"]
        wall = time.perf_counter() - began
        load_after = loadavg()
        server_cpu = sum(cpu_seconds(proc.pid) for proc, _, _ in servers) - sum(cpu_before)
        machine_cpu = machine_cpu_seconds() - machine_before
        peaks = [peak_memory_mb(proc.pid) for proc, _, _ in servers]
    finally:
        for proc, _, _ in servers:
            proc.terminate()
        for proc, _, _ in servers:
            proc.wait(timeout=30)
    for _proc, base, log in servers:
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            errors.append(f"server {base}: {text.count('Traceback')} traceback(s) in {log}")
    where = args.db.split("@")[-1]
    print(f"machine: {machine()}; {args.servers} app process(es) on {where} ({'cold' if args.cold else 'warmed up'});"
          f" {args.users} concurrent sessions x {args.rounds} rounds; wall {wall:.1f} s; "
          f"1-min load average {load_before} before, {load_after} after")
    for label in (FIRST, PATIENT, AGAIN):
        values = sorted(v for k, v in timings if k == label)
        if not values:
            continue
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        print(f"{label:40s} n={len(values):3d}  median {statistics.median(values):6.2f} s  p95 {p95:6.2f} s  "
              f"max {values[-1]:6.2f} s")
    print(f"CPU during the run ({os.cpu_count()} cores x {wall:.0f} s = {os.cpu_count() * wall:.0f} core-seconds): "
          f"whole machine busy {machine_cpu:.1f} s, of which the app processes {server_cpu:.1f} s "
          f"({100 * server_cpu / max(machine_cpu, 1e-9):.0f}%); the rest is Chromium, the database, "
          "Playwright and the system")
    for (_proc, base, _log), peak in zip(servers, peaks, strict=True):
        print(f"peak memory of the app process at {base} (VmHWM): {peak:.0f} MB  (target <= 500 MB)")
    print(f"errors: {len(errors)}")
    for e in errors[:10]:
        print("  " + e)


if __name__ == "__main__":
    main()
