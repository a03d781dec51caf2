"""DealBackfill: historical won deals linked to finance's invoices once; reviews, missing, dry run, resume."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from closeloop.errors import RateLimited
from closeloop.models import Address, CrmRef, Customer, Deal, Invoice, Item, LineItem
from closeloop.ports import IdMapping
from closeloop.sync import backfill_deals
from closeloop.sync.backfill_deals import DealBackfill, DealBackfillResult
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from tests.fakes import FakeBooks, FakeDealCrm, MemoryStore, ref

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ACME = ref("company", "1")
GLOBEX = ref("company", "2")
ACME_BOOKS_ID = "cust-acme"


@dataclass
class World:
    crm: FakeDealCrm
    books: FakeBooks
    store: MemoryStore
    pauses: list[tuple[float, str]]

    def backfill(self) -> DealBackfill:
        contacts = ContactSync(self.crm, self.books, self.store, owner="w")
        deals = DealSync(self.crm, self.books, self.store, contacts, InvoicePolicy(), owner="w", clock=lambda: NOW)
        return DealBackfill(
            self.crm,
            self.books,
            self.store,
            deals,
            pause=lambda seconds, why: self.pauses.append((seconds, why)),
            now=lambda: NOW,
        )

    def run(self, **kw: object) -> DealBackfillResult:
        return self.backfill().run(**kw)  # type: ignore[arg-type]

    def actions(self, result: DealBackfillResult) -> dict[str, str]:
        return {e.ref.object_id: e.action for e in result.plan if e.ref is not None}


def world() -> World:
    crm = FakeDealCrm(
        customers={
            ACME: Customer(ref=ACME, name="Acme Ltd", address=Address(country="NZ")),
            GLOBEX: Customer(ref=GLOBEX, name="Globex", address=Address(country="NZ")),
        }
    )
    books = FakeBooks()
    books.items["SVC"] = Item(code="SVC", name="Service")
    store = MemoryStore()
    store.put_mapping(IdMapping(ACME, books.name, ACME_BOOKS_ID))  # Acme was synced; Globex was not
    return World(crm, books, store, [])


def won(world_: World, deal_id: str, amount: str, *, closed: date = date(2026, 10, 1), **kw: object) -> CrmRef:
    deal_ref = ref("deal", deal_id)
    values: dict[str, object] = {
        "ref": deal_ref,
        "name": f"Deal {deal_id}",
        "amount": Decimal(amount),
        "currency": "NZD",
        "is_won": True,
        "close_date": closed,
        "company": ACME,
        "line_items": (LineItem(crm_id="l1", name="Service", sku="SVC", unit_price=Decimal(amount)),),
    }
    values.update(kw)
    world_.crm.deals[deal_id] = Deal(**values)
    return deal_ref


def invoice(
    world_: World,
    number: str,
    net: str,
    *,
    issued: date = date(2026, 10, 3),
    reference: str = "",
    customer_id: str = ACME_BOOKS_ID,
    currency: str = "NZD",
    tax: str = "0",
) -> Invoice:
    """An invoice finance made by hand (no Closeloop reference unless given)."""
    made = Invoice(
        id=f"inv-{number}",
        number=number,
        reference=reference,
        status="AUTHORISED",
        customer_id=customer_id,
        currency=currency,
        issue_date=issued,
        sub_total=Decimal(net),
        total_tax=Decimal(tax),
        total=Decimal(net) + Decimal(tax),
        amount_due=Decimal(net) + Decimal(tax),
    )
    world_.books.invoices[made.id] = made
    return made


def test_an_invoice_whose_reference_names_the_deal_is_linked_and_written_back() -> None:
    # Given a won deal and an invoice carrying our reference but a different amount
    w = world()
    deal = won(w, "10", "500.00")
    made = invoice(w, "INV-7", "480.00", reference="crm-deal-10 Deal 10")
    invoice(w, "INV-8", "480.00", reference="crm-deal-100 another deal")  # a prefix is not the key
    # When the backfill runs
    result = w.run()
    # Then the deal is linked to it, written back like DealSync does, and the difference flagged
    assert w.actions(result)["10"] == "link"
    mapping = w.store.get_mapping(deal, w.books.name)
    assert mapping is not None
    assert mapping.accounting_id == made.id
    assert mapping.snapshot["written_back"] == "yes"
    assert mapping.snapshot["closeloop_invoice_number"] == "INV-7"
    props = w.crm.deal_properties["10"]
    assert props["closeloop_invoice_number"] == "INV-7"
    assert props["closeloop_amount_due"] == "480.00"
    assert "20.00" in props["closeloop_sync_issue"]
    assert [a.action for a in w.store.list_audit(deal)] == ["linked", "flagged"]
    assert "create_invoice" not in w.books.calls


@pytest.mark.parametrize(("net", "tax"), [("500.00", "75.00"), ("434.78", "65.22")], ids=["net", "tax-inclusive"])
def test_one_hand_made_invoice_of_the_customer_for_the_amount_is_linked(net: str, tax: str) -> None:
    # Given a won deal of 500.00 and one invoice finance made by hand: 500.00 net, or 500.00 tax included
    w = world()
    deal = won(w, "11", "500.00")
    made = invoice(w, "INV-1", net, tax=tax)
    # When the backfill runs
    result = w.run()
    # Then it is linked, written back, and nothing is created
    assert w.actions(result)["11"] == "link"
    assert w.store.get_mapping(deal, w.books.name).accounting_id == made.id  # type: ignore[union-attr]
    assert w.crm.deal_properties["11"]["closeloop_invoice_number"] == "INV-1"
    assert w.crm.deal_properties["11"]["closeloop_sync_issue"] == ""
    assert len(w.books.invoices) == 1


def test_several_matching_invoices_go_to_the_review_list() -> None:
    # Given two invoices of the customer for the deal's amount in its window
    w = world()
    deal = won(w, "12", "500.00")
    invoice(w, "INV-1", "500.00", issued=date(2026, 10, 20))
    near = invoice(w, "INV-2", "500.00", issued=date(2026, 10, 2))
    # When the backfill runs
    result = w.run()
    # Then nothing is linked; a person decides, offered the invoice closest to the close date first
    assert w.actions(result)["12"] == "review"
    assert w.store.get_mapping(deal, w.books.name) is None
    item = w.store.get_review(deal, w.books.name)
    assert item is not None
    assert (item.candidate_id, item.candidate_name) == (near.id, "INV-2")
    assert "2 invoices match" in "; ".join(item.reasons)
    assert w.crm.write_calls == 0


def test_an_invoice_claimed_by_two_deals_makes_both_uncertain() -> None:
    # Given two deals of the same customer and amount, and one invoice matching both
    w = world()
    first, second = won(w, "13", "500.00"), won(w, "14", "500.00", closed=date(2026, 10, 5))
    invoice(w, "INV-1", "500.00")
    # When the backfill runs
    result = w.run()
    # Then both are on the review list, none is linked
    assert w.actions(result) == {"13": "review", "14": "review"}
    assert w.store.get_mapping(first, w.books.name) is None
    assert w.store.get_mapping(second, w.books.name) is None
    assert "also matches deal Deal 14" in "; ".join(w.store.get_review(first, w.books.name).reasons)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kw",
    [
        {"net": "499.99"},
        {"currency": "AUD"},
        {"issued": date(2026, 11, 16)},
        {"customer_id": "someone-else"},
    ],
    ids=["a-cent-off", "other-currency", "46-days-later", "other-customer"],
)
def test_a_deal_without_a_matching_invoice_is_listed_missing_not_invoiced(kw: dict[str, object]) -> None:
    # Given a won deal and an invoice that differs in one respect
    w = world()
    deal = won(w, "15", "500.00")
    values: dict[str, object] = {"net": "500.00", **kw}
    net = str(values.pop("net"))
    stray = invoice(w, "INV-1", net, **values)  # type: ignore[arg-type]
    # When the backfill runs
    result = w.run()
    # Then the deal is missing (nothing created, nothing written) and the invoice is one without a deal
    assert w.actions(result)["15"] == "missing"
    assert w.store.get_mapping(deal, w.books.name) is None
    assert "create_invoice" not in w.books.calls
    orphans = [e for e in result.plan if e.action == "invoice_without_deal"]
    assert [e.invoice_id for e in orphans] == [stray.id]
    assert result.counts["invoice_without_deal"] == 1


def test_create_missing_invoices_the_deal_through_deal_sync() -> None:
    # Given a won deal that finance never invoiced
    w = world()
    deal = won(w, "16", "500.00")
    # When the backfill runs with create_missing
    result = w.run(create_missing=True)
    # Then DealSync made one invoice with our reference and wrote it back
    assert w.actions(result)["16"] == "create"
    (made,) = w.books.invoices.values()
    assert made.reference.startswith("crm-deal-16")
    assert w.store.get_mapping(deal, w.books.name).accounting_id == made.id  # type: ignore[union-attr]
    assert w.crm.deal_properties["16"]["closeloop_invoice_number"] == made.number


def test_a_customer_not_linked_yet_cannot_be_matched() -> None:
    # Given a won deal of Globex (never synced) and an invoice that would match it
    w = world()
    won(w, "17", "500.00", company=GLOBEX)
    invoice(w, "INV-1", "500.00", customer_id="cust-globex")
    # When the backfill runs
    result = w.run()
    # Then the plan says why it cannot match
    (entry,) = [e for e in result.plan if e.ref == ref("deal", "17")]
    assert entry.action == "no_customer"
    assert "not linked to an accounting customer" in entry.reasons[0]


def test_a_dry_run_writes_nothing() -> None:
    # Given deals that would be linked, reviewed and missing
    w = world()
    won(w, "18", "500.00")
    won(w, "19", "700.00")
    won(w, "20", "900.00")
    invoice(w, "INV-1", "500.00")
    invoice(w, "INV-2", "700.00")
    invoice(w, "INV-3", "700.00")
    # When a dry run plans
    result = w.run(dry_run=True)
    # Then the plan is complete, and no mapping, review, checkpoint, audit or vendor write exists
    assert w.actions(result) == {"18": "link", "19": "review", "20": "missing"}
    assert [m.ref.object_type for m in w.store.mappings.values()] == ["company"]
    assert w.store.reviews == {} and w.store.checkpoints == {} and w.store.audit == []
    assert w.crm.write_calls == 0
    assert "create_invoice" not in w.books.calls


def test_an_interrupted_run_resumes_after_its_last_chunk_and_a_second_run_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given chunks of one deal, and a run that stops after its first chunk
    monkeypatch.setattr(backfill_deals, "CHUNK", 1)
    w = world()
    deals = [won(w, str(n), f"{n}00.00") for n in (21, 22, 23)]
    for n in (21, 22, 23):
        invoice(w, f"INV-{n}", f"{n}00.00")
    backfill = w.backfill()

    def stop(progress: object) -> None:
        raise KeyboardInterrupt

    backfill.progress = stop
    with pytest.raises(KeyboardInterrupt):
        backfill.run()
    assert w.store.checkpoints[backfill.checkpoint_name]["position"] == 1
    # When it resumes
    result = w.run(resume=True)
    # Then it continued at the second deal and every deal is linked once; the checkpoint is gone
    assert result.resumed_at == 1
    assert result.counts["link"] == 2
    assert all(w.store.get_mapping(d, w.books.name) is not None for d in deals)
    assert w.store.checkpoints == {}
    # And a second run finds everything linked and writes nothing
    writes = w.crm.write_calls
    again = w.run()
    assert set(w.actions(again).values()) == {"mapped"}
    assert w.crm.write_calls == writes
    assert w.store.reviews == {}


def test_resume_without_a_checkpoint_is_an_error() -> None:
    # Given no interrupted run / When one is resumed / Then it says so
    with pytest.raises(ValueError, match="no interrupted deals backfill"):
        world().run(resume=True)


class LimitedBooks(FakeBooks):
    limited: int = 1

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        if self.limited:
            self.limited -= 1
            raise RateLimited("day limit", vendor="books", status=429, retry_after=3600.0, problem="day")
        return super().iter_invoices(issued_from, issued_before)


def test_a_rate_limit_pauses_as_long_as_the_vendor_says_then_carries_on() -> None:
    # Given an accounting system that answers 429 (a day's limit) once
    w = world()
    books = LimitedBooks(items=w.books.items)
    w.books = books
    won(w, "24", "500.00")
    invoice(w, "INV-1", "500.00")
    # When the backfill runs
    result = w.run()
    # Then it paused for the hour the vendor asked and linked the deal
    assert w.pauses == [(3600.0, "books rate limit (day)")]
    assert w.actions(result)["24"] == "link"


def test_an_accepted_review_is_linked_on_the_next_run() -> None:
    # Given a deal put on the review list, and a person accepting its candidate
    w = world()
    deal = won(w, "25", "500.00")
    invoice(w, "INV-1", "500.00", issued=date(2026, 10, 9))
    near = invoice(w, "INV-2", "500.00")
    w.run()
    w.store.decide_review(deal, w.books.name, "accepted", "finance")
    # When the backfill runs again
    result = w.run()
    # Then the accepted invoice is linked and written back
    assert w.actions(result)["25"] == "link"
    assert w.store.get_mapping(deal, w.books.name).accounting_id == near.id  # type: ignore[union-attr]
    assert w.crm.deal_properties["25"]["closeloop_invoice_number"] == "INV-2"
