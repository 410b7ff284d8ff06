"""The web UI in a real browser: `swiftkit web-ui` as a subprocess, headless Chromium through playwright."""

from __future__ import annotations

from webui_browser import browser, open_page, screenshot, webui, webui_workdir  # noqa: F401

from swiftkit.webui.i18n import t

TABS = ("data", "train", "chat", "evaluate", "export", "deploy")  # in this order


def test_the_page_shows_every_tab_and_fetches_nothing_from_outside(browser, webui):  # noqa: F811
    page = open_page(browser, webui)
    assert page.get_by_role("tab").all_inner_texts() == [t(f"tab.{name}") for name in TABS]
    assert str(webui.workdir) in page.locator("#swk-header").inner_text()
    assert screenshot(page, "shell").stat().st_size > 10_000
    assert page.outside_requests == []
    page.close()
