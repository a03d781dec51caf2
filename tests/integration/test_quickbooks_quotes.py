"""QuickBooks Online Estimates as the quote port (QuoteAccounting) against the QuickBooks sandbox over HTTP:
create, find by DocNumber, revise at the SyncToken, the change feed (CDC and paged queries), statuses set in
QuickBooks read back, closing an invoiced estimate, refusals, and QuoteSync on top."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop.errors import NotFound, ValidationFailed
from closeloop.models import Address, Customer, Deal, InvoiceDraft, InvoiceLine, LineItem, Quote, QuoteDraft
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.quotes import QuoteFlow, QuoteSync, quote_reference
from closeloop.sync.tax import TaxRule
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox, serve
from tests.fakes import FakeQuoteCrm, MemoryStore, ref
from tests.quickbooks_adapters import adapter

API = "/v3/company/*"
REFERENCE = "hubspot-quote-4000001 Rockets for Acme"


@pytest.fixture
def sandbox() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    qbo, server = serve()
    driver = QuickBooksDriver(qbo)
    driver.seed_item("ANV-1", "Anvil", Decimal("99.50"))
    driver.seed_item("ROCKET-XL", "Rocket", Decimal("450"))
    yield qbo, server
    server.stop()


def customer(qbo: QuickBooksSandbox, name: str = "Acme") -> str:
    return QuickBooksDriver(qbo).seed_customer(name, email=f"{name.lower()}@x.test")


def draft(customer_id: str, **kw: Any) -> QuoteDraft:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": REFERENCE,
        "title": "Rockets for Acme",
        "currency": "USD",
        "lines": (
            InvoiceLine(
                item_code="ANV-1", description="Anvil", quantity=Decimal(2), unit_amount=Decimal("99.5"), tax_type="TAX"
            ),
            InvoiceLine(item_code="ROCKET-XL", description="Rocket", quantity=Decimal(1), unit_amount=Decimal("450")),
        ),
        "issue_date": date(2026, 11, 2),
        "expiry": date(2026, 12, 31),
        "url": "https://crm.example/quote/4000001",
    }
    values.update(kw)
    return QuoteDraft(**values)


class PagesOfTwo(QuickBooksAccounting):
    MAX_RESULTS = 2


class Meddle(httpx.BaseTransport):
    """Sends every request on; before the first ``POST /estimate`` carrying ``needle`` it runs ``before`` (a
    person's edit in QuickBooks between our read and our write), and it can lose the first create's answer."""

    def __init__(self, before: Callable[[], object] | None = None, lose_create: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.before, self.lose_create = before, lose_create

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_write = request.method == "POST" and request.url.path.endswith("/estimate")
        if is_write and self.before is not None and b'"sparse"' in request.content:
            before, self.before = self.before, None
            before()
        response = self.inner.handle_request(request)
        if is_write and self.lose_create and b'"sparse"' not in request.content:
            self.lose_create = False
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_create_sends_a_pending_estimate_found_again_by_its_docnumber(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    buyer = customer(qbo)
    # When a quote is created
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # Then it is a Pending estimate (SENT) with our DocNumber, expiry, Decimal totals and a link
    row = qbo.rows("Estimate")[0]
    assert row["TxnStatus"] == "Pending" and row["DocNumber"] == "hubspot-quote-4000001"
    assert row["ExpirationDate"] == "2026-12-31" and row["PrivateNote"].startswith(REFERENCE)
    assert made.status == "SENT" and made.number == "hubspot-quote-4000001" and made.reference == REFERENCE
    assert made.expiry == date(2026, 12, 31) and made.customer_id == buyer and made.currency == "USD"
    assert made.sub_total == Decimal("649.00") and made.total == Decimal("668.90")
    assert made.url.endswith(f"/app/estimate?txnId={made.id}")
    # And it is found by its reference (the DocNumber), also under another title, and read by id
    assert books.find_quote(REFERENCE, buyer) == made
    assert books.find_quote("hubspot-quote-4000001 Renamed", buyer) == made
    assert books.find_quote("hubspot-quote-999", buyer) is None
    assert books.get_quote(made.id) == made
    assert books.get_quote("9999") is None
    # And the same key replays the first answer; another key meets the taken DocNumber and gets it back
    assert books.create_quote(draft(buyer), idempotency_key="quote-1").id == made.id
    assert books.create_quote(draft(buyer), idempotency_key="quote-other").id == made.id
    assert len(qbo.rows("Estimate")) == 1


def test_a_lost_create_answer_is_retried_with_the_same_requestid(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url, transport=Meddle(lose_create=True))
    # When QBO creates the estimate but the answer is lost
    made = books.create_quote(draft(customer(qbo)), idempotency_key="quote-1")
    # Then the retry carried the same requestid and got the first estimate: one estimate
    writes = qbo.state.calls("POST", f"{API}/estimate")
    assert len(writes) == 2 and len({w.query for w in writes}) == 1
    assert [row["Id"] for row in qbo.rows("Estimate")] == [made.id]


def test_revise_replaces_the_lines_at_the_sync_token_and_keeps_status_and_number(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    buyer = customer(qbo)
    made = adapter(qbo, server.url).create_quote(draft(buyer), idempotency_key="quote-1")
    # Given a person edits the estimate in QuickBooks between our read and our write (a stale SyncToken)
    edited = Meddle(before=lambda: qbo.edit("Estimate", made.id, CustomerMemo={"value": "Call first"}))
    books = adapter(qbo, server.url, transport=edited)
    one_line = (InvoiceLine(item_code="ROCKET-XL", description="Rkt", quantity=Decimal(3), unit_amount=Decimal(400)),)
    # When the quote is revised
    revised = books.revise_quote(
        made, draft(buyer, lines=one_line, expiry=date(2027, 1, 31)), idempotency_key="quote-rev-1"
    )
    # Then the same estimate holds the one new line, the new expiry, its number and its Pending status
    row = qbo.rows("Estimate")[0]
    sales = [line for line in row["Line"] if line.get("DetailType") == "SalesItemLineDetail"]
    assert len(qbo.rows("Estimate")) == 1 and len(sales) == 1
    assert revised.id == made.id and revised.number == made.number and revised.status == "SENT"
    assert revised.total == Decimal("1200.00") and revised.expiry == date(2027, 1, 31)
    # And the stale write (5010) was re-read and retried once, under its own requestid
    writes = [w for w in qbo.state.calls("POST", f"{API}/estimate") if b'"sparse"' in w.body]
    assert len(writes) == 2 and len({w.query for w in writes}) == 2


def test_a_quote_answered_in_quickbooks_is_not_revised_and_an_unknown_item_is_refused(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    buyer = customer(qbo)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    qbo.edit("Estimate", made.id, TxnStatus="Accepted")
    # When the accepted estimate is revised, Then QuickBooks' estimate is left as it is
    with pytest.raises(ValidationFailed, match="Accepted"):
        books.revise_quote(made, draft(buyer, title="changed"), idempotency_key="quote-rev-1")
    # And a line naming no item is refused before anything is sent
    unknown = (InvoiceLine(item_code="NOPE", description="?", quantity=Decimal(1), unit_amount=Decimal(1)),)
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_quote(draft(buyer, reference="hubspot-quote-2 x", lines=unknown), idempotency_key="quote-2")
    # And QuickBooks' own refusals: another currency than the customer's, an unknown customer or estimate
    with pytest.raises(ValidationFailed):
        books.create_quote(draft(buyer, reference="hubspot-quote-3 x", currency="EUR"), idempotency_key="quote-3")
    with pytest.raises(NotFound):
        books.create_quote(draft("999", reference="hubspot-quote-4 x"), idempotency_key="quote-4")
    with pytest.raises(NotFound):
        books.mark_quote_invoiced(made.model_copy(update={"id": "999"}), "1", idempotency_key="inv-1")
    assert len(qbo.rows("Estimate")) == 1


def test_statuses_set_in_quickbooks_flow_back_and_the_feed_pages(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url, cls=PagesOfTwo)
    buyer = customer(qbo)
    made = [
        books.create_quote(draft(buyer, reference=f"hubspot-quote-{n} Q{n}"), idempotency_key=f"q-{n}")
        for n in range(5)
    ]
    started = datetime.now(UTC) - timedelta(seconds=1)
    # Given finance marks them in QuickBooks: accepted, rejected, closed
    for quote_, status in zip(made, ("Accepted", "Rejected", "Closed"), strict=False):
        qbo.edit("Estimate", quote_.id, TxnStatus=status)
    # When the feed is read over CDC (a recent watermark) and over paged queries (an old one, or all)
    recent = {q.id: q.status for q in books.iter_quotes_changed_since(started)}
    old = {q.id: q.status for q in books.iter_quotes_changed_since(started - timedelta(days=40))}
    everything = {q.id: q.status for q in books.iter_quotes_changed_since(None)}
    # Then each status is the canonical one; the old watermark and the full read page by two
    expected = dict(zip([q.id for q in made], ["ACCEPTED", "DECLINED", "INVOICED", "SENT", "SENT"], strict=True))
    assert old == everything == expected
    assert {k: v for k, v in recent.items() if v != "SENT"} == {k: v for k, v in expected.items() if v != "SENT"}
    assert qbo.state.calls("GET", f"{API}/cdc")
    assert len([c for c in qbo.state.calls("GET", f"{API}/query") if "Estimate" in c.query]) >= 6
    # And a future watermark reads nothing
    assert list(books.iter_quotes_changed_since(datetime.now(UTC) + timedelta(hours=1))) == []


def test_mark_invoiced_closes_the_estimate_once(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    buyer = customer(qbo)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # When the quote is marked invoiced, twice
    closed = books.mark_quote_invoiced(made, "77", idempotency_key="quote-invoiced")
    again = books.mark_quote_invoiced(closed, "77", idempotency_key="quote-invoiced")
    # Then the estimate is Closed (INVOICED), with one write
    assert closed.status == again.status == "INVOICED"
    assert qbo.rows("Estimate")[0]["TxnStatus"] == "Closed"
    assert len([w for w in qbo.state.calls("POST", f"{API}/estimate") if b'"sparse"' in w.body]) == 1


def test_quote_sync_makes_one_estimate_finds_it_after_a_lost_answer_revises_and_reads_acceptance(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url, transport=Meddle(lose_create=True))
    company, deal = ref("company", "1001", "hubspot"), ref("deal", "3000001", "hubspot")
    quote_ref = ref("quote", "4000001", "hubspot")
    crm = FakeQuoteCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="US"))})
    lines = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),)
    crm.quotes[quote_ref.object_id] = Quote(
        ref=quote_ref, deal=deal, title="Rockets", status="ready", currency="USD", company=company, line_items=lines
    )
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("US",), tax_type="TAX"),), default_currency="USD")

    def quote_sync(store: MemoryStore) -> QuoteSync:
        return QuoteSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w")

    # When the quote is synced and QuickBooks' answer to the create is lost (the client retries it)
    assert quote_sync(MemoryStore()).sync(quote_ref).action == "created"
    # And synced again after a crash that lost every mapping (a fresh store)
    store = MemoryStore()
    sync = quote_sync(store)
    again = sync.sync(quote_ref)
    # Then one estimate was made, found again by its DocNumber, and the CRM quote shows it
    assert again.action == "matched" and len(qbo.rows("Estimate")) == 1
    assert len(qbo.state.calls("POST", f"{API}/estimate")) == 2  # the create and its replay, nothing more
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_number"] == "hubspot-quote-4000001"
    # When the CRM quote gains a line, Then the same estimate is revised
    more = (*lines, LineItem(crm_id="q2", name="Rocket", sku="ROCKET-XL", quantity=Decimal(1), unit_price=Decimal(450)))
    crm.quotes[quote_ref.object_id] = crm.quotes[quote_ref.object_id].model_copy(update={"line_items": more})
    assert sync.sync(quote_ref).action == "updated"
    assert len(qbo.rows("Estimate")) == 1 and len(qbo.rows("Estimate")[0]["Line"]) >= 2
    # When the customer accepts it in QuickBooks, Then the acceptance is written back to the CRM quote
    estimate_id = qbo.rows("Estimate")[0]["Id"]
    qbo.edit("Estimate", estimate_id, TxnStatus="Accepted")
    current = books.get_quote(estimate_id)
    assert current is not None
    outcome = sync.status_changed(current)
    assert outcome is not None and outcome.action == "updated"
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_status"] == "ACCEPTED"
    assert qbo.rows("Estimate")[0]["PrivateNote"].startswith(quote_reference(crm.quotes[quote_ref.object_id]))


def test_an_invoice_made_from_the_estimate_links_and_closes_it_so_marking_it_writes_nothing(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    buyer = customer(qbo)
    made = books.create_quote(draft(buyer), idempotency_key="quote-1")
    # When the invoice is created from the estimate (the draft names it)
    quote_draft = draft(buyer)
    invoice = books.create_invoice(
        InvoiceDraft(
            customer_id=buyer,
            reference="hubspot-deal-3000001 Rockets",
            currency="USD",
            lines=quote_draft.lines,
            issue_date=date(2026, 11, 3),
            due_date=date(2026, 12, 3),
            accounting_quote_id=made.id,
        ),
        idempotency_key="invoice-1",
    )
    # Then the invoice carries LinkedTxn to the estimate, and QBO closed the estimate and links it back
    (row,) = qbo.rows("Invoice")
    assert {"TxnId": made.id, "TxnType": "Estimate"} in row["LinkedTxn"]
    estimate = qbo.rows("Estimate")[0]
    assert estimate["TxnStatus"] == "Closed"
    assert {"TxnId": invoice.id, "TxnType": "Invoice"} in estimate["LinkedTxn"]
    # And marking it invoiced reads it Closed (INVOICED) with no sparse update (the fallback is not needed)
    marked = books.mark_quote_invoiced(made, invoice.id, idempotency_key="quote-invoiced")
    assert marked.status == "INVOICED"
    assert not [w for w in qbo.state.calls("POST", f"{API}/estimate") if b'"sparse"' in w.body]


def test_the_won_deal_of_a_synced_quote_is_invoiced_from_the_estimate_which_ends_closed_by_the_invoice(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    company, deal = ref("company", "1001", "hubspot"), ref("deal", "3000001", "hubspot")
    quote_ref = ref("quote", "4000001", "hubspot")
    crm = FakeQuoteCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="US"))})
    lines = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(2), unit_price=Decimal("99.50")),)
    crm.quotes[quote_ref.object_id] = Quote(
        ref=quote_ref, deal=deal, title="Rockets", status="ready", currency="USD", company=company, line_items=lines
    )
    crm.deals[deal.object_id] = Deal(
        ref=deal, name="Rockets", amount=Decimal("199.00"), currency="USD", is_won=True, company=company
    )
    policy = InvoicePolicy(tax_rules=(TaxRule(countries=("US",), tax_type="TAX"),), default_currency="USD")
    store = MemoryStore()
    contacts = ContactSync(crm, books, store, owner="w")
    quotes = QuoteSync(crm, books, store, contacts, policy, owner="w")
    deals = DealSync(crm, books, store, contacts, policy, owner="w", flows=(QuoteFlow(quotes),))
    # Given the quote synced to an estimate
    assert quotes.sync(quote_ref).action == "created"
    # When the deal is won and delivered (twice)
    assert deals.sync(deal, []).action == "created"
    assert deals.sync(deal, []).action == "unchanged"
    # Then one invoice, linked to the estimate, which QBO closed itself: no sparse update was needed
    (invoice,) = qbo.rows("Invoice")
    estimate = qbo.rows("Estimate")[0]
    assert invoice["LinkedTxn"] == [{"TxnId": estimate["Id"], "TxnType": "Estimate"}]
    assert estimate["TxnStatus"] == "Closed"
    assert not [w for w in qbo.state.calls("POST", f"{API}/estimate") if b'"sparse"' in w.body]
    assert crm.quote_properties[quote_ref.object_id]["closeloop_quote_status"] == "INVOICED"
