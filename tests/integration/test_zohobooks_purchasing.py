"""Zoho Books purchasing (PurchasingAccounting over vendor contacts and purchase orders) against the Zoho Books
sandbox over HTTP: vendors found among vendors only (over pages) and created once (a taken name a Conflict, a
lost answer found by name), draft purchase orders at unit cost found by reference (a lost answer found, never
re-sent), refusals before anything is sent; and PurchaseOrderFlow over the adapter with a fake CRM catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import Conflict, Unanswered, ValidationFailed
from closeloop.models import Address, Customer, Deal, LineItem, PurchaseOrderDraft, PurchaseOrderLine
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.purchase_orders import PURCHASE_ORDERS_PROPERTY, PurchaseOrderFlow, PurchaseOrderPolicy
from closeloop.sync.tax import TaxRule
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.zohobooks import PURCHASE_ACCOUNT, TAXES, ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.fakes import FakeCatalogueDealCrm, MemoryStore, events_for, ref
from tests.sandbox_adapters import LoseAnswers
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on

API = "/books/v3"
VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))
MATERIALS = "982000000000570"
REFERENCE = "crm-deal-3000001-po-acme-supplies"
DAY = date(2026, 11, 20)


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    zoho.seed_item(
        sku="ANV-1",
        name="Anvil",
        rate="99",
        purchase_rate="30",
        purchase_account_id=MATERIALS,
        item_type="sales_and_purchases",
    )
    zoho.seed_item(sku="BLT", name="Bolts", rate="2")
    yield zoho, server
    server.stop()


def vendors(zoho: ZohoBooksSandbox) -> list[dict[str, Any]]:
    return [c for c in zoho.contacts() if c["contact_type"] == "vendor"]


def orders(zoho: ZohoBooksSandbox) -> list[dict[str, Any]]:
    return zoho.purchase_orders()


def draft(supplier_id: str, **kw: Any) -> PurchaseOrderDraft:
    values: dict[str, Any] = {
        "supplier_id": supplier_id,
        "reference": REFERENCE,
        "currency": "GBP",
        "lines": (
            PurchaseOrderLine(item_code="ANV-1", description="Anvil", quantity=Decimal(3), unit_cost=Decimal("40.10")),
            PurchaseOrderLine(item_code="BLT", description="Bolts", quantity=Decimal(10), unit_cost=Decimal("0.55")),
            PurchaseOrderLine(item_code="", description="Freight", quantity=Decimal(1), unit_cost=Decimal(12)),
        ),
        "issue_date": DAY,
    }
    values.update(kw)
    return PurchaseOrderDraft(**values)


def test_a_vendor_is_created_once_found_among_vendors_only_and_a_taken_name_is_a_conflict(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    ZohoBooksDriver(zoho).seed_customer("Acme Supplies Ltd", email="c@x.test")  # a customer of the same name
    # When a supplier is created, Then it is a vendor contact, and found by its name among vendors only
    made = books.create_supplier("Acme Supplies Ltd", idempotency_key="s-1")
    assert [v["contact_id"] for v in vendors(zoho)] == [made.id] and made.status == "ACTIVE"
    assert books.find_suppliers("ACME Supplies") == [made]
    assert books.find_suppliers("Nobody Trading") == []
    # And a second create of the name is Zoho's refusal (3062), a Conflict
    with pytest.raises(Conflict, match="refused the supplier name"):
        books.create_supplier("Acme Supplies Ltd", idempotency_key="s-2")
    assert len(vendors(zoho)) == 1


def test_find_suppliers_checks_each_row_s_type_when_zoho_ignores_the_filter_over_pages() -> None:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000, ignore_undocumented_filters=True))
    try:
        driver = ZohoBooksDriver(zoho)
        for n in range(3):
            driver.seed_customer(f"Acme Customer {n}", email=f"c{n}@x.test")
        for n in range(2):
            zoho.seed_contact(contact_name=f"Acme Vendor {n}", contact_type="vendor")
        books = books_on(zoho, server.url, cls=PagesOfTwo)
        # When suppliers are looked up by a word every contact shares, with contact_type ignored by Zoho
        found = books.find_suppliers("Acme")
        # Then every page is read and only the vendors are candidates
        assert sorted(s.name for s in found) == ["Acme Vendor 0", "Acme Vendor 1"]
        assert len(zoho.state.calls("GET", f"{API}/contacts")) == 3
    finally:
        server.stop()


def test_a_lost_vendor_create_answer_is_not_resent_but_found(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/contacts"))
    made = books.create_supplier("Bolt Works", idempotency_key="s-1")
    assert len(zoho.state.calls("POST", f"{API}/contacts")) == 1
    assert [v["contact_id"] for v in vendors(zoho)] == [made.id]
    # And a lost answer to a create Zoho refused (an empty name) stays Unanswered
    lost = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/contacts"))
    with pytest.raises(Unanswered):
        lost.create_supplier(" ", idempotency_key="s-2")


def test_a_draft_purchase_order_is_made_at_unit_cost_and_found_by_reference(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    supplier = books.create_supplier("Acme Supplies", idempotency_key="s")
    # When a purchase order is created
    made = books.create_purchase_order(draft(supplier.id), idempotency_key="po-1")
    # Then one draft holds the reference, the vendor and each line at its unit cost, in Decimal
    (row,) = orders(zoho)
    assert (row["status"], row["reference_number"], row["vendor_id"]) == ("draft", REFERENCE, supplier.id)
    assert row["date"] == DAY.isoformat()
    lines = row["line_items"]
    assert [(line["sku"], line["quantity"], line["rate"]) for line in lines] == [
        ("ANV-1", Decimal(3), Decimal("40.10")),
        ("BLT", Decimal(10), Decimal("0.55")),
        ("", Decimal(1), Decimal(12)),
    ]
    # And the item's purchase account is named; the others take Zoho's default; the free line its description
    assert [line["account_id"] for line in lines] == [MATERIALS, PURCHASE_ACCOUNT, PURCHASE_ACCOUNT]
    assert lines[2]["name"] == "Freight"
    assert (made.status, made.number, made.total, made.currency) == (
        "DRAFT",
        row["purchaseorder_number"],
        Decimal("137.80"),
        "GBP",
    )
    assert made.supplier_id == supplier.id and made.url.endswith(f"#/purchaseorders/{made.id}")
    # And it is found by its reference and read by id; an unknown one is None
    assert books.find_purchase_order(REFERENCE, DAY) == made
    assert books.find_purchase_order("crm-deal-9-po-x", DAY) is None
    assert books.get_purchase_order(made.id) == made
    assert books.get_purchase_order("460000000999999") is None
    # And a second create for the deal and supplier answers the first order, nothing sent
    assert books.create_purchase_order(draft(supplier.id), idempotency_key="po-1") == made
    assert len(zoho.state.calls("POST", f"{API}/purchaseorders")) == 1
    # And a cancelled order is still the deal's (a person's decision, not made again)
    books.client.call("POST", f"/purchaseorders/{made.id}/status/cancelled")
    found = books.find_purchase_order(REFERENCE, DAY)
    assert found is not None and found.status == "CANCELLED"


def test_a_lost_purchase_order_answer_is_not_resent_but_found(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    supplier = books_on(zoho, server.url).create_supplier("Acme Supplies", idempotency_key="s")
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/purchaseorders"))
    made = books.create_purchase_order(draft(supplier.id), idempotency_key="po-1")
    assert len(zoho.state.calls("POST", f"{API}/purchaseorders")) == 1
    assert [o["purchaseorder_id"] for o in orders(zoho)] == [made.id]


def test_refusals_name_what_is_wrong_and_send_nothing(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    supplier = books.create_supplier("Acme Supplies", idempotency_key="s")
    customer = ZohoBooksDriver(zoho).seed_customer("Buyer Ltd", email="b@x.test")
    usd = zoho.seed_contact(contact_name="Dollar Parts", contact_type="vendor", currency_code="USD")["contact_id"]
    unknown = draft(
        supplier.id,
        lines=(PurchaseOrderLine(item_code="NOPE", description="x", quantity=Decimal(1), unit_cost=Decimal(1)),),
    )
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_purchase_order(unknown, idempotency_key="p")
    with pytest.raises(ValidationFailed, match="not an active vendor"):
        books.create_purchase_order(draft(customer), idempotency_key="p")
    with pytest.raises(ValidationFailed, match="USD"):
        books.create_purchase_order(draft(usd), idempotency_key="p")
    assert not zoho.state.calls("POST", f"{API}/purchaseorders") and orders(zoho) == []


# -- PurchaseOrderFlow over the adapter and the sandbox -----------------------------------------------------------

COMPANY = ref("company", "1")
DEAL = ref("deal", "3000001")


def wired(
    zoho: ZohoBooksSandbox, server: SandboxServer, books: ZohoBooksAccounting | None = None
) -> tuple[DealSync, FakeCatalogueDealCrm, MemoryStore]:
    crm = FakeCatalogueDealCrm(
        customers={COMPANY: Customer(ref=COMPANY, name="Buyer Ltd", address=Address(country="GB"))}
    )
    crm.deals[DEAL.object_id] = Deal(
        ref=DEAL,
        name="Big deal",
        amount=Decimal("317"),
        currency="GBP",
        is_won=True,
        close_date=DAY,
        company=COMPANY,
        line_items=(
            LineItem(
                crm_id="1", name="Anvil", sku="ANV-1", product_id="p1", quantity=Decimal(3), unit_price=Decimal(99)
            ),
            LineItem(crm_id="2", name="Bolts", sku="BLT", product_id="p2", quantity=Decimal(10), unit_price=Decimal(2)),
        ),
    )
    crm.add_product("p1", name="Anvil", sku="ANV-1", unit_cost=Decimal(40), supplier="Acme Supplies Ltd")
    crm.add_product("p2", name="Bolts", sku="BLT", unit_cost=Decimal("0.55"), supplier="Bolt Works")
    books = books or books_on(zoho, server.url)
    store = MemoryStore()
    clock = lambda: datetime(2026, 11, 21, tzinfo=UTC)  # noqa: E731
    flow = PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w", clock=clock)
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("GB",), tax_type=VAT20),))
    sync = DealSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w", flows=(flow,))
    return sync, crm, store


def test_the_flow_makes_one_draft_per_supplier_writes_the_numbers_back_and_a_replay_makes_nothing(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given a vendor Acme Supplies exists in Zoho, and the first order's answer is lost
    existing = zoho.seed_contact(contact_name="ACME SUPPLIES LTD", contact_type="vendor")["contact_id"]
    lost = LoseAnswers("POST", f"{API}/purchaseorders")
    sync, crm, store = wired(zoho, server, books_on(zoho, server.url, transport=lost))
    # When the won deal is synced
    sync.sync(DEAL, events_for(DEAL))
    assert lost.times == 0
    # Then Acme is matched, Bolt Works created as a vendor, and one draft order made per supplier
    assert sorted(v["contact_name"] for v in vendors(zoho)) == ["ACME SUPPLIES LTD", "Bolt Works"]
    by_vendor = {o["vendor_id"]: o for o in orders(zoho)}
    assert len(orders(zoho)) == 2 and existing in by_vendor
    assert {o["reference_number"] for o in orders(zoho)} == {
        "crm-deal-3000001-po-acme-supplies",
        "crm-deal-3000001-po-bolt-works",
    }
    assert by_vendor[existing]["total"] == Decimal("120.00") and by_vendor[existing]["status"] == "draft"
    numbers = crm.deal_properties[DEAL.object_id][PURCHASE_ORDERS_PROPERTY].split(", ")
    assert sorted(numbers) == sorted(o["purchaseorder_number"] for o in orders(zoho))
    # When the deal is delivered again, also after a crash that lost the mappings, Then nothing more is made
    sync.sync(DEAL, events_for(DEAL))
    store.mappings.clear()
    sync.sync(DEAL, events_for(DEAL))
    assert len(orders(zoho)) == 2 and len(vendors(zoho)) == 2
    assert len(zoho.state.calls("POST", f"{API}/purchaseorders")) == 2


def test_the_flow_fails_the_deal_for_a_supplier_product_without_a_cost_and_makes_no_order(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    sync, crm, store = wired(zoho, server)
    crm.add_product("p2", name="Bolts", sku="BLT", unit_cost=None, supplier="Bolt Works")
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "failed" and "no unit cost" in (outcome.detail or "")
    assert orders(zoho) == [] and vendors(zoho) == []


def test_the_spec_lists_purchase_order_and_the_adapter_implements_the_whole_port() -> None:
    from closeloop.ports import PurchasingAccounting  # noqa: PLC0415
    from closeloop.vendors.zohobooks import SPEC  # noqa: PLC0415

    assert "purchase_order" in SPEC.capabilities.objects
    methods = [n for n, v in vars(PurchasingAccounting).items() if callable(v) and not n.startswith("_")]
    assert len(methods) == 6 and all(callable(getattr(ZohoBooksAccounting, n, None)) for n in methods)
