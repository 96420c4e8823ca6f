"""The keys list with 100,000 keys: searched, filtered, sorted and paged by the server, in the
API and on the page; the first page is measured."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert, text

from tests.conftest import Gateway
from tests.e2e.conftest import login, screenshot
from vllm_gateway.db.tables import api_keys

KEYS = 100_000
FIRST_PAGE_BUDGET_MS = 200
DASH = "\N{EN DASH}"


def _rows(start: datetime) -> list[dict[str, object]]:
    return [
        {
            "id": f"k{n:011d}",
            "name": f"key-{n:06d}",
            "email": f"owner{n}@example.com" if n % 10 == 0 else None,
            "prefix": f"vgw-k{n:011d}",
            "secret_hash": "0" * 64,
            "created_at": start + timedelta(seconds=n),
            "last_used_at": start + timedelta(seconds=n * 7 % KEYS) if n % 3 == 0 else None,
            "revoked_at": start if n % 1000 == 999 else None,
            "expires_at": None,
            "models": "[]",
        }
        for n in range(KEYS)
    ]


@pytest.fixture(scope="module")
def many_keys(shared_gateway: Gateway) -> Gateway:
    """100,000 keys written straight into the gateway's database, in one transaction."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = _rows(start)

    async def write() -> None:
        async with shared_gateway.services.database.engine.begin() as connection:
            await connection.execute(insert(api_keys), rows)

    began = time.perf_counter()
    shared_gateway.call(write(), timeout=120)
    print(f"\ninserted {KEYS:,} keys in {time.perf_counter() - began:.1f} s")
    return shared_gateway


def _get(gateway: Gateway, **params: object) -> tuple[dict[str, object], float]:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    began = time.perf_counter()
    answer = httpx.get(gateway.url + "/api/v1/keys", params=params, headers=headers, timeout=30)
    elapsed = (time.perf_counter() - began) * 1000
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body, elapsed


def test_first_page_of_100000_keys_is_fast_and_uses_an_index(many_keys: Gateway) -> None:
    timings = []
    for _ in range(7):
        page, elapsed = _get(many_keys, limit=50)
        timings.append(elapsed)
    print(
        f"first page of {KEYS:,} keys: best {min(timings):.1f} ms, median "
        f"{statistics.median(timings):.1f} ms"
    )
    assert page["total"] == KEYS and page["has_more"] is True
    data = page["data"]
    assert isinstance(data, list) and len(data) == 50
    assert data[0]["name"] == "key-099999"  # newest first
    assert data[0]["usage_today"] == {"requests": 0, "rejected": 0, "errors": 0, "total_tokens": 0}
    assert min(timings) < FIRST_PAGE_BUDGET_MS, timings

    async def plan() -> str:
        async with many_keys.services.database.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT * FROM api_keys"
                    " ORDER BY created_at DESC, id DESC LIMIT 50"
                )
            )
            return " ".join(str(row[-1]) for row in rows)

    assert "ix_api_keys_created_at" in many_keys.call(plan())
    for sort in ("name", "last_used_at", "usage_today"):
        sorted_page, elapsed = _get(many_keys, limit=50, sort=sort, order="asc")
        print(f"first page sorted by {sort}: {elapsed:.1f} ms")
        assert len(sorted_page["data"]) == 50  # type: ignore[arg-type]


def test_the_api_searches_filters_sorts_and_pages(many_keys: Gateway) -> None:
    found, _ = _get(many_keys, q="key-04242")
    assert [key["name"] for key in found["data"]] == [  # type: ignore[union-attr]
        f"key-04242{n}" for n in range(9, -1, -1)
    ]
    assert found["total"] == 10 and found["has_more"] is False
    revoked, _ = _get(many_keys, status="revoked", limit=5, sort="name", order="asc")
    assert revoked["total"] == KEYS // 1000
    assert [key["name"] for key in revoked["data"]] == [  # type: ignore[union-attr]
        f"key-{n:06d}" for n in (999, 1999, 2999, 3999, 4999)
    ]
    second, _ = _get(many_keys, limit=3, offset=3, sort="name", order="asc")
    assert [key["name"] for key in second["data"]] == ["key-000003", "key-000004", "key-000005"]  # type: ignore[union-attr]
    used_last, _ = _get(many_keys, limit=1, sort="last_used_at", order="asc")
    assert used_last["data"][0]["last_used_at"] is not None  # type: ignore[index]
    bad = httpx.get(
        many_keys.url + "/api/v1/keys",
        params={"sort": "secret_hash"},
        headers={"Authorization": f"Bearer {many_keys.admin_key}"},
    )
    assert bad.status_code == 400


def test_the_keys_page_pages_searches_and_sorts_on_the_server(
    shared_page: Page, many_keys: Gateway
) -> None:
    page = shared_page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    login(page, many_keys, "/api/keys")
    keys_range = page.get_by_test_id("keys-range")
    expect(keys_range).to_have_text(f"1{DASH}50 of 100,000")
    rows = page.get_by_test_id("keys-table").locator("tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("key-099999")
    assert all("limit=1000" not in url for url in requested)
    page.get_by_role("button", name="Next").click()
    expect(keys_range).to_have_text(f"51{DASH}100 of 100,000")
    expect(rows.first).to_contain_text("key-099949")
    page.get_by_role("button", name="Name").click()
    expect(keys_range).to_have_text(f"1{DASH}50 of 100,000")
    expect(rows.first).to_contain_text("key-000000")
    expect(page.locator("th[data-sort=name]")).to_have_attribute("aria-sort", "ascending")
    page.get_by_label("Search keys").fill("key-0777")
    expect(keys_range).to_have_text(f"1{DASH}50 of 100")
    page.reload()  # the view is in the URL
    expect(page.get_by_label("Search keys")).to_have_value("key-0777")
    expect(rows.first).to_contain_text("key-077700")
    screenshot(page, "keys-many")
    # On a phone the rows are cards, without column headers: a select sorts them.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_label("Search keys").fill("")
    page.get_by_label("Sort by").select_option(label="Oldest first")
    expect(rows.first).to_contain_text("key-000000")
    expect(keys_range).to_have_text(f"1{DASH}50 of 100,000")
