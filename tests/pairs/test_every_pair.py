"""The whole loop, for every CRM x accounting pair, through the real handlers on the local stack.

Each test acts only through the drivers (a person in the CRM, finance in the accounting system) and the
stack's HTTP API and schedules; the adapters under test talk HTTP to the sandboxes like to the vendors.
The first four are the shared scenarios (tests/pairs/scenarios.py); the contract suite also records the first
three. Quote to cash has its own module (test_quote_to_cash_pairs.py).
"""

from __future__ import annotations

import httpx
import pytest

from closeloop_local.pairs import Pair
from tests.pairs import scenarios

pytestmark = pytest.mark.e2e
TODAY = scenarios.TODAY


def test_a_new_company_becomes_one_customer_even_when_delivered_again(pair: Pair) -> None:
    scenarios.a_new_company_becomes_one_customer_even_when_delivered_again(pair)


def test_an_existing_customer_is_matched_not_duplicated(pair: Pair) -> None:
    scenarios.an_existing_customer_is_matched_not_duplicated(pair)


def test_a_won_deal_becomes_one_invoice_written_back_and_paid_through(pair: Pair) -> None:
    scenarios.a_won_deal_becomes_one_invoice_written_back_and_paid_through(pair)


def test_a_crm_product_becomes_one_item_and_a_won_deal_makes_a_missing_one_just_in_time(pair: Pair) -> None:
    scenarios.a_crm_product_becomes_one_item_and_a_won_deal_makes_a_missing_one_just_in_time(pair)


def test_a_forged_webhook_is_refused_and_reaches_no_vendor(pair: Pair) -> None:
    before = (len(pair.crm.state.requests), len(pair.books.state.requests))
    for route in ("contacts", "deals"):
        for url in (
            f"{pair.stack.api_url}/webhooks/{pair.crm.name}/{route}",
            f"{pair.stack.api_url}/webhooks/{pair.crm.name}/{route}/guess",
        ):
            response = httpx.post(
                url, content=b'{"forged": true}', headers={"Content-Type": "application/json"}, timeout=10
            )
            assert response.status_code == 401, (url, response.text)
    pair.stack.drain(timeout=30)
    assert (len(pair.crm.state.requests), len(pair.books.state.requests)) == before


def test_the_months_reconciliation_runs_and_its_link_downloads(pair: Pair) -> None:
    result = pair.stack.invoke("ReconcileFunction", {"month": TODAY.strftime("%Y-%m")})
    assert httpx.get(result["url"], timeout=10).status_code == 200
    assert result["discrepancies"].get("won_deal_without_invoice", 0) == 0
