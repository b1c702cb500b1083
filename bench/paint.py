"""Page-side timing of a Streamlit page being "painted", shared by bench/pages.py and bench/load.py.

Timed inside the page, not by Playwright's waits (``locator.wait_for`` polls with a backoff and
reads 0.3-0.5 s high):

* :data:`INIT_JS` (``context.add_init_script``) runs in every document before Streamlit. After
  ``window.__am.arm()`` the first ``pointerdown`` or ``keydown`` (capture phase, so before any
  handler of the app) is time zero, and a ``MutationObserver`` notes that the page changed since
  (elements added or removed, marked stale, or Streamlit's script state flipped). Time zero is
  also kept in ``sessionStorage`` (as epoch milliseconds), so that when the click loads a new
  document (the login form's POST and its 303 to the app) the new document takes it over.
* :func:`painted_ms` then polls :data:`PAINTED_JS` on every animation frame
  (``wait_for_function(polling="raf")``). **Painted** is the first frame in which all hold:

  1. the page changed since time zero and Streamlit's script state (``data-test-script-state``
     on ``[data-testid=stApp]``, what the status widget shows) is ``notRunning``;
  2. the page's title (an ``h1`` in ``stMain`` with exactly the expected text) is there and not
     stale (``data-stale`` marks elements of the previous run that a rerun has not re-sent);
  3. the page's main table, the first ``stDataFrame`` in ``stMain``, is there, not stale, and its
     glide-grid ``canvas`` shows the first data row: the canvas has a non-zero size and ink (a
     pixel with red < 160) in the band 40-62 CSS px below its top, the text of row 1 under the
     35-px header (glide's accessibility cells ``glide-cell-<col>-<row>`` are filled ~0.3 s after
     the canvas is drawn, so they are not waited for);
  4. what the action must show, so that 1-3 cannot hold for the page before it: the new page's
     title (navigation, login), or a caption of the run (a filter on: "N of M alerts" with N < M;
     cleared: N = M, or the "N of M patients shown." caption gone, stale copies included).

  The time is ``performance.now()`` in that frame minus time zero, in the page's own clock. A
  frame runs only when the page's main thread is free, so layout and drawing that the run
  started (plotly.js, the grid) before the frame are included.
"""

from __future__ import annotations

INIT_JS = r"""
(() => {
  const am = window.__am = {armed: false, t0: null, ran: false, paintedAt: null, changed: 0};
  am.arm = () => { am.armed = true; am.t0 = null; am.ran = false; am.paintedAt = null; };
  const start = () => {
    if (am.armed && am.t0 === null) {
      am.t0 = performance.now(); am.ran = false;
      // a click that submits a form (the login) loads a new document: time zero goes with it
      sessionStorage.setItem('am_t0_epoch', String(performance.timeOrigin + am.t0));
    }
  };
  const carried = sessionStorage.getItem('am_t0_epoch');
  if (carried !== null) {  // this document was loaded by the armed click (POST /session/login, 303)
    sessionStorage.removeItem('am_t0_epoch');
    am.armed = true; am.t0 = Number(carried) - performance.timeOrigin;
  }
  document.addEventListener('pointerdown', start, true);
  document.addEventListener('keydown', start, true);
  // Any change of the page after time zero: Streamlit's script state flipping, or elements
  // added, removed or marked stale. (A run of well under 100 ms can flip the state to running
  // and back within one React commit, so the flip alone is not seen.)
  new MutationObserver(() => {
    am.changed = performance.now();
    if (am.t0 !== null) am.ran = true;
  }).observe(document, {subtree: true, childList: true, attributes: true,
                        attributeFilter: ['data-test-script-state', 'data-stale']});
})();
"""

PAINTED_JS = r"""
(want) => {
  const am = window.__am;
  if (!am || am.t0 === null || !am.ran) return false;
  sessionStorage.removeItem('am_t0_epoch');  // the armed action stayed in this document
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  const fresh = (el) => el && !el.closest('[data-stale="true"]');
  const title = [...main.querySelectorAll('h1')].find((h) => want.prefix ? h.textContent.trim().startsWith(want.title)
                                                                      : h.textContent.trim() === want.title);
  if (!fresh(title)) return false;
  if (want.chart) {  // a page whose main element is a plotly chart (the patient page)
    const chart = [...main.querySelectorAll('.js-plotly-plot')].find(fresh);
    if (!chart || !chart._fullLayout || !chart.querySelector('.main-svg .scatterlayer .trace')) return false;
    // a rerun of the chart: the legend must show what the action asked for
    if (want.legend && ![...chart.querySelectorAll('.legendtext')].some((t) => t.textContent.includes(want.legend)))
      return false;
    if (am.paintedAt === null) am.paintedAt = performance.now();
    return Math.max(am.paintedAt - am.t0, 0.001);
  }
  const grid = [...main.querySelectorAll('[data-testid="stDataFrame"]')].find(fresh);
  if (!grid) return false;
  const canvas = grid.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return false;
  // The first data row is drawn: ink (a pixel with red < 160) in the band 40-62 CSS px below the
  // canvas top, i.e. the text of row 1 under the 35-px header. (Not glide's accessibility table
  // of cells, glide-cell-<col>-<row>: it is filled ~0.3 s after the canvas is drawn.)
  const scale = canvas.height / (canvas.clientHeight || canvas.height);
  const band = canvas.getContext('2d')
    .getImageData(0, Math.round(40 * scale), canvas.width, Math.round(22 * scale)).data;
  let ink = false;
  for (let i = 0; i < band.length; i += 4) if (band[i + 3] > 0 && band[i] < 160) { ink = true; break; }
  if (!ink) return false;
  if (want.caption) {
    // present: in a caption of this run; absent: in no caption at all, stale ones included
    const texts = [...main.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .filter((c) => want.absent || fresh(c)).map((c) => c.textContent);
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
#: Idle: Streamlit's script state is ``notRunning`` and nothing in the page has changed for ``ms``
#: milliseconds (a login, for one, is followed by two short follow-up runs of the frontend's own).
IDLE_JS = r"""
(ms) => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'
  && performance.now() - window.__am.changed > ms
"""


def want(title: str, *, caption: str | None = None, absent: bool = False, fewer: bool = False,
         all_rows: bool = False, prefix: bool = False, chart: bool = False, legend: str | None = None) -> dict:
    """What "painted" waits for: the page title (``prefix``: the title starts so), and optionally a
    caption regex (``absent``: must not match; ``fewer``/``all_rows``: groups 1 and 2 of the match
    are "shown" and "of"). ``chart``: the page's main element is a plotly chart, not a table (instead
    of 3: the first fresh ``.js-plotly-plot`` is laid out, ``_fullLayout``, with a trace drawn);
    ``legend``: and a legend entry of that chart contains this text (a rerun that redraws it)."""
    return {"title": title, "caption": caption, "absent": absent, "fewer": fewer, "all": all_rows, "prefix": prefix,
            "chart": chart, "legend": legend}


STATE_JS = r"""
() => JSON.stringify({am: window.__am, now: performance.now(),
  state: document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state'),
  titles: [...document.querySelectorAll('[data-testid="stMain"] h1')].map((h) => h.textContent),
  captions: [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
    .map((c) => c.textContent.slice(0, 60)),
  grids: [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]')].map((g) => ({
    stale: !!g.closest('[data-stale="true"]'), canvas: [...g.querySelectorAll('canvas')].map((c) => c.width),
    cell: !!g.querySelector('[data-testid="glide-cell-0-0"]'),
    cells: [...g.querySelectorAll('[data-testid^="glide-cell-"]')].slice(0, 3).map((c) => c.dataset.testid)}))})
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
