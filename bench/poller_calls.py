"""Xero calls per payment-poller run: 10,000 invoices, of which 50 changed since the last run.

The Xero sandbox is seeded with ``invoices`` authorised sales invoices through ``PUT /Invoices`` (50 per
call), its clock moving one second per batch as a day's invoicing would. The ``changed`` invoices that will
be paid belong to won deals mapped in the store (their deals and companies exist in the HubSpot sandbox), so
the run writes back as in production. The real ``PaymentPoller`` (real adapters, in-memory store) runs once
to catch up; then, 15 minutes later on the sandbox clock, ``changed`` payments arrive one by one
(``PUT /Payments``), and the poller runs again. The figure is the ``GET /Invoices`` calls of that second
run. Before the catch-up run one lone payment lands, so the watermark sits on one change, as in steady
state rather than on a bulk-seeding second (``If-Modified-Since`` has whole seconds only).

The floor is the same question asked directly: paged ``GET /Invoices`` with the same ``If-Modified-Since``,
100 a page, until a short page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.memory import MemoryStore
from bench.report import Row
from bench.sandboxes import Xero, running_hubspot, running_xero
from closeloop.models import CrmRef
from closeloop.ports import IdMapping
from closeloop.sync.payments import PaymentPoller
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.client import API_PREFIX
from closeloop.wire import dumps_exact

SEED_BATCH = 50
CUSTOMERS = 197  # prime: the invoices paid (every 200th) belong to as many customers
PAGE = 100
INVOICES_PATH = f"{API_PREFIX}/Invoices"


def target(changed: int) -> int:
    """1 + ceil(changed / 100): one call, plus one per page of changes."""
    return 1 + math.ceil(changed / PAGE)


class Events:
    """Records what the poller publishes (EventBridge in production)."""

    def __init__(self) -> None:
        self.published: list[Mapping[str, Any]] = []

    def publish(self, detail_type: str, details: Iterable[Mapping[str, Any]]) -> None:
        self.published.extend(details)


def _json_put(books: XeroAccounting, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = books.http.request(
        "PUT",
        path,
        params={"summarizeErrors": "true"},
        content=dumps_exact(payload),
        headers={"Content-Type": "application/json"},
    )
    body: dict[str, Any] = response.json()
    return body


def seed_invoices(xero: Xero, count: int, contact_ids: list[str]) -> list[dict[str, Any]]:
    """``count`` authorised sales invoices, 50 per ``PUT /Invoices``, one sandbox second per batch."""
    created: list[dict[str, Any]] = []
    issued = datetime.fromtimestamp(xero.sandbox.state.clock.now(), UTC).date()
    for start in range(0, count, SEED_BATCH):
        batch = [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": contact_ids[n % len(contact_ids)]},
                "Status": "AUTHORISED",
                "InvoiceNumber": f"BENCH-{n:05d}",
                "Reference": f"hubspot-deal-{4_000_000 + n} Renewal {n}",
                "Date": issued.isoformat(),
                "DueDate": (issued + timedelta(days=30)).isoformat(),
                "LineItems": [
                    {
                        "Description": "Widget",
                        "Quantity": Decimal(1 + n % 4),
                        "UnitAmount": Decimal("19.99"),
                        "AccountCode": "200",
                        "TaxType": "OUTPUT2",
                    }
                ],
            }
            for n in range(start, min(count, start + SEED_BATCH))
        ]
        created.extend(_json_put(xero.books, "/Invoices", {"Invoices": batch})["Invoices"])
        xero.sandbox.state.clock.advance(1)
    return created


def pay(xero: Xero, invoice: Mapping[str, Any], amount: Decimal) -> None:
    """One customer payment into bank account 090, today on the sandbox clock."""
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": amount}
    _json_put(xero.books, "/Payments", {"Payments": [payment]})


def raw_changed_pages(xero: Xero, since: datetime) -> int:
    """The floor: paged ``GET /Invoices`` with If-Modified-Since, until a short page. Returns the calls."""
    header = {"If-Modified-Since": since.astimezone(UTC).strftime(XeroAccounting.MODIFIED_SINCE_FORMAT)}
    page = 1
    while True:
        params = {"where": 'Type=="ACCREC"', "page": str(page), "pageSize": str(PAGE)}
        rows = xero.books.http.request("GET", "/Invoices", params=params, headers=header).json()["Invoices"]
        if len(rows) < PAGE:
            return page
        page += 1


def _invoice_gets(xero: Xero) -> int:
    return len(xero.sandbox.state.calls("GET", INVOICES_PATH))


def measure(invoices: int = 10_000, changed: int = 50) -> list[Row]:
    """GET /Invoices calls of one poller run after ``changed`` of ``invoices`` changed, beside the floor."""
    store = MemoryStore()
    with running_hubspot() as hub, running_xero(store) as xero:
        clock = xero.sandbox.state.clock
        contact_ids = [
            str(xero.sandbox.seed_contact(Name=f"Customer {n:03d} Ltd")["ContactID"]) for n in range(CUSTOMERS)
        ]
        seeded = seed_invoices(xero, invoices, contact_ids)
        to_change = seeded[:: max(1, len(seeded) // changed)][:changed]
        for n, invoice in enumerate(to_change):  # the won deals these invoices were made for, and their companies
            company = hub.sandbox.create_object("companies", {"name": f"Customer {n:03d} Ltd"})
            deal = hub.sandbox.create_object(
                "deals",
                {"dealname": f"Renewal {n}", "pipeline": "default", "dealstage": "closedwon"},
                associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
            )
            deal_ref = CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"]))
            company_ref = CrmRef(crm="hubspot", object_type="company", object_id=str(company["id"]))
            store.put_mapping(IdMapping(deal_ref, "xero", str(invoice["InvoiceID"]), {"kind": "invoice"}))
            contact_id = str(invoice["Contact"]["ContactID"])
            if store.find_ref("xero", contact_id) is None:
                store.put_mapping(IdMapping(company_ref, "xero", contact_id, {}))

        def now() -> datetime:
            return datetime.fromtimestamp(clock.now(), UTC)

        poller = PaymentPoller(hub.crm, xero.books, store, Events(), clock=now)
        clock.advance(60)
        pay(xero, seeded[-1], Decimal("1.00"))  # the last change before the catch-up run
        catch_up_before = _invoice_gets(xero)
        catch_up = poller.run()
        catch_up_calls = _invoice_gets(xero) - catch_up_before
        if catch_up.changed_invoices != invoices:
            raise RuntimeError(f"the catch-up run read {catch_up.changed_invoices} of {invoices} invoices")

        clock.advance(15 * 60)
        for invoice in to_change:
            pay(xero, invoice, Decimal("10.00"))
            clock.advance(7)
        clock.advance(60)
        since = store.get_watermark(poller.watermark_name)
        if since is None:
            raise RuntimeError("the catch-up run stored no watermark")
        before = _invoice_gets(xero)
        hubspot_before = len(hub.sandbox.state.calls())
        result = poller.run()
        run_calls = _invoice_gets(xero) - before
        hubspot_calls = len(hub.sandbox.state.calls()) - hubspot_before
        floor = raw_changed_pages(xero, since)
    if result.deals_updated != changed:
        raise RuntimeError(f"the run updated {result.deals_updated} deals, expected {changed}")
    return [
        Row(
            f"Xero GET /Invoices per poller run ({invoices:,} invoices, {changed} changed)",
            run_calls,
            floor,
            "calls",
            target=target(changed),
            bound="value",
            digits=0,
            note=(
                f"the run read {result.changed_invoices} invoices ({changed} paid, "
                f"{result.changed_invoices - changed} re-read at the watermark's second), "
                f"wrote {result.deals_updated} deals and {result.customers_updated} companies in {hubspot_calls} "
                f"HubSpot calls and published {len(result.status_changes)} status changes; the catch-up run "
                f"before it read all {invoices:,} ({catch_up_calls} GET /Invoices)"
            ),
        )
    ]
