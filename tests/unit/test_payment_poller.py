"""PaymentPoller: changes only, payment status and balances back to the CRM, events, watermark."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop.errors import RateLimited
from closeloop.models import Invoice
from closeloop.sync.payment_status import payment_status
from closeloop.sync.payments import PaymentPoller
from tests.deal_sync_support import COMPANY, DEAL, invoiced
from tests.fakes import RecordedEvents as Events


def test_payment_recorded_in_accounting_shows_on_the_deal_and_the_company_after_one_run() -> None:
    # Given an invoiced won deal, and a partial then a full payment in accounting
    crm, books, store = invoiced()
    invoice = next(iter(books.invoices.values()))
    events = Events()
    poller = PaymentPoller(crm, books, store, events)
    poller.run()  # first run: catches up on everything, sets the watermark
    books.pay(invoice.id, Decimal("100.00"), date(2026, 11, 25))
    # When the poller runs
    result = poller.run()
    # Then the deal says partially paid with the amounts, the company its balances, and an event went out
    props = crm.deal_properties[DEAL.object_id]
    assert props["closeloop_payment_status"] == "partially_paid"
    assert props["closeloop_amount_paid"] == "100.00"
    assert props["closeloop_last_payment_date"] == "2026-11-25"
    summary = crm.customer_properties[COMPANY]
    assert summary["closeloop_total_paid"] == "100.00"
    assert Decimal(summary["closeloop_outstanding_balance"]) == invoice.total - Decimal("100.00")
    assert result.deals_updated == 1
    assert events.published[-1][0] == "closeloop.payment-status-changed"
    assert events.published[-1][1][0]["status"] == "partially_paid"


def test_a_run_without_changes_writes_nothing() -> None:
    crm, books, store = invoiced()
    poller = PaymentPoller(crm, books, store, Events())
    poller.run()
    writes = crm.write_calls
    result = poller.run()
    assert crm.write_calls == writes
    assert (result.deals_updated, result.status_changes) == (0, [])


def test_watermark_does_not_advance_when_the_crm_write_fails() -> None:
    crm, books, store = invoiced()
    poller = PaymentPoller(crm, books, store, Events())
    poller.run()
    before = store.get_watermark(poller.watermark_name)
    invoice = next(iter(books.invoices.values()))
    books.pay(invoice.id, invoice.total, date(2026, 11, 26))

    def refuse(updates: object) -> None:
        raise RuntimeError("HubSpot is down")

    crm.update_deals = refuse  # type: ignore[assignment, method-assign]
    with pytest.raises(RuntimeError):
        poller.run()
    assert store.get_watermark(poller.watermark_name) == before


def test_a_crm_429_defers_the_run_to_the_next_one_and_loses_nothing() -> None:
    # Given a payment in accounting, and a CRM that rate-limits the customer write after the deal write
    crm, books, store = invoiced()
    events = Events()
    poller = PaymentPoller(crm, books, store, events)
    poller.run()
    before = store.get_watermark(poller.watermark_name)
    published = len(events.published)
    invoice = next(iter(books.invoices.values()))
    books.pay(invoice.id, invoice.total, date(2026, 11, 26))
    write_customers = crm.update_customers

    def rate_limited(updates: object) -> None:
        raise RateLimited("POST /companies/batch/update failed", vendor="crm", status=429, problem="ten_secondly")

    crm.update_customers = rate_limited  # type: ignore[assignment, method-assign]
    # When the poller runs, it ends deferred (no failed scheduled run) with nothing published or moved on
    result = poller.run()
    assert "rate limited by crm (ten_secondly)" in result.deferred
    assert store.get_watermark(poller.watermark_name) == before
    assert len(events.published) == published
    # And the next run, the limit over, writes the payment and publishes its status change once
    crm.update_customers = write_customers  # type: ignore[method-assign]
    result = poller.run()
    assert result.deferred == ""
    assert crm.deal_properties[DEAL.object_id]["closeloop_payment_status"] == "paid"
    assert crm.customer_properties[COMPANY]["closeloop_total_paid"] == money_of(invoice.total)
    assert [change["status"] for _, changes in events.published[published:] for change in changes] == ["paid"]
    assert store.get_watermark(poller.watermark_name) != before


def money_of(amount: Decimal) -> str:
    return f"{amount:.2f}"


def test_an_unchanged_invoice_turns_overdue_from_the_due_date_index() -> None:
    crm, books, store = invoiced(status="AUTHORISED")
    later = datetime.now(UTC) + timedelta(days=45)
    poller = PaymentPoller(crm, books, store, Events(), clock=lambda: datetime.now(UTC))
    poller.run()
    poller.clock = lambda: later
    poller.run()
    assert crm.deal_properties[DEAL.object_id]["closeloop_payment_status"] == "overdue"
    assert Decimal(crm.customer_properties[COMPANY]["closeloop_overdue_balance"]) > 0


@pytest.mark.parametrize(
    ("status", "paid", "due", "days_past_due", "expected"),
    [
        ("DRAFT", "0", "100", 0, "draft"),
        ("AUTHORISED", "0", "100", -1, "awaiting_payment"),
        ("AUTHORISED", "40", "60", -1, "partially_paid"),
        ("AUTHORISED", "40", "60", 3, "overdue"),
        ("PAID", "100", "0", 3, "paid"),
        ("VOIDED", "0", "100", 3, "voided"),
    ],
)
def test_payment_status_rules(status: str, paid: str, due: str, days_past_due: int, expected: str) -> None:
    today = date(2026, 11, 23)
    invoice = Invoice(
        id="i",
        status=status,  # type: ignore[arg-type]
        total=Decimal(100),
        amount_paid=Decimal(paid),
        amount_due=Decimal(due),
        due_date=today - timedelta(days=days_past_due),
    )
    assert payment_status(invoice, today) == expected


def test_field_rules_that_turn_payments_off_keep_them_out_of_the_crm() -> None:
    from closeloop.rules import FieldRules  # noqa: PLC0415

    crm, books, store = invoiced()
    invoice = next(iter(books.invoices.values()))
    rules = FieldRules.load("payment: {direction: off, source_of_truth: accounting}")
    poller = PaymentPoller(crm, books, store, Events(), rules=rules)
    poller.run()
    writes = crm.write_calls
    books.pay(invoice.id, Decimal("100.00"), date(2026, 11, 25))
    poller.run()
    assert crm.write_calls == writes
    assert crm.deal_properties.get(DEAL.object_id, {}).get("closeloop_amount_paid") != "100.00"
