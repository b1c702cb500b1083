"""Charts to PNG through the system's Chromium: bounded in time, and a failed browser is replaced
(core/static_export.py).

These start real browsers (a few seconds each). The fake browsers are shell scripts handed to
kaleido through ``BROWSER_PATH``: one that exits at once, one that never answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import plotly.graph_objects as go
import pytest

from core import static_export
from core.static_export import BrowserRenderer, ChartUnavailable

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="No Chromium for the static chart export (apt-get install chromium).")

FIGURE = go.Figure(go.Scatter(x=[1, 2, 3], y=[40, 44, 31]), layout={"height": 300})


def fake_browser(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-chromium"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def render(renderer: BrowserRenderer) -> bytes:
    return renderer.render(FIGURE, width=400, height=300, scale=1)


def gives_up(renderer: BrowserRenderer, *, match: str, within: float) -> None:
    """``render`` raises ChartUnavailable matching ``match`` within ``within`` seconds, and no
    browser is left open."""
    started = time.monotonic()
    with pytest.raises(ChartUnavailable, match=match):
        render(renderer)
    assert time.monotonic() - started < within
    assert not renderer.running


def test_without_a_browser_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_export, "find_browser", lambda: None)
    with pytest.raises(ChartUnavailable, match=r"no Chromium browser was found.*apt-get install chromium"):
        render(BrowserRenderer())


def test_a_browser_that_exits_at_once_gives_a_sentence_not_a_hang(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", fake_browser(tmp_path, "exit 1"))
    gives_up(BrowserRenderer(start_timeout=20, render_timeout=5),
             match="starting the browser failed.*download the HTML version", within=20)


def test_a_browser_that_never_answers_is_given_up_on_and_its_process_ended(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pid"
    monkeypatch.setenv("BROWSER_PATH", fake_browser(tmp_path, f"echo $$ > {marker}\nexec sleep 600"))
    gives_up(BrowserRenderer(start_timeout=3, render_timeout=3),
             match="starting the browser took longer than 3 seconds", within=25)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # the hung "browser" was killed, not left behind
        os.kill(pid, 0)


@needs_chromium
def test_a_kept_browser_that_dies_or_hangs_is_replaced_and_the_image_still_comes() -> None:
    renderer = BrowserRenderer(render_timeout=5)
    try:
        first = render(renderer)
        assert first.startswith(b"\x89PNG") and renderer.running

        # the browser is closed behind the renderer's back (as when Chromium crashes)
        assert renderer._loop is not None
        asyncio.run_coroutine_threadsafe(renderer._kaleido.close(), renderer._loop).result(30)
        assert render(renderer).startswith(b"\x89PNG")

        # the browser stops answering: the image is given up on after render_timeout, and redrawn
        hung = renderer._kaleido

        async def never(*args: object, **kwargs: object) -> bytes:
            await asyncio.sleep(3600)
            return b""

        hung.calc_fig = never
        started = time.monotonic()
        assert render(renderer).startswith(b"\x89PNG")
        assert renderer._kaleido is not hung
        assert 5 <= time.monotonic() - started < 60
    finally:
        renderer.close()
    assert not renderer.running


@needs_chromium
def test_a_one_off_image_closes_its_browser() -> None:
    png = static_export.render_png(FIGURE, width=400, scale=1)
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
