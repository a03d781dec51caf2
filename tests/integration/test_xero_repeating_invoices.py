"""The Xero adapter's repeating invoices (RecurringAccounting) against the Xero sandbox over HTTP: create, find
by reference, end, extend (a crash in the middle too), the invoices a template generates, and refusals.

Published source of every request and answer: Xero's OpenAPI (xero_accounting.yaml: RepeatingInvoice, Schedule,
getRepeatingInvoices, createRepeatingInvoices, updateOrCreateRepeatingInvoices, getRepeatingInvoice,
updateRepeatingInvoice); tests/contracts/test_xero_repeating_invoices.py holds them to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from closeloop.errors import FatalError, ValidationFailed
from closeloop.models import InvoiceLine, ScheduleDraft
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.xero import XeroDriver, XeroSandbox, finance_client, serve
from tests.sandbox_adapters import xero_adapter as adapter

API = "/api.xro/2.0"
REFERENCE = "hubspot-deal-3000001/monthly"


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
    xero.seed_item(
        Code="SUPPORT", Name="Support", SalesDetails={"UnitPrice": "100.00", "AccountCode": "200", "TaxType": "OUTPUT2"}
    )
    yield xero, server
    server.stop()


@pytest.fixture
def xero(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroSandbox:
    return sandbox[0]


@pytest.fixture
def books(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroAccounting:
    return adapter(sandbox[0], sandbox[1].url)


def draft(xero: XeroSandbox, **changes: object) -> ScheduleDraft:
    customer = xero.seed_contact(Name=f"Customer {len(xero.contacts())}")["ContactID"]
    values: dict[str, object] = {
        "customer_id": customer,
        "reference": REFERENCE,
        "currency": "NZD",
        "lines": (
            InvoiceLine(
                item_code="SUPPORT",
                description="Support",
                quantity=Decimal(2),
                unit_amount=Decimal("50.00"),
                tax_type="OUTPUT2",
            ),
        ),
        "frequency": "monthly",
        "start": date(2026, 1, 31),
        "end": date(2026, 12, 31),
        "status": "AUTHORISED",
        "due_days": 20,
    }
    return ScheduleDraft.model_validate(values | changes)


def test_a_schedule_is_created_as_drafted_and_found_by_its_reference(xero: XeroSandbox, books: XeroAccounting) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    assert made.status == "active" and made.approved and made.frequency == "monthly"
    assert (made.start_date, made.next_invoice_date, made.end_date) == (
        date(2026, 1, 31),
        date(2026, 1, 31),
        date(2026, 12, 31),
    )
    assert made.sub_total == Decimal("100.00") and made.total == Decimal("115.00")
    assert books.find_schedule(REFERENCE) == made
    assert books.get_schedule(made.id) == made
    assert books.find_schedule("hubspot-deal-9/monthly") is None
    # Xero's Schedule: 1 MONTHLY, due 20 days after the invoice date
    (stored,) = xero.repeating_invoices()
    assert {k: stored["Schedule"][k] for k in ("Period", "Unit", "DueDate", "DueDateType")} == {
        "Period": 1,
        "Unit": "MONTHLY",
        "DueDate": 20,
        "DueDateType": "DAYSAFTERBILLDATE",
    }


@pytest.mark.parametrize(("frequency", "unit", "period"), [("quarterly", "MONTHLY", 3), ("annual", "MONTHLY", 12)])
def test_quarterly_and_annual_are_months(
    xero: XeroSandbox, books: XeroAccounting, frequency: str, unit: str, period: int
) -> None:
    made = books.create_schedule(draft(xero, frequency=frequency), idempotency_key=f"k-{frequency}")
    assert made.frequency == frequency
    (stored,) = xero.repeating_invoices()
    assert (stored["Schedule"]["Unit"], stored["Schedule"]["Period"]) == (unit, period)


def test_a_replayed_create_makes_one_schedule(xero: XeroSandbox, books: XeroAccounting) -> None:
    drafted = draft(xero)
    first = books.create_schedule(drafted, idempotency_key="k-same")
    again = books.create_schedule(drafted, idempotency_key="k-same")
    assert again.id == first.id
    assert len(xero.repeating_invoices()) == 1


def test_ending_deletes_the_template_once_and_keeps_its_invoices(xero: XeroSandbox, books: XeroAccounting) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    generated = XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 2, 28))
    assert len(generated) == 2  # 31 Jan and 28 Feb (the month end clamps)
    ended = books.end_schedule(made.id, idempotency_key="k-end")
    assert ended.status == "ended" and ended.id == made.id
    assert books.end_schedule(made.id, idempotency_key="k-end-again").status == "ended"  # a no-op
    assert books.get_schedule(made.id) is not None and books.get_schedule(made.id).status == "ended"  # type: ignore[union-attr]
    assert books.find_schedule(REFERENCE) is None
    assert XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 6, 30)) == []
    assert {i["InvoiceID"] for i in xero.invoices()} == set(generated)
    assert books.end_schedule("00000000-0000-0000-0000-000000000001", idempotency_key="k-x").status == "ended"


def test_generated_invoices_carry_the_reference_and_template_and_are_due_as_set(
    xero: XeroSandbox, books: XeroAccounting
) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 3, 1))
    invoices = [books.get_invoice(i["InvoiceID"]) for i in xero.invoices()]
    assert [(i.issue_date, i.due_date) for i in invoices if i] == [
        (date(2026, 1, 31), date(2026, 2, 20)),
        (date(2026, 2, 28), date(2026, 3, 20)),
    ]
    assert {(i.reference, i.status, i.sub_total) for i in invoices if i} == {
        (REFERENCE, "AUTHORISED", Decimal("100.00"))
    }
    assert {i["RepeatingInvoiceID"] for i in xero.invoices()} == {made.id}
    assert books.get_schedule(made.id).next_invoice_date == date(2026, 3, 31)  # type: ignore[union-attr]
    # the last one is the end date's month; then nothing is next
    XeroDriver(xero, "").generate_scheduled_invoices(date(2027, 6, 1))
    assert len(xero.invoices()) == 12
    assert books.get_schedule(made.id).next_invoice_date is None  # type: ignore[union-attr]


def test_a_draft_template_generates_draft_invoices(xero: XeroSandbox, books: XeroAccounting) -> None:
    books.create_schedule(draft(xero, status="DRAFT"), idempotency_key="k-1")
    XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 1, 31))
    assert [i["Status"] for i in xero.invoices()] == ["DRAFT"]


def test_extending_replaces_the_template_from_its_next_date(xero: XeroSandbox, books: XeroAccounting) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 2, 28))
    extended = books.extend_schedule(made, date(2027, 12, 31), idempotency_key="k-ext")
    assert extended.id != made.id
    assert (extended.start_date, extended.next_invoice_date, extended.end_date) == (
        date(2026, 3, 31),
        date(2026, 3, 31),
        date(2027, 12, 31),
    )
    assert (extended.customer_id, extended.sub_total, extended.reference) == (
        made.customer_id,
        made.sub_total,
        REFERENCE,
    )
    assert books.get_schedule(made.id).status == "ended"  # type: ignore[union-attr]
    assert books.find_schedule(REFERENCE) == extended
    # no date is billed twice, none skipped
    XeroDriver(xero, "").generate_scheduled_invoices(date(2026, 4, 30))
    dates = sorted(i["Date"] for i in xero.invoices())
    assert len(dates) == len(set(dates)) == 4


def test_an_extension_that_died_after_the_replacement_finishes_without_a_second(
    xero: XeroSandbox, books: XeroAccounting, sandbox: tuple[XeroSandbox, SandboxServer]
) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    # Given an attempt that made the replacement and died before deleting the old template
    xero.state.faults.append(Fault(f"{API}/RepeatingInvoices/*", 500, times=20, method="POST"))
    with pytest.raises(Exception):  # noqa: B017,PT011 - any failure: the delete never happened
        books.extend_schedule(made, date(2027, 12, 31), idempotency_key="k-ext")
    xero.state.faults.clear()
    live = [r for r in xero.repeating_invoices() if r["Status"] != "DELETED"]
    assert len(live) == 2
    # When it is retried (another key: the replay window has passed)
    extended = books.extend_schedule(made, date(2027, 12, 31), idempotency_key="k-ext-2")
    # Then the replacement made before is kept and the old one deleted: one live template
    live = [r for r in xero.repeating_invoices() if r["Status"] != "DELETED"]
    assert [r["RepeatingInvoiceID"] for r in live] == [extended.id]


def test_extending_a_deleted_template_is_a_fatal_error(xero: XeroSandbox, books: XeroAccounting) -> None:
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    books.end_schedule(made.id, idempotency_key="k-end")
    with pytest.raises(FatalError, match="gone"):
        books.extend_schedule(made, date(2027, 12, 31), idempotency_key="k-ext")


def test_refusals_name_xero_s_reasons_and_save_nothing(xero: XeroSandbox, books: XeroAccounting) -> None:
    with pytest.raises(ValidationFailed, match="Item code 'NOPE' is not valid"):
        bad_line = InvoiceLine(
            item_code="NOPE", description="?", quantity=Decimal(1), unit_amount=Decimal(1), tax_type="OUTPUT2"
        )
        books.create_schedule(draft(xero, lines=(bad_line,)), idempotency_key="k-bad-item")
    with pytest.raises(ValidationFailed, match="not subscribed to currency USD"):
        books.create_schedule(draft(xero, currency="USD"), idempotency_key="k-usd")
    with pytest.raises(ValidationFailed, match="could not be found"):
        books.create_schedule(
            draft(xero, customer_id="00000000-0000-0000-0000-00000000abcd"), idempotency_key="k-contact"
        )
    assert xero.repeating_invoices() == []


def test_the_sandbox_refuses_a_bad_schedule_and_a_change_other_than_delete(
    sandbox: tuple[XeroSandbox, SandboxServer], books: XeroAccounting
) -> None:
    xero, server = sandbox
    made = books.create_schedule(draft(xero), idempotency_key="k-1")
    bad = {
        "Type": "ACCREC",
        "Contact": {"ContactID": made.customer_id},
        "Schedule": {
            "Period": 0,
            "Unit": "DAILY",
            "DueDateType": "SOON",
            "StartDate": "2026-05-01",
            "EndDate": "2026-01-01",
        },
        "LineItems": [{"ItemCode": "SUPPORT", "Quantity": 1}],
        "Status": "PAID",
    }
    client = finance_client(xero, server.url)
    try:
        answer = client.put(f"{API}/RepeatingInvoices", json={"RepeatingInvoices": [bad]})
        change = client.post(
            f"{API}/RepeatingInvoices/{made.id}",
            json={"RepeatingInvoices": [{"RepeatingInvoiceID": made.id, "Reference": "other"}]},
        )
        missing = client.get(f"{API}/RepeatingInvoices/00000000-0000-0000-0000-000000000001")
    finally:
        client.close()
    assert answer.status_code == 400
    messages = [e["Message"] for e in answer.json()["Elements"][0]["ValidationErrors"]]
    assert any("Period" in m for m in messages) and any("Unit" in m for m in messages)
    assert any("DueDateType" in m for m in messages) and any("EndDate" in m for m in messages)
    assert any("Status 'PAID'" in m for m in messages)
    assert change.status_code == 400 and "only be deleted" in change.text
    assert missing.status_code == 404
    assert books.get_schedule(made.id).reference == REFERENCE  # type: ignore[union-attr]
    assert len(xero.repeating_invoices()) == 1
