"""The Zoho Books adapter's recurring invoice, vendor and purchase order exchanges (RecurringAccounting and
PurchasingAccounting: create, find by name and by reference, get, extend, stop, the children read back, refusals)
held against Zoho's published operations (tests/contracts/zohobooks/operations.json): the pair loop makes no
schedules or purchase orders, so this runs the adapter's calls on the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import InvoiceLine, PurchaseOrderDraft, PurchaseOrderLine, ScheduleDraft
from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.contracts.contract import load
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on

VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))


def _exchanges() -> list[Exchange]:
    """Every recurring invoice, vendor and purchase order call the adapter makes, refusals included."""
    with recording() as recorder:
        zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
        try:
            driver = ZohoBooksDriver(zoho)
            driver.seed_item("SUP-1", "Support", Decimal("100"))
            buyer = driver.seed_customer("Acme", email="acme@x.test")
            books = books_on(zoho, server.url, cls=PagesOfTwo)
            start = datetime.fromtimestamp(zoho.state.clock.now(), UTC).date()
            line = InvoiceLine(
                item_code="SUP-1",
                description="Support",
                quantity=Decimal(2),
                unit_amount=Decimal("99.5"),
                tax_type=VAT20,
                discount_rate=Decimal(5),
            )
            schedule = ScheduleDraft(
                customer_id=buyer,
                reference="crm-deal-1/quarterly",
                currency="GBP",
                lines=(line,),
                frequency="quarterly",
                start=start,
                end=start + timedelta(days=700),
            )
            made = books.create_schedule(schedule, idempotency_key="s")
            books.create_schedule(schedule, idempotency_key="s")  # the taken name: 400, then found
            with pytest.raises(ValidationFailed):
                books.create_schedule(
                    schedule.model_copy(
                        update={"reference": "crm-deal-2/quarterly", "start": start - timedelta(days=2)}
                    ),
                    idempotency_key="s2",
                )
            assert books.find_schedule(schedule.reference) is not None
            extended = books.extend_schedule(made, start + timedelta(days=900), idempotency_key="x")
            driver.run_recurring(start)
            assert [i for i in books.iter_invoices_changed_since(None) if i.reference == schedule.reference]
            books.end_schedule(extended.id, idempotency_key="e")
            assert books.get_schedule("460000000999999") is None
            supplier = books.create_supplier("Acme Supplies", idempotency_key="v")
            with pytest.raises(Conflict):
                books.create_supplier("Acme Supplies", idempotency_key="v")
            assert books.find_suppliers("Acme Supplies") == [supplier]
            order = PurchaseOrderDraft(
                supplier_id=supplier.id,
                reference="crm-deal-1-po-acme-supplies",
                currency="GBP",
                lines=(
                    PurchaseOrderLine(
                        item_code="SUP-1", description="Support", quantity=Decimal(3), unit_cost=Decimal("4.5")
                    ),
                    PurchaseOrderLine(item_code="", description="Freight", quantity=Decimal(1), unit_cost=Decimal(9)),
                ),
                issue_date=date(2026, 11, 20),
                delivery_date=date(2026, 12, 1),
            )
            placed = books.create_purchase_order(order, idempotency_key="p")
            assert books.get_purchase_order(placed.id) is not None
            assert books.get_purchase_order("460000000999999") is None
        finally:
            server.stop()
    return [e for e in recorder.exchanges if e.path.startswith("/books/v3/")]


def test_every_schedule_and_purchasing_exchange_of_the_adapter_follows_zoho_s_published_operations() -> None:
    exchanges = _exchanges()
    contract = load("zohobooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {
        "POST /books/v3/recurringinvoices",
        "GET /books/v3/recurringinvoices",
        "GET /books/v3/recurringinvoices/{recurring_invoice_id}",
        "PUT /books/v3/recurringinvoices/{recurring_invoice_id}",
        "POST /books/v3/recurringinvoices/{recurring_invoice_id}/status/stop",
        "POST /books/v3/contacts",
        "GET /books/v3/contacts",
        "GET /books/v3/contacts/{contact_id}",
        "POST /books/v3/purchaseorders",
        "GET /books/v3/purchaseorders",
        "GET /books/v3/purchaseorders/{purchaseorder_id}",
        "GET /books/v3/invoices",
    } <= operations
    # Every exchange is one the contract describes
    assert all(contract.operation(e.method, e.path) is not None for e in exchanges)
    assert {e.status for e in exchanges} >= {200, 201, 400, 404}
    # When each is held against the contract, Then none departs from it
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
