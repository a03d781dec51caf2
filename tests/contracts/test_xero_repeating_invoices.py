"""Xero's repeating invoice exchanges (what the adapter sends, what the sandbox answers) held against Xero's
OpenAPI: getRepeatingInvoices, createRepeatingInvoices, getRepeatingInvoice and updateRepeatingInvoice in
accounting.subset.json (extract.py), and the invoices a template generates (getInvoices, getInvoice).

The pair loop does not run schedules, so this records the adapter's calls against the sandbox itself: create,
a replayed create, a refused create, a lookup by reference, a read, an extension (create + delete), an end.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import InvoiceLine, ScheduleDraft
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.contracts.contract import load
from tests.sandbox_adapters import xero_adapter


def test_every_repeating_invoice_exchange_follows_xero_s_openapi() -> None:
    # Given the Xero adapter on a sandbox whose exchanges are recorded
    with recording() as recorder:
        xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
        try:
            books = xero_adapter(xero, server.url)
            xero.seed_item(
                Code="SUPPORT",
                Name="Support",
                SalesDetails={"UnitPrice": "100.00", "AccountCode": "200", "TaxType": "OUTPUT2"},
            )
            customer = xero.seed_contact(Name="Schedule Customer")["ContactID"]
            line = InvoiceLine(
                item_code="SUPPORT", description="Support", quantity=Decimal(1), unit_amount=Decimal("99.50")
            )
            draft = ScheduleDraft(
                customer_id=customer,
                reference="hubspot-deal-1/quarterly",
                currency="NZD",
                lines=(line,),
                frequency="quarterly",
                start=date(2026, 1, 1),
                end=date(2026, 12, 31),
                status="AUTHORISED",
            )
            # When it creates (twice with one key), is refused, finds, reads, extends and ends
            made = books.create_schedule(draft, idempotency_key="k-create")
            books.create_schedule(draft, idempotency_key="k-create")
            with pytest.raises(ValidationFailed):
                books.create_schedule(draft.model_copy(update={"currency": "USD"}), idempotency_key="k-usd")
            assert books.find_schedule(draft.reference) == made
            xero.generate_repeating_invoices(date(2026, 4, 1))
            books.get_invoice(xero.invoices()[0]["InvoiceID"])
            extended = books.extend_schedule(made, date(2027, 12, 31), idempotency_key="k-extend")
            books.end_schedule(extended.id, idempotency_key="k-end")
            assert books.get_schedule(extended.id) is not None
        finally:
            server.stop()
    calls = [e for e in recorder.exchanges if "/RepeatingInvoices" in e.path]
    assert {(e.method, e.status) for e in calls} >= {("PUT", 200), ("PUT", 400), ("GET", 200), ("POST", 200)}

    # Then each request and answer validates against Xero's published operations
    contract = load("xero")
    violations = sorted({str(v) for exchange in recorder.exchanges for v in contract.check(exchange)})
    assert not violations, "\n".join(violations)
