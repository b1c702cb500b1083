"""A real server and a real browser: ``streamlit run app.py`` on a free local port over a
freshly seeded demo database, driven by Playwright in Debian's Chromium (/usr/bin/chromium).

Without Chromium these tests skip locally and fail under CI=true (see tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ALLIANCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
DEMO_PASSWORD = "demo-password-2026"
#: Each running server's log, by base URL: a failed test shows the tail of its server's log.
SERVER_LOGS: dict[str, Path] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, log: Path, env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ALLIANCE_DB_URL": db_url, **(env_extra or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    SERVER_LOGS[base] = log
                    return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"streamlit did not answer within 60 s:\n{log.read_text()[-3000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed browser test carries the tail of its server's log (what the server said, in CI too)."""
    outcome = yield
    report = outcome.get_result()
    base = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(base, str) and base in SERVER_LOGS:
        report.sections.append(("streamlit server log (tail)", SERVER_LOGS[base].read_text(errors="replace")[-6000:]))


@contextmanager
def demo_database(request: pytest.FixtureRequest, folder: Path, pg_name: str) -> Iterator[str]:
    """A fresh copy of the demo clinic on the fixture's backend (``request.param``): its URL."""
    from tests.conftest import PG_URL, _seed_demo, fresh_pg_demo

    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'demo.db'}"
        _seed_demo(url)
        yield url
        return
    if not request.getfixturevalue("pg_available"):
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}; start it or set ALLIANCE_TEST_PG_URL.")
    with fresh_pg_demo(PG_URL, pg_name) as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a server over a fresh copy of the demo clinic, on SQLite and on PostgreSQL."""
    folder = tmp_path_factory.mktemp("e2e")
    with demo_database(request, folder, "am_e2e") as url:
        proc, base = start_server(url, folder / "streamlit.log")
        yield base
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"No Chromium at {CHROMIUM}; install it with `apt-get install -y chromium`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def log_in(page, name: str, password: str = DEMO_PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("textbox", name="Username").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log in").wait_for(state="detached")


SETTLED_JS = """() => !document.querySelector("[data-testid='stStatusWidget']")
    && !document.querySelector("[data-stale='true']")"""


def settled_text(page, selector: str = "[data-testid='stMain']") -> str:  # type: ignore[no-untyped-def]
    """The text of ``selector`` once Streamlit has finished the run: no script running, no stale
    elements, and the same text twice in a row half a second apart."""
    previous = None
    for _ in range(40):
        page.wait_for_function(SETTLED_JS)
        text = page.locator(selector).inner_text()
        if text == previous:
            return text
        previous = text
        page.wait_for_timeout(500)
    return previous or ""
