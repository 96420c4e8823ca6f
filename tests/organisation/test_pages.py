"""The organisation's pages in a real Chromium: teams, prices, users, audit; what a role may
not do is not offered (nor is the page, or its link in the nav)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import Console, screenshot

PASSWORD = "a long enough password"


def sign_in(page: Page, gateway: Gateway, username: str | None = None, to: str = "/teams") -> None:
    page.goto(f"{gateway.url}/login?next={to}")
    if username is None:
        page.fill("#admin_key", gateway.admin_key)
        page.click("form[action='/login'] button[type=submit]")
    else:
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Use an account").click()
    page.wait_for_url(f"{gateway.url}{to}")


def test_an_owner_manages_teams_prices_users_and_reads_the_audit(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway)
    nav = page.get_by_role("navigation", name="Main").first
    for label in ("Teams", "Prices", "Audit", "Users"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    form = page.get_by_test_id("team-form")
    form.get_by_label("Name").fill("research")
    form.get_by_label("Requests per day").fill("500")
    form.get_by_label("Monthly budget, USD").fill("25")
    form.get_by_role("button", name="Create team").click()
    row = page.locator("#teams-body tr[data-team]", has_text="research")
    expect(row).to_contain_text("daily requests 500")
    expect(row).to_contain_text("$25.0000/month")
    expect(row).to_contain_text("$0.0000")  # nothing spent yet this month
    screenshot(page, "org-teams")
    row.get_by_role("button", name="Edit").click()
    form.get_by_label("Requests per day").fill("600")
    form.get_by_role("button", name="Save team").click()
    expect(row).to_contain_text("daily requests 600")
    team = gateway.call(gateway.services.teams.list_teams())[0]
    gateway.create_key(name="member-key", team_id=team.id)
    page.reload()
    row.get_by_role("button", name="Keys").click()
    expect(page.get_by_test_id("team-members")).to_contain_text("1 keys")

    page.goto(f"{gateway.url}/prices")
    prices = page.get_by_test_id("price-form")
    prices.get_by_label("Model").fill("sim-model")
    prices.get_by_label("Input").fill("0.15")
    prices.get_by_label("Output").fill("0.6")
    prices.get_by_role("button", name="Set price").click()
    expect(page.locator("#prices-body tr", has_text="sim-model")).to_contain_text("$0.6")

    page.goto(f"{gateway.url}/dashboard")
    expect(page.get_by_test_id("spend")).to_contain_text("Cost today $0.0000")
    expect(page.get_by_test_id("budget-alerts")).to_contain_text("No budget alerts.")

    page.goto(f"{gateway.url}/users")
    users = page.get_by_test_id("user-form")
    users.get_by_label("Username").fill("vera")
    users.get_by_label("Password").fill(PASSWORD)
    users.get_by_label("Role").select_option("viewer")
    users.get_by_role("button", name="Create").click()
    expect(page.locator("#users-body tr", has_text="vera")).to_contain_text("viewer")

    page.goto(f"{gateway.url}/audit")
    table = page.get_by_test_id("audit-table")
    for action in ("team.create", "team.update", "price.set", "user.create", "login"):
        expect(table.locator(f"tr[data-action='{action}']").first).to_be_visible()
    expect(table.locator("tr[data-action='team.update']")).to_contain_text("500 → 600")
    expect(table).not_to_contain_text(PASSWORD)
    screenshot(page, "org-audit")


def test_a_viewer_is_offered_only_what_it_may_do(
    page: Page, gateway: Gateway, console: Console
) -> None:
    console.allow(r"status of 403 .*/users")  # the browser's own note on the refused page
    gateway.call(gateway.services.teams.create(name="shown", rpm=5))
    gateway.call(gateway.services.users.create("val", "viewer", password=PASSWORD))
    sign_in(page, gateway, "val")
    expect(page.locator("#teams-body tr", has_text="shown")).to_contain_text("rpm 5")
    expect(page.get_by_test_id("team-form")).to_have_count(0)
    expect(page.locator("#teams-body button", has_text="Edit")).to_have_count(0)
    expect(page.locator("#teams-body button", has_text="Delete")).to_have_count(0)
    expect(page.locator("#teams-body button", has_text="Keys")).to_have_count(1)  # reading
    nav = page.get_by_role("navigation", name="Main").first
    expect(nav.get_by_role("link", name="Teams")).to_be_visible()
    expect(nav.get_by_role("link", name="Prices")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
    page.goto(f"{gateway.url}/prices")
    expect(page.get_by_test_id("price-form")).to_have_count(0)
    answer = page.goto(f"{gateway.url}/users")
    assert answer is not None and answer.status == 403
    expect(page.get_by_test_id("forbidden")).to_contain_text("viewer")
