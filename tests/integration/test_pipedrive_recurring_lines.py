"""Deal products' billing (frequency, cycles, start) read by the Pipedrive adapter into LineItem's recurring terms,
against the Pipedrive sandbox over HTTP (which serves them as client-nodejs v2 publishes them), and the terms
as the recurring flow validates them; plus the billing values a real company could send that Pipedrive does not
document, read as clear failures naming the deal product."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import Item
from closeloop.sync.invoices import InvoicePolicy
from closeloop.sync.recurring import RecurringFlow, SchedulePolicy
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.pipedrive.mapping import billing_terms
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.fakes import FakeBooks, MemoryStore


@pytest.fixture
def sandbox() -> Iterator[tuple[PipedriveSandbox, SandboxServer]]:
    pipedrive, server = serve()
    yield pipedrive, server
    server.stop()


def crm(pipedrive: PipedriveSandbox, url: str) -> PipedriveCrm:
    return PipedriveCrm(api_token=lambda: pipedrive.api_token, base_url=url, sleep=lambda s: None)


def sandbox_today(pipedrive: PipedriveSandbox) -> date:
    return datetime.fromtimestamp(pipedrive.now(), UTC).date()


def test_billing_fields_read_as_recurring_terms(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    today = sandbox_today(pipedrive)
    product = pipedrive.create("product", {"name": "Hosting", "code": "HOST"})
    deal = pipedrive.create("deal", {"title": "Contract", "currency": "EUR"})
    line: dict[str, Any] = {"product_id": product["id"], "item_price": "50", "quantity": 1}
    rows = [
        {
            **line,
            "billing_frequency": "monthly",
            "billing_frequency_cycles": 12,
            "billing_start_date": today.isoformat(),
        },
        {**line, "billing_frequency": "weekly", "billing_frequency_cycles": 52},
        {**line, "billing_frequency": "semi-annually", "billing_frequency_cycles": 4},
        {**line, "billing_frequency": "annually"},  # renews until cancelled: no term
        {**line, "billing_frequency": "quarterly", "billing_frequency_cycles": 8},
        line,  # one-time
    ]
    for row in rows:
        pipedrive.add_deal_product(deal["id"], row)
    # When the deal is read
    read = crm(pipedrive, server.url).get_deal(str(deal["id"]))
    # Then each row's billing is its recurring terms: the canonical frequency, cycles as billing periods, the start
    assert read is not None
    terms = [
        (li.recurring_frequency, li.recurring_periods, li.recurring_start, li.recurring_end) for li in read.line_items
    ]
    assert terms == [
        ("monthly", 12, today, None),
        ("weekly", 52, None, None),
        ("semi_annual", 4, None, None),
        ("annual", None, None, None),
        ("quarterly", 8, None, None),
        (None, None, None, None),
    ]
    # And the money stays exact
    assert {li.unit_price for li in read.line_items} == {Decimal(50)}


def test_the_recurring_flow_takes_the_recurring_rows_off_the_invoice_and_asks_for_a_term(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    product = pipedrive.create("product", {"name": "Hosting", "code": "HOST"})
    deal = pipedrive.create("deal", {"title": "Contract", "currency": "EUR"})
    line: dict[str, Any] = {"product_id": product["id"], "item_price": "50", "quantity": 1}
    monthly = pipedrive.add_deal_product(
        deal["id"], {**line, "billing_frequency": "monthly", "billing_frequency_cycles": 12}
    )
    pipedrive.add_deal_product(deal["id"], line)
    adapter = crm(pipedrive, server.url)
    books = FakeBooks()
    books.items["HOST"] = Item(code="HOST", name="Hosting")
    flow = RecurringFlow(adapter, books, books, MemoryStore(), SchedulePolicy(invoices=InvoicePolicy()), owner="w")
    read = adapter.get_deal(str(deal["id"]))
    assert read is not None
    # Then the monthly row stays off the one-off invoice
    assert flow.off_invoice(read) == frozenset({str(monthly["id"])})
    # When the row renews until cancelled (Pipedrive's null cycles)
    pipedrive.update_deal_product(deal["id"], monthly["id"], {"billing_frequency_cycles": None})
    read = adapter.get_deal(str(deal["id"]))
    assert read is not None
    # Then the deal cannot be scheduled: a failed sync naming the line and asking for a term
    with pytest.raises(ValidationFailed, match="'Hosting' has no term"):
        flow.off_invoice(read)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"billing_frequency": "daily"}, "unknown billing_frequency 'daily'"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": "twelve"}, "cycles is not a whole number"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": True}, "cycles is not a whole number"),
        ({"billing_frequency": "monthly", "billing_frequency_cycles": 0}, "at least 1"),
        ({"billing_frequency": "monthly", "billing_start_date": "31/01/2027"}, "billing_start_date is not a date"),
    ],
)
def test_billing_values_pipedrive_does_not_document_fail_naming_the_row(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        billing_terms(row, "deal product 7")


def test_rows_without_billing_or_one_time_are_one_off() -> None:
    assert billing_terms({}, "deal product 1") == {}
    assert billing_terms({"billing_frequency": "one-time", "billing_frequency_cycles": None}, "x") == {}
    assert billing_terms({"billing_frequency": None}, "x") == {}
