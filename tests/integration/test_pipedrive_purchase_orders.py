"""The Pipedrive side of purchase orders against the Pipedrive sandbox over HTTP: a won deal's products read with
their supplier (the closeloop_supplier product field) and unit cost (the cost of the product's price), one draft
purchase order per supplier (a fake accounting side) whose numbers are written back to the deal's
closeloop_purchase_orders field (made through dealFields on first use); a supplier product whose cost is
Pipedrive's 0 ("none given") fails the deal naming it, and no supplier or purchase order is created."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from closeloop.models import CrmRef, Item
from closeloop.ports import PropertyDefinition
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.purchase_orders import PurchaseOrderFlow, PurchaseOrderPolicy
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.fakes import FakePurchasingBooks, MemoryStore


@pytest.fixture
def sandbox() -> Iterator[tuple[PipedriveSandbox, SandboxServer]]:
    pipedrive, server = serve()
    yield pipedrive, server
    server.stop()


def won_deal(pipedrive: PipedriveSandbox, anvil_cost: object) -> dict[str, Any]:
    """A won EUR deal: 3 anvils bought from Acme Supplies (cost ``anvil_cost``) and a setup nobody supplies."""
    supplier = pipedrive.add_field("product", "closeloop_supplier")
    org = pipedrive.create("organization", {"name": "Buyer Ltd"})
    anvil = pipedrive.create(
        "product",
        {"name": "Anvil", "code": "ANV-1", "prices": [{"currency": "EUR", "price": 99, "cost": anvil_cost}],
         "custom_fields": {supplier: "Acme Supplies"}},
    )  # fmt: skip
    setup = pipedrive.create(
        "product", {"name": "Setup", "code": "SETUP", "prices": [{"currency": "EUR", "price": 250}]}
    )
    deal = pipedrive.create("deal", {"title": "Anvils", "org_id": org["id"], "currency": "EUR"})
    pipedrive.add_deal_product(deal["id"], {"product_id": anvil["id"], "item_price": "99", "quantity": 3})
    pipedrive.add_deal_product(deal["id"], {"product_id": setup["id"], "item_price": "250", "quantity": 1})
    pipedrive.update("deal", deal["id"], {"status": "won"})
    return deal


def stand_up(pipedrive: PipedriveSandbox, url: str) -> tuple[DealSync, FakePurchasingBooks, MemoryStore]:
    crm = PipedriveCrm(api_token=lambda: pipedrive.api_token, base_url=url, sleep=lambda s: None)
    crm.ensure_properties("product", [PropertyDefinition("closeloop_supplier", "Supplier")])
    books = FakePurchasingBooks()
    for code in ("ANV-1", "SETUP"):
        books.items[code] = Item(code=code, name=code)
    store = MemoryStore()
    flow = PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w")
    contacts = ContactSync(crm, books, store, owner="w")
    return DealSync(crm, books, store, contacts, InvoicePolicy(), owner="w", flows=(flow,)), books, store


def deal_ref(deal: dict[str, Any]) -> CrmRef:
    return CrmRef(crm="pipedrive", object_type="deal", object_id=str(deal["id"]))


def test_a_won_deal_orders_its_supplier_lines_at_cost_and_the_number_is_on_the_deal(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    deal = won_deal(pipedrive, "40.50")
    sync, books, _ = stand_up(pipedrive, server.url)
    # When the won deal is synced, and delivered again
    assert sync.sync(deal_ref(deal), []).action == "created"
    sync.sync(deal_ref(deal), [])
    # Then one draft purchase order buys the 3 anvils from Acme Supplies at unit cost (the setup is not bought)
    (order,) = books.purchase_orders.values()
    (line,) = books.po_drafts[order.id].lines
    assert (line.item_code, line.quantity, line.unit_cost) == ("ANV-1", Decimal(3), Decimal("40.50"))
    assert [s.name for s in books.suppliers.values()] == ["Acme Supplies"]
    # And its number is written to the deal's closeloop_purchase_orders field, made by POST /api/v2/dealFields
    assert pipedrive.custom_values("deal", deal["id"])["closeloop_purchase_orders"] == order.number
    assert pipedrive.field_key("deal", "closeloop_purchase_orders") is not None


def test_a_supplier_product_without_a_cost_fails_the_deal_naming_it(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    deal = won_deal(pipedrive, 0)  # Pipedrive's cost when none was given
    sync, books, store = stand_up(pipedrive, server.url)
    # When the won deal is synced
    outcome = sync.sync(deal_ref(deal), [])
    # Then it fails naming the product, and no supplier or purchase order is made (the purchase side is
    # checked whole after the deal's own invoice, as PurchaseOrderFlow does for every CRM)
    assert outcome.action == "failed"
    failure = store.get_failed_sync(deal_ref(deal))
    assert failure is not None and "'Anvil'" in failure.reason and "no unit cost" in failure.reason
    assert (books.suppliers, books.purchase_orders) == ({}, {})
    # When the cost is given in Pipedrive and the deal is synced again, Then the order is made
    (anvil,) = [p for p in pipedrive.deal_products(deal["id"]) if p["name"] == "Anvil"]
    pipedrive.update("product", anvil["product_id"], {"prices": [{"currency": "EUR", "price": 99, "cost": 40}]})
    sync.sync(deal_ref(deal), [])
    assert len(books.purchase_orders) == 1
    assert store.get_failed_sync(deal_ref(deal)) is None
