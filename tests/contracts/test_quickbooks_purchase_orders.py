"""The QuickBooks purchasing exchanges (what the adapter sends for vendors and purchase orders, what the
sandbox answers) held against Intuit's published contract: entities.json (Vendor, PurchaseOrder,
ItemBasedExpenseLineDetail and AccountBasedExpenseLineDetail of Intuit's XSDs) and operations.json (the
Vendor and PurchaseOrder pages' create rules, the query envelope)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import PurchaseOrderDraft, PurchaseOrderLine
from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.quickbooks import DEFAULT_REALM_ID, QuickBooksDriver, serve
from tests.contracts.contract import load
from tests.quickbooks_adapters import adapter

BASE = f"/v3/company/{DEFAULT_REALM_ID}"


def test_every_purchasing_exchange_follows_intuit_s_contract() -> None:
    # Given the QuickBooks adapter on a sandbox whose exchanges are recorded
    with recording() as recorder:
        qbo, server = serve()
        try:
            books = adapter(qbo, server.url)
            QuickBooksDriver(qbo).seed_item("ANV-1", "Anvil", Decimal("99"))
            # When it creates a vendor (and meets a taken name), looks vendors up, creates a purchase order
            # (twice with one key, once refused), finds it by reference and reads it by id
            supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
            with pytest.raises(Conflict):
                books.create_supplier("Acme Supplies", idempotency_key="k-s2")
            books.find_suppliers("Acme Supplies")
            lines = (
                PurchaseOrderLine(item_code="ANV-1", description="Anvil", quantity=Decimal(2), unit_cost=Decimal(40)),
                PurchaseOrderLine(item_code="", description="Freight", quantity=Decimal(1), unit_cost=Decimal("9.5")),
            )
            draft = PurchaseOrderDraft(
                supplier_id=supplier.id,
                reference="hubspot-deal-1-po-acme-supplies",
                currency="USD",
                lines=lines,
                issue_date=date(2026, 11, 20),
            )
            order = books.create_purchase_order(draft, idempotency_key="k-po")
            books.create_purchase_order(draft, idempotency_key="k-po")
            with pytest.raises(ValidationFailed):
                empty = draft.model_copy(update={"lines": (), "reference": "hubspot-deal-2-po-acme-supplies"})
                books.create_purchase_order(empty, idempotency_key="k-bad")
            assert books.find_purchase_order(draft.reference, draft.issue_date) is not None
            assert books.get_purchase_order(order.id) is not None
            assert books.get_purchase_order("999") is None
        finally:
            server.stop()
    exchanges = [e for e in recorder.exchanges if e.path.startswith(BASE)]
    contract = load("quickbooks")
    names = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert names >= {
        "POST /v3/company/{realmId}/vendor",
        "POST /v3/company/{realmId}/purchaseorder",
        "GET /v3/company/{realmId}/purchaseorder/{purchaseorderId}",
        "GET /v3/company/{realmId}/query",
    }
    assert {(e.method, e.status) for e in exchanges if "/purchaseorder" in e.path} >= {("POST", 200), ("POST", 400)}
    queried = {e.query for e in exchanges if e.path.endswith("/query")}
    assert any("Vendor" in q for q in queried) and any("PurchaseOrder" in q for q in queried)
    # Then each request and answer validates against Intuit's published description
    violations = sorted({str(v) for exchange in exchanges for v in contract.check(exchange)})
    assert not violations, "\n".join(violations)


def test_a_purchase_order_with_a_status_or_field_intuit_does_not_define_is_a_violation() -> None:
    contract = load("quickbooks")

    def check(order: dict[str, Any]) -> list[str]:
        exchange = Exchange(
            host="127.0.0.1:1",
            method="GET",
            path=f"{BASE}/purchaseorder/1",
            query="",
            headers={},
            body=b"",
            status=200,
            response_headers={"content-type": "application/json"},
            response_body=json.dumps({"PurchaseOrder": order, "time": "2026-01-01T00:00:00-08:00"}).encode(),
        )
        return [v.message for v in contract.check(exchange)]

    line = {
        "DetailType": "ItemBasedExpenseLineDetail",
        "Amount": 80,
        "ItemBasedExpenseLineDetail": {"ItemRef": {"value": "1"}, "Qty": 2, "UnitPrice": 40},
    }
    good = {
        "Id": "1",
        "SyncToken": "0",
        "POStatus": "Open",
        "VendorRef": {"value": "2"},
        "Line": [line],
        "TotalAmt": 80,
    }
    assert check(good) == []
    assert check({**good, "POStatus": "Draft"})  # not in PurchaseOrderStatusEnum
    assert check({**good, "Status": "Open"})  # not a PurchaseOrder field of the XSD
    bad_line = {**line, "ItemBasedExpenseLineDetail": {"ItemRef": {"value": "1"}, "Quantity": 2}}
    assert check({**good, "Line": [bad_line]})  # Quantity is not an ItemBasedExpenseLineDetail field
