"""The QuickBooks quote adapter's exchanges (Estimate create, read, query, CDC, sparse updates) held against
Intuit's published contract (tests/contracts/quickbooks: schemas from Intuit's XSDs, the Estimate page's
create and update rules): the pair loop makes no quotes, so this runs the adapter's calls on the sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import InvoiceDraft, InvoiceLine, QuoteDraft
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, serve
from tests.contracts.contract import load
from tests.quickbooks_adapters import adapter


def test_every_quote_exchange_follows_intuit_s_contract() -> None:
    # Given the adapter's quote calls recorded against the sandbox: a create and its replay, lookups, a
    # revision, the change feed both ways, closing it, a refused revision of a closed estimate, and an invoice
    # made from an estimate (LinkedTxn)
    with recording() as recorder:
        qbo, server = serve()
        try:
            driver = QuickBooksDriver(qbo)
            driver.seed_item("ANV-1", "Anvil", Decimal("99.50"))
            buyer = driver.seed_customer("Acme", email="acme@x.test")
            books = adapter(qbo, server.url)
            line = InvoiceLine(
                item_code="ANV-1", description="Anvil", quantity=Decimal(2), unit_amount=Decimal("99.5"), tax_type="TAX"
            )
            draft = QuoteDraft(
                customer_id=buyer,
                reference="hubspot-quote-4000001 Rockets",
                currency="USD",
                lines=(line,),
                issue_date=date(2026, 11, 2),
                expiry=date(2026, 12, 31),
            )
            made = books.create_quote(draft, idempotency_key="q-1")
            books.create_quote(draft, idempotency_key="q-1")
            assert books.find_quote(draft.reference, buyer) is not None
            assert books.get_quote(made.id) is not None
            revised = books.revise_quote(made, draft.model_copy(update={"expiry": None}), idempotency_key="r-1")
            since = datetime.now(UTC) - timedelta(minutes=5)
            assert list(books.iter_quotes_changed_since(since))
            assert list(books.iter_quotes_changed_since(since - timedelta(days=40)))
            books.mark_quote_invoiced(revised, "1", idempotency_key="m-1")
            with pytest.raises(ValidationFailed):
                books.revise_quote(made, draft, idempotency_key="r-2")
            # and an invoice made from a second estimate (LinkedTxn), which closes it
            other = draft.model_copy(update={"reference": "hubspot-quote-4000002 More"})
            linked = books.create_quote(other, idempotency_key="q-2")
            invoice = InvoiceDraft(
                customer_id=buyer,
                reference="hubspot-deal-3000001 Rockets",
                currency="USD",
                lines=(line,),
                issue_date=date(2026, 11, 3),
                due_date=date(2026, 12, 3),
                accounting_quote_id=linked.id,
            )
            books.create_invoice(invoice, idempotency_key="i-1")
            assert books.mark_quote_invoiced(linked, "1", idempotency_key="m-2").status == "INVOICED"
        finally:
            server.stop()
    exchanges = [e for e in recorder.exchanges if "/v3/company/" in e.path]
    assert {e.path.rsplit("/", 1)[-1] for e in exchanges} >= {"estimate", "query", "cdc", made.id, "invoice"}
    assert any(e.path.endswith("/invoice") and b'"LinkedTxn"' in e.body for e in exchanges)
    # When each is held against the contract, Then none departs from it
    contract = load("quickbooks")
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
