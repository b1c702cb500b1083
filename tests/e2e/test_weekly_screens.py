"""Issue 15 in a real browser at 1440 px: what the caseload, the clinic meeting and the patient page
show on screen (columns in view, legends clear of titles, hover on a flag, no inner scroll).

The checks read what Chromium laid out (bounding boxes, the data grid's rendered header cells,
plotly's hover label), which an AppTest cannot see.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import log_in, settled_text

WIDE = {"width": 1440, "height": 900}


@pytest.fixture
def wide(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=WIDE)
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    context.close()


def _open(page, server: str, user: str, target: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    if page.get_by_role("button", name="Log in").count():  # the login lasts across page loads (issue 14)
        log_in(page, user)
    settled_text(page)
    page.locator(f"[data-testid='stSidebarNav'] a[href$='/{target}']").first.click()
    settled_text(page)


def _overlap(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


_BOXES = """([chart, inner]) => {
    const root = document.querySelectorAll("[data-testid='stPlotlyChart']")[chart];
    const box = e => { const r = e.getBoundingClientRect();
                       return {x: r.x, y: r.y, width: r.width, height: r.height}; };
    return {legend: box(root.querySelector('.legend')),
            others: Array.from(root.querySelectorAll(inner)).map(box).filter(b => b.width > 0)};
}"""


def test_the_caseload_shows_why_on_screen_and_its_chart_legend_clears_the_titles(server: str, wide) -> None:  # type: ignore[no-untyped-def]
    _open(wide, server, "supervisor.sara", "caseload")
    # the data grid renders header cells only for the columns in view
    headers = wide.evaluate("""() => Array.from(document.querySelector("[data-testid='stDataFrame']")
        .querySelectorAll("th, [role='columnheader']")).map(e => e.textContent.trim())""")
    assert {"Patient", "Act on", "Alert · questionnaire", "Why"} <= set(headers), headers
    assert "risk_item" not in settled_text(wide)
    wide.get_by_text("Show the alliance courses of up to 12 flagged patients", exact=True).click()
    settled_text(wide)
    wide.locator("[data-testid='stPlotlyChart'] .legend").first.wait_for()
    boxes = wide.evaluate(_BOXES, [0, ".annotation"])  # the panel titles are annotations
    assert boxes["others"], boxes
    assert not any(_overlap(boxes["legend"], t) for t in boxes["others"]), boxes


def test_the_clinic_alerts_legend_clears_the_axis_title_and_meeting_mode_lasts(server: str, wide) -> None:  # type: ignore[no-untyped-def]
    _open(wide, server, "supervisor.sara", "clinic")
    wide.locator("[data-testid='stPlotlyChart'] .legend").first.wait_for()
    boxes = wide.evaluate(_BOXES, [0, ".g-xtitle, .g-ytitle"])
    assert boxes["others"] and not any(_overlap(boxes["legend"], t) for t in boxes["others"]), boxes
    wide.get_by_text("Meeting mode", exact=True).click()
    settled_text(wide)
    # away to another page and back: still in meeting mode, and the header says so
    wide.locator("[data-testid='stSidebarNav'] a[href$='/caseload']").first.click()
    settled_text(wide)
    wide.locator("[data-testid='stSidebarNav'] a[href$='/clinic']").first.click()
    text = settled_text(wide)
    assert "Clinic meeting · meeting mode on" in text
    assert "therapist.anna" not in text and "P00001" not in text


def test_hovering_on_a_flag_marker_shows_its_reason(server: str, wide) -> None:  # type: ignore[no-untyped-def]
    _open(wide, server, "therapist.anna", "patient")
    wide.get_by_role("combobox", name="Patient").first.click()
    wide.get_by_role("option", name="P00001", exact=True).first.click()
    settled_text(wide)
    chart = wide.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".scatterlayer").first.wait_for()
    centre = wide.evaluate("""() => {
        const gd = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
        const i = gd.data.findIndex(t => t.name === 'flag: rupture');
        const point = gd.querySelectorAll('.scatterlayer .trace')[i].querySelector('.point');
        point.scrollIntoView({block: 'center'});
        const r = point.getBoundingClientRect();
        return {x: r.x + r.width / 2, y: r.y + r.height / 2};
    }""")
    wide.mouse.move(centre["x"] - 40, centre["y"] - 40)
    wide.mouse.move(centre["x"], centre["y"], steps=4)  # exactly onto the marker
    label = wide.locator(".hoverlayer .hovertext").first
    label.wait_for()
    assert "Rupture" in label.text_content()


def test_the_week_table_shows_every_week_without_an_inner_scroll(server: str, wide) -> None:  # type: ignore[no-untyped-def]
    _open(wide, server, "therapist.anna", "patient")
    wide.get_by_role("combobox", name="Patient").first.click()
    wide.get_by_role("option", name="P00001", exact=True).first.click()
    settled_text(wide)
    sizes = wide.evaluate("""() => Array.from(document.querySelectorAll("[data-testid='stDataFrame']"))
        .map(d => { const s = d.querySelector('.dvn-scroller');
                    return {text: d.textContent.slice(0, 400), scroll: s.scrollHeight, client: s.clientHeight}; })""")
    week = next(s for s in sizes if "WAI-SR" in s["text"] and "GAD-7" in s["text"] and "Why" not in s["text"])
    assert week["scroll"] <= week["client"] + 2, sizes
