"""The Xero adapter's quotes (QuoteAccounting) against the Xero sandbox over HTTP: create SENT, find by
contact and reference, revise in place, the changed-since poll, mark invoiced, and Xero's refusals.

Published source of every request and answer: Xero's OpenAPI (xero_accounting.yaml: Quote, Quotes,
getQuotes, createQuotes, getQuote, updateQuote); tests/contracts/test_xero_quote_exchanges.py holds them to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import AccountingQuote, InvoiceLine, QuoteDraft
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.xero import API_PREFIX, XeroDriver, XeroSandbox, finance_client, serve
from tests.sandbox_adapters import xero_adapter as adapter

TODAY = datetime.now(UTC).date()


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
    xero.seed_item(Code="WIDGET", Name="Widget", SalesDetails={"UnitPrice": "10.00", "AccountCode": "200"})
    yield xero, server
    server.stop()


@pytest.fixture
def xero(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroSandbox:
    return sandbox[0]


@pytest.fixture
def books(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroAccounting:
    xero, server = sandbox
    return adapter(xero, server.url)


@pytest.fixture
def client(sandbox: tuple[XeroSandbox, SandboxServer]) -> Iterator[httpx.Client]:
    """Finance's own Xero connection (another app), for what a person does in Xero."""
    connection = finance_client(sandbox[0], sandbox[1].url)
    yield connection
    connection.close()


@pytest.fixture
def customer(xero: XeroSandbox) -> str:
    return str(xero.seed_contact(Name="Quoted Ltd")["ContactID"])


def draft(customer_id: str, **kw: object) -> QuoteDraft:
    values: dict[str, object] = {
        "customer_id": customer_id,
        "reference": "hubspot-quote-501 Widgets",
        "title": "Widgets",
        "currency": "NZD",
        "lines": (
            InvoiceLine(
                item_code="WIDGET",
                description="Widget",
                quantity=Decimal(3),
                unit_amount=Decimal("12.50"),
                tax_type="OUTPUT2",
                account_code="200",
            ),
        ),
        "issue_date": TODAY,
        "expiry": TODAY + timedelta(days=30),
    }
    return QuoteDraft.model_validate({**values, **kw})


def test_a_quote_is_made_sent_numbered_and_totalled_like_an_invoice(books: XeroAccounting, customer: str) -> None:
    # When the adapter creates a quote
    made = books.create_quote(draft(customer), idempotency_key="q-1")
    # Then Xero numbered it, holds it SENT, and totalled it as it totals invoices (15% GST on 37.50)
    assert made.number == "QU-0001" and made.status == "SENT"
    assert (made.sub_total, made.total_tax, made.total) == (Decimal("37.50"), Decimal("5.63"), Decimal("43.13"))
    assert made.customer_id == customer and made.currency == "NZD"
    assert made.issue_date == TODAY and made.expiry == TODAY + timedelta(days=30)
    assert made.url == f"https://go.xero.com/app/quotes/view/{made.id}"
    # And a second quote gets the next number
    other = books.create_quote(draft(customer, reference="hubspot-quote-502 More"), idempotency_key="q-2")
    assert other.number == "QU-0002"


def test_a_replayed_create_returns_the_same_quote(books: XeroAccounting, xero: XeroSandbox, customer: str) -> None:
    # When the same create is sent twice with one Idempotency-Key (a lost answer retried)
    first = books.create_quote(draft(customer), idempotency_key="q-same")
    second = books.create_quote(draft(customer), idempotency_key="q-same")
    # Then Xero made one quote
    assert first.id == second.id and len(xero.quotes()) == 1


def test_find_by_reference_reads_that_contact_s_quotes_and_skips_deleted_ones(
    books: XeroAccounting, xero: XeroSandbox, sandbox: tuple[XeroSandbox, SandboxServer], customer: str
) -> None:
    # Given a quote of the customer, one of another contact with the same reference, and a deleted one
    other = str(xero.seed_contact(Name="Someone Else")["ContactID"])
    mine = books.create_quote(draft(customer), idempotency_key="q-mine")
    books.create_quote(draft(other), idempotency_key="q-other")
    gone = books.create_quote(draft(customer, reference="hubspot-quote-9 Gone"), idempotency_key="q-gone")
    XeroDriver(xero, sandbox[1].url).set_quote_status(gone.id, "DELETED")
    # Then the lookup finds the customer's live quote by its reference, and nothing for the deleted one
    found = books.find_quote("hubspot-quote-501 Widgets", customer)
    assert found is not None and found.id == mine.id
    assert books.find_quote("hubspot-quote-9 Gone", customer) is None
    assert books.find_quote("hubspot-quote-501 Widgets", "") is None
    # And get_quote reads one by id, deleted too; an unknown id is None
    deleted = books.get_quote(gone.id)
    assert deleted is not None and deleted.status == "DELETED"
    assert books.get_quote("00000000-0000-0000-0000-000000000001") is None


def test_a_revision_replaces_the_lines_and_keeps_number_and_status(
    books: XeroAccounting, xero: XeroSandbox, customer: str
) -> None:
    # Given a sent quote
    made = books.create_quote(draft(customer), idempotency_key="q-1")
    # When it is revised with one other line and a later expiry
    line = InvoiceLine(item_code="WIDGET", description="Widget", quantity=Decimal(1), unit_amount=Decimal("9.00"))
    revised = books.revise_quote(
        made, draft(customer, lines=(line,), expiry=TODAY + timedelta(days=60)), idempotency_key="q-rev-1"
    )
    # Then the same quote holds only the new line, its number and status unchanged
    assert (revised.id, revised.number, revised.status) == (made.id, "QU-0001", "SENT")
    assert revised.total == Decimal("10.35") and revised.expiry == TODAY + timedelta(days=60)
    (stored,) = xero.quotes()
    assert [(li["Quantity"], li["UnitAmount"]) for li in stored["LineItems"]] == [(Decimal(1), Decimal("9.0000"))]


def test_an_accepted_quote_is_not_revised(
    books: XeroAccounting, xero: XeroSandbox, sandbox: tuple[XeroSandbox, SandboxServer], customer: str
) -> None:
    # Given a quote finance marked accepted
    made = books.create_quote(draft(customer), idempotency_key="q-1")
    XeroDriver(xero, sandbox[1].url).set_quote_status(made.id, "ACCEPTED")
    # When the adapter revises it, Xero refuses with its reason
    with pytest.raises(ValidationFailed, match="not of valid status for modification"):
        books.revise_quote(made, draft(customer, title="Changed"), idempotency_key="q-rev")


def test_mark_invoiced_moves_a_sent_quote_through_accepted(
    books: XeroAccounting, xero: XeroSandbox, customer: str
) -> None:
    # Given a sent quote
    made = books.create_quote(draft(customer), idempotency_key="q-1")
    # When it is marked invoiced (twice: a redelivery with the same key)
    marked = books.mark_quote_invoiced(made, "inv-1", idempotency_key="q-inv")
    again = books.mark_quote_invoiced(made, "inv-1", idempotency_key="q-inv")
    # Then it is INVOICED, its content unchanged
    assert marked.status == "INVOICED" and again.status == "INVOICED"
    (stored,) = xero.quotes()
    assert stored["Status"] == "INVOICED" and stored["Total"] == Decimal("43.13")


def test_changed_since_reads_only_quotes_modified_after_the_watermark(
    books: XeroAccounting, xero: XeroSandbox, customer: str
) -> None:
    # Given an old quote, then the clock moves a day and another is made
    old = books.create_quote(draft(customer), idempotency_key="q-old")
    xero.state.clock.advance(86_400)
    since = datetime.fromtimestamp(xero.state.clock.now(), UTC)
    new = books.create_quote(draft(customer, reference="hubspot-quote-502 New"), idempotency_key="q-new")
    # Then the poll since then reads the new one only; with no watermark, both
    assert [q.id for q in books.iter_quotes_changed_since(since)] == [new.id]
    assert {q.id for q in books.iter_quotes_changed_since(None)} == {old.id, new.id}


def test_quotes_are_listed_a_hundred_a_page(books: XeroAccounting, client: httpx.Client, customer: str) -> None:
    # Given 101 quotes of one contact
    for n in range(101):
        xero_quote = {"Contact": {"ContactID": customer}, "Reference": f"r{n}", "LineItems": []}
        client.put(f"{API_PREFIX}/Quotes", json={"Quotes": [xero_quote]}).raise_for_status()
    # Then the adapter's reference lookup pages to the last one
    found = books.find_quote("r100", customer)
    assert found is not None and found.number == "QU-0101"


@pytest.mark.parametrize(
    ("quote", "message"),
    [
        ({"Contact": {}}, "A Contact must be specified"),
        ({"Contact": {"ContactID": "00000000-0000-0000-0000-000000000009"}}, "could not be found"),
        ({"Status": "ACCEPTED"}, "Quote Status 'ACCEPTED' is not valid"),
        ({"CurrencyCode": "USD"}, "not subscribed to currency USD"),
        ({"LineAmountTypes": "Exclusive"}, "LineAmountTypes must be EXCLUSIVE"),
        ({"ExpiryDate": "2020-01-01", "Date": "2020-02-01"}, "Expiry date must be on or after"),
        ({"Title": "x" * 101}, "Title must not be more than 100"),
        ({"LineItems": [{"ItemCode": "NOPE", "Quantity": 1}]}, "Item code 'NOPE' is not valid"),
    ],
)
def test_xero_refuses_a_bad_quote_with_a_validation_exception(
    xero: XeroSandbox, client: httpx.Client, customer: str, quote: dict[str, object], message: str
) -> None:
    # When a quote Xero would refuse is created
    body = {"Contact": {"ContactID": customer}, **quote}
    answer = client.put(f"{API_PREFIX}/Quotes", json={"Quotes": [body]})
    # Then the answer is a 400 ValidationException naming the reason, and nothing was made
    assert answer.status_code == 400
    errors = answer.json()["Elements"][0]["ValidationErrors"]
    assert any(message in e["Message"] for e in errors), errors
    assert xero.quotes() == []


def test_status_moves_xero_allows_and_refuses(client: httpx.Client, customer: str) -> None:
    # Given a draft quote
    made = client.put(f"{API_PREFIX}/Quotes", json={"Contact": {"ContactID": customer}}).json()["Quotes"][0]
    path = f"{API_PREFIX}/Quotes/{made['QuoteID']}"

    def move(status: str) -> httpx.Response:
        return client.post(path, json={"Quotes": [{"Contact": {"ContactID": customer}, "Status": status}]})

    # Then a draft cannot be accepted or invoiced before it was sent
    assert move("ACCEPTED").status_code == 400
    assert move("INVOICED").status_code == 400
    # And DRAFT -> SENT -> DECLINED -> SENT -> ACCEPTED -> INVOICED is the life cycle
    for status in ("SENT", "DECLINED", "SENT", "ACCEPTED", "INVOICED"):
        assert move(status).status_code == 200, status
    # And an invoiced quote stays invoiced
    assert move("SENT").status_code == 400
    assert client.get(path).json()["Quotes"][0]["Status"] == "INVOICED"
    # And an unknown quote is a 404
    assert client.get(f"{API_PREFIX}/Quotes/00000000-0000-0000-0000-000000000009").status_code == 404


def test_get_quotes_filters_as_published(xero: XeroSandbox, client: httpx.Client, customer: str) -> None:
    # Given three quotes: two of the customer (one sent, expiring later), one of another contact
    other = str(xero.seed_contact(Name="Other Ltd")["ContactID"])
    for contact, status, day, expiry in (
        (customer, "DRAFT", "2026-01-10", "2026-02-10"),
        (customer, "SENT", "2026-03-10", "2026-06-10"),
        (other, "SENT", "2026-05-10", "2026-05-20"),
    ):
        quote = {"Contact": {"ContactID": contact}, "Status": status, "Date": day, "ExpiryDate": expiry}
        client.put(f"{API_PREFIX}/Quotes", json={"Quotes": [quote]}).raise_for_status()

    def numbers(**params: str) -> list[str]:
        answer = client.get(f"{API_PREFIX}/Quotes", params=params)
        answer.raise_for_status()
        return [q["QuoteNumber"] for q in answer.json()["Quotes"]]

    # Then each published filter narrows the list
    assert numbers(ContactID=customer) == ["QU-0001", "QU-0002"]
    assert numbers(Status="SENT") == ["QU-0002", "QU-0003"]
    assert numbers(DateFrom="2026-03-01") == ["QU-0002", "QU-0003"]
    assert numbers(DateTo="2026-03-10") == ["QU-0001", "QU-0002"]
    assert numbers(ExpiryDateFrom="2026-05-21") == ["QU-0002"]
    assert numbers(ExpiryDateTo="2026-05-20") == ["QU-0001", "QU-0003"]
    assert numbers(QuoteNumber="QU-0003") == ["QU-0003"]
    assert numbers(order="Date DESC") == ["QU-0003", "QU-0002", "QU-0001"]
    assert numbers(page="2") == []
    assert client.get(f"{API_PREFIX}/Quotes", params={"order": "Nope"}).status_code == 400


def test_an_accepted_quote_reads_back_accepted(
    books: XeroAccounting, xero: XeroSandbox, sandbox: tuple[XeroSandbox, SandboxServer], customer: str
) -> None:
    # Given a quote the customer accepted (finance marks it in Xero)
    made = books.create_quote(draft(customer), idempotency_key="q-1")
    XeroDriver(xero, sandbox[1].url).set_quote_status(made.id, "ACCEPTED")
    # Then the adapter reads it accepted, with the date Xero keeps
    current = books.get_quote(made.id)
    assert isinstance(current, AccountingQuote) and current.status == "ACCEPTED"
    assert current.issue_date == TODAY and isinstance(current.issue_date, date)


def test_mark_sent_moves_a_draft_quote_to_sent_and_leaves_others(
    books: XeroAccounting, xero: XeroSandbox, customer: str
) -> None:
    # Given a draft quote
    made = books.create_quote(draft(customer, status="DRAFT"), idempotency_key="q-1")
    assert made.status == "DRAFT"
    # When it is marked sent, and the sent one marked again
    sent = books.mark_quote_sent(made, idempotency_key="q-sent")
    again = books.mark_quote_sent(sent, idempotency_key="q-sent")
    # Then it is SENT in Xero, the second call wrote nothing
    assert sent.status == again.status == "SENT"
    (stored,) = xero.quotes()
    assert stored["Status"] == "SENT"
    assert len(xero.state.calls("POST", f"*/Quotes/{made.id}")) == 1
