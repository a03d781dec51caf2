"""Deal backfill for every pair: won deals finance invoiced by hand are linked once, and nothing is invoiced.

The customers were synced; the deals were won before Closeloop's deal pipeline was switched on (their
webhooks are held back), and finance invoiced them by hand, without our reference (one carries it). The
backfill links each deal to its invoice and writes the invoice number back to the deal; a second run, and
the held-back webhooks arriving afterwards, change nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from closeloop import runtime
from closeloop.models import CrmRef
from closeloop.sync.backfill_deals import DealBackfill
from closeloop.sync.invoices import DealSync, build_draft, invoice_reference
from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.drivers import DealLine

pytestmark = pytest.mark.e2e


def backfill() -> DealBackfill:
    runtime.reset()
    deals = DealSync(
        runtime.crm(),
        runtime.accounting(),
        runtime.store(),
        runtime.contact_sync(),
        runtime.invoice_policy(),
        owner=uuid.uuid4().hex,
    )
    return DealBackfill(runtime.crm(), runtime.accounting(), runtime.store(), deals, pause=lambda seconds, why: None)


def invoice_by_hand(deal_ref: CrmRef, reference: str) -> str:
    """Finance invoices the won deal in the accounting system: its lines and tax, under its own reference."""
    runtime.reset()
    crm, books, store = runtime.crm(), runtime.accounting(), runtime.store()
    deal = crm.get_deal(deal_ref.object_id)
    assert deal is not None and deal.company is not None
    customer = crm.resolve_customer(deal.company)
    mapping = store.get_mapping(deal.company, books.name)
    assert customer is not None and mapping is not None
    items = books.get_items({line.sku for line in deal.line_items})
    draft = build_draft(
        deal, customer, mapping.accounting_id, items, runtime.invoice_policy(), datetime.now(UTC).date()
    )
    made = books.create_invoice(
        draft.model_copy(update={"reference": reference or invoice_reference(deal)}),
        idempotency_key=f"finance-{uuid.uuid4().hex}",
    )
    return str(made.id)


def test_won_deals_invoiced_by_hand_are_linked_once_and_nothing_is_invoiced(pair: Pair) -> None:
    # Given two customers synced into accounting
    pair.books.seed_item("BF-ANVIL", "Anvil", Decimal("120.00"))
    pair.books.seed_item("BF-SETUP", "Setup", Decimal("80.00"))
    acme = pair.crm.create_company("Backfill Anvils Ltd", email="ap@bf-anvils.test", country="GB")
    globex = pair.crm.create_company("Backfill Rockets Ltd", email="ap@bf-rockets.test", country="GB")
    pair.settle()
    # And won deals whose webhooks are held back (the deal pipeline was not on when they were won)
    deals = {
        "by hand": pair.crm.create_won_deal(
            acme, [DealLine("BF-ANVIL", "Anvil", Decimal(3), Decimal("120.00"))], currency=pair.books.currency
        ),
        "other customer": pair.crm.create_won_deal(
            globex, [DealLine("BF-SETUP", "Setup", Decimal(2), Decimal("80.00"))], currency=pair.books.currency
        ),
        "our reference": pair.crm.create_won_deal(
            acme, [DealLine("BF-SETUP", "Setup", Decimal(1), Decimal("80.00"))], currency=pair.books.currency
        ),
    }
    # And finance invoiced them by hand: two under its own reference, one under Closeloop's
    invoices = {
        "by hand": invoice_by_hand(deals["by hand"], "PO-4471"),
        "other customer": invoice_by_hand(deals["other customer"], "PO-4472"),
        "our reference": invoice_by_hand(deals["our reference"], ""),
    }
    invoice_count = len(pair.books.invoices())
    # When the deal backfill runs
    result = backfill().run()
    # Then each deal is linked to its invoice once, nothing is invoiced, and the deal shows the invoice number
    assert result.failures == []
    numbers = {e.ref: e.invoice_number for e in result.plan if e.ref is not None}
    for key, deal_ref in deals.items():
        mapping = pair.store.get_mapping(deal_ref, pair.books.name)
        assert mapping is not None, key
        assert mapping.accounting_id == invoices[key], key
        assert pair.crm.deal_fields(deal_ref)["closeloop_invoice_number"] == numbers[deal_ref], key
        assert numbers[deal_ref], key
    assert {e.action for e in result.plan if e.ref in deals.values()} == {"link"}
    assert len(pair.books.invoices()) == invoice_count
    # And a second run changes nothing
    again = backfill().run()
    assert {e.action for e in again.plan if e.ref in deals.values()} == {"mapped"}
    assert again.failures == []
    # And when the held-back webhooks arrive, the deal pipeline finds them invoiced already
    pair.settle()
    assert len(pair.books.invoices()) == invoice_count
    for deal_ref in deals.values():
        assert pair.store.get_mapping(deal_ref, pair.books.name).accounting_id in invoices.values()  # type: ignore[union-attr]
