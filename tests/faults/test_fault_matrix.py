"""Fault injection over the local stack: every case ends with nothing lost and nothing duplicated.

This module holds the cases that need heavier set-ups; tests/faults/conftest.py says where the rest of
the matrix is (this directory, and the few cases kept beside the features they break).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from closeloop.models import CrmRef
from closeloop_local.sandboxes.base import Fault
from tests.stack_fixtures import Loop, running_loop

pytestmark = pytest.mark.e2e

#: Vendor seconds per real second for the functions (CLOSELOOP_TIME_SCALE): HubSpot's ten-second window
#: lasts one real second, in the adapter's waits and in the SQS delay of a re-queued message alike. The
#: sandboxes keep real time; these cases do not exercise their own limits.
TIME_SCALE = 10


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with running_loop({"CLOSELOOP_TIME_SCALE": str(TIME_SCALE)}) as started:
        yield started


def test_one_hundred_concurrent_duplicates_leave_one_contact(loop: Loop) -> None:
    # Given a company whose creation batch HubSpot delivered once
    company = loop.hubspot.create_object("companies", {"name": "Hundredfold Ltd"})
    loop.settle()
    delivery = next(d for d in reversed(loop.hubspot.deliveries) if str(company["id"]) in d["body"])
    # When the same signed batch arrives 100 more times, 20 at a time
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    client.post(delivery["url"], content=delivery["body"], headers=delivery["headers"]).status_code
                ),
                range(100),
            )
        )
    loop.stack.drain(timeout=120)
    # Then each was acknowledged, and Xero holds exactly one contact, created once
    assert set(statuses) == {200}
    assert len([c for c in loop.active_xero_contacts() if c["Name"] == "Hundredfold Ltd"]) == 1
    creates = [r for r in loop.xero.state.calls("PUT", "/api.xro/2.0/Contacts") if b"Hundredfold" in r.body]
    assert len(creates) == 1


def test_hubspot_rate_limiting_the_write_back_still_ends_with_one_invoice_written_back(loop: Loop) -> None:
    today = datetime.now(UTC).date().isoformat()
    existing = {i["Code"] for i in loop.xero.items()}
    if "FLT-1" not in existing:
        loop.xero.seed_item(Code="FLT-1", Name="Fault", SalesDetails={"UnitPrice": "10.00", "AccountCode": "200"})
    company = loop.hubspot.create_object("companies", {"name": "Throttled Co"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Throttled",
            "amount": "10.00",
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": today,
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    loop.hubspot.create_object(
        "line_items",
        {"name": "Fault", "hs_sku": "FLT-1", "quantity": "1", "price": "10.00"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    loop.settle()
    # Given HubSpot answers 429 to the next five deal write-backs (more than one invocation retries: the rest is
    # re-queued after the ten-second window its 429 names)
    limited = {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    loop.hubspot.state.faults.append(Fault("/crm/v3/objects/deals/batch/update", 429, times=5, body=limited))
    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then there is one invoice, and the write-back landed once HubSpot let it through
    invoices = [
        i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal['id']} ")
    ]
    assert len(invoices) == 1
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]
    assert props["closeloop_invoice_number"] == invoices[0]["InvoiceNumber"]
    mapping = loop.store.get_mapping(CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"])), "xero")
    assert mapping is not None
    assert mapping.snapshot["written_back"] == "yes"
    assert [f for f in loop.hubspot.state.faults if f.times > 0] == []
