"""The Zoho Books quote adapter's exchanges (estimates: create, mark sent, list by customer and by
last_modified_time, get, update, refusals) held against Zoho's published operations
(tests/contracts/zohobooks/operations.json): the pair loop makes no quotes, so this runs the adapter's calls
on the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import InvoiceDraft, InvoiceLine, QuoteDraft
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.zohobooks import ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.contracts.contract import load
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on


def test_every_quote_exchange_follows_zoho_s_published_operations() -> None:
    # Given the adapter's estimate calls recorded against the sandbox: a create (marked sent) and a second
    # one refused on the taken key, lookups, a revision, the change feed, a refused revision, and the invoice
    # made from the estimate (invoiced_estimate_id), which marks it invoiced
    with recording() as recorder:
        zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
        try:
            driver = ZohoBooksDriver(zoho)
            driver.seed_item("ANV-1", "Anvil", Decimal("99.50"))
            buyer = driver.seed_customer("Acme", email="acme@x.test")
            books = books_on(zoho, server.url, cls=PagesOfTwo)
            line = InvoiceLine(item_code="ANV-1", description="Anvil", quantity=Decimal(2), unit_amount=Decimal(99))
            draft = QuoteDraft(
                customer_id=buyer,
                reference="hubspot-quote-4000001 Rockets",
                currency="GBP",
                lines=(line,),
                issue_date=date(2026, 11, 2),
                expiry=date(2099, 12, 31),
            )
            made = books.create_quote(draft, idempotency_key="q-1")
            books.create_quote(draft, idempotency_key="q-1")
            assert books.find_quote(draft.reference, buyer) is not None
            books.revise_quote(made, draft.model_copy(update={"expiry": None}), idempotency_key="r-1")
            assert list(books.iter_quotes_changed_since(datetime.now(UTC) - timedelta(days=1)))
            assert books.get_quote(made.id) is not None
            zoho.move_estimate(made.id, "accepted")
            with pytest.raises(ValidationFailed):
                books.revise_quote(made, draft, idempotency_key="r-2")
            invoice = InvoiceDraft(
                customer_id=buyer,
                reference="hubspot-deal-3000001 Rockets",
                currency="GBP",
                lines=(line,),
                issue_date=date(2026, 11, 3),
                due_date=date(2026, 12, 3),
                accounting_quote_id=made.id,
            )
            books.create_invoice(invoice, idempotency_key="i-1")
            assert books.mark_quote_invoiced(made, "1", idempotency_key="m-1").status == "INVOICED"
        finally:
            server.stop()
    exchanges = [e for e in recorder.exchanges if e.path.startswith(("/books/v3/estimates", "/books/v3/invoices"))]
    assert any(e.path == "/books/v3/invoices" and b'"invoiced_estimate_id"' in e.body for e in exchanges)
    contract = load("zohobooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert len(operations) >= 5 and {e.status for e in exchanges} >= {200, 201, 400}
    # When each is held against the contract, Then none departs from it
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
