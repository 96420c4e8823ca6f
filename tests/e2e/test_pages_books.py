"""The books on the pages: admitted, refused by reason, failed and cancelled kept apart on the
dashboard and the usage reports page, and the report's CSV export, fed by real requests."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import APIStatusError, OpenAI
from playwright.sync_api import Page, expect

from tests.conftest import Gateway
from tests.e2e.conftest import login, screenshot
from tests.support.servers import RunningServer


@dataclass(frozen=True)
class Traffic:
    """The keys of the module's traffic."""

    busy_id: str
    quiet_id: str


def _ask(client: OpenAI, model: str = "sim-model") -> int:
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    except APIStatusError as error:
        return error.status_code
    return 200


@pytest.fixture(scope="module")
def traffic(shared_gateway: Gateway, shared_simulator: RunningServer) -> Traffic:
    """2 served and 4 refused (per-minute limit) for one key; for another: 1 refused (model
    not allowed), 1 failed (a backend 500) and 1 cancelled by its client mid-stream."""
    gateway = shared_gateway
    busy_id, busy = gateway.create_key("busy-key", rpm=2)
    quiet_id, quiet = gateway.create_key("quiet-key", models=["sim-model"])
    url = gateway.url + "/v1"
    with OpenAI(base_url=url, api_key=busy, max_retries=0) as client:
        assert [_ask(client) for _ in range(6)] == [200, 200, 429, 429, 429, 429]
    with OpenAI(base_url=url, api_key=quiet, max_retries=0) as client:
        assert _ask(client, "other-model") == 403
        httpx.post(f"{shared_simulator.url}/_sim/faults", json={"fault": "traceback"})
        assert _ask(client) == 502
        httpx.post(
            f"{shared_simulator.url}/_sim/faults",
            json={"fault": "stall", "after_chunks": 1, "seconds": None},
        )
        stream = client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        next(iter(stream))
        stream.close()  # the user pressed Stop
    expected = {"requests": 4, "rejected": 5, "errors": 1, "cancelled": 1}
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    for _ in range(100):
        gateway.call(gateway.services.usage.flush())
        today = httpx.get(gateway.url + "/api/v1/stats", headers=headers).json()["today"]
        if {name: today[name] for name in expected} == expected:
            break
    assert {name: today[name] for name in expected} == expected
    return Traffic(busy_id, quiet_id)


def test_dashboard_keeps_admitted_refused_failed_and_cancelled_apart(
    shared_page: Page, shared_gateway: Gateway, traffic: Traffic
) -> None:
    page = shared_page
    login(page, shared_gateway)
    expect(page.locator("[data-stat=requests_today]")).to_have_text("4")
    expect(page.locator("[data-stat-note=requests_today]")).to_contain_text("1 cancelled")
    expect(page.locator("[data-stat=refused_today]")).to_have_text("5")
    expect(page.locator("[data-stat-note=refused_today]")).to_contain_text("4 per-minute limit")
    expect(page.locator("[data-stat=failed_today]")).to_have_text("1")
    refusals = page.get_by_test_id("refusals")
    expect(refusals.locator("[data-reason=requests_per_minute]")).to_contain_text("4")
    expect(refusals.locator("[data-reason=model_not_allowed]")).to_contain_text("1")
    top_keys = page.get_by_test_id("top-keys")
    # The key refused four times is the busiest, and says so.
    expect(top_keys.locator("li").first).to_contain_text("busy-key")
    expect(top_keys.locator("li").first).to_contain_text("2 req · 4 refused")
    recent = page.get_by_test_id("recent")
    expect(recent).to_contain_text("cancelled by client")
    expect(recent).to_contain_text("502 failed")
    expect(recent).to_contain_text("429 refused · per-minute limit")
    expect(recent).to_contain_text("403 refused · model not allowed")
    # A cancel is neither a refusal nor an error.
    expect(
        recent.locator("tr", has_text="cancelled by client").locator(".badge-red")
    ).to_have_count(0)
    screenshot(page, "dashboard-books")


def test_usage_reports_page_filters_and_exports_csv(
    shared_page: Page, shared_gateway: Gateway, traffic: Traffic
) -> None:
    page = shared_page
    login(page, shared_gateway, "/reports")
    totals = page.get_by_test_id("report-totals")
    expect(totals.locator("[data-total=requests]")).to_have_text("4")
    expect(totals.locator("[data-total=rejected]")).to_have_text("5")
    expect(totals.locator("[data-total=errors]")).to_have_text("1")
    expect(totals.locator("[data-total=cancelled]")).to_have_text("1")
    keys = page.get_by_test_id("report-keys")
    expect(keys.locator("tr")).to_have_count(2)
    expect(keys.locator("tr", has_text="busy-key")).to_contain_text("4")
    expect(page.get_by_test_id("report-refusals")).to_contain_text("per-minute limit")
    expect(page.get_by_test_id("report-days").locator("tr")).to_have_count(1)

    page.get_by_label("Key").select_option(label="quiet-key")
    page.get_by_role("button", name="Show").click()
    expect(totals.locator("[data-total=requests]")).to_have_text("2")
    expect(totals.locator("[data-total=rejected]")).to_have_text("1")
    expect(page).to_have_url(f"{shared_gateway.url}/reports?since=" + _any_day(page))
    assert f"key_id={traffic.quiet_id}" in page.url

    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    download = download_info.value
    assert download.suggested_filename.startswith("usage-")
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["key_id"] for row in rows} == {traffic.quiet_id}
    assert sum(int(row["requests"]) for row in rows) == 2
    assert sum(int(row["rejected"]) for row in rows) == 1
    assert sum(int(row["errors"]) for row in rows) == 1
    assert sum(int(row["cancelled"]) for row in rows) == 1
    screenshot(page, "reports")

    # A team's keys (issue 12): the report for the team is the report for its one key.
    admin = {"Authorization": f"Bearer {shared_gateway.admin_key}"}
    team = httpx.post(
        shared_gateway.url + "/api/v1/teams", json={"name": "research"}, headers=admin
    ).json()
    moved = httpx.patch(
        f"{shared_gateway.url}/api/v1/keys/{traffic.quiet_id}",
        json={"team_id": team["id"]},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    page.goto(shared_gateway.url + "/reports")
    expect(totals.locator("[data-total=requests]")).to_have_text("4")
    page.get_by_label("Team").select_option(label="research")
    page.get_by_role("button", name="Show").click()
    expect(totals.locator("[data-total=requests]")).to_have_text("2")
    expect(totals.locator("[data-total=rejected]")).to_have_text("1")
    expect(keys.locator("tr")).to_have_count(1)
    expect(totals.locator("[data-total=cost_usd]")).to_contain_text("$0")


def _any_day(page: Page) -> str:
    """The since= value the page put in its URL (whatever today is in the browser)."""
    return page.url.split("since=", 1)[1]


def test_usage_export_needs_the_admin_and_checks_its_dates(shared_gateway: Gateway) -> None:
    url = shared_gateway.url + "/api/v1/usage/export.csv"
    assert httpx.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {shared_gateway.admin_key}"}
    bad = httpx.get(url, params={"since": "2026-02-01", "until": "2026-01-01"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "since"
    answer = httpx.get(url, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    header = answer.text.splitlines()[0]
    assert header == (
        "day,key_id,model,requests,errors,rejected,cancelled,prompt_tokens,completion_tokens,"
        "total_tokens,cost_usd"
    )
