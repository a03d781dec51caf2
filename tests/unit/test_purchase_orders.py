"""Purchase orders from a won deal (sync.purchase_orders): one draft purchase order per supplier at unit cost,
exactly once under redeliveries and crashes, everything validated before the first create."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from closeloop.models import Address, Customer, Deal, Item, LineItem
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.purchase_orders import (
    PURCHASE_ORDERS_PROPERTY,
    PurchaseOrderFlow,
    PurchaseOrderPolicy,
    purchase_order_reference,
    supplier_slug,
)
from closeloop.sync.tax import TaxRule
from tests.deal_sync_support import COMPANY, DEAL
from tests.fakes import FakeCatalogueDealCrm, FakePurchasingBooks, MemoryStore, ProcessKilled, events_for

CLOSED = date(2026, 11, 20)


def deal(*lines: LineItem, currency: str = "NZD") -> Deal:
    amount = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
    return Deal(
        ref=DEAL,
        name="Big deal",
        amount=amount,
        currency=currency,
        is_won=True,
        close_date=CLOSED,
        company=COMPANY,
        line_items=lines,
    )


ANVIL = LineItem(crm_id="1", name="Anvil", sku="ANV-1", product_id="p1", quantity=Decimal(3), unit_price=Decimal(99))
ROCKET = LineItem(crm_id="2", name="Rocket", sku="RKT", quantity=Decimal(1), unit_price=Decimal(500))
SETUP = LineItem(crm_id="3", name="Setup", sku="SVC", product_id="p3", quantity=Decimal(2), unit_price=Decimal(150))
BOLTS = LineItem(crm_id="4", name="Bolts", sku="BLT", product_id="p4", quantity=Decimal(10), unit_price=Decimal(2))


def stand_up(
    the_deal: Deal | None = None, books: FakePurchasingBooks | None = None
) -> tuple[DealSync, FakeCatalogueDealCrm, FakePurchasingBooks, MemoryStore]:
    """A won deal: Anvil bought from Acme Supplies (cost 40), Rocket sold from stock (no product), Setup a
    service (a product without a supplier), Bolts also from Acme (cost 0.55)."""
    crm = FakeCatalogueDealCrm(
        customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="NZ"))}
    )
    crm.deals[DEAL.object_id] = the_deal or deal(ANVIL, ROCKET, SETUP)
    crm.add_product("p1", name="Anvil", sku="ANV-1", unit_cost=Decimal(40), supplier="Acme Supplies Ltd")
    crm.add_product("p3", name="Setup", sku="SVC", unit_cost=Decimal(60))
    crm.add_product("p4", name="Bolts", sku="BLT", unit_cost=Decimal("0.55"), supplier="ACME SUPPLIES")
    crm.add_product("p5", name="Crate", sku="CRT", unit_cost=Decimal(12), supplier="Bolt Works")
    books = books or FakePurchasingBooks()
    for code in ("ANV-1", "RKT", "SVC", "BLT", "CRT"):
        books.items[code] = books.items.get(code) or _item(code)
    store = MemoryStore()
    clock = lambda: datetime(2026, 11, 21, tzinfo=UTC)  # noqa: E731
    flow = PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w", clock=clock)
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("NZ",), tax_type="OUTPUT2"),))
    sync = DealSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w", flows=(flow,))
    return sync, crm, books, store


def _item(code: str) -> Item:
    return Item(code=code, name=code, tax_type="OUTPUT2")


def test_a_won_deal_makes_one_draft_purchase_order_per_supplier_at_unit_cost_and_writes_the_numbers_back() -> None:
    # Given a won deal with two Acme lines (one "Acme Supplies Ltd", one "ACME SUPPLIES"), a stock line and a service
    sync, crm, books, store = stand_up(deal(ANVIL, ROCKET, SETUP, BOLTS))
    # When it is synced
    outcome = sync.sync(DEAL, events_for(DEAL))
    # Then the customer invoice bills every line (a purchase order is the purchase side)
    assert outcome.action == "created"
    (invoice,) = books.invoices.values()
    assert [line.item_code for line in books.drafts[invoice.id].lines] == ["ANV-1", "RKT", "SVC", "BLT"]
    # and one supplier was created, with one draft purchase order at unit cost, referencing the deal and supplier
    (supplier,) = books.suppliers.values()
    assert supplier.name == "Acme Supplies Ltd"
    (order,) = books.purchase_orders.values()
    draft = books.po_drafts[order.id]
    assert draft.supplier_id == supplier.id and draft.status == "DRAFT" and draft.currency == "NZD"
    assert draft.reference == "crm-deal-3000001-po-acme-supplies" == purchase_order_reference(DEAL, "acme supplies")
    assert draft.issue_date == CLOSED
    assert [(line.item_code, line.quantity, line.unit_cost) for line in draft.lines] == [
        ("ANV-1", Decimal(3), Decimal(40)),
        ("BLT", Decimal(10), Decimal("0.55")),
    ]
    assert order.total == Decimal("125.50")
    # and the number is on the deal, and the supplier and the purchase order are audited
    assert crm.deal_properties[DEAL.object_id][PURCHASE_ORDERS_PROPERTY] == order.number
    actions = [(r.action, r.target_id) for r in store.list_audit(DEAL)]
    assert ("supplier_created", supplier.id) in actions and ("purchase_ordered", order.id) in actions
    assert store.get_failed_sync(DEAL) is None


def test_two_suppliers_get_two_purchase_orders_and_both_numbers_go_to_the_deal() -> None:
    crate = LineItem(crm_id="5", name="Crate", sku="CRT", product_id="p5", quantity=Decimal(1), unit_price=Decimal(20))
    sync, crm, books, store = stand_up(deal(ANVIL, crate))
    sync.sync(DEAL, events_for(DEAL))
    by_supplier = {books.suppliers[o.supplier_id].name: o for o in books.purchase_orders.values()}
    assert set(by_supplier) == {"Acme Supplies Ltd", "Bolt Works"}
    numbers = crm.deal_properties[DEAL.object_id][PURCHASE_ORDERS_PROPERTY]
    assert numbers == f"{by_supplier['Acme Supplies Ltd'].number}, {by_supplier['Bolt Works'].number}"


def test_redelivery_makes_no_second_purchase_order_and_writes_nothing_again() -> None:
    sync, crm, books, store = stand_up()
    sync.sync(DEAL, events_for(DEAL))
    writes = crm.write_calls
    # When the won deal is delivered again (and again)
    for _ in range(2):
        assert sync.sync(DEAL, events_for(DEAL)).action == "unchanged"
    # Then there is still one supplier and one purchase order, and the deal was not written again
    assert len(books.purchase_orders) == 1 and len(books.suppliers) == 1
    assert books.calls.count("create_purchase_order") == 1
    assert crm.write_calls == writes


def test_a_crash_after_the_purchase_order_was_created_is_healed_by_its_reference() -> None:
    # Given the worker dies after the vendor created the purchase order, before the mapping was written
    books = FakePurchasingBooks(lose_po_answer=True)
    sync, crm, _, store = stand_up(books=books)
    with pytest.raises(ProcessKilled):
        sync.sync(DEAL, events_for(DEAL))
    assert len(books.purchase_orders) == 1
    # When the deal is delivered again
    again = sync.sync(DEAL, events_for(DEAL))
    # Then the purchase order is found by its reference and linked: no second one, its number on the deal
    assert again.action == "unchanged"
    (order,) = books.purchase_orders.values()
    assert books.calls.count("create_purchase_order") == 1
    assert crm.deal_properties[DEAL.object_id][PURCHASE_ORDERS_PROPERTY] == order.number
    assert "linked" in [r.action for r in store.list_audit(DEAL)]


def test_a_crash_after_the_supplier_was_created_matches_it_next_time() -> None:
    books = FakePurchasingBooks(lose_supplier_answer=True)
    sync, crm, _, store = stand_up(books=books)
    with pytest.raises(ProcessKilled):
        sync.sync(DEAL, events_for(DEAL))
    assert len(books.suppliers) == 1 and not books.purchase_orders
    sync.sync(DEAL, events_for(DEAL))
    assert len(books.suppliers) == 1 and len(books.purchase_orders) == 1
    assert books.calls.count("create_supplier") == 1


def test_an_existing_supplier_is_matched_by_normalised_name() -> None:
    books = FakePurchasingBooks()
    existing = books.add_supplier("ACME Supplies Limited")
    sync, crm, _, store = stand_up(books=books)
    sync.sync(DEAL, events_for(DEAL))
    (order,) = books.purchase_orders.values()
    assert order.supplier_id == existing.id
    assert "create_supplier" not in books.calls


def test_a_supplier_product_without_a_cost_fails_the_deal_naming_it_and_creates_nothing() -> None:
    # Given one supplier line with a cost (Crate, Bolt Works) and one without (Anvil, Acme)
    crate = LineItem(crm_id="5", name="Crate", sku="CRT", product_id="p5", quantity=Decimal(1), unit_price=Decimal(20))
    sync, crm, books, store = stand_up(deal(crate, ANVIL))
    crm.products["p1"] = crm.products["p1"].model_copy(update={"unit_cost": None})
    outcome = sync.sync(DEAL, events_for(DEAL))
    # Then the deal fails naming the product, and nothing was made: no supplier, no purchase order, and not
    # the invoice either (the supplier lines are checked before it)
    assert outcome.action == "failed"
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "'Anvil'" in failure.reason and "no unit cost" in failure.reason
    assert books.suppliers == {} and books.purchase_orders == {} and books.invoices == {}
    # When the cost is set and the deal is replayed, both purchase orders are made
    crm.products["p1"] = crm.products["p1"].model_copy(update={"unit_cost": Decimal(40)})
    sync.sync(DEAL, events_for(DEAL))
    assert len(books.purchase_orders) == 2
    assert store.get_failed_sync(DEAL) is None


def test_two_candidate_suppliers_fail_the_deal_naming_them_and_nothing_is_guessed() -> None:
    books = FakePurchasingBooks()
    first, second = books.add_supplier("Acme Supplies"), books.add_supplier("Acme Supplies Ltd")
    crate = LineItem(crm_id="5", name="Crate", sku="CRT", product_id="p5", quantity=Decimal(1), unit_price=Decimal(20))
    sync, crm, _, store = stand_up(deal(crate, ANVIL), books=books)
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "failed"
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and first.id in failure.reason and second.id in failure.reason
    # Bolt Works (unambiguous) is not created either: every supplier is checked before the first create
    assert len(books.suppliers) == 2 and books.purchase_orders == {}


def test_one_supplier_bought_from_in_two_currencies_fails() -> None:
    sync, crm, books, store = stand_up(deal(ANVIL, BOLTS))
    crm.products["p4"] = crm.products["p4"].model_copy(update={"currency": "USD"})
    assert sync.sync(DEAL, events_for(DEAL)).action == "failed"
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "NZD and USD" in failure.reason
    assert books.purchase_orders == {}


def test_a_deal_without_supplier_lines_makes_no_purchase_order_and_writes_nothing() -> None:
    sync, crm, books, store = stand_up(deal(ROCKET, SETUP))
    assert sync.sync(DEAL, events_for(DEAL)).action == "created"
    assert books.purchase_orders == {} and "find_suppliers" not in books.calls
    assert PURCHASE_ORDERS_PROPERTY not in crm.deal_properties.get(DEAL.object_id, {})


def test_a_long_supplier_name_keeps_a_bounded_unique_reference() -> None:
    long_a, long_b = "x" * 60 + " alpha", "x" * 60 + " beta"
    assert len(supplier_slug(long_a)) == 40 and supplier_slug(long_a) != supplier_slug(long_b)
    assert supplier_slug("acme supplies") == "acme-supplies"


def test_the_flow_is_wired_only_when_purchase_orders_is_on_and_both_systems_carry_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace  # noqa: PLC0415
    from typing import Any  # noqa: PLC0415

    from closeloop import runtime  # noqa: PLC0415
    from closeloop.vendors import registry  # noqa: PLC0415

    real = registry.get
    built: list[str] = []

    def pair(crm: tuple[str, ...], books: tuple[str, ...], on: str) -> str:
        def get(name: str, kind: Any = None) -> Any:
            spec = real(name, kind)
            objects = crm if spec.kind == "crm" else books
            return replace(spec, capabilities=replace(spec.capabilities, objects=objects))

        monkeypatch.setattr(registry, "get", get)
        monkeypatch.setenv("CRM_PROVIDER", "hubspot")
        monkeypatch.setenv("ACCOUNTING_PROVIDER", "xero")
        monkeypatch.setenv("PURCHASE_ORDERS", on)
        runtime.reset()
        return runtime.purchase_orders_off_reason()

    monkeypatch.setattr(runtime, "purchase_order_flow", lambda: built.append("flow") or "flow")
    try:
        assert "PURCHASE_ORDERS=false" in pair(("deal", "purchase_order"), ("invoice", "purchase_order"), "false")
        assert runtime.won_deal_flows() == ()
        assert pair(("deal",), ("invoice", "purchase_order"), "true").startswith("HubSpot does not carry purchase")
        assert runtime.won_deal_flows() == ()
        assert pair(("deal", "purchase_order"), ("invoice", "purchase_order"), "true") == ""
        assert runtime.won_deal_flows() == ("flow",)
    finally:
        runtime.reset()
