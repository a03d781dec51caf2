"""The Pipedrive sandbox's deal products carry billing as Pipedrive publishes it (client-nodejs v2
get-deals-products-response-data-inner-all-of1..3.ts): a frequency, a number of cycles and a start date,
stored, answered and checked as documented; rows are added, updated and removed through the v2 routes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve

TOKEN = "sandbox-pipedrive-api-token"


class Api:
    def __init__(self, sandbox: PipedriveSandbox, url: str) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(base_url=url, headers={"x-api-token": TOKEN}, timeout=10)
        self.product = sandbox.create("product", {"name": "Support plan", "code": "SUP-1"})
        self.deal = sandbox.create("deal", {"title": "Subscription"})

    def add(self, **fields: Any) -> httpx.Response:
        body = {"product_id": self.product["id"], "item_price": 100, "quantity": 1, **fields}
        return self.http.post(f"/api/v2/deals/{self.deal['id']}/products", json=body)

    def patch(self, attachment_id: int, **fields: Any) -> httpx.Response:
        return self.http.patch(f"/api/v2/deals/{self.deal['id']}/products/{attachment_id}", json=fields)

    def deal_value(self) -> Any:
        deal = self.sandbox.get("deal", self.deal["id"])
        assert deal is not None
        return deal["value"]

    def rows(self, **params: Any) -> Any:
        return self.http.get(f"/api/v2/deals/{self.deal['id']}/products", params=params).json()


@pytest.fixture
def api() -> Iterator[Api]:
    sandbox, server = serve()
    client = Api(sandbox, server.url)
    yield client
    client.http.close()
    server.stop()


def _today(sandbox: PipedriveSandbox) -> str:
    return datetime.fromtimestamp(sandbox.now(), UTC).date().isoformat()


def test_a_recurring_deal_product_is_stored_and_answered_with_its_billing(api: Api) -> None:
    # Given a product added monthly for 12 cycles from today
    start = _today(api.sandbox)
    added = api.add(billing_frequency="monthly", billing_frequency_cycles=12, billing_start_date=start)
    # Then the answer is 201 with the billing fields as sent
    assert added.status_code == 201, added.text
    row = added.json()["data"]
    assert (row["billing_frequency"], row["billing_frequency_cycles"], row["billing_start_date"]) == (
        "monthly",
        12,
        start,
    )
    # And the deal's product list answers the same, and the deal's value counts the line once
    listed = api.rows()["data"]
    assert [(r["id"], r["billing_frequency"], r["billing_frequency_cycles"]) for r in listed] == [
        (row["id"], "monthly", 12)
    ]
    assert api.deal_value() == Decimal("100")


def test_a_deal_product_without_billing_is_one_time_with_no_cycles_or_start(api: Api) -> None:
    row = api.add().json()["data"]
    assert (row["billing_frequency"], row["billing_frequency_cycles"], row["billing_start_date"]) == (
        "one-time",
        None,
        None,
    )


def test_null_cycles_bill_indefinitely_except_weekly(api: Api) -> None:
    # A yearly product without cycles bills indefinitely; a weekly one must say how many weeks
    assert api.add(billing_frequency="annually").status_code == 201
    weekly = api.add(billing_frequency="weekly")
    assert weekly.status_code == 400
    assert weekly.json()["success"] is False and "weekly" in weekly.json()["error"]
    assert api.add(billing_frequency="weekly", billing_frequency_cycles=52).status_code == 201


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"billing_frequency": "daily"}, "billing_frequency"),
        ({"billing_frequency": "one-time", "billing_frequency_cycles": 3}, "one-time"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": 0}, "billing_frequency_cycles"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": 209}, "208"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": 2.5}, "billing_frequency_cycles"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": True}, "billing_frequency_cycles"),
        ({"billing_frequency": "monthly", "billing_start_date": "31/01/2027"}, "billing_start_date"),
        ({"billing_frequency": "monthly", "billing_start_date": "2027-02-30"}, "billing_start_date"),
        ({"billing_frequency_cycles": 12}, "one-time"),  # the default frequency is one-time
        ({"item_price": "cheap"}, "item_price"),
        ({"discount_type": "fixed"}, "discount_type"),
        ({"tax_method": "vat"}, "tax_method"),
        ({"is_enabled": "yes"}, "is_enabled"),
        ({"billing_period": "monthly"}, "billing_period"),  # no such field
    ],
)
def test_billing_the_published_rules_refuse_is_a_400_and_nothing_is_stored(
    api: Api, fields: dict[str, Any], names: str
) -> None:
    answer = api.add(**fields)
    assert answer.status_code == 400, answer.text
    assert names in answer.json()["error"]
    assert api.rows()["data"] == []
    assert api.deal_value() in (None, 0, Decimal(0))


def test_a_post_without_product_price_or_quantity_is_a_400(api: Api) -> None:
    answer = api.http.post(f"/api/v2/deals/{api.deal['id']}/products", json={"product_id": api.product["id"]})
    assert answer.status_code == 400
    assert "item_price" in answer.json()["error"] and "quantity" in answer.json()["error"]


def test_the_start_date_must_lie_within_ten_years_of_today(api: Api) -> None:
    # Given the sandbox's today
    today = datetime.fromtimestamp(api.sandbox.now(), UTC).date()
    ten_back, ten_on = today.replace(year=today.year - 10), today.replace(year=today.year + 10)
    # Then the edges are accepted and a day beyond either is refused
    for day, status in ((ten_back, 201), (ten_on, 201), (today.replace(year=today.year + 11), 400)):
        answer = api.add(billing_frequency="quarterly", billing_start_date=day.isoformat())
        assert answer.status_code == status, (day, answer.text)
    past = today.replace(year=today.year - 11).isoformat()
    assert api.add(billing_frequency="quarterly", billing_start_date=past).status_code == 400


def test_a_deal_takes_at_most_twenty_recurring_products_and_any_number_of_one_time_ones(api: Api) -> None:
    for _ in range(20):
        assert api.add(billing_frequency="monthly").status_code == 201
    # When a 21st recurring product is added
    refused = api.add(billing_frequency="semi-annually")
    # Then it is refused, and a one-time product is still taken
    assert refused.status_code == 400 and "20" in refused.json()["error"]
    assert api.add().status_code == 201
    assert len(api.rows(limit=500)["data"]) == 21


def test_patch_changes_billing_checked_on_the_row_as_a_whole(api: Api) -> None:
    # Given a monthly product for 12 cycles
    row = api.add(billing_frequency="monthly", billing_frequency_cycles=12).json()["data"]
    # When the cycles are extended and the start set
    start = _today(api.sandbox)
    patched = api.patch(row["id"], billing_frequency_cycles=24, billing_start_date=start)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["data"]["billing_frequency_cycles"], patched.json()["data"]["billing_start_date"]) == (
        24,
        start,
    )
    # And a switch to one-time that leaves the cycles set is refused (the stored row stays)
    assert api.patch(row["id"], billing_frequency="one-time").status_code == 400
    assert api.rows()["data"][0]["billing_frequency"] == "monthly"
    # While one that clears them is taken
    cleared = api.patch(row["id"], billing_frequency="one-time", billing_frequency_cycles=None)
    assert cleared.status_code == 200
    assert (cleared.json()["data"]["billing_frequency"], cleared.json()["data"]["billing_frequency_cycles"]) == (
        "one-time",
        None,
    )


def test_patch_recomputes_the_sum_and_the_deal_value(api: Api) -> None:
    row = api.add().json()["data"]
    patched = api.patch(row["id"], quantity=3, discount=10).json()["data"]
    assert Decimal(str(patched["sum"])) == Decimal("270")
    assert api.deal_value() == Decimal("270.00")
    assert patched["update_time"] >= row["update_time"]


def test_delete_removes_the_row_and_answers_its_id(api: Api) -> None:
    row = api.add(billing_frequency="annually").json()["data"]
    deleted = api.http.delete(f"/api/v2/deals/{api.deal['id']}/products/{row['id']}")
    assert deleted.status_code == 200 and deleted.json()["data"] == {"id": row["id"]}
    assert api.rows()["data"] == []
    assert api.deal_value() == 0


def test_a_row_of_another_deal_or_no_row_is_a_404(api: Api) -> None:
    row = api.add().json()["data"]
    other = api.sandbox.create("deal", {"title": "Other"})
    for path in (f"/api/v2/deals/{other['id']}/products/{row['id']}", f"/api/v2/deals/{api.deal['id']}/products/999"):
        answer = api.http.patch(path, json={"quantity": 2})
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "Deal product not found"
    missing_deal = api.http.patch(f"/api/v2/deals/999/products/{row['id']}", json={"quantity": 2})
    assert (missing_deal.status_code, missing_deal.json()["error"]) == (404, "Deal not found")


def test_the_helper_edits_billing_as_a_salesperson_would(api: Api) -> None:
    row = api.sandbox.add_deal_product(
        api.deal["id"], {"product_id": api.product["id"], "item_price": "50", "quantity": 2}
    )
    updated = api.sandbox.update_deal_product(api.deal["id"], row["id"], {"billing_frequency": "quarterly"})
    assert updated["billing_frequency"] == "quarterly"
    assert [r["billing_frequency"] for r in api.sandbox.deal_products(api.deal["id"])] == ["quarterly"]
    with pytest.raises(ValueError, match="weekly"):
        api.sandbox.update_deal_product(api.deal["id"], row["id"], {"billing_frequency": "weekly"})
