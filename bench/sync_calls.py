"""Xero calls per synced contact (a burst of new HubSpot companies) and per won deal, against bulk floors.

The real ``ContactSync`` and ``DealSync`` run with the real HubSpot and Xero adapters against the two
sandboxes over HTTP, with an in-memory store. The contact burst goes through the contact worker's batch
handler as production receives it: webhook deliveries of 100 events, SQS batches of 10 messages. Every company
carries what the matching order looks at: a tax number (``vat_number``) and a primary contact with an email,
so each new company costs the full lookup chain (stamp, tax number, email, name) and then a create. Xero calls
are counted from the sandbox's request log, token calls excluded.

The floors are measured in the same run, on a second, empty Xero sandbox, doing the same work the cheapest way
Xero's API allows: one paged read of what exists (100 a page) to match against locally, then creates in
batches of 50 elements per ``PUT`` (Xero's recommended batch size). For deals: one ``GET /Items`` for the
codes, one paged read of the sales invoices, then ``PUT /Invoices`` 50 at a time with the same drafts
``DealSync`` builds.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from bench.memory import MemoryStore
from bench.report import Row
from bench.sandboxes import HubSpot, Xero, running_hubspot, running_xero
from closeloop.models import CrmRef, Customer, Deal, SyncEvent, WorkMessage, customer_fields
from closeloop.sync.contacts import ContactSync, external_number
from closeloop.sync.invoices import DealSync, InvoicePolicy, build_draft
from closeloop.sync.worker import Worker
from closeloop.vendors.xero.client import API_PREFIX
from closeloop.vendors.xero.mapping import to_xero, to_xero_invoice
from closeloop.wire import dumps_exact
from closeloop_local.sandboxes.base import LoggedRequest

TARGET_PER_CONTACT = 0.05
BATCH = 50  # elements per PUT: Xero recommends batches of up to 50
PAGE = 100  # Xero's page size for paged lists

# Company names are "<first> <second> <suffix>": 1,200 distinct names whose words recur, as in a real org.
_FIRST_WORDS = """
Acme Aurora Beacon Cedar Delta Ember Falcon Granite Harbour Indigo Juniper Kestrel Lumen Meridian Nimbus Orchard
Pioneer Quarry Radiant Summit Tidal Umber Vertex Willow Zephyr Atlas Boreal Cobalt Drift Evergreen Fjord Glacier
Heron Ironbark Jasper Kelp Larch Maple Nova Onyx
"""
_SECOND_WORDS = """
Analytics Bakery Builders Consulting Dental Engineering Foods Freight Gardens Holdings Imaging Joinery Kitchens
Logistics Media Motors Networks Optics Partners Plumbing Robotics Security Software Solar Studio Textiles Tooling
Travel Ventures Works
"""
_SUFFIXES = ("Ltd", "Limited", "Inc", "GmbH", "LLC", "Pty Ltd", "BV", "plc")
_COUNTRIES = ("United Kingdom", "GB", "New Zealand", "DE", "United States", "AU")
ITEMS = (("WIDGET", "Widget", "19.99"), ("GADGET", "Gadget", "45.50"), ("ADVICE", "Advice", "120.00"))


def company_names(count: int) -> list[str]:
    """``count`` distinct, varied company names (so name searches return a handful, as in a real org)."""
    pairs = list(itertools.product(_FIRST_WORDS.split(), _SECOND_WORDS.split()))
    if len(pairs) < count:
        raise ValueError(f"at most {len(pairs)} distinct names")
    return [f"{a} {b} {_SUFFIXES[n % len(_SUFFIXES)]}" for n, (a, b) in enumerate(pairs[:count])]


def seed_companies(hub: HubSpot, count: int) -> list[CrmRef]:
    """New HubSpot companies with a tax number and a primary contact (email, phone), as sales enters them."""
    hub.create_property("companies", "vat_number", "VAT number")
    refs = []
    for n, name in enumerate(company_names(count)):
        slug = name.split()[0].lower() + name.split()[1].lower()
        company = hub.sandbox.create_object(
            "companies",
            {
                "name": name,
                "phone": f"+44 20 7946 {n:04d}",
                "address": f"{n + 1} Long Lane",
                "city": "London",
                "zip": "EC1A 9HF",
                "country": _COUNTRIES[n % len(_COUNTRIES)],
                "vat_number": f"GB{100_000_000 + n}",
            },
        )
        hub.sandbox.create_object(
            "contacts",
            {
                "firstname": "Ann",
                "lastname": f"Archer {n}",
                "email": f"accounts@{slug}.example",
                "phone": "+44 7700 900001",
            },
            associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
        )
        refs.append(CrmRef(crm="hubspot", object_type="company", object_id=str(company["id"])))
    return refs


def seed_won_deals(hub: HubSpot, companies: Sequence[CrmRef], count: int) -> list[CrmRef]:
    """Won deals (default pipeline, NZD) with two line items whose SKUs are Xero item codes."""
    refs = []
    for n in range(count):
        first, second = ITEMS[n % len(ITEMS)], ITEMS[(n + 1) % len(ITEMS)]
        lines = ((first, Decimal(1 + n % 3)), (second, Decimal(2)))
        amount = sum((quantity * Decimal(item[2]) for item, quantity in lines), Decimal(0))
        deal = hub.sandbox.create_object(
            "deals",
            {
                "dealname": f"Renewal {n}",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": str(amount),
                "deal_currency_code": "NZD",
                "closedate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            associations=[{"to_type": "companies", "to_id": companies[n % len(companies)].object_id, "primary": True}],
        )
        for item, quantity in lines:
            hub.sandbox.create_object(
                "line_items",
                {"name": item[1], "hs_sku": item[0], "quantity": str(quantity), "price": item[2]},
                associations=[{"to_type": "deals", "to_id": deal["id"]}],
            )
        refs.append(CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"])))
    return refs


def seed_items(books: Xero) -> None:
    for code, name, price in ITEMS:
        books.sandbox.seed_item(
            Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
        )


def creation_event(ref: CrmRef, n: int) -> SyncEvent:
    return SyncEvent(
        ref=ref,
        event_id=str(n),
        kind="created",
        occurred_at=datetime.now(UTC),
        source_type=f"{ref.object_type}.creation",
        change_source="CRM_UI",
        actor="userId:45678",
        dedupe_key=f"2003:{n}:{ref.object_id}:0",
    )


def _paged_read(books: Xero, path: str, collection: str) -> list[dict[str, Any]]:
    """Every row of a paged Xero list, 100 a page, until a short page."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        query = {"page": str(page), "pageSize": str(PAGE)}
        batch = books.books.http.request("GET", path, params=query).json().get(collection) or []
        rows.extend(batch)
        if len(batch) < PAGE:
            return rows
        page += 1


def _put_batches(
    books: Xero, path: str, collection: str, elements: Sequence[dict[str, Any]], **params: str
) -> list[dict[str, Any]]:
    """Create ``elements`` with one PUT per BATCH of them; returns what Xero created."""
    created: list[dict[str, Any]] = []
    for start in range(0, len(elements), BATCH):
        body = dumps_exact({collection: list(elements[start : start + BATCH])})
        response = books.books.http.request(
            "PUT",
            path,
            params={"summarizeErrors": "true", **params},
            content=body,
            headers={"Content-Type": "application/json"},
        )
        created.extend(response.json().get(collection) or [])
    return created


def bulk_contacts_floor(books: Xero, customers: Sequence[Customer]) -> int:
    """Xero calls to create ``customers`` the cheapest way: read what exists once, create 50 per PUT."""
    before = len(books.api_calls())
    existing = {str(c.get("ContactNumber") or "") for c in _paged_read(books, "/Contacts", "Contacts")}
    new = [
        {"ContactNumber": external_number(c.ref), **to_xero(c, customer_fields(c).keys())}
        for c in customers
        if external_number(c.ref) not in existing
    ]
    created = _put_batches(books, "/Contacts", "Contacts", new)
    if len(created) != len(customers):
        raise RuntimeError(f"the bulk floor created {len(created)} of {len(customers)} contacts")
    return len(books.api_calls()) - before


def bulk_invoices_floor(books: Xero, deals: Sequence[tuple[Deal, Customer]], policy: InvoicePolicy) -> int:
    """Xero calls to invoice ``deals`` the cheapest way: items once, invoices read once, 50 per PUT."""
    contact_ids = {str(c["ContactNumber"]): str(c["ContactID"]) for c in books.sandbox.contacts()}
    before = len(books.api_calls())
    items = books.books.get_items({li.sku for deal, _ in deals for li in deal.line_items})
    existing = {str(i.get("Reference") or "") for i in _paged_read(books, "/Invoices", "Invoices")}
    today = datetime.now(UTC).date()
    drafts = [
        build_draft(deal, customer, contact_ids[external_number(customer.ref)], items, policy, today)
        for deal, customer in deals
    ]
    new = [to_xero_invoice(d, "ACCREC") for d in drafts if d.reference not in existing]
    created = _put_batches(books, "/Invoices", "Invoices", new, unitdp="4")
    if len(created) != len(deals):
        raise RuntimeError(f"the bulk floor created {len(created)} of {len(deals)} invoices")
    return len(books.api_calls()) - before


def measure(companies: int = 1000, deals: int = 100) -> list[Row]:
    """Xero calls per new company synced and per won deal invoiced, beside their bulk floors."""
    store = MemoryStore()
    policy = InvoicePolicy()
    with running_hubspot() as hub, running_xero(store) as books, running_xero(MemoryStore()) as bulk:
        company_refs = seed_companies(hub, companies)
        seed_items(books)
        contacts = ContactSync(hub.crm, books.books, store, owner="bench")

        before = len(books.api_calls())
        worker = Worker(contacts, _NoAlerts())
        for batch in _lambda_batches(company_refs):
            if failed := worker.handle_batch(batch):
                raise RuntimeError(f"{len(failed)} messages failed in the contact burst")
        contact_log = books.api_calls()[before:]
        contact_calls = len(contact_log)
        created = sum(1 for ref in company_refs if store.get_mapping(ref, books.books.name) is not None)
        if created != companies:
            raise RuntimeError(f"{created} of {companies} companies were synced")

        deal_refs = seed_won_deals(hub, company_refs, deals)
        invoicing = DealSync(hub.crm, books.books, store, contacts, policy, owner="bench")
        before = len(books.api_calls())
        invoiced = [invoicing.sync(ref, [creation_event(ref, n)]) for n, ref in enumerate(deal_refs)]
        deal_log = books.api_calls()[before:]
        deal_calls = len(deal_log)
        if sum(1 for o in invoiced if o.action == "created") != deals:
            raise RuntimeError(f"not every deal was invoiced: {[o for o in invoiced if o.action != 'created'][:3]}")

        customers = [c for c in map(hub.crm.resolve_customer, company_refs) if c is not None]
        contact_floor = bulk_contacts_floor(bulk, customers)
        seed_items(bulk)
        invoice_floor = bulk_invoices_floor(bulk, _deals_with_customers(hub, deal_refs), policy)
    return [
        Row(
            f"Xero calls per new company, burst of {companies:,}",
            contact_calls / companies,
            contact_floor / companies,
            "calls",
            target=TARGET_PER_CONTACT,
            bound="value",
            digits=3,
            note=f"per company: {breakdown(contact_log, companies)}; floor: {contact_floor} calls in all",
        ),
        Row(
            f"Xero calls per won deal ({deals} deals)",
            deal_calls / deals,
            invoice_floor / deals,
            "calls",
            digits=3,
            note=f"per deal: {breakdown(deal_log, deals)}; floor: {invoice_floor} calls in all; no target set",
        ),
    ]


#: HubSpot sends up to 100 events per webhook request; the contact worker's SQS batch holds up to 10 messages.
EVENTS_PER_DELIVERY = 100
MESSAGES_PER_BATCH = 10


class _NoAlerts:
    def alert(self, subject: str, message: str) -> None:
        raise RuntimeError(f"unexpected alert: {subject}")


def _lambda_batches(refs: Sequence[CrmRef]) -> list[list[tuple[str, str]]]:
    """The burst as the contact worker receives it: deliveries of 100 events, SQS batches of 10 messages."""
    messages = [
        (
            f"m{start}",
            WorkMessage(
                pipeline="contacts",
                events=[
                    creation_event(ref, start + n) for n, ref in enumerate(refs[start : start + EVENTS_PER_DELIVERY])
                ],
            ).model_dump_json(),
        )
        for start in range(0, len(refs), EVENTS_PER_DELIVERY)
    ]
    return [messages[i : i + MESSAGES_PER_BATCH] for i in range(0, len(messages), MESSAGES_PER_BATCH)]


def _deals_with_customers(hub: HubSpot, refs: Sequence[CrmRef]) -> list[tuple[Deal, Customer]]:
    pairs = []
    for ref in refs:
        deal = hub.crm.get_deal(ref.object_id)
        party = deal.company if deal else None
        customer = hub.crm.resolve_customer(party) if party else None
        if deal is None or customer is None:
            raise RuntimeError(f"deal {ref} or its company is missing")
        pairs.append((deal, customer))
    return pairs


def breakdown(calls: Sequence[LoggedRequest], per: int) -> str:
    """The calls by kind, per unit: ``2.00 GET /Contacts searchTerm, 1.00 GET /Contacts where TaxNumber, …``."""
    kinds: Counter[str] = Counter()
    for call in calls:
        path = re.sub(r"/[0-9a-f-]{36}", "/{id}", call.path.removeprefix(API_PREFIX))
        query = parse_qs(call.query)
        if "where" in query:
            what = " where " + "&&".join(dict.fromkeys(re.findall(r"(\w+)==", query["where"][0])))
        elif "searchTerm" in query:
            what = " searchTerm"
        else:
            what = ""
        kinds[f"{call.method} {path}{what}"] += 1
    return ", ".join(f"{count / per:.2f} {kind}" for kind, count in kinds.most_common())
