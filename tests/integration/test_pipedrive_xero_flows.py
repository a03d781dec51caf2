"""A Pipedrive deal through the won-deal flows into Xero, both over HTTP on their sandboxes (the real Pipedrive and
Xero adapters, DealSync with the quote, recurring and purchase-order flows as runtime.won_deal_flows orders
them): a deal quoted in a quote stage becomes one Xero quote; won with a monthly line for 12 cycles, a one-off
line and a supplier line it becomes one invoice (the one-off and supplier lines), one repeating invoice (the
monthly line) and one draft purchase order at unit cost; the schedule, next date, annual value and purchase
order number are written back to the deal; a redelivery makes nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.models import CrmRef
from closeloop.ports import PropertyDefinition
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.purchase_orders import PurchaseOrderFlow, PurchaseOrderPolicy, purchase_order_reference
from closeloop.sync.quotes import QuoteFlow, QuoteSync
from closeloop.sync.recurring import RecurringFlow, SchedulePolicy
from closeloop.sync.tax import TaxRule
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes import pipedrive as pipedrive_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox
from closeloop_local.sandboxes.xero import XeroSandbox
from tests.fakes import MemoryStore
from tests.sandbox_adapters import xero_books

QUOTED_STAGE = 3


@pytest.fixture
def sandboxes() -> Iterator[tuple[PipedriveSandbox, SandboxServer, XeroSandbox, SandboxServer]]:
    pipedrive, pipedrive_server = pipedrive_sandbox.serve()
    xero, xero_server = xero_sandbox.serve()
    yield pipedrive, pipedrive_server, xero, xero_server
    pipedrive_server.stop()
    xero_server.stop()


def ref(object_type: str, object_id: object) -> CrmRef:
    return CrmRef.model_validate({"crm": "pipedrive", "object_type": object_type, "object_id": str(object_id)})


def seeded_deal(pipedrive: PipedriveSandbox, xero: XeroSandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    """An NZ organization's NZD deal, open in the quote stage, with a monthly hosting line for 12 cycles from
    today, a one-off setup line and an anvil bought from Acme Supplies at 40; each product an item in Xero."""
    for code, name, price in (
        ("HOST-PD", "Hosting", "50.00"),
        ("SETUP-PD", "Setup", "500.00"),
        ("ANV-PD", "Anvil", "99.00"),
    ):
        xero.seed_item(
            Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
        )
    supplier = pipedrive.add_field("product", "closeloop_supplier")
    today = datetime.fromtimestamp(pipedrive.now(), UTC).date().isoformat()
    org = pipedrive.create("organization", {"name": "Hosted Ltd", "address": {"value": "1 Queen St", "country": "NZ"}})
    host = pipedrive.create(
        "product", {"name": "Hosting", "code": "HOST-PD", "prices": [{"currency": "NZD", "price": 50}]}
    )
    setup = pipedrive.create(
        "product", {"name": "Setup", "code": "SETUP-PD", "prices": [{"currency": "NZD", "price": 500}]}
    )
    anvil = pipedrive.create(
        "product",
        {"name": "Anvil", "code": "ANV-PD", "prices": [{"currency": "NZD", "price": 99, "cost": 40}],
         "custom_fields": {supplier: "Acme Supplies"}},
    )  # fmt: skip
    deal = pipedrive.create(
        "deal", {"title": "Hosting contract", "org_id": org["id"], "currency": "NZD", "stage_id": QUOTED_STAGE}
    )
    pipedrive.add_deal_product(
        deal["id"],
        {"product_id": host["id"], "item_price": "50.00", "quantity": 1, "billing_frequency": "monthly",
         "billing_frequency_cycles": 12, "billing_start_date": today},
    )  # fmt: skip
    pipedrive.add_deal_product(deal["id"], {"product_id": setup["id"], "item_price": "500.00", "quantity": 1})
    pipedrive.add_deal_product(deal["id"], {"product_id": anvil["id"], "item_price": "99.00", "quantity": 2})
    return org, deal


def test_a_quoted_then_won_pipedrive_deal_makes_one_quote_invoice_schedule_and_purchase_order_in_xero(
    sandboxes: tuple[PipedriveSandbox, SandboxServer, XeroSandbox, SandboxServer],
) -> None:
    pipedrive, pipedrive_server, xero, xero_server = sandboxes
    _, deal = seeded_deal(pipedrive, xero)
    crm = PipedriveCrm(
        api_token=lambda: pipedrive.api_token,
        base_url=pipedrive_server.url,
        quote_stages=(str(QUOTED_STAGE),),
        sleep=lambda s: None,
    )
    crm.ensure_properties("product", [PropertyDefinition("closeloop_supplier", "Supplier")])
    books = xero_books(xero, xero_server.url)
    store = MemoryStore()
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("NZ",), tax_type="OUTPUT2"),))
    contacts = ContactSync(crm, books, store, owner="w")
    quotes = QuoteSync(crm, books, store, contacts, policy, owner="w")
    flows = (
        QuoteFlow(quotes),
        RecurringFlow(crm, books, books, store, SchedulePolicy(invoices=policy), owner="w"),
        PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w"),
    )
    deals = DealSync(crm, books, store, contacts, policy, owner="w", flows=flows)
    deal_id = str(deal["id"])

    # When the deal, open in the quote stage, is synced as a quote
    assert quotes.sync(ref("quote", deal_id)).action == "created"
    # Then one Xero quote bills its three lines, and its number is on the deal
    (quote,) = xero.quotes()
    assert sorted(line["ItemCode"] for line in quote["LineItems"]) == ["ANV-PD", "HOST-PD", "SETUP-PD"]
    assert pipedrive.custom_values("deal", deal_id)["closeloop_quote_number"] == quote["QuoteNumber"]

    # When the deal is won and synced, twice (a redelivery)
    pipedrive.update("deal", deal_id, {"status": "won"})
    first = deals.sync(ref("deal", deal_id), [])
    again = deals.sync(ref("deal", deal_id), [])
    assert first.action == "created", first.detail
    assert again.action != "failed", again.detail
    # Then one invoice bills the one-off and supplier lines, the monthly line stays off it
    (invoice,) = [i for i in xero.invoices() if str(i.get("Reference", "")).startswith(f"pipedrive-deal-{deal_id} ")]
    assert sorted(line["ItemCode"] for line in invoice["LineItems"]) == ["ANV-PD", "SETUP-PD"]
    # And one monthly repeating invoice bills hosting for 12 months
    (schedule,) = [r for r in xero.repeating_invoices() if r.get("Reference") == f"pipedrive-deal-{deal_id}/monthly"]
    assert (schedule["Schedule"]["Unit"], schedule["Schedule"]["Period"]) == ("MONTHLY", 1)
    assert [line["ItemCode"] for line in schedule["LineItems"]] == ["HOST-PD"]
    # And one draft purchase order buys the anvils from Acme Supplies at unit cost
    reference = purchase_order_reference(ref("deal", deal_id), "acme supplies")
    order = books.find_purchase_order(reference, datetime.now(UTC).date())  # the flow's clock dates it
    assert order is not None and order.status == "DRAFT"
    assert (order.currency, order.total) == ("NZD", Decimal("80.00"))  # 2 anvils at unit cost 40
    assert len([c for c in xero.contacts() if c.get("Name") == "Acme Supplies"]) == 1
    # And the deal shows the schedule, its next date, its annual value and the purchase order number
    written = pipedrive.custom_values("deal", deal_id)
    assert written["closeloop_schedule_ids"] == schedule["RepeatingInvoiceID"]
    assert Decimal(written["closeloop_annual_value"]) == Decimal("600")
    assert written["closeloop_purchase_orders"] == order.number
    assert written["closeloop_invoice_number"] == invoice["InvoiceNumber"]
    # And the Xero quote was marked invoiced, the deal's quote fields say so
    assert written["closeloop_quote_status"] == "INVOICED"
