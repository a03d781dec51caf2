"""End to end over HTTP: a HubSpot product becomes one Xero item, kept the same; a won deal's unknown SKU is
made an item from its product just in time (catalogue sync on, the default)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.models import CrmRef
from tests.stack_fixtures import LOOP_SUBSCRIPTIONS, Loop, loop_webhooks

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()


def product_ref(product: dict[str, Any]) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="product", object_id=str(product["id"]))


def item(loop: Loop, code: str) -> list[dict[str, Any]]:
    return [i for i in loop.xero.items() if i.get("Code") == code]


def test_a_hubspot_product_becomes_one_xero_item_and_a_price_change_follows(loop: Loop) -> None:
    # Given a product created in HubSpot, with a price and a cost
    widget = loop.hubspot.create_object(
        "products",
        {
            "name": "Widget",
            "hs_sku": "WID-E2E",
            "price": "12.50",
            "hs_cost_of_goods_sold": "4.00",
            "description": "A widget",
        },
    )
    # When HubSpot delivers its webhook and the workers finish
    loop.settle()
    # Then Xero holds one item coded by the SKU, priced as the CRM says, costed as its starting value
    (created,) = item(loop, "WID-E2E")
    assert created["Name"] == "Widget"
    assert Decimal(str(created["SalesDetails"]["UnitPrice"])) == Decimal("12.50")
    assert Decimal(str(created["PurchaseDetails"]["UnitPrice"])) == Decimal("4.00")
    mapping = loop.store.get_mapping(product_ref(widget), "xero")
    assert mapping is not None and mapping.accounting_id == created["ItemID"]
    # When sales changes the price and the cost in HubSpot
    loop.hubspot.update_object("products", widget["id"], {"price": "13.00", "hs_cost_of_goods_sold": "5.00"})
    loop.settle()
    # Then the price follows; the cost, which accounting owns, does not, and the conflict is in the audit
    (updated,) = item(loop, "WID-E2E")
    assert Decimal(str(updated["SalesDetails"]["UnitPrice"])) == Decimal("13.00")
    assert Decimal(str(updated["PurchaseDetails"]["UnitPrice"])) == Decimal("4.00")
    actions = [r.action for r in loop.store.list_audit(product_ref(widget))]
    assert actions.count("created") == 1 and "conflict" in actions and "updated" in actions


def test_a_won_deal_whose_sku_has_no_item_gets_the_item_first_then_one_invoice(loop: Loop) -> None:
    # Given a product made while the app was not subscribed to products: the catalogue never heard of it
    without_products = [s for s in LOOP_SUBSCRIPTIONS if not s.startswith("product.")]
    loop.hubspot.configure_webhooks(loop_webhooks(loop.stack.api_url, without_products))
    try:
        gadget = loop.hubspot.create_object("products", {"name": "Gadget", "hs_sku": "GAD-E2E", "price": "40.00"})
        loop.settle()
    finally:
        loop.hubspot.configure_webhooks(loop_webhooks(loop.stack.api_url))
    assert item(loop, "GAD-E2E") == []
    company = loop.hubspot.create_object("companies", {"name": "Gadget Buyers Ltd", "country": "NZ"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Gadgets",
            "amount": "80.00",
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    loop.hubspot.create_object(
        "line_items",
        {"name": "Gadget", "hs_sku": "GAD-E2E", "hs_product_id": str(gadget["id"]), "quantity": "2", "price": "40.00"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    loop.settle()
    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then the item was made from the product, and exactly one invoice bills it
    (made,) = item(loop, "GAD-E2E")
    assert made["Name"] == "Gadget"
    invoices = [
        i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal['id']} ")
    ]
    (invoice,) = invoices
    assert [line["ItemCode"] for line in invoice["LineItems"]] == ["GAD-E2E"]
