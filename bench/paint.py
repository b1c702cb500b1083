"""Page-side timing of a Streamlit page being "painted", shared by bench/pages.py and bench/load.py.

Timed inside the page, not by Playwright's waits (``locator.wait_for`` polls with a backoff and
reads 0.3-0.5 s high):

* :data:`INIT_JS` (``context.add_init_script``) runs in every document before Streamlit. After
  ``window.__am.arm()`` the first ``pointerdown`` or ``keydown`` (capture phase, so before any
  handler of the app) is time zero, and a ``MutationObserver`` notes that Streamlit's script state
  (``data-test-script-state`` on ``[data-testid=stApp]``) left ``notRunning`` since then.
* :func:`painted_ms` then polls :data:`PAINTED_JS` on every animation frame
  (``wait_for_function(polling="raf")``). **Painted** is the first frame in which all hold:

  1. the script ran since time zero and Streamlit's state is ``notRunning`` again (the status
     widget is gone: the run that the click or key started has finished);
  2. the page's title (an ``h1`` in ``stMain`` with exactly the expected text) is there and not
     stale (``data-stale`` marks elements of the previous run that a rerun has not re-sent);
  3. the page's main table, the first ``stDataFrame`` in ``stMain``, is there, not stale, its
     glide-grid ``canvas`` has a non-zero size and its first cell (``glide-cell-0-0``) exists;
  4. optionally, a caption of the page matches what the action should show (e.g. "N of M alerts"
     with N < M after a filter).

  The time is ``performance.now()`` in that frame minus time zero, in the page's own clock. A
  frame runs only when the page's main thread is free, so layout and drawing that the run
  started (plotly.js, the grid) before the frame are included.
"""

from __future__ import annotations

INIT_JS = r"""
(() => {
  const am = window.__am = {armed: false, t0: null, ran: false, paintedAt: null};
  am.arm = () => { am.armed = true; am.t0 = null; am.ran = false; am.paintedAt = null; };
  const start = () => { if (am.armed && am.t0 === null) { am.t0 = performance.now(); am.ran = false; } };
  document.addEventListener('pointerdown', start, true);
  document.addEventListener('keydown', start, true);
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.getAttribute('data-test-script-state') !== 'notRunning' && am.t0 !== null) am.ran = true;
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
})();
"""

PAINTED_JS = r"""
(want) => {
  const am = window.__am;
  if (!am || am.t0 === null || !am.ran) return false;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  const fresh = (el) => el && !el.closest('[data-stale="true"]');
  const title = [...main.querySelectorAll('h1')].find((h) => h.textContent.trim() === want.title);
  if (!fresh(title)) return false;
  const grid = [...main.querySelectorAll('[data-testid="stDataFrame"]')].find(fresh);
  if (!grid) return false;
  const canvas = grid.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return false;
  if (!grid.querySelector('[data-testid="glide-cell-0-0"]')) return false;
  if (want.caption) {
    const texts = [...main.querySelectorAll('[data-testid="stCaptionContainer"]')].filter(fresh)
      .map((c) => c.textContent);
    const re = new RegExp(want.caption);
    const hit = texts.map((t) => t.match(re)).find(Boolean);
    if (want.absent ? hit : !hit) return false;
    if (want.fewer && hit && !(Number(hit[1]) < Number(hit[2]))) return false;
    if (want.all && hit && Number(hit[1]) !== Number(hit[2])) return false;
  }
  if (am.paintedAt === null) am.paintedAt = performance.now();
  return Math.max(am.paintedAt - am.t0, 0.001);
}
"""

ARM_JS = "() => window.__am.arm()"


def want(title: str, *, caption: str | None = None, absent: bool = False, fewer: bool = False,
         all_rows: bool = False) -> dict:
    """What "painted" waits for: the page title, and optionally a caption regex (``absent``: must not
    match; ``fewer``/``all_rows``: groups 1 and 2 of the match are "shown" and "of")."""
    return {"title": title, "caption": caption, "absent": absent, "fewer": fewer, "all": all_rows}


STATE_JS = r"""
() => JSON.stringify({am: window.__am, now: performance.now(),
  state: document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state'),
  titles: [...document.querySelectorAll('[data-testid="stMain"] h1')].map((h) => h.textContent),
  captions: [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
    .map((c) => c.textContent.slice(0, 60)),
  grids: document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]').length})
"""


def painted_ms(page, what: dict, timeout_ms: float) -> float:  # type: ignore[no-untyped-def]
    """Milliseconds from the armed action to painted (sync Playwright)."""
    try:
        handle = page.wait_for_function(PAINTED_JS, arg=what, polling="raf", timeout=timeout_ms)
    except Exception as exc:
        raise RuntimeError(f"not painted ({what}): {page.evaluate(STATE_JS)}") from exc
    return float(handle.json_value())


async def painted_ms_async(page, what: dict, timeout_ms: float) -> float:  # type: ignore[no-untyped-def]
    """Milliseconds from the armed action to painted (async Playwright)."""
    try:
        handle = await page.wait_for_function(PAINTED_JS, arg=what, polling="raf", timeout=timeout_ms)
    except Exception as exc:
        raise RuntimeError(f"not painted ({what}): {await page.evaluate(STATE_JS)}") from exc
    return float(await handle.json_value())
