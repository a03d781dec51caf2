"""The Xero adapter's purchasing side (PurchasingAccounting) against the Xero sandbox over HTTP: suppliers
matched and created, draft purchase orders created once per key, found by reference among their day's
orders, read by id, and Xero's refusals.

Published source of every request and answer: Xero's OpenAPI (xero_accounting.yaml: Contacts,
getPurchaseOrders, createPurchaseOrders, getPurchaseOrder); tests/contracts/test_xero_purchase_orders.py
holds them to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import PurchaseOrderDraft, PurchaseOrderLine
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.sandbox_adapters import xero_adapter

DAY = date(2026, 11, 20)


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
    xero.seed_item(
        Code="ANV-1",
        Name="Anvil",
        SalesDetails={"UnitPrice": "99.00", "AccountCode": "200", "TaxType": "OUTPUT2"},
        PurchaseDetails={"UnitPrice": "35.00", "AccountCode": "310", "TaxType": "INPUT2"},
    )
    yield xero, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroAccounting:
    xero, server = sandbox
    return xero_adapter(xero, server.url)


def draft(supplier_id: str, **kw: object) -> PurchaseOrderDraft:
    values: dict[str, object] = {
        "supplier_id": supplier_id,
        "reference": "hubspot-deal-3000001-po-acme-supplies",
        "currency": "NZD",
        "lines": (
            PurchaseOrderLine(item_code="ANV-1", description="Anvil", quantity=Decimal(3), unit_cost=Decimal(40)),
            PurchaseOrderLine(item_code="", description="Freight", quantity=Decimal(1), unit_cost=Decimal("12.50")),
        ),
        "issue_date": DAY,
    }
    values.update(kw)
    return PurchaseOrderDraft(**values)  # type: ignore[arg-type]


def test_a_supplier_is_created_once_found_by_its_name_and_a_taken_name_is_a_conflict(books: XeroAccounting) -> None:
    # When a supplier is created, then looked for by name
    supplier = books.create_supplier("Acme Supplies Ltd", idempotency_key="k-supplier")
    again = books.create_supplier("Acme Supplies Ltd", idempotency_key="k-supplier")  # a lost answer's retry
    # Then one contact exists and the name search finds it
    assert again.id == supplier.id
    assert [s.id for s in books.find_suppliers("Acme Supplies")] == [supplier.id]
    # and another create with that name (a new key) is refused as Xero refuses duplicate contact names
    with pytest.raises(Conflict):
        books.create_supplier("Acme Supplies Ltd", idempotency_key="k-other")


def test_a_draft_purchase_order_is_created_at_unit_cost_and_found_by_reference_on_its_date(
    sandbox: tuple[XeroSandbox, SandboxServer], books: XeroAccounting
) -> None:
    xero, _ = sandbox
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    # When the purchase order is created twice with one key (a retry after a lost answer)
    order = books.create_purchase_order(draft(supplier.id), idempotency_key="k-po")
    replay = books.create_purchase_order(draft(supplier.id), idempotency_key="k-po")
    # Then there is one draft, numbered by Xero, at the costs sent (the item's purchase tax on its line)
    assert replay.id == order.id and len(xero.purchase_orders_by_id) == 1
    assert order.status == "DRAFT" and order.number == "PO-0001" and order.supplier_id == supplier.id
    assert order.total == Decimal("150.50")  # 120.00 + 18.00 GST (INPUT2 15 %) + 12.50 freight
    assert order.url.endswith(f"/Accounts/Payable/PurchaseOrders/View/{order.id}")
    sent = json.loads(xero.state.calls("PUT", "/api.xro/2.0/PurchaseOrders")[0].body)["PurchaseOrders"][0]
    assert sent["LineItems"][0] == {"Description": "Anvil", "Quantity": 3, "UnitAmount": 40, "ItemCode": "ANV-1"}
    assert sent["Status"] == "DRAFT" and sent["Contact"] == {"ContactID": supplier.id}
    # and it is found by its reference among the orders of its date (not on another day), and by id
    found = books.find_purchase_order("hubspot-deal-3000001-po-acme-supplies", DAY)
    assert found is not None and found.id == order.id
    assert books.find_purchase_order("hubspot-deal-3000001-po-acme-supplies", date(2026, 11, 21)) is None
    assert books.find_purchase_order("hubspot-deal-3000001-po-other", DAY) is None
    got = books.get_purchase_order(order.id)
    assert got is not None and got.number == "PO-0001"
    assert books.get_purchase_order("00000000-0000-0000-0000-00000000abcd") is None


def test_xero_s_refusals_are_validation_failures_with_its_reasons(books: XeroAccounting) -> None:
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    with pytest.raises(ValidationFailed, match="could not be found"):
        books.create_purchase_order(draft("00000000-0000-0000-0000-00000000abcd"), idempotency_key="k-1")
    bad_line = (PurchaseOrderLine(item_code="NOPE", description="?", quantity=Decimal(1), unit_cost=Decimal(1)),)
    with pytest.raises(ValidationFailed, match="Item code 'NOPE' is not valid"):
        books.create_purchase_order(draft(supplier.id, lines=bad_line), idempotency_key="k-2")
    with pytest.raises(ValidationFailed, match="at least one line item"):
        books.create_purchase_order(draft(supplier.id, lines=()), idempotency_key="k-3")
    assert books.find_purchase_order("hubspot-deal-3000001-po-acme-supplies", DAY) is None


def test_the_order_list_pages_and_filters_by_date(books: XeroAccounting) -> None:
    # Given more orders on one day than a page holds
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    books.PAGE_SIZE = 2  # type: ignore[misc]
    for n in range(5):
        books.create_purchase_order(draft(supplier.id, reference=f"ref-{n}"), idempotency_key=f"k-{n}")
    books.create_purchase_order(
        draft(supplier.id, reference="ref-9", issue_date=date(2026, 11, 19)), idempotency_key="k-9"
    )
    # Then the last one of the day is found across pages, and one of another day is not
    found = books.find_purchase_order("ref-4", DAY)
    assert found is not None and found.reference == "ref-4"
    assert books.find_purchase_order("ref-9", DAY) is None
