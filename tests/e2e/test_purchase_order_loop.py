"""End to end over HTTP: a HubSpot deal won with one supplier line and one plain line becomes one Xero
invoice and one draft purchase order for the supplier at unit cost (PURCHASE_ORDERS on); a redelivery makes
no second order; the order's number is on the deal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.stack_fixtures import FUNCTIONS_CLOCK, Loop, running_loop

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with running_loop({**FUNCTIONS_CLOCK, "PURCHASE_ORDERS": "true"}) as started:
        yield started


def orders_for(loop: Loop, deal_id: str) -> list[dict[str, Any]]:
    return [
        po
        for po in (loop.xero.purchase_orders_by_id[k].data for k in list(loop.xero.purchase_orders_by_id))
        if str(po.get("Reference", "")).startswith(f"hubspot-deal-{deal_id}-po-")
    ]


def define_supplier_property(loop: Loop) -> None:
    """The product property ``closeloop setup`` makes (the stack itself does not run setup)."""
    response = httpx.post(
        f"{loop.hubspot_server.url}/crm/v3/properties/products",
        json={
            "name": "closeloop_supplier",
            "label": "Supplier",
            "type": "string",
            "fieldType": "text",
            "groupName": "productinformation",
        },
        headers={"Authorization": f"Bearer {loop.hubspot.access_token}"},
        timeout=10,
    )
    assert response.status_code in (201, 409), response.text


def test_a_won_deal_with_a_supplier_line_makes_one_invoice_and_one_draft_purchase_order(loop: Loop) -> None:
    # Given a supplier product (cost 40, from "Acme Supplies") and a plain one, both items in Xero
    for code, name in (("ANV-PO", "Anvil"), ("SVC-PO", "Setup")):
        loop.xero.seed_item(Code=code, Name=name, SalesDetails={"UnitPrice": "10.00", "AccountCode": "200"})
    define_supplier_property(loop)
    anvil = loop.hubspot.create_object(
        "products",
        {
            "name": "Anvil",
            "hs_sku": "ANV-PO",
            "price": "99.00",
            "hs_cost_of_goods_sold": "40.00",
            "closeloop_supplier": "Acme Supplies Ltd",
        },
    )
    setup = loop.hubspot.create_object("products", {"name": "Setup", "hs_sku": "SVC-PO", "price": "150.00"})
    company = loop.hubspot.create_object("companies", {"name": "Roadrunner Ltd", "country": "NZ"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Anvils",
            "amount": "447.00",
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    for product, quantity in ((anvil, "3"), (setup, "1")):
        loop.hubspot.create_object(
            "line_items",
            {
                "name": product["properties"]["name"],
                "hs_sku": product["properties"]["hs_sku"],
                "hs_product_id": str(product["id"]),
                "quantity": quantity,
                "price": product["properties"]["price"],
            },
            associations=[{"to_type": "deals", "to_id": deal["id"]}],
        )
    loop.settle()
    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then one invoice bills both lines, and one draft purchase order buys the supplier's line at unit cost
    invoices = [
        i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal['id']} ")
    ]
    (invoice,) = invoices
    assert sorted(line["ItemCode"] for line in invoice["LineItems"]) == ["ANV-PO", "SVC-PO"]
    (order,) = orders_for(loop, deal["id"])
    assert order["Status"] == "DRAFT"
    assert [(line["ItemCode"], line["Quantity"], line["UnitAmount"]) for line in order["LineItems"]] == [
        ("ANV-PO", Decimal(3), Decimal(40))
    ]
    supplier = loop.xero.contacts_by_id[order["ContactID"]].data
    assert supplier["Name"] == "Acme Supplies Ltd"
    # and its number is on the deal
    properties = loop.hubspot.get_object("deals", deal["id"])["properties"]
    assert properties["closeloop_purchase_orders"] == order["PurchaseOrderNumber"]
    # When the won deal is delivered again (it left the won stage and came back)
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "contractsent"})
    loop.settle()
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then there is still one invoice and one purchase order, for one supplier contact
    assert len(orders_for(loop, deal["id"])) == 1
    assert len([c for c in loop.xero.contacts() if c.get("Name") == "Acme Supplies Ltd"]) == 1
    assert (
        len([i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal['id']} ")])
        == 1
    )
