"""The key management page in a real Chromium: create, copy, edit, revoke, delete, search."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import screenshot

HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>&amp;'


def _models_status(gateway: Gateway, key: str) -> int:
    response = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return response.status_code


def _row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#keys-body tr").filter(
        has=page.get_by_test_id("key-name").get_by_text(name, exact=True)
    )


def test_create_a_key_copy_it_and_use_it(admin_page: Page, gateway: Gateway) -> None:
    page = admin_page
    page.get_by_role("button", name="New key").click()
    dialog = page.locator("#key-form-dialog")
    expect(dialog).to_be_visible()
    screenshot(page, "keys-create-dialog")
    dialog.get_by_label("Name").fill("alice-laptop")
    dialog.get_by_label("Email").fill("alice@example.com")
    dialog.get_by_label("Requests per minute").fill("30")
    dialog.locator("[data-model='sim-model']").click()
    dialog.get_by_role("button", name="Create key").click()

    created = page.locator("#key-created-dialog")
    expect(created).to_be_visible()
    expect(created).to_contain_text("You will not see this key again")
    key = page.get_by_test_id("created-key").input_value()
    assert key.startswith("vgw-")
    created.get_by_role("button", name="Copy").click()
    expect(created.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot(page, "keys-created")
    created.get_by_role("button", name="Done").click()
    expect(created).to_be_hidden()

    row = _row(page, "alice-laptop")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("30 requests / min")
    expect(row).to_contain_text("sim-model")
    assert key not in page.content()  # shown once, gone from the page afterwards
    assert _models_status(gateway, key) == 200
    screenshot(page, "keys")


def test_new_key_from_the_dashboard_link_opens_the_dialog(
    admin_page: Page, gateway: Gateway
) -> None:
    admin_page.goto(gateway.url + "/api/keys?new=1")
    expect(admin_page.locator("#key-form-dialog")).to_be_visible()


def test_an_invalid_form_is_explained_and_nothing_is_created(
    admin_page: Page, gateway: Gateway
) -> None:
    page = admin_page
    page.get_by_role("button", name="New key").click()
    dialog = page.locator("#key-form-dialog")
    dialog.get_by_role("button", name="Create key").click()
    expect(dialog.locator("#key-form-error")).to_contain_text("Give the key a name")
    dialog.get_by_label("Name").fill("bad-limit")
    dialog.get_by_label("Requests per minute").fill("-3")
    dialog.get_by_role("button", name="Create key").click()
    expect(dialog.locator("#key-form-error")).to_contain_text("whole number")
    assert gateway.call(gateway.services.keys.list_keys()) == []


def test_a_key_name_containing_html_is_shown_as_text(admin_page: Page, gateway: Gateway) -> None:
    page = admin_page
    gateway.create_key(HOSTILE_NAME, email="x@example.com")
    page.reload()
    name = page.get_by_test_id("key-name")
    expect(name).to_have_text(HOSTILE_NAME)
    assert page.locator("#keys-body img, #keys-body script").count() == 0
    name.click()
    expect(page.locator("#detail-name")).to_have_text(HOSTILE_NAME)
    page.locator("#key-detail-dialog").get_by_role("button", name="Revoke").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Revoke “{HOSTILE_NAME}”?")
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    assert page.evaluate("window.__pwned") is None


def test_edit_revoke_and_delete_a_key(admin_page: Page, gateway: Gateway) -> None:
    page = admin_page
    key_id, key = gateway.create_key("bob-server", daily_requests=100)
    page.reload()
    row = _row(page, "bob-server")
    expect(row).to_contain_text("100 requests / day")

    row.get_by_role("button", name="Edit").click()
    dialog = page.locator("#key-form-dialog")
    expect(dialog.get_by_label("Name")).to_have_value("bob-server")
    dialog.get_by_label("Requests per day").fill("")
    dialog.get_by_label("Concurrent requests").fill("2")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    expect(row).to_contain_text("2 at once")
    expect(row).not_to_contain_text("requests / day")
    record = gateway.call(gateway.services.keys.get(key_id))
    assert record.limits.daily_requests is None
    assert record.limits.max_concurrency == 2

    row.get_by_role("button", name="Details").click()
    detail = page.locator("#key-detail-dialog")
    expect(detail).to_contain_text("Requests today")
    screenshot(page, "keys-detail")
    detail.get_by_role("button", name="Revoke").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Revoke key").click()
    expect(row).to_contain_text("revoked")
    assert _models_status(gateway, key) == 403  # key_revoked, as DESIGN.md says

    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-message")).to_contain_text("usage history")
    page.locator("#confirm-dialog").get_by_role("button", name="Delete for good").click()
    expect(row).to_have_count(0)
    assert gateway.call(gateway.services.keys.list_keys()) == []


def test_search_and_status_filter(admin_page: Page, gateway: Gateway) -> None:
    page = admin_page
    gateway.create_key("alpha-team", email="alpha@example.com")
    beta_id, _ = gateway.create_key("beta-team")
    gateway.call(gateway.services.keys.revoke(beta_id))
    page.reload()
    names = page.get_by_test_id("key-name")
    expect(names).to_have_count(2)
    page.get_by_placeholder("Search by name, email or prefix").fill("alpha")
    expect(names).to_have_text(["alpha-team"])
    page.get_by_placeholder("Search by name, email or prefix").fill("")
    page.get_by_label("Status").select_option("revoked")
    expect(names).to_have_text(["beta-team"])
    page.get_by_label("Status").select_option("expired")
    expect(names).to_have_count(0)
    expect(page.locator("#keys-empty")).to_contain_text("No key matches")
