"""The QuickBooks adapter's purchasing side (PurchasingAccounting) against the QuickBooks sandbox over HTTP:
vendors matched and created (a name taken by a customer is a Conflict), purchase orders created Open once per
key, found by the DocNumber standing for their reference and compared exactly, read by id, and QBO's refusals;
then PurchaseOrderFlow over the adapter with the CRM side faked.

Published source of every request and answer: Intuit's XSDs (Vendor, PurchaseOrder, ItemBasedExpenseLineDetail)
and PurchaseOrder/Vendor reference pages (tests/contracts/quickbooks); tests/contracts/
test_quickbooks_purchase_orders.py holds the exchanges to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import Address, Customer, Deal, LineItem, PurchaseOrderDraft, PurchaseOrderLine
from closeloop.sync.contacts import normalise_name
from closeloop.sync.purchase_orders import (
    PURCHASE_ORDERS_PROPERTY,
    PurchaseOrderFlow,
    PurchaseOrderPolicy,
    purchase_order_reference,
)
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.quickbooks.mapping import purchase_order_doc_number
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox, serve
from tests.deal_sync_support import COMPANY, DEAL
from tests.fakes import FakeCatalogueDealCrm, MemoryStore
from tests.quickbooks_adapters import adapter
from tests.sandbox_adapters import LoseAnswers

DAY = date(2026, 11, 20)
REFERENCE = "hubspot-deal-3000001-po-acme-supplies"


@pytest.fixture
def sandbox() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    qbo, server = serve()
    QuickBooksDriver(qbo).seed_item("ANV-1", "Anvil", Decimal("99.50"))
    yield qbo, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> QuickBooksAccounting:
    qbo, server = sandbox
    return adapter(qbo, server.url)


def draft(supplier_id: str, **kw: Any) -> PurchaseOrderDraft:
    values: dict[str, Any] = {
        "supplier_id": supplier_id,
        "reference": REFERENCE,
        "currency": "USD",
        "lines": (
            PurchaseOrderLine(item_code="ANV-1", description="Anvil", quantity=Decimal(3), unit_cost=Decimal("40.10")),
            PurchaseOrderLine(item_code="", description="Freight", quantity=Decimal(1), unit_cost=Decimal("12.50")),
        ),
        "issue_date": DAY,
    }
    values.update(kw)
    return PurchaseOrderDraft(**values)


def test_the_reference_does_not_fit_a_doc_number_so_its_digest_stands_for_it() -> None:
    # Given the sync's reference (37 characters) and QBO's DocNumber limit of 21
    doc = purchase_order_doc_number(REFERENCE)
    # Then the DocNumber is a digest of the whole reference, 21 long, different per supplier of one deal
    assert len(REFERENCE) > 21 and len(doc) == 21 and doc.startswith("PO-")
    assert doc != purchase_order_doc_number("hubspot-deal-3000001-po-acme-tools")
    assert purchase_order_doc_number("short-ref") == "short-ref"


def test_a_vendor_is_created_once_found_by_its_name_and_a_taken_name_is_a_conflict(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    # When a vendor is created twice with one key (a lost answer's retry), then looked for by name
    supplier = books.create_supplier("Acme Supplies Ltd", idempotency_key="k-supplier")
    again = books.create_supplier("Acme Supplies Ltd", idempotency_key="k-supplier")
    # Then one vendor exists and the name search finds it
    assert again.id == supplier.id and len(qbo.rows("Vendor")) == 1
    assert [(s.id, s.name, s.status) for s in books.find_suppliers("Acme Supplies")] == [
        (supplier.id, "Acme Supplies Ltd", "ACTIVE")
    ]
    # and a vendor named as an existing vendor or customer (a new key) is a Conflict saying why
    QuickBooksDriver(qbo).seed_customer("Northwind")
    with pytest.raises(Conflict):
        books.create_supplier("Acme Supplies Ltd", idempotency_key="k-other")
    with pytest.raises(Conflict, match="unique across"):
        books.create_supplier("Northwind", idempotency_key="k-northwind")


def test_an_inactive_vendor_is_not_a_candidate(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    gone = qbo.seed("Vendor", DisplayName="Acme Old")
    qbo.edit("Vendor", gone["Id"], Active=False)
    assert books.find_suppliers("Acme Old") == []


def test_a_purchase_order_is_created_open_once_per_key_and_found_by_its_reference(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    # When the purchase order is created twice with one key
    order = books.create_purchase_order(draft(supplier.id), idempotency_key="k-po")
    again = books.create_purchase_order(draft(supplier.id), idempotency_key="k-po")
    # Then one Open purchase order exists at unit cost, credited to the A/P account, numbered by the digest
    rows = qbo.rows("PurchaseOrder")
    assert again.id == order.id and len(rows) == 1
    row = rows[0]
    assert row["POStatus"] == "Open" and order.status == "AUTHORISED"
    assert row["APAccountRef"]["value"] == "33"
    assert row["DocNumber"] == order.number == purchase_order_doc_number(REFERENCE)
    assert row["PrivateNote"] == REFERENCE and order.reference == REFERENCE
    item_line, freight = row["Line"]
    assert item_line["ItemBasedExpenseLineDetail"]["Qty"] == Decimal(3)
    assert item_line["ItemBasedExpenseLineDetail"]["UnitPrice"] == Decimal("40.10")
    assert item_line["Amount"] == Decimal("120.30")
    assert freight["DetailType"] == "AccountBasedExpenseLineDetail"
    assert freight["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == "80"  # Cost of Goods Sold
    assert freight["Amount"] == Decimal("12.50") and freight["Description"] == "Freight (1 x 12.50)"
    assert order.total == Decimal("132.80") and order.supplier_id == supplier.id and order.currency == "USD"
    assert order.url.endswith(f"/app/purchaseorder?txnId={order.id}")
    # and it is found by its reference and read by id; another reference finds nothing
    assert books.find_purchase_order(REFERENCE, DAY) == order
    assert books.find_purchase_order("hubspot-deal-3000001-po-acme-tools", DAY) is None
    assert books.get_purchase_order(order.id) == order
    assert books.get_purchase_order("999") is None


def test_find_is_exact_when_a_person_reuses_the_doc_number(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    # Given a purchase order a person made with our DocNumber but another note
    item = qbo.rows("Item")[0]["Id"]
    line = {
        "DetailType": "ItemBasedExpenseLineDetail",
        "Amount": "1",
        "ItemBasedExpenseLineDetail": {"ItemRef": {"value": item}, "Qty": 1, "UnitPrice": 1},
    }
    qbo.seed(
        "PurchaseOrder",
        VendorRef={"value": supplier.id},
        Line=[line],
        DocNumber=purchase_order_doc_number(REFERENCE),
        PrivateNote="typed by hand",
    )
    # When the reference is looked up, and a create meets the taken DocNumber
    found = books.find_purchase_order(REFERENCE, DAY)
    # Then nothing is found (the note differs), and the create's refusal stands (6140: no guessed match)
    assert found is None
    with pytest.raises(ValidationFailed, match="6140|Duplicate"):
        books.create_purchase_order(draft(supplier.id), idempotency_key="k-po")


def test_a_lost_create_answer_is_healed_by_the_requestid(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    lossy = adapter(qbo, server.url, transport=LoseAnswers("POST", f"/v3/company/{qbo.realm_id}/purchaseorder"))
    supplier = lossy.create_supplier("Acme Supplies", idempotency_key="k-s")
    # When the create's answer is lost once (the adapter retries a sent write with its requestid)
    order = lossy.create_purchase_order(draft(supplier.id), idempotency_key="k-po")
    # Then exactly one purchase order exists, and it is the one answered
    assert [r["Id"] for r in qbo.rows("PurchaseOrder")] == [order.id]


def test_qbo_s_refusals_are_validation_failures_with_its_reasons(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    # An unknown item code is refused before anything is sent; no lines, another currency and an unknown
    # vendor are QBO's refusals
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_purchase_order(
            draft(
                supplier.id,
                lines=(
                    PurchaseOrderLine(item_code="NOPE", description="x", quantity=Decimal(1), unit_cost=Decimal(1)),
                ),
            ),
            idempotency_key="k-1",
        )
    with pytest.raises(ValidationFailed):
        books.create_purchase_order(draft(supplier.id, lines=()), idempotency_key="k-2")
    with pytest.raises(ValidationFailed, match="currency"):
        books.create_purchase_order(draft(supplier.id, currency="EUR"), idempotency_key="k-3")
    with pytest.raises(ValidationFailed):
        books.create_purchase_order(draft("999"), idempotency_key="k-4")
    assert qbo.rows("PurchaseOrder") == []


def test_a_company_without_an_ap_account_in_the_currency_is_refused_before_sending(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    supplier = books.create_supplier("Acme Supplies", idempotency_key="k-s")
    qbo.tables["Account"]["33"].data["CurrencyRef"] = {"value": "USD"}
    with pytest.raises(ValidationFailed, match="Accounts Payable account in EUR"):
        books.create_purchase_order(draft(supplier.id, currency="EUR"), idempotency_key="k-eur")
    assert qbo.rows("PurchaseOrder") == []


# -- PurchaseOrderFlow over the adapter and the sandbox (the CRM side faked) ---------------------------------


def _flow(books: QuickBooksAccounting, store: MemoryStore) -> tuple[PurchaseOrderFlow, FakeCatalogueDealCrm, Deal]:
    """A won deal: 3 Anvils bought from "Acme Supplies Ltd" at 40, 2 Crates from "Bolt Works" at 12.25, and a
    service line whose product names no supplier."""
    crm = FakeCatalogueDealCrm(
        customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="US"))}
    )
    crm.add_product("p1", name="Anvil", sku="ANV-1", unit_cost=Decimal(40), supplier="Acme Supplies Ltd")
    crm.add_product("p2", name="Crate", sku="CRT", unit_cost=Decimal("12.25"), supplier="Bolt Works")
    crm.add_product("p3", name="Setup", sku="SVC", unit_cost=Decimal(60))
    lines = (
        LineItem(crm_id="1", name="Anvil", sku="ANV-1", product_id="p1", quantity=Decimal(3), unit_price=Decimal(99)),
        LineItem(crm_id="2", name="Crate", sku="CRT", product_id="p2", quantity=Decimal(2), unit_price=Decimal(20)),
        LineItem(crm_id="3", name="Setup", sku="SVC", product_id="p3", quantity=Decimal(1), unit_price=Decimal(150)),
    )
    deal = Deal(
        ref=DEAL,
        name="Big deal",
        amount=Decimal(487),
        currency="USD",
        is_won=True,
        close_date=DAY,
        company=COMPANY,
        line_items=lines,
    )
    crm.deals[DEAL.object_id] = deal
    clock = lambda: datetime(2026, 11, 21, tzinfo=UTC)  # noqa: E731
    return PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w", clock=clock), crm, deal


def test_a_won_deal_makes_one_open_purchase_order_per_vendor_once_matching_an_existing_vendor(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    # Given QBO has the items and already a vendor "ACME SUPPLIES LTD"; Bolt Works is new
    QuickBooksDriver(qbo).seed_item("CRT", "Crate", Decimal(20))
    acme = qbo.seed("Vendor", DisplayName="ACME SUPPLIES LTD")
    store = MemoryStore()
    flow, crm, deal = _flow(books, store)
    # When the won deal is followed twice (a redelivery)
    flow.follow(deal, "1", None)
    flow.follow(deal, "1", None)
    # Then Acme is matched, Bolt Works created once, and each has one Open purchase order at unit cost
    vendors = {v["DisplayName"]: v["Id"] for v in qbo.rows("Vendor")}
    assert set(vendors) == {"ACME SUPPLIES LTD", "Bolt Works"} and vendors["ACME SUPPLIES LTD"] == acme["Id"]
    orders = {o["VendorRef"]["value"]: o for o in qbo.rows("PurchaseOrder")}
    assert set(orders) == {acme["Id"], vendors["Bolt Works"]}
    assert orders[acme["Id"]]["TotalAmt"] == Decimal("120.00") and orders[acme["Id"]]["POStatus"] == "Open"
    assert orders[vendors["Bolt Works"]]["TotalAmt"] == Decimal("24.50")
    assert orders[acme["Id"]]["PrivateNote"] == purchase_order_reference(DEAL, normalise_name("Acme Supplies Ltd"))
    # and both DocNumbers (the PO numbers) are written back to the deal
    written = crm.deal_properties[DEAL.object_id][PURCHASE_ORDERS_PROPERTY]
    assert sorted(written.split(", ")) == sorted(o["DocNumber"] for o in orders.values())


def test_a_crash_after_the_create_is_healed_by_the_reference_not_a_second_purchase_order(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    QuickBooksDriver(qbo).seed_item("CRT", "Crate", Decimal(20))
    store = MemoryStore()
    flow, _, deal = _flow(books, store)
    flow.follow(deal, "1", None)
    made = {o["Id"] for o in qbo.rows("PurchaseOrder")}
    # When the mappings are lost (the worker died between QBO's create and our write) and the deal comes again
    store.mappings.clear()
    flow.follow(deal, "1", None)
    # Then the purchase orders are found by their reference (DocNumber digest + exact PrivateNote), none added
    assert {o["Id"] for o in qbo.rows("PurchaseOrder")} == made
    assert len(qbo.rows("Vendor")) == 2


def test_an_unknown_item_code_fails_the_deal_before_any_vendor_or_purchase_order(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], books: QuickBooksAccounting
) -> None:
    qbo, _ = sandbox
    # Given QBO has no item CRT
    flow, _, deal = _flow(books, MemoryStore())
    # When the deal is followed, Then it fails naming the product, and nothing was created
    with pytest.raises(ValidationFailed, match="Crate"):
        flow.follow(deal, "1", None)
    assert qbo.rows("Vendor") == [] and qbo.rows("PurchaseOrder") == []
