"""End to end over HTTP: a HubSpot quote approved becomes one Xero quote (SENT) with its number written back;
accepted in Xero, the HubSpot quote says so after the poll; the deal won is invoiced from the quote's lines and
the Xero quote is marked INVOICED; a redelivery changes nothing.

HubSpot sends no quote webhooks: the scheduled poller's catch-up scan is what finds the approved quote."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.models import CrmRef
from closeloop_local.sandboxes.xero import XeroDriver
from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()


def quotes_for(loop: Loop, quote_id: str) -> list[dict[str, Any]]:
    return [q for q in loop.xero.quotes() if str(q.get("Reference", "")).startswith(f"hubspot-quote-{quote_id} ")]


def invoices_for(loop: Loop, deal_id: str) -> list[dict[str, Any]]:
    return [i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal_id} ")]


def quote_fields(loop: Loop, quote_id: str) -> dict[str, Any]:
    found = loop.hubspot.get_object("quotes", quote_id)
    assert found is not None
    return dict(found["properties"])


def poll(loop: Loop) -> None:
    """The scheduled poller once (catch-up scan, quote status poll), then the queues it fed."""
    loop.stack.run_schedule("PaymentPollerFunction")
    loop.settle()


def test_an_approved_hubspot_quote_is_quoted_accepted_invoiced_and_marked_once(loop: Loop) -> None:
    # Given an item in Xero and the poller's watermarks standing before the quote exists
    loop.xero.seed_item(Code="QWID", Name="Quoted widget", SalesDetails={"UnitPrice": "12.50", "AccountCode": "200"})
    poll(loop)
    company = loop.hubspot.create_object("companies", {"name": "Quote Buyers Ltd", "country": "NZ"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Quoted widgets",
            "amount": "37.50",
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    quote = loop.hubspot.create_object(
        "quotes",
        {"hs_title": "Widgets", "hs_status": "DRAFT", "hs_expiration_date": "2099-01-31", "hs_currency": "NZD"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}, {"to_type": "companies", "to_id": company["id"]}],
    )
    loop.hubspot.create_object(
        "line_items",
        {"name": "Quoted widget", "hs_sku": "QWID", "quantity": "3", "price": "12.50"},
        associations=[{"to_type": "quotes", "to_id": quote["id"]}],
    )
    quote_ref = CrmRef(crm="hubspot", object_type="quote", object_id=str(quote["id"]))

    # When the draft is polled, nothing is quoted; when it is approved and polled, one Xero quote is made
    poll(loop)
    assert quotes_for(loop, quote["id"]) == []
    loop.hubspot.update_object("quotes", quote["id"], {"hs_status": "APPROVED"})
    poll(loop)
    (made,) = quotes_for(loop, quote["id"])
    assert made["Status"] == "SENT" and made["QuoteNumber"].startswith("QU-")
    assert Decimal(str(made["SubTotal"])) == Decimal("37.50")
    # Then its number and status are on the HubSpot quote
    props = quote_fields(loop, quote["id"])
    assert props["closeloop_quote_number"] == made["QuoteNumber"]
    assert props["closeloop_quote_status"] == "SENT"

    # When finance marks it accepted in Xero and the poller runs
    XeroDriver(loop.xero, loop.xero_server.url).set_quote_status(made["QuoteID"], "ACCEPTED")
    poll(loop)
    # Then the HubSpot quote says accepted
    assert quote_fields(loop, quote["id"])["closeloop_quote_status"] == "ACCEPTED"

    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then one invoice bills the quote's lines, and the Xero quote is INVOICED (said on the HubSpot quote too)
    (invoice,) = invoices_for(loop, deal["id"])
    assert [(li["ItemCode"], Decimal(str(li["Quantity"]))) for li in invoice["LineItems"]] == [("QWID", Decimal(3))]
    assert Decimal(str(invoice["SubTotal"])) == Decimal("37.50")
    (invoiced,) = quotes_for(loop, quote["id"])
    assert invoiced["Status"] == "INVOICED"
    assert quote_fields(loop, quote["id"])["closeloop_quote_status"] == "INVOICED"

    # When everything is delivered again (the deal's webhook, the poller's scans)
    audit_before = [r.action for r in loop.store.list_audit(quote_ref)]
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "contractsent"})
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    poll(loop)
    # Then nothing changes: one quote, one invoice, no new quote work in the audit trail
    assert [q["QuoteID"] for q in quotes_for(loop, quote["id"])] == [made["QuoteID"]]
    assert [i["InvoiceID"] for i in invoices_for(loop, deal["id"])] == [invoice["InvoiceID"]]
    audit_after = [r.action for r in loop.store.list_audit(quote_ref)]
    assert [a for a in audit_after if a in ("quoted", "revised", "invoiced", "linked")] == [
        a for a in audit_before if a in ("quoted", "revised", "invoiced", "linked")
    ]
    assert audit_before.count("quoted") == 1 and audit_before.count("invoiced") == 1
