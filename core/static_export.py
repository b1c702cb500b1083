"""Plotly figures to PNG through kaleido and the system's Chromium, bounded in time.

Why not ``fig.to_image`` with kaleido's own ``start_sync_server``: when that server's browser
fails to start or dies later, every later export waits forever (its worker thread is gone and
nobody answers the queue), and a download button then never downloads. Here one browser is
kept in a background event loop; every step has a time limit; a browser that fails or does not
answer is closed and replaced on the next request (and a warm browser that fails is replaced
at once and the image tried once more). MathJax is switched off: the charts have no LaTeX, and
kaleido would otherwise load it from a CDN, which a clinic server without internet access
cannot reach (a dropped connection then holds every image until kaleido's own timeout).

Failures raise :class:`ChartUnavailable` with a sentence for the user; the caller decides what
to show instead (the PDF report prints it in place of the chart).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import threading
from typing import Any

import plotly.graph_objects as go

#: Browsers kaleido can drive, looked for in this order (``BROWSER_PATH`` first).
BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Seconds a browser may take to start, and one image to render.
START_TIMEOUT_S = 60.0
RENDER_TIMEOUT_S = 30.0

NO_BROWSER_MESSAGE = ("Charts cannot be drawn into PDF or PNG files because no Chromium browser was found on this "
                      "server. Download the HTML version for the chart, or ask your admin to install Chromium "
                      "(apt-get install chromium).")
BROWSER_FAILED_MESSAGE = ("The chart could not be drawn because the server's Chromium browser did not produce it "
                          "({detail}). Try again in a minute, or download the HTML version for the chart; if it "
                          "keeps happening, ask your admin to check Chromium on the server (docs/operations.md).")

_log = logging.getLogger(__name__)


class ChartUnavailable(RuntimeError):
    """The chart could not be rendered to an image (no browser, or the browser failed)."""


def find_browser() -> str | None:
    """Path of a Chromium-family browser for the static export, or ``None``."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.exists(env):
        return env
    for name in BROWSER_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chart_available() -> bool:
    """True when a browser for the static chart export is present."""
    return find_browser() is not None


class BrowserRenderer:
    """One headless Chromium (through kaleido) in its own event-loop thread, one image at a time.

    ``render`` starts the browser when none is running, and closes it when it fails or runs
    over its time, so the next call starts afresh. ``close`` stops it (also at exit).
    """

    def __init__(self, *, start_timeout: float = START_TIMEOUT_S, render_timeout: float = RENDER_TIMEOUT_S) -> None:
        self.start_timeout = start_timeout
        self.render_timeout = render_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._kaleido: Any = None
        self._starting: Any = None  # a browser being started, closed with the rest if that runs over

    @property
    def running(self) -> bool:
        """True while a browser is open."""
        return self._kaleido is not None

    def render(self, fig: go.Figure, *, width: int, height: int, scale: float) -> bytes:
        """The figure as PNG bytes; :class:`ChartUnavailable` when it cannot be had in time."""
        if not chart_available():
            raise ChartUnavailable(NO_BROWSER_MESSAGE)
        spec = fig.to_dict()
        opts = {"format": "png", "width": width, "height": height, "scale": scale}
        # the wait for another user's image counts against the same budget as one's own
        if not self._lock.acquire(timeout=self.start_timeout + 2 * self.render_timeout):
            raise ChartUnavailable(BROWSER_FAILED_MESSAGE.format(detail="it is busy with other images"))
        try:
            warm = self.running
            try:
                return self._render_once(spec, opts)
            except ChartUnavailable:
                if not warm:
                    raise
                _log.warning("The kept browser failed; starting a new one and trying once more.")
                return self._render_once(spec, opts)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the browser and stop its thread (safe to call at any time)."""
        with self._lock:
            self._shutdown()

    # -- under the lock --------------------------------------------------------------------------

    def _render_once(self, spec: dict[str, Any], opts: dict[str, Any]) -> bytes:
        try:
            if self._kaleido is None:
                self._kaleido = self._run(self._open(), self.start_timeout, "starting the browser")
            data = self._run(self._kaleido.calc_fig(spec, opts=opts), self.render_timeout, "drawing the chart")
            if not isinstance(data, bytes | bytearray) or not bytes(data).startswith(b"\x89PNG"):
                raise ChartUnavailable(BROWSER_FAILED_MESSAGE.format(detail="it returned no image"))
        except ChartUnavailable:
            self._shutdown(kill=True)
            raise
        return bytes(data)

    async def _open(self) -> Any:
        import kaleido

        k = kaleido.Kaleido(n=1, timeout=self.render_timeout, mathjax=False, path=find_browser())
        self._starting = k
        await k.open()
        self._starting = None
        return k

    def _run(self, coroutine: Any, timeout: float, what: str) -> Any:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="chart-browser", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # left running: closing the browser ends it
            raise ChartUnavailable(BROWSER_FAILED_MESSAGE.format(
                detail=f"{what} took longer than {timeout:.0f} seconds")) from None
        except Exception as exc:  # the browser's own errors, whatever their kind
            _log.warning("Chart export failed while %s: %r", what, exc)
            raise ChartUnavailable(BROWSER_FAILED_MESSAGE.format(
                detail=f"{what} failed: {type(exc).__name__}")) from exc

    def _shutdown(self, *, kill: bool = False) -> None:
        """Close the browser (``kill``: end its processes first, for one that failed or hangs)."""
        browsers = [b for b in (self._kaleido, self._starting) if b is not None]
        loop, thread = self._loop, self._thread
        self._kaleido, self._starting, self._loop, self._thread = None, None, None, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_close_all(browsers, kill=kill), loop).result(15)
        except Exception as exc:  # closing a failed browser is best effort
            _log.warning("Closing the chart browser failed: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        if not loop.is_running():
            loop.close()


def _kill(browser: Any) -> None:
    """End a browser's process group at once (a hung browser does not answer a polite close)."""
    process = getattr(browser, "subprocess", None)
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    with contextlib.suppress(Exception):
        process.wait(5)


async def _close_all(browsers: list[Any], *, kill: bool) -> None:
    """Close the browsers (their processes end), then cancel what else runs on this loop."""
    for browser in browsers:
        if kill:
            await asyncio.to_thread(_kill, browser)
        try:
            await asyncio.wait_for(browser.close(), 10)
        except Exception as exc:  # a browser that never started has little to close
            _log.warning("Closing the chart browser failed: %r", exc)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


_shared = BrowserRenderer()
atexit.register(_shared.close)


def render_png(fig: go.Figure, *, width: int = 1000, height: int | None = None, scale: float = 2.0,
               persistent: bool = False) -> bytes:
    """The figure as PNG bytes; :class:`ChartUnavailable` without a browser or when it fails.

    ``persistent=True`` (the web app) keeps one browser for later images (a first image takes
    seconds, later ones a fraction of a second); otherwise a browser is started for this image
    and closed after it.
    """
    height = height or int(fig.layout.height or 600)
    if persistent:
        return _shared.render(fig, width=width, height=height, scale=scale)
    renderer = BrowserRenderer()
    try:
        return renderer.render(fig, width=width, height=height, scale=scale)
    finally:
        renderer.close()
