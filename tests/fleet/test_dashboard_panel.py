"""The dashboard's fleet panel in a real Chromium: live rows, drain and resume from the page."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import browser, console, login, page, playwright

__all__ = ["browser", "console", "page", "playwright"]  # the e2e fixtures, used here too


def test_the_fleet_panel_shows_each_backend_and_drains_and_resumes_it(
    page: Page, gateway: Gateway
) -> None:
    login(page, gateway)
    panel = page.get_by_test_id("fleet-panel")
    expect(panel).to_contain_text("routing: cache_aware")
    row = page.get_by_test_id("fleet-backends").locator("tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("up")
    row.get_by_role("button", name="Drain").click()
    expect(row).to_contain_text("draining")
    assert gateway.services.backends.backends[0].draining
    row.get_by_role("button", name="Resume").click()
    expect(row).to_contain_text("up")
    assert not gateway.services.backends.backends[0].draining


def test_a_poll_updates_the_fleet_rows_in_place_so_a_click_is_never_swallowed(
    page: Page, gateway: Gateway
) -> None:
    # A poll that rebuilt the rows could replace the button under the pointer between its
    # mousedown and mouseup, and the click was lost (seen as a drain that never happened).
    login(page, gateway)
    row = page.get_by_test_id("fleet-backends").locator("tr")
    expect(row).to_contain_text("up")
    page.evaluate("window.fleetRow = document.querySelector('#fleet-backends tr')")
    rate = row.locator("td").nth(6)
    expect(rate).to_have_text("0.0", timeout=6000)  # a dash until a second poll has answered
    assert page.evaluate("window.fleetRow === document.querySelector('#fleet-backends tr')")
    row.get_by_role("button", name="Drain").click()
    expect(row).to_contain_text("draining")
    assert page.evaluate("window.fleetRow === document.querySelector('#fleet-backends tr')")
