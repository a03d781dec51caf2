"""Product catalogue: one item per CRM product, matched by SKU, fields owned as the rules say."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from closeloop.errors import Busy, ValidationFailed
from closeloop.models import Address, CrmRef, Customer, Deal, Item, LineItem, SyncEvent
from closeloop.rules import FieldRules
from closeloop.sync.contacts import ContactSync, Outcome
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.products import ProductSync, WithCatalogue, fit
from closeloop.sync.trail import Trail
from tests.fakes import (
    FakeBooks,
    FakeCatalogueBooks,
    FakeCatalogueCrm,
    FakeDealCrm,
    MemoryStore,
    ProcessKilled,
    events_for,
    ref,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _sync(crm: FakeCatalogueCrm, books: FakeCatalogueBooks, store: MemoryStore, **kw: object) -> ProductSync:
    return ProductSync(crm, books, store, owner="worker-1", clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def _event(ref: CrmRef, kind: str = "changed", key: str = "e1") -> SyncEvent:
    return SyncEvent(ref=ref, event_id=key, kind=kind, occurred_at=NOW, source_type="product.change", dedupe_key=key)  # type: ignore[arg-type]


@pytest.fixture
def parts() -> tuple[FakeCatalogueCrm, FakeCatalogueBooks, MemoryStore]:
    return FakeCatalogueCrm(), FakeCatalogueBooks(), MemoryStore()


def test_a_new_product_creates_one_item_with_the_crm_s_values(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add(
        "p1",
        sku="WIDGET-1",
        name="Widget",
        description="A widget",
        unit_price=Decimal("12.50"),
        unit_cost=Decimal("4.00"),
    )
    outcome = _sync(crm, books, store).sync(ref, [_event(ref)])
    assert outcome.action == "created"
    item = books.items["WIDGET-1"]
    # Then the item carries name, description, price and (as its starting value) the cost
    assert item.fields == {"name": "Widget", "description": "A widget", "unit_price": "12.5", "unit_cost": "4"}
    assert store.get_mapping(ref, "books").accounting_id == item.id  # type: ignore[union-attr]
    assert [r.action for r in store.list_audit(ref)] == ["created"]
    # And a second delivery of the same change writes nothing
    assert _sync(crm, books, store).sync(ref, [_event(ref)]).action == "unchanged"
    assert [w[0] for w in books.writes] == ["create"]


def test_an_existing_item_with_the_sku_is_linked_not_duplicated_and_finance_s_values_stay(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    books.put("WIDGET-1", name="Widget (finance)", unit_price="13", unit_cost="4.2")
    ref = crm.add("p1", sku="WIDGET-1", name="Widget", description="A widget", unit_price=Decimal("12.50"))
    outcome = _sync(crm, books, store).sync(ref, [_event(ref)])
    assert outcome.action == "matched" and len(books.items) == 1
    # Only what the item lacked is filled in; its own name and price stay, and the audit says so
    assert books.items["WIDGET-1"].fields["name"] == "Widget (finance)"
    assert books.items["WIDGET-1"].fields["description"] == "A widget"
    assert books.writes == [("update", "WIDGET-1", ("description",))]
    assert "the item's own name, unit_price kept" in store.list_audit(ref)[-1].detail


def test_a_crm_change_of_a_crm_owned_field_flows_and_of_the_cost_is_a_conflict_not_written(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget", unit_price=Decimal("10"), unit_cost=Decimal("4"))
    _sync(crm, books, store).sync(ref)
    crm.add("p1", sku="W", name="Widget Pro", unit_price=Decimal("11.00"), unit_cost=Decimal("5"))
    outcome = _sync(crm, books, store).sync(ref, [_event(ref, key="e2")])
    assert outcome.action == "updated" and outcome.detail == "name,unit_price"
    assert books.items["W"].fields["unit_cost"] == "4"  # accounting owns the cost
    actions = [(r.action, sorted(r.changes)) for r in store.list_audit(ref)]
    assert ("conflict", ["unit_cost"]) in actions and ("updated", ["name", "unit_price"]) in actions


def test_an_accounting_edit_of_a_crm_owned_field_is_noted_and_the_crm_value_written_back(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget", unit_price=Decimal("10"))
    _sync(crm, books, store).sync(ref)
    edited = books.items["W"].model_copy(update={"fields": {**books.items["W"].fields, "unit_price": "9"}})
    books.items["W"] = edited
    outcome = _sync(crm, books, store).sync(ref, [_event(ref, key="e2")])
    assert outcome.action == "updated" and books.items["W"].fields["unit_price"] == "10"
    conflict = next(r for r in store.list_audit(ref) if r.action == "conflict")
    assert conflict.changes == {"unit_price": {"before": "10", "after": "9"}}


def test_a_changed_sku_moves_the_same_item_to_the_new_code(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="OLD", name="Widget")
    _sync(crm, books, store).sync(ref)
    crm.add("p1", sku="NEW", name="Widget")
    assert _sync(crm, books, store).sync(ref, [_event(ref, key="e2")]).action == "updated"
    assert list(books.items) == ["NEW"]


def test_limits_are_respected_a_long_name_shortened_and_a_long_code_a_failed_sync(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="S1", name="N" * 80)
    assert _sync(crm, books, store).sync(ref).action == "created"
    assert books.items["S1"].fields["name"] == "N" * 49 + "…"
    assert "name shortened to 50 characters (books's limit)" in store.list_audit(ref)[-1].detail
    long_ref = crm.add("p2", sku="X" * 31, name="Long code")
    outcome = _sync(crm, books, store).sync(long_ref)
    assert outcome.action == "failed" and "X" * 31 not in books.items
    failure = store.get_failed_sync(long_ref)
    assert failure is not None and "31 characters; books takes at most 30" in failure.reason
    # The SKU mapped to a shorter code syncs
    assert _sync(crm, books, store, item_codes={"X" * 31: "X-SHORT"}).sync(long_ref).action == "created"
    assert store.get_failed_sync(long_ref) is None


def test_a_product_without_sku_and_two_products_sharing_one_are_failed_syncs(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    bare = crm.add("p0", sku="", name="No SKU")
    assert _sync(crm, books, store).sync(bare).action == "failed"
    assert "no SKU" in store.get_failed_sync(bare).reason  # type: ignore[union-attr]
    first = crm.add("p1", sku="W", name="Widget")
    second = crm.add("p2", sku="W", name="Widget copy")
    _sync(crm, books, store).sync(first)
    assert _sync(crm, books, store).sync(second).action == "failed"
    assert "already linked to CRM product p1" in store.get_failed_sync(second).reason  # type: ignore[union-attr]
    assert len(books.items) == 1


def test_a_crash_after_the_create_is_finished_by_the_retry_without_a_second_item(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget")
    books.lose_create_answer = True
    with pytest.raises(ProcessKilled):
        _sync(crm, books, store).sync(ref, [_event(ref)])
    store.leases.clear()  # the crashed worker's lease ran out
    assert _sync(crm, books, store).sync(ref, [_event(ref)]).action == "matched"
    assert len(books.items) == 1 and store.get_mapping(ref, "books") is not None


def test_a_product_held_by_another_worker_is_retried(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget")
    assert store.acquire_lease(f"product#{ref}", "worker-2", 120)
    with pytest.raises(Busy):
        _sync(crm, books, store).sync(ref)
    assert books.items == {}


def test_deletion_archive_and_rules_off_never_touch_the_item(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget", archived=True)
    assert _sync(crm, books, store).sync(ref).detail == "archived in CRM"
    assert _sync(crm, books, store).sync(ref, [_event(ref, "deleted")]).detail == "deletion not propagated"
    off = FieldRules.load("product: {direction: 'off', source_of_truth: crm}")
    crm.add("p1", sku="W", name="Widget")
    assert _sync(crm, books, store, rules=off).sync(ref).action == "skipped"
    assert books.items == {}


def test_link_joins_a_chosen_item_like_a_first_match_and_an_existing_mapping_wins(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    item = books.put("W", name="Widget (finance)", unit_price="13")
    ref = crm.add("p1", sku="W", name="Widget", description="A widget", unit_price=Decimal("12.50"))
    outcome = _sync(crm, books, store).link(crm.products["p1"], item, "backfill (same item code)")
    # Then the mapping, the fill-in of what the item lacked and the audit are the live first match's
    assert (outcome.action, outcome.accounting_id) == ("matched", item.id)
    assert store.get_mapping(ref, "books").snapshot["code"] == "W"  # type: ignore[union-attr]
    assert books.writes == [("update", "W", ("description",))]
    (audit,) = store.list_audit(ref)
    assert audit.detail == "backfill (same item code); the item's own name, unit_price kept"
    # And a second link is nothing: the mapping wins, nothing is written
    again = _sync(crm, books, store).link(crm.products["p1"], item, "backfill")
    assert (again.action, again.detail) == ("unchanged", "already mapped")
    assert len(books.writes) == 1


def test_link_to_an_item_under_another_code_gives_it_the_sku_so_the_live_sync_finds_it(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    item = books.put("GAD-OLD", name="Gadget", description="Finance's gadget")
    ref = crm.add("p1", sku="GAD-1", name="Gadget", unit_price=Decimal("5"))
    _sync(crm, books, store).link(crm.products["p1"], item, "accepted in review")
    assert list(books.items) == ["GAD-1"] and books.items["GAD-1"].id == item.id
    assert store.list_audit(ref)[-1].changes["code"] == {"before": "GAD-OLD", "after": "GAD-1"}
    # And the next change of the product finds the item by its new code: an update, not a second item
    crm.add("p1", sku="GAD-1", name="Gadget", unit_price=Decimal("6"))
    assert _sync(crm, books, store).sync(ref, [_event(ref, key="e2")]).action == "updated"
    assert len(books.items) == 1 and books.items["GAD-1"].fields["unit_price"] == "6"


def test_link_refuses_an_item_that_is_gone_or_linked_to_another_product(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    item = books.put("W", name="Widget")
    crm.add("p1", sku="W", name="Widget")
    crm.add("p2", sku="W2", name="Widget too")
    _sync(crm, books, store).link(crm.products["p1"], item, "backfill")
    with pytest.raises(ValidationFailed, match="already linked to CRM product p1"):
        _sync(crm, books, store).link(crm.products["p2"], books.items["W"], "backfill")
    crm.add("p3", sku="GONE", name="Gone")
    with pytest.raises(ValidationFailed, match="gone"):
        _sync(crm, books, store).link(crm.products["p3"], Item(code="GONE", id="item-9"), "backfill")
    assert not store.leases  # the lease is given back whatever happens


def test_fit() -> None:
    assert fit("abc", 0) == "abc" and fit("abc", 3) == "abc" and fit("abcdef", 4) == "abc…"


# ---------------------------------------------------------------- on the contacts queue, and just in time for a deal


def _deal_parts(with_products: bool) -> tuple[DealSync, FakeCatalogueCrm, FakeBooks, MemoryStore]:
    company = ref("company", "1")
    deal = Deal(
        ref=DEAL,
        name="Big deal",
        currency="NZD",
        is_won=True,
        company=company,
        line_items=(
            LineItem(
                crm_id="1", name="Anvil", sku="ANV-1", product_id="p1", quantity=Decimal(2), unit_price=Decimal("99.50")
            ),
        ),
    )
    crm = FakeDealCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="NZ"))})
    crm.deals[DEAL.object_id] = deal
    books, store = FakeBooks(), MemoryStore()
    catalogue = FakeCatalogueCrm(name="crm")
    catalogue.add("p1", sku="ANV-1", name="Anvil", unit_price=Decimal("99.50"), unit_cost=Decimal("40"))
    contacts = ContactSync(crm, books, store, owner="w")
    products = (
        ProductSync(catalogue, FakeCatalogueBooks(items=books.items), store, owner="w") if with_products else None
    )
    sync = DealSync(crm, books, store, contacts, InvoicePolicy(), owner="w", products=products)
    return sync, catalogue, books, store


DEAL = ref("deal", "3000001")


def test_with_catalogue_sync_on_a_deal_s_unknown_sku_becomes_an_item_first_then_one_invoice() -> None:
    sync, _, books, store = _deal_parts(with_products=True)
    assert sync.sync(DEAL, events_for(DEAL)).action == "created"
    assert books.items["ANV-1"].fields["unit_cost"] == "40"
    (invoice,) = books.invoices.values()
    assert [line.item_code for line in books.drafts[invoice.id].lines] == ["ANV-1"]
    assert [r.action for r in store.list_audit(ref("product", "p1"))] == ["created"]


def test_with_catalogue_sync_off_the_unknown_sku_stays_a_clear_failed_sync() -> None:
    sync, _, books, store = _deal_parts(with_products=False)
    assert sync.sync(DEAL, events_for(DEAL)).action == "failed"
    assert "unknown SKU 'ANV-1'" in store.get_failed_sync(DEAL).reason  # type: ignore[union-attr]
    assert books.items == {} and books.invoices == {}


def test_a_product_that_cannot_become_an_item_fails_the_deal_naming_why_and_nothing_is_invoiced() -> None:
    sync, catalogue, books, store = _deal_parts(with_products=True)
    catalogue.add("p1", sku="ANV-1" + "X" * 40, name="Anvil")  # the CRM's SKU is longer than item codes may be
    sync.sync(DEAL, events_for(DEAL))
    # (the deal's line still says ANV-1, its product now a 45-character SKU: the item cannot be made)
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "its product could not become an item" in failure.reason
    assert "takes at most 30" in failure.reason
    assert books.invoices == {}


def test_the_contacts_queue_pipeline_sends_products_their_way_and_customers_in_bulk(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    product = crm.add("p1", sku="W", name="Widget")
    contacts = _RecordingContacts()
    pipeline = WithCatalogue(contacts, _sync(crm, books, store))  # type: ignore[arg-type]
    company = ref("company", "9")
    results = pipeline.sync_many({product: [_event(product)], company: []})
    assert results[product].action == "created"  # type: ignore[union-attr]
    assert contacts.bulk == [[company]]
    off = WithCatalogue(contacts, None)  # type: ignore[arg-type]
    assert off.sync(product, [_event(product)]).detail == "catalogue sync off"


@dataclass
class _RecordingContacts:
    bulk: list[list[CrmRef]] = field(default_factory=list)
    rules: FieldRules = field(default_factory=FieldRules.load)

    def __post_init__(self) -> None:
        self.trail = Trail(MemoryStore(), "books", lambda: NOW)

    def sync_many(self, groups: dict[CrmRef, list[SyncEvent]]) -> dict[CrmRef, Outcome]:
        self.bulk.append(list(groups))
        return {r: Outcome(r, "unchanged") for r in groups}


def test_the_backfill_links_an_item_without_a_code_and_gives_it_the_product_s_code(parts) -> None:  # type: ignore[no-untyped-def]
    # Given an item that has no code (items need none in some systems), chosen for a product by name
    crm, books, store = parts
    bare = books.put("", name="Widget")
    ref = crm.add("p1", sku="W-1", name="Widget", unit_price=Decimal("3"))
    product = crm.get_product("p1")
    assert product is not None
    # When the backfill links them
    outcome = _sync(crm, books, store).link(product, bare, "name, accepted by a person")
    # Then the item now carries the product's code, and the live sync finds it there
    assert outcome.action == "matched" and list(books.items) == ["W-1"]
    assert _sync(crm, books, store).sync(ref).action == "unchanged"


def test_a_product_priced_in_another_currency_syncs_its_text_but_never_its_price_and_is_flagged(parts) -> None:  # type: ignore[no-untyped-def]
    # Given a CRM product priced in EUR, and items priced in GBP (DEFAULT_CURRENCY)
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget", unit_price=Decimal("12.50"), unit_cost=Decimal("4"), currency="eur")

    # When it syncs
    outcome = _sync(crm, books, store, base_currency="GBP").sync(ref, [_event(ref)])

    # Then the item is made with its name only: no EUR amount is written as a GBP price or cost
    assert outcome.action == "created" and "price not written (EUR)" in outcome.detail
    assert books.items["W"].fields == {"name": "Widget"}
    # and the product is flagged and kept as a failed sync naming both currencies
    assert [r.action for r in store.list_audit(ref)] == ["created", "flagged"]
    failure = store.get_failed_sync(ref)
    assert failure is not None and failure.error_type == "CurrencyMismatch"
    assert "priced in EUR" in failure.reason and "items in GBP" in failure.reason


def test_a_mapped_item_keeps_its_price_while_the_product_is_in_another_currency_then_takes_it_once_fixed(parts) -> None:  # type: ignore[no-untyped-def]
    # Given a product synced in GBP, its item at 10
    crm, books, store = parts
    ref = crm.add("p1", sku="W", name="Widget", unit_price=Decimal("10"), currency="GBP")
    _sync(crm, books, store, base_currency="GBP").sync(ref)
    # When the CRM product is switched to USD at 13 and renamed
    crm.add("p1", sku="W", name="Widget Pro", unit_price=Decimal("13"), currency="USD")
    outcome = _sync(crm, books, store, base_currency="GBP").sync(ref, [_event(ref, key="e2")])

    # Then only the name is written: the GBP price stays, no conflict is claimed, and the sync is flagged
    assert outcome.action == "updated" and outcome.detail.startswith("name;")
    assert books.items["W"].fields["unit_price"] == "10" and books.writes[-1] == ("update", "W", ("name",))
    assert "conflict" not in [r.action for r in store.list_audit(ref)]
    assert store.get_failed_sync(ref) is not None
    # And once the product is priced in GBP again its price flows and the failed sync is cleared
    crm.add("p1", sku="W", name="Widget Pro", unit_price=Decimal("11"), currency="GBP")
    assert _sync(crm, books, store, base_currency="GBP").sync(ref, [_event(ref, key="e3")]).action == "updated"
    assert books.items["W"].fields["unit_price"] == "11" and store.get_failed_sync(ref) is None


def test_without_a_known_base_currency_or_with_the_same_one_the_price_flows(parts) -> None:  # type: ignore[no-untyped-def]
    crm, books, store = parts
    a = crm.add("p1", sku="A", name="A", unit_price=Decimal("5"), currency="EUR")
    b = crm.add("p2", sku="B", name="B", unit_price=Decimal("6"), currency="gbp")
    _sync(crm, books, store).sync(a)
    _sync(crm, books, store, base_currency="GBP").sync(b)
    assert books.items["A"].fields["unit_price"] == "5" and books.items["B"].fields["unit_price"] == "6"
    assert store.get_failed_sync(a) is None and store.get_failed_sync(b) is None
