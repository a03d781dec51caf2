"""A burst of won deals bigger than Xero's budget: all invoiced, nothing dead-lettered.

The local stack runs template.yaml (maxReceiveCount 5 on the DealQueue, as on AWS) against a Xero sandbox
that enforces Xero's real limits (60 calls in any rolling minute, 5 in flight per tenant), on a clock 10
times faster than real time (CLOSELOOP_TIME_SCALE, shared by the sandbox and the functions: a Xero minute
lasts 6 s, Retry-After and SQS delays shrink with it). 40 deals won together reach the deal worker as one
HubSpot delivery, i.e. one SQS message of 40 events: about 120 Xero calls, two minutes of Xero's budget.

Before pacing and re-queueing, one deal's 429 failed the whole message, the retries came back faster than
the window rolled (and each retry spent a receive count), and the message ended in the DealDLQ with most
deals not invoiced.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from closeloop_local.demo import sandbox_environment
from closeloop_local.sandboxes import hubspot as hubspot_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.stack import LocalStack
from tests.stack_fixtures import ROOT, Loop

pytestmark = pytest.mark.e2e

#: Xero seconds per real second, for the sandbox and the functions alike.
TIME_SCALE = 10
DEALS = 40


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    xero, xero_server = xero_sandbox.serve(
        xero_sandbox.XeroSandbox(minute_limit=60, concurrent_limit=5, time_scale=TIME_SCALE)
    )
    hubspot, hubspot_server = hubspot_sandbox.serve()
    env = sandbox_environment(xero, xero_server.url, hubspot_server.url) | {
        "CLOSELOOP_TIME_SCALE": str(TIME_SCALE),
        "ACCOUNTING_RATE_LIMIT_PER_MINUTE": "0",  # paced at Xero's own published limit: the point of this test
    }
    stack = LocalStack(ROOT, port=0, env_overrides=env)
    stack.start()
    hubspot.configure_webhooks(
        {
            "target_url": f"{stack.api_url}/webhooks/hubspot/contacts",
            "signature_version": "v3",
            "mode": "manual",
            "subscriptions": ["company.creation", "deal.propertyChange:dealstage"],
        }
    )
    try:
        yield Loop(stack, xero, xero_server, hubspot, hubspot_server)
    finally:
        stack.stop()
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()


def dead_letters(loop: Loop, queue_url_setting: str) -> int:
    sqs = loop.stack._client("sqs")  # noqa: SLF001 - the stack's own moto client
    counts = loop.stack._queue_counts(sqs, loop.stack.env[queue_url_setting])  # noqa: SLF001
    return sum(counts.values())


def test_forty_deals_won_in_one_delivery_are_all_invoiced_and_none_dead_lettered(loop: Loop) -> None:
    # Given 40 customers already in Xero and 40 of their deals about to be won
    loop.xero.seed_item(
        Code="SVC", Name="Service", SalesDetails={"UnitPrice": "100.00", "AccountCode": "200", "TaxType": "OUTPUT2"}
    )
    deals = []
    for n in range(DEALS):
        company = loop.hubspot.create_object("companies", {"name": f"Burst {n} Ltd", "country": "NZ"})
        deal = loop.hubspot.create_object(
            "deals",
            {
                "dealname": f"Burst {n}",
                "amount": "100.00",
                "dealstage": "contractsent",
                "pipeline": "default",
                "deal_currency_code": "NZD",
                "closedate": datetime.now(UTC).date().isoformat(),
            },
            associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
        )
        loop.hubspot.create_object(
            "line_items",
            {"name": "Service", "hs_sku": "SVC", "quantity": "1", "price": "100.00"},
            associations=[{"to_type": "deals", "to_id": deal["id"]}],
        )
        deals.append(deal)
    loop.settle()
    assert len(loop.active_xero_contacts()) == DEALS

    # When sales wins all 40 at once and HubSpot sends them in one delivery (one SQS message)
    for deal in deals:
        loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    before = len(loop.xero.state.calls())
    loop.hubspot.flush_webhooks()
    loop.stack.drain(timeout=120)

    # Then every deal has its one invoice, and nothing reached a dead-letter queue
    references = [str(i.get("Reference", "")) for i in loop.xero.invoices()]
    missing = [d["id"] for d in deals if sum(r.startswith(f"hubspot-deal-{d['id']} ") for r in references) != 1]
    assert missing == []
    assert dead_letters(loop, "DEAL_DLQ_URL") == 0
    assert dead_letters(loop, "CONTACT_DLQ_URL") == 0
    # And Xero was barely asked to slow down: at most 1 % of the calls were answered 429
    calls = loop.xero.state.calls()[before:]
    limited = sum(1 for c in calls if c.status == 429)
    assert limited <= len(calls) / 100, f"{limited} of {len(calls)} calls answered 429"
