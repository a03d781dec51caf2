"""Zoho Books estimates as the quote port (QuoteAccounting) against the Zoho Books sandbox over HTTP: create
(and mark sent), find by the quote key, revise, the change feed over pages, statuses set in Zoho read back,
the invoiced mark Zoho cannot take afterwards, refusals, a lost create answer, and QuoteSync on top."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop.errors import NotFound, Unanswered, ValidationFailed
from closeloop.models import Address, Customer, Deal, InvoiceDraft, InvoiceLine, LineItem, Quote, QuoteDraft
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.quotes import QuoteFlow, QuoteSync
from closeloop.sync.tax import TaxRule
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.fakes import FakeQuoteCrm, MemoryStore, ProcessKilled, ref
from tests.sandbox_adapters import LoseAnswers
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on

API = "/books/v3"
VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))
REFERENCE = "hubspot-quote-4000001 Rockets for Acme"


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    driver = ZohoBooksDriver(zoho)
    driver.seed_item("ANV-1", "Anvil", Decimal("99.50"))
    driver.seed_item("ROCKET-XL", "Rocket", Decimal("450"))
    yield zoho, server
    server.stop()


def customer(zoho: ZohoBooksSandbox, name: str = "Acme") -> str:
    return ZohoBooksDriver(zoho).seed_customer(name, email=f"{name.lower()}@x.test")


def draft(customer_id: str, **kw: Any) -> QuoteDraft:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": REFERENCE,
        "title": "Rockets for Acme",
        "currency": "GBP",
        "lines": (
            InvoiceLine(item_code="ANV-1", description="Anvil", quantity=Decimal(2), unit_amount=Decimal("99.5")),
            InvoiceLine(
                item_code="ROCKET-XL", description="Rkt", quantity=Decimal(1), unit_amount=Decimal(450), tax_type=VAT20
            ),
        ),
        "issue_date": date(2026, 11, 2),
        "expiry": date(2099, 12, 31),
    }
    values.update(kw)
    return QuoteDraft(**values)


def estimates(zoho: ZohoBooksSandbox) -> list[dict[str, Any]]:
    return zoho.estimates()


def test_create_marks_it_sent_and_finds_it_again_by_its_key(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    buyer = customer(zoho)
    # When a quote is created
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # Then one sent estimate holds the reference, the key in cf_closeloop_quote, the expiry and Decimal totals
    (row,) = estimates(zoho)
    assert row["status"] == "sent" and row["reference_number"] == REFERENCE
    assert row["cf_closeloop_quote"] == "hubspot-quote-4000001" and row["expiry_date"] == "2099-12-31"
    assert made.status == "SENT" and made.number == row["estimate_number"] and made.customer_id == buyer
    assert made.sub_total == Decimal("649.00") and made.total == Decimal("739.00") and made.currency == "GBP"
    assert made.url.endswith(f"#/quotes/{made.id}")
    # And it is found by its key (also under another title), only for its customer, and read by id
    found = books.find_quote(REFERENCE, buyer)
    assert found is not None and found.id == made.id and found.status == "SENT"
    assert books.find_quote("hubspot-quote-4000001 Renamed", buyer) == found
    assert books.find_quote(REFERENCE, customer(zoho, "Other")) is None
    assert books.find_quote("hubspot-quote-9", buyer) is None
    assert books.get_quote(made.id) == found
    assert books.get_quote("460000000999999") is None
    # And a second create for the same CRM quote meets the taken key and answers the first estimate
    assert books.create_quote(draft(buyer), idempotency_key="quote-1").id == made.id
    assert len(estimates(zoho)) == 1


def test_a_lost_create_answer_is_not_resent_but_found_and_sent(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/estimates"))
    buyer = customer(zoho)
    # When Zoho makes the estimate but the answer is lost
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # Then the create was sent once, the estimate found by its key and marked sent
    assert len(zoho.state.calls("POST", f"{API}/estimates")) == 1
    assert [e["estimate_id"] for e in estimates(zoho)] == [made.id] and estimates(zoho)[0]["status"] == "sent"
    # And a lost answer to a create Zoho did not act on (an unknown customer) stays Unanswered: nothing found
    lost = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/estimates"))
    with pytest.raises(Unanswered):
        lost.create_quote(draft("1", reference="hubspot-quote-5 x"), idempotency_key="q5")


def test_revise_replaces_lines_and_expiry_and_keeps_number_and_status(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    buyer = customer(zoho)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    one = (InvoiceLine(item_code="ROCKET-XL", description="Rkt", quantity=Decimal(3), unit_amount=Decimal(400)),)
    # When the quote is revised
    revised = books.revise_quote(made, draft(buyer, lines=one, expiry=date(2099, 1, 31)), idempotency_key="r-1")
    # Then the same estimate holds the one line and the new expiry, still sent, same number
    (row,) = estimates(zoho)
    assert revised.id == made.id and revised.number == made.number and revised.status == "SENT"
    assert revised.total == Decimal("1200.00") and row["expiry_date"] == "2099-01-31"
    assert len(zoho.state.calls("PUT", f"{API}/estimates/{made.id}")) == 1


def test_answered_estimates_are_not_revised_and_refusals_are_clear(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    buyer = customer(zoho)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    zoho.move_estimate(made.id, "accepted")
    # When the accepted estimate is revised, Then it is refused without a write
    with pytest.raises(ValidationFailed, match="accepted"):
        books.revise_quote(made, draft(buyer, title="changed"), idempotency_key="r-1")
    assert not zoho.state.calls("PUT", f"{API}/estimates/{made.id}")
    # And an unknown SKU is refused before anything is sent; Zoho's own refusals are ValidationFailed
    unknown = (InvoiceLine(item_code="NOPE", description="?", quantity=Decimal(1), unit_amount=Decimal(1)),)
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_quote(draft(buyer, reference="hubspot-quote-2 x", lines=unknown), idempotency_key="q-2")
    with pytest.raises(ValidationFailed):
        books.create_quote(draft(buyer, reference="hubspot-quote-3 x", expiry=date(2000, 1, 1)), idempotency_key="q3")
    with pytest.raises(NotFound):
        books.revise_quote(made.model_copy(update={"id": "460000000999999"}), draft(buyer), idempotency_key="r-2")
    assert len(estimates(zoho)) == 1


def test_statuses_set_in_zoho_flow_back_and_the_feed_pages(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, cls=PagesOfTwo)
    buyer = customer(zoho)
    made = [
        books.create_quote(draft(buyer, reference=f"hubspot-quote-{n} Q{n}"), idempotency_key=f"q-{n}")
        for n in range(5)
    ]
    zoho.state.clock.advance(60)
    since = datetime.fromtimestamp(zoho.state.clock.now(), UTC)
    # Given the customer answers three of them in Zoho, later
    zoho.move_estimate(made[0].id, "accepted")
    zoho.move_estimate(made[1].id, "declined")
    zoho.move_estimate(made[2].id, "accepted")
    # When the feed is read since then, and in full
    changed = {q.id: q.status for q in books.iter_quotes_changed_since(since)}
    everything = {q.id: q.status for q in books.iter_quotes_changed_since(None)}
    # Then the three changed ones come back with canonical statuses, and the full read pages by two
    assert changed == {made[0].id: "ACCEPTED", made[1].id: "DECLINED", made[2].id: "ACCEPTED"}
    assert len(everything) == 5 and everything[made[4].id] == "SENT"
    assert len(zoho.state.calls("GET", f"{API}/estimates")) >= 3 + 2


class IgnoresTheFilter(ZohoBooksAccounting):
    """An adapter whose list calls reach Zoho without the last_modified_time filter (a Zoho that ignores it)."""

    PAGE_SIZE = 2

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[Any]:
        pages = self.client.pages

        def unfiltered(path: str, key: str, params: Any) -> Iterator[dict[str, Any]]:
            return pages(path, key, {k: v for k, v in params.items() if k != "last_modified_time"})

        self.client.pages = unfiltered  # type: ignore[method-assign]
        try:
            yield from super().iter_quotes_changed_since(since)
        finally:
            self.client.pages = pages  # type: ignore[method-assign]


def test_an_ignored_modified_filter_still_reads_only_the_changed_estimates(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, cls=IgnoresTheFilter)
    buyer = customer(zoho)
    made = [
        books.create_quote(draft(buyer, reference=f"hubspot-quote-{n} Q{n}"), idempotency_key=f"q-{n}")
        for n in range(5)
    ]
    zoho.state.clock.advance(60)
    since = datetime.fromtimestamp(zoho.state.clock.now(), UTC)
    zoho.move_estimate(made[3].id, "declined")
    # When Zoho ignores the filter, Then the walk (newest first) stops at the first older estimate
    assert [q.id for q in books.iter_quotes_changed_since(since)] == [made[3].id]


def test_the_invoiced_mark_is_read_not_set_and_an_invoice_made_from_the_estimate_shows_it(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    # (Changed with the quote -> invoice link: Zoho now declares marks_invoiced, read from the invoice's link,
    # and an estimate an invoice was made from without the link is returned as it is, not a ValidationFailed.)
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    buyer = customer(zoho)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # Then Zoho's adapter marks invoiced through the invoice's link only: without one, the estimate stays as is
    assert books.marks_invoiced is True
    writes = len(zoho.state.calls("POST")) + len(zoho.state.calls("PUT"))
    assert books.mark_quote_invoiced(made, "1", idempotency_key="m-1").status == "SENT"
    assert len(zoho.state.calls("POST")) + len(zoho.state.calls("PUT")) == writes  # nothing set
    # And once the invoice is created from the estimate (the draft names it), the estimate reads INVOICED
    invoice = books.create_invoice(
        InvoiceDraft(
            customer_id=buyer,
            reference="hubspot-deal-3000001 Rockets",
            currency="GBP",
            lines=draft(buyer).lines,
            issue_date=date(2026, 11, 3),
            due_date=date(2026, 12, 3),
            accounting_quote_id=made.id,
        ),
        idempotency_key="invoice-1",
    )
    (row,) = [i for i in zoho.invoices() if i["invoice_id"] == invoice.id]
    assert row["invoiced_estimate_id"] == made.id
    assert books.mark_quote_invoiced(made, invoice.id, idempotency_key="m-1").status == "INVOICED"
    read = books.get_quote(made.id)
    assert read is not None and read.status == "INVOICED"


def test_the_won_deal_of_a_synced_quote_is_invoiced_from_the_estimate_which_ends_invoiced_by_the_invoice(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    company, deal = ref("company", "1001", "hubspot"), ref("deal", "3000001", "hubspot")
    quote_ref = ref("quote", "4000001", "hubspot")
    crm = FakeQuoteCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="GB"))})
    lines = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),)
    crm.quotes[quote_ref.object_id] = Quote(
        ref=quote_ref, deal=deal, title="Rockets", status="ready", currency="GBP", company=company, line_items=lines
    )
    crm.deals[deal.object_id] = Deal(
        ref=deal, name="Rockets", amount=Decimal("199.00"), currency="GBP", is_won=True, company=company
    )
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("GB",), tax_type=VAT20),), default_currency="GBP")
    store = MemoryStore()
    contacts = ContactSync(crm, books, store, owner="w")
    quotes = QuoteSync(crm, books, store, contacts, policy, owner="w")
    deals = DealSync(crm, books, store, contacts, policy, owner="w", flows=(QuoteFlow(quotes),))
    # Given the quote synced to a sent estimate
    assert quotes.sync(quote_ref).action == "created"
    # When the deal is won and delivered (twice)
    assert deals.sync(deal, []).action == "created"
    assert deals.sync(deal, []).action == "unchanged"
    # Then one invoice, made from the estimate, which Zoho marked invoiced; the CRM quote says so
    (invoice,) = zoho.invoices()
    (estimate,) = estimates(zoho)
    assert invoice["invoiced_estimate_id"] == estimate["estimate_id"] and estimate["status"] == "invoiced"
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_status"] == "INVOICED"
    assert store.get_failed_sync(deal) is None


def test_quote_sync_makes_one_estimate_finds_it_after_a_lost_answer_revises_and_reads_acceptance(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    company, deal = ref("company", "1001", "hubspot"), ref("deal", "3000001", "hubspot")
    quote_ref = ref("quote", "4000001", "hubspot")
    crm = FakeQuoteCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="GB"))})
    lines = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),)
    crm.quotes[quote_ref.object_id] = Quote(
        ref=quote_ref, deal=deal, title="Rockets", status="ready", currency="GBP", company=company, line_items=lines
    )
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("GB",), tax_type=VAT20),), default_currency="GBP")

    def quote_sync(store: MemoryStore) -> QuoteSync:
        return QuoteSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w")

    # When the quote is synced, then synced again after a crash that lost every mapping (a fresh store)
    assert quote_sync(MemoryStore()).sync(quote_ref).action == "created"
    store = MemoryStore()
    sync = quote_sync(store)
    # Then the second finds the one estimate by its key: one estimate, shown on the CRM quote
    assert sync.sync(quote_ref).action == "matched" and len(estimates(zoho)) == 1
    assert len(zoho.state.calls("POST", f"{API}/estimates")) == 1
    number = estimates(zoho)[0]["estimate_number"]
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_number"] == number
    # When the CRM quote gains a line, Then the same estimate is revised
    more = (*lines, LineItem(crm_id="q2", name="Rkt", sku="ROCKET-XL", quantity=Decimal(1), unit_price=Decimal(450)))
    crm.quotes[quote_ref.object_id] = crm.quotes[quote_ref.object_id].model_copy(update={"line_items": more})
    assert sync.sync(quote_ref).action == "updated"
    assert len(estimates(zoho)) == 1 and len(estimates(zoho)[0]["line_items"]) == 2
    # When the customer accepts it in Zoho, Then the poll's read writes the acceptance back to the CRM quote
    estimate_id = estimates(zoho)[0]["estimate_id"]
    zoho.move_estimate(estimate_id, "accepted")
    (current,) = [q for q in books.iter_quotes_changed_since(None) if q.id == estimate_id]
    outcome = sync.status_changed(current)
    assert outcome is not None and outcome.action == "updated"
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_status"] == "ACCEPTED"


class KillOnSent(httpx.BaseTransport):
    """Sends every request to the sandbox, except the first ``status/sent`` of an estimate: the worker dies
    (a Lambda timeout) before that request goes out."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.killed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.killed and request.url.path.endswith("/status/sent") and "/estimates/" in request.url.path:
            self.killed = True
            raise ProcessKilled("the worker stopped between POST /estimates and status/sent")
        return self.inner.handle_request(request)


def test_a_crash_between_the_create_and_status_sent_is_healed_by_marking_the_found_draft_sent(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, transport=KillOnSent())
    company, deal = ref("company", "1001", "hubspot"), ref("deal", "3000001", "hubspot")
    quote_ref = ref("quote", "4000001", "hubspot")
    crm = FakeQuoteCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="GB"))})
    lines = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),)
    crm.quotes[quote_ref.object_id] = Quote(
        ref=quote_ref, deal=deal, title="Rockets", status="ready", currency="GBP", company=company, line_items=lines
    )
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("GB",), tax_type=VAT20),), default_currency="GBP")
    store = MemoryStore()
    sync = QuoteSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w")
    # Given a sync that made the estimate (a Zoho draft) and died before marking it sent
    with pytest.raises(ProcessKilled):
        sync.sync(quote_ref)
    assert [e["status"] for e in estimates(zoho)] == ["draft"]
    # When the quote syncs again
    outcome = sync.sync(quote_ref)
    # Then the one estimate is found by its key and marked sent, and the CRM quote shows SENT (not DRAFT)
    assert outcome.action == "matched" and len(zoho.state.calls("POST", f"{API}/estimates")) == 1
    assert [e["status"] for e in estimates(zoho)] == ["sent"]
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_status"] == "SENT"
