"""Quotes: an approved CRM quote becomes one accounting quote (revised in place, never a second), its status
flows back, and the won deal's invoice bills the quote's lines and marks the quote invoiced."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from closeloop.errors import RateLimited
from closeloop.models import Address, CrmRef, Customer, Item, LineItem, Quote
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.quotes import (
    QuoteFlow,
    QuotePolicy,
    QuoteStatusPoll,
    QuoteSync,
    WithQuotes,
    quote_reference,
    with_recurring_terms,
)
from closeloop.sync.tax import TaxRule
from tests.deal_sync_support import COMPANY, DEAL, won_deal
from tests.fakes import FakeQuoteBooks, FakeQuoteCrm, MemoryStore, events_for, ref

QUOTE = ref("quote", "4000001")
TODAY = date(2026, 11, 2)


def clock() -> datetime:
    return datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def a_quote(**kw: object) -> Quote:
    values: dict[str, object] = {
        "ref": QUOTE,
        "deal": DEAL,
        "title": "Rockets for Acme",
        "status": "ready",
        "currency": "NZD",
        "expiry": date(2026, 12, 31),
        "company": COMPANY,
        "url": "https://crm.example/quote/4000001",
        "updated_at": datetime(2026, 11, 1, tzinfo=UTC),
        "line_items": (
            LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),
            LineItem(crm_id="q2", name="Rocket", sku="RKT", quantity=Decimal(1), unit_price=Decimal("450.00")),
        ),
    }
    values.update(kw)
    return Quote(**values)  # type: ignore[arg-type]


class World:
    """A CRM with one deal and its quote, books with the items, and the quote and deal pipelines."""

    def __init__(self, quote: Quote | None = None, *, invoice_on_accept: bool = False, won: bool = True) -> None:
        self.crm = FakeQuoteCrm(
            customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="NZ"))}
        )
        self.crm.deals[DEAL.object_id] = won_deal(is_won=won)
        self.crm.quotes[QUOTE.object_id] = quote or a_quote()
        self.books = FakeQuoteBooks()
        for code in ("ANV-1", "ROCKET-XL", "SVC-SETUP"):
            self.books.items[code] = Item(code=code, name=code, tax_type="OUTPUT2")
        self.store = MemoryStore()
        contacts = ContactSync(self.crm, self.books, self.store, owner="w")
        policy = InvoicePolicy(
            sku_item_codes={"RKT": "ROCKET-XL"}, tax_rules=(TaxRule(countries=("NZ",), tax_type="OUTPUT2"),)
        )
        self.asked: list[CrmRef] = []
        self.quotes = QuoteSync(
            self.crm,
            self.books,
            self.store,
            contacts,
            policy,
            owner="w",
            quotes=QuotePolicy(invoice_on_accept=invoice_on_accept),
            clock=clock,
            invoice_deal=self.asked.append,
        )
        self.deals = DealSync(
            self.crm, self.books, self.store, contacts, policy, owner="w", flows=(QuoteFlow(self.quotes),)
        )
        self.pipeline = WithQuotes(self.deals, self.quotes, self.quotes.trail)

    def edit(self, **kw: object) -> None:
        self.crm.quotes[QUOTE.object_id] = self.crm.quotes[QUOTE.object_id].model_copy(update=kw)


def test_an_approved_quote_becomes_one_sent_accounting_quote_written_back_to_the_crm_quote() -> None:
    world = World()
    outcome = world.pipeline.sync(QUOTE, events_for(QUOTE))
    assert outcome.action == "created"
    (made,) = world.books.quotes.values()
    draft = world.books.quote_drafts[made.id]
    assert made.status == "SENT" and made.reference == quote_reference(world.crm.quotes[QUOTE.object_id])
    assert [(line.item_code, line.tax_type) for line in draft.lines] == [("ANV-1", "OUTPUT2"), ("ROCKET-XL", "OUTPUT2")]
    assert draft.expiry == date(2026, 12, 31) and draft.currency == "NZD"
    assert world.crm.quote_properties[QUOTE.object_id] == {
        "closeloop_quote_number": made.number,
        "closeloop_quote_status": "SENT",
        "closeloop_quote_url": made.url,
        "closeloop_quote_revision": "0",
    }
    assert [a.action for a in world.store.list_audit(QUOTE)] == ["quoted"]


def test_a_quote_not_approved_yet_makes_nothing() -> None:
    world = World(a_quote(status="pending_approval"))
    outcome = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert outcome.action == "skipped" and not world.books.quotes and not world.books.records


def test_duplicate_deliveries_make_one_accounting_quote() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    again = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert again.action == "unchanged"
    assert len(world.books.quotes) == 1 and world.books.calls.count("create_quote") == 1


def test_a_crash_after_the_create_is_healed_by_the_reference_not_a_second_quote() -> None:
    world = World()
    world.books.lose_quote_answer = True
    with pytest.raises(RuntimeError):
        world.quotes.sync(QUOTE, events_for(QUOTE))
    assert world.store.get_mapping(QUOTE, "books") is None  # died before the mapping
    again = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert again.action == "matched"
    (made,) = world.books.quotes.values()
    assert again.accounting_id == made.id
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_number"] == made.number


def test_an_edit_after_it_was_sent_revises_the_same_accounting_quote() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (first,) = world.books.quotes.values()
    line = LineItem(crm_id="q3", name="Setup", sku="SVC-SETUP", quantity=Decimal(1), unit_price=Decimal("100"))
    world.edit(line_items=(*world.crm.quotes[QUOTE.object_id].line_items, line))
    outcome = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert outcome.action == "updated"
    (revised,) = world.books.quotes.values()  # still one, the same record, with its number
    assert revised.id == first.id and revised.number == first.number
    assert len(world.books.quote_drafts[revised.id].lines) == 3
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_revision"] == "1"
    assert [a.action for a in world.store.list_audit(QUOTE)] == ["quoted", "revised"]


def test_an_edit_after_the_customer_accepted_is_a_failed_sync_not_a_revision() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.books.set_quote_status(made.id, "ACCEPTED")
    world.edit(currency="AUD")
    outcome = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert outcome.action == "failed" and "was accepted" in outcome.detail
    assert "revise_quote" not in world.books.calls and world.books.quotes[made.id].currency == "NZD"
    failure = world.store.get_failed_sync(QUOTE)
    assert failure is not None and "make a new quote" in failure.reason


def test_an_unknown_sku_with_catalogue_sync_off_fails_the_quote_with_nothing_created() -> None:
    world = World(a_quote(line_items=(LineItem(crm_id="q9", name="Mystery", sku="NOPE", unit_price=Decimal(1)),)))
    outcome = world.quotes.sync(QUOTE, events_for(QUOTE))
    assert outcome.action == "failed" and "unknown SKU 'NOPE'" in outcome.detail
    assert not world.books.quotes and not world.books.records  # not even the customer
    assert world.store.get_failed_sync(QUOTE) is not None


def test_status_flows_back_from_accounting_to_the_crm_quote_once() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    poll = QuoteStatusPoll(world.books, world.quotes, world.store, clock=clock)
    assert poll.run().since is None  # the first run only sets the watermark
    world.store.put_watermark("accounting-quotes", clock() - timedelta(days=400))
    world.books.set_quote_status(made.id, "ACCEPTED")
    assert poll.run().queued == {"quotes": 1}
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "ACCEPTED"
    world.store.put_watermark("accounting-quotes", clock() - timedelta(days=400))
    assert poll.run().queued == {}  # the same status again writes nothing
    assert world.asked == []  # invoicing on acceptance is off by default


def test_a_crm_429_on_a_quote_status_defers_it_to_the_next_run() -> None:
    # Given an accepted accounting quote, and a CRM that rate-limits the status write once
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    poll = QuoteStatusPoll(world.books, world.quotes, world.store, clock=clock)
    mark = clock() - timedelta(days=400)
    world.store.put_watermark("accounting-quotes", mark)
    world.books.set_quote_status(made.id, "ACCEPTED")
    status_changed = world.quotes.status_changed

    def rate_limited(current: object) -> None:
        raise RateLimited("PATCH /quotes failed", vendor="crm", status=429, problem="ten_secondly")

    world.quotes.status_changed = rate_limited  # type: ignore[assignment, method-assign]
    # When the poll runs, it ends deferred (no failed scheduled run) with the watermark where it was
    result = poll.run()
    assert (result.complete, "rate limited by crm" in result.deferred) == (False, True)
    assert world.store.get_watermark("accounting-quotes") == mark
    # And the next run writes the status
    world.quotes.status_changed = status_changed  # type: ignore[method-assign]
    assert poll.run().queued == {"quotes": 1}
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "ACCEPTED"


def test_a_sent_quote_past_its_expiry_flows_back_as_expired() -> None:
    world = World(a_quote(expiry=TODAY - timedelta(days=1)))
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    assert made.status == "SENT"
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "EXPIRED"


def test_the_won_deal_bills_its_quotes_lines_and_marks_the_quote_invoiced_once() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.books.set_quote_status(made.id, "ACCEPTED")
    world.quotes.status_changed(world.books.quotes[made.id])
    outcome = world.pipeline.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created"
    (invoice,) = world.books.invoices.values()
    lines = world.books.drafts[invoice.id].lines
    assert [(line.item_code, line.quantity, line.unit_amount) for line in lines] == [
        ("ANV-1", Decimal(2), Decimal("99.50")),
        ("ROCKET-XL", Decimal(1), Decimal("450.00")),
    ]  # the quote's, not the deal's three lines
    assert world.books.quotes[made.id].status == "INVOICED"
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "INVOICED"
    again = world.pipeline.sync(DEAL, events_for(DEAL))
    assert again.action == "unchanged"
    assert len(world.books.invoices) == 1 and world.books.calls.count("mark_quote_invoiced") == 1


def test_a_crash_before_the_quote_was_marked_invoiced_is_healed_on_redelivery() -> None:
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.books.marks_invoiced = False  # as if the worker died after the invoice, before the mark
    world.deals.sync(DEAL, events_for(DEAL))
    assert world.books.quotes[made.id].status == "SENT"
    world.books.marks_invoiced = True
    world.deals.sync(DEAL, events_for(DEAL))
    assert world.books.quotes[made.id].status == "INVOICED" and len(world.books.invoices) == 1


def test_a_won_deal_without_a_quote_is_invoiced_from_its_own_lines() -> None:
    world = World()
    world.crm.quotes.clear()
    outcome = world.deals.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created"
    (invoice,) = world.books.invoices.values()
    assert [line.item_code for line in world.books.drafts[invoice.id].lines] == ["ANV-1", "ROCKET-XL", "SVC-SETUP"]


def test_with_invoice_on_accept_an_accepted_quote_invoices_the_deal_before_it_is_won() -> None:
    world = World(invoice_on_accept=True, won=False)
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    assert world.deals.sync(DEAL, events_for(DEAL)).action == "skipped"  # sent, not accepted: not billed yet
    world.quotes.status_changed(world.books.set_quote_status(made.id, "ACCEPTED"))
    assert world.asked == [DEAL]  # the deal's invoice is asked for
    outcome = world.deals.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created" and len(world.books.invoices) == 1
    assert world.books.quotes[made.id].status == "INVOICED"


def test_without_invoice_on_accept_an_accepted_quote_of_an_open_deal_is_not_billed() -> None:
    world = World(won=False)
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.quotes.status_changed(world.books.set_quote_status(made.id, "ACCEPTED"))
    assert world.asked == []
    assert world.deals.sync(DEAL, events_for(DEAL)).action == "skipped" and not world.books.invoices


# -- the invoice names the accounting quote it is made from ------------------------------------------------


def test_the_invoice_draft_names_the_synced_accounting_quote_it_bills() -> None:
    # Given a deal whose quote was synced and accepted
    world = World()
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.quotes.status_changed(world.books.set_quote_status(made.id, "ACCEPTED"))

    # When the won deal is invoiced
    world.deals.sync(DEAL, events_for(DEAL))

    # Then DealSync passed the accounting quote's id on the invoice draft
    (invoice,) = world.books.invoices.values()
    assert world.books.drafts[invoice.id].accounting_quote_id == made.id


def test_no_quote_is_named_when_it_is_not_synced_or_bills_another_party() -> None:
    # Given a quote approved in the CRM but not synced yet: its lines are billed, no accounting quote is named
    world = World()
    world.deals.sync(DEAL, events_for(DEAL))
    (invoice,) = world.books.invoices.values()
    assert world.books.drafts[invoice.id].accounting_quote_id == ""
    assert [line.item_code for line in world.books.drafts[invoice.id].lines] == ["ANV-1", "ROCKET-XL"]

    # Given a synced quote of another company than the deal's (a system would refuse the link)
    other = World()
    other.quotes.sync(QUOTE, events_for(QUOTE))
    other.crm.deals[DEAL.object_id] = won_deal(company=ref("company", "2"), contact=None)
    promised = QuoteFlow(other.quotes).promised(other.crm.deals[DEAL.object_id])
    assert promised.line_items == other.crm.quotes[QUOTE.object_id].line_items and promised.accounting_quote_id == ""


def test_a_system_that_links_invoice_and_quote_marks_it_invoiced_by_the_invoice_itself() -> None:
    # Given books that link an invoice to its quote (QuickBooks, Zoho Books) and mark it only so (Zoho)
    world = World()
    world.books.links_quotes = world.books.marks_by_link_only = True
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()

    # When the won deal is invoiced, and delivered again
    world.pipeline.sync(DEAL, events_for(DEAL))
    world.pipeline.sync(DEAL, events_for(DEAL))

    # Then the quote reads invoiced by the link, no mark was asked, and the CRM quote says INVOICED
    assert world.books.quotes[made.id].status == "INVOICED"
    assert "mark_quote_invoiced" not in world.books.calls
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "INVOICED"
    assert [a.action for a in world.store.list_audit(QUOTE)] == ["quoted", "invoiced"]


def test_an_invoice_made_without_the_link_leaves_a_link_only_quote_as_it_is_flagged_once_not_failed() -> None:
    # Given a deal invoiced before invoices named their quote, in books that mark a quote only by the link
    world = World()
    world.books.marks_by_link_only = True
    world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.quotes.status_changed(world.books.set_quote_status(made.id, "ACCEPTED"))
    world.books.marks_invoiced = False  # the old invoice: made with no link and no mark
    world.deals.sync(DEAL, events_for(DEAL))
    world.books.marks_invoiced = True

    # When the won deal is delivered again, twice
    first = world.deals.sync(DEAL, events_for(DEAL))
    second = world.deals.sync(DEAL, events_for(DEAL))

    # Then the deal is not failed, the quote stays ACCEPTED, and the trail says so once (asked once)
    assert first.action == second.action == "unchanged" and world.store.get_failed_sync(DEAL) is None
    assert world.books.quotes[made.id].status == "ACCEPTED"
    assert world.books.calls.count("mark_quote_invoiced") == 1
    flagged = [a for a in world.store.list_audit(QUOTE) if a.action == "flagged"]
    assert len(flagged) == 1 and "does not link the quote" in flagged[0].detail


def test_a_draft_left_by_a_create_that_stopped_before_marking_it_sent_is_marked_sent_not_written_back_draft() -> None:
    # Given a create that made the accounting quote as a draft and died before marking it sent (no mapping)
    world = World()
    world.books.lose_quote_answer = True
    with pytest.raises(RuntimeError):
        world.quotes.sync(QUOTE, events_for(QUOTE))
    (made,) = world.books.quotes.values()
    world.books.set_quote_status(made.id, "DRAFT")

    # When the quote syncs again, twice
    again = world.quotes.sync(QUOTE, events_for(QUOTE))
    world.quotes.sync(QUOTE, events_for(QUOTE))

    # Then the draft is found by reference and marked sent (once), and the CRM quote says SENT
    assert again.action == "matched" and len(world.books.quotes) == 1
    assert world.books.quotes[made.id].status == "SENT"
    assert world.books.calls.count("mark_quote_sent") == 1
    assert world.crm.quote_properties[QUOTE.object_id]["closeloop_quote_status"] == "SENT"
    assert world.store.get_mapping(QUOTE, "books").snapshot["status"] == "SENT"  # type: ignore[union-attr]
    assert [a.action for a in world.store.list_audit(QUOTE)] == ["status", "linked"]


def test_a_quote_line_without_terms_keeps_the_deal_s_recurring_terms_for_its_sku() -> None:
    # Given a deal selling hosting monthly for a year, quoted by a CRM whose quote lines carry no billing
    # frequency (the quote's hosting line has none), and a one-off line on both
    start = date(2027, 1, 1)
    sold = (
        LineItem(crm_id="d1", sku="HOST", recurring_frequency="monthly", recurring_periods=12, recurring_start=start),
        LineItem(crm_id="d2", sku="SETUP"),
    )
    quoted = (LineItem(crm_id="q1", sku="SETUP", unit_price=Decimal(90)), LineItem(crm_id="q2", sku="HOST"))
    # When the deal is billed from its quote's lines
    lines = with_recurring_terms(quoted, sold)
    # Then the quoted hosting line is scheduled as the deal sold it, the one-off line stays one-off, and the
    # quote's own values (ids, prices) are kept
    assert [(li.crm_id, li.recurring_frequency, li.recurring_periods, li.recurring_start) for li in lines] == [
        ("q1", None, None, None),
        ("q2", "monthly", 12, start),
    ]
    assert lines[0].unit_price == Decimal(90)
    # And a quote line with terms of its own keeps them
    own = LineItem(crm_id="q3", sku="HOST", recurring_frequency="annual", recurring_periods=1)
    assert with_recurring_terms((own,), sold)[0].recurring_frequency == "annual"
