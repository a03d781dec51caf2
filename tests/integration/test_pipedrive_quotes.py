"""The Pipedrive adapter's quote port (QuoteCrm: the deal stands in for its quote) against the Pipedrive sandbox
over HTTP: a deal open in a configured quote stage reads as a ready quote with its products as lines; the
write-back fields are made as deal fields once and written by hash; quote events come from deal webhooks and the
catch-up poll; and QuoteSync over the adapter (a fake accounting side) quotes the deal once and revises it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import CrmRef, Item
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import InvoicePolicy
from closeloop.sync.quotes import QUOTE_PROPERTIES, QuoteSync
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.fakes import FakeQuoteBooks, MemoryStore

QUOTED_STAGE = 3


@pytest.fixture
def sandbox() -> Iterator[tuple[PipedriveSandbox, SandboxServer]]:
    pipedrive, server = serve()
    yield pipedrive, server
    server.stop()


def crm(pipedrive: PipedriveSandbox, url: str, **kwargs: Any) -> PipedriveCrm:
    kwargs.setdefault("quote_stages", (str(QUOTED_STAGE),))
    return PipedriveCrm(api_token=lambda: pipedrive.api_token, base_url=url, sleep=lambda s: None, **kwargs)


def ref(object_type: str, object_id: object) -> CrmRef:
    return CrmRef.model_validate({"crm": "pipedrive", "object_type": object_type, "object_id": str(object_id)})


def quoted_deal(pipedrive: PipedriveSandbox, stage: int = QUOTED_STAGE) -> tuple[dict[str, Any], dict[str, Any]]:
    """An organization's EUR deal in ``stage`` with two products (two anvils and a setup)."""
    org = pipedrive.create("organization", {"name": "Acme Ltd"})
    anvil = pipedrive.create(
        "product", {"name": "Anvil", "code": "ANV-1", "prices": [{"currency": "EUR", "price": 99.5}]}
    )
    setup = pipedrive.create(
        "product", {"name": "Setup", "code": "SETUP", "prices": [{"currency": "EUR", "price": 250}]}
    )
    deal = pipedrive.create(
        "deal", {"title": "Anvils for Acme", "org_id": org["id"], "currency": "EUR", "stage_id": stage}
    )
    pipedrive.add_deal_product(deal["id"], {"product_id": anvil["id"], "item_price": "99.50", "quantity": 2})
    pipedrive.add_deal_product(deal["id"], {"product_id": setup["id"], "item_price": "250", "quantity": 1})
    return org, deal


def test_a_deal_open_in_a_quote_stage_reads_as_a_ready_quote_with_its_products(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    org, deal = quoted_deal(pipedrive)
    adapter = crm(pipedrive, server.url, company_domain="acme")
    # When the deal is read as a quote
    quote = adapter.get_quote(str(deal["id"]))
    # Then it is the deal standing in: ready, its parties, currency, title and products as lines (money exact)
    assert quote is not None
    assert (quote.ref, quote.deal, quote.status) == (ref("quote", deal["id"]), ref("deal", deal["id"]), "ready")
    assert (quote.title, quote.currency, quote.company, quote.contact) == (
        "Anvils for Acme",
        "EUR",
        ref("company", org["id"]),
        None,
    )
    assert [(line.sku, line.quantity, line.unit_price) for line in quote.line_items] == [
        ("ANV-1", Decimal(2), Decimal("99.50")),
        ("SETUP", Decimal(1), Decimal(250)),
    ]
    assert quote.url == f"https://acme.pipedrive.com/deal/{deal['id']}"
    assert quote.expiry is None and quote.updated_at is not None
    # And the deal's quotes are that one
    assert [q.ref for q in adapter.quotes_of_deal(str(deal["id"]))] == [quote.ref]


@pytest.mark.parametrize(
    ("stages", "stage", "status"),
    [
        ((), QUOTED_STAGE, "open"),  # no quote stage configured: nothing is quoted by surprise
        ((str(QUOTED_STAGE),), 1, "open"),  # another stage
        ((str(QUOTED_STAGE),), QUOTED_STAGE, "won"),  # won: the invoice follows, not a quote
        ((str(QUOTED_STAGE),), QUOTED_STAGE, "lost"),
    ],
)
def test_a_deal_is_not_quoted_outside_the_configured_stages_or_once_closed(
    sandbox: tuple[PipedriveSandbox, SandboxServer], stages: tuple[str, ...], stage: int, status: str
) -> None:
    pipedrive, server = sandbox
    _, deal = quoted_deal(pipedrive, stage)
    if status != "open":
        pipedrive.update("deal", deal["id"], {"status": status})
    adapter = crm(pipedrive, server.url, quote_stages=stages)
    quote = adapter.get_quote(str(deal["id"]))
    assert quote is not None and quote.status == "draft"
    # And without quote stages a won deal's flow asks for its quotes without a read
    if not stages:
        before = len(pipedrive.state.requests)
        assert adapter.quotes_of_deal(str(deal["id"])) == []
        assert len(pipedrive.state.requests) == before


def test_a_deal_that_is_gone_has_no_quote(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    _, deal = quoted_deal(pipedrive)
    pipedrive.delete("deal", deal["id"])
    adapter = crm(pipedrive, server.url)
    assert adapter.get_quote(str(deal["id"])) is None
    assert adapter.quotes_of_deal(str(deal["id"])) == []
    assert adapter.get_quote("999999") is None


def test_quote_fields_are_made_as_deal_fields_once_and_read_back(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    _, deal = quoted_deal(pipedrive)
    adapter = crm(pipedrive, server.url)
    values = {
        "closeloop_quote_number": "QU-0042",
        "closeloop_quote_status": "SENT",
        "closeloop_quote_url": "https://books.example/quote/42",
        "closeloop_quote_revision": "1",
    }
    # Given the fields do not exist yet: the write is refused before anything is sent
    with pytest.raises(ValidationFailed, match="no deal field named"):
        adapter.write_quote(str(deal["id"]), values)
    assert pipedrive.state.calls("PATCH", f"/api/v2/deals/{deal['id']}") == []
    # When they are ensured (twice) and written
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES) == [d.name for d in QUOTE_PROPERTIES]
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES) == []
    adapter.write_quote(str(deal["id"]), values)
    # Then they are deal fields (the status an enum of the accounting quote states), written in one PATCH by hash
    posts = [json.loads(c.body) for c in pipedrive.state.calls("POST", "/api/v2/dealFields")]
    assert {p["field_name"]: p["field_type"] for p in posts} == {
        "closeloop_quote_number": "varchar",
        "closeloop_quote_status": "enum",
        "closeloop_quote_url": "varchar",
        "closeloop_quote_revision": "double",
    }
    (patch,) = pipedrive.state.calls("PATCH", f"/api/v2/deals/{deal['id']}")
    assert set(json.loads(patch.body)) == {"custom_fields"}
    assert pipedrive.custom_values("deal", deal["id"])["closeloop_quote_number"] == "QU-0042"
    # And the quote reads them back as its synced values
    quote = adapter.get_quote(str(deal["id"]))
    assert quote is not None and quote.synced == values
    # And a status that is not an option is refused, naming the field
    with pytest.raises(ValidationFailed, match="closeloop_quote_status"):
        adapter.write_quote(str(deal["id"]), {"closeloop_quote_status": "LOST"})


def _accept(environ: object, start_response: Callable[[str, list[tuple[str, str]]], object]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_deal_webhooks_and_the_catch_up_give_quote_events_while_the_deal_is_quoted(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    sink = SandboxServer(_accept).start()
    try:
        pipedrive.add_webhook({"subscription_url": sink.url, "event_action": "*", "event_object": "deal"})
        since = datetime.fromtimestamp(int(pipedrive.now()), UTC)
        other = pipedrive.create("deal", {"title": "Not quoted", "stage_id": 1})
        _, deal = quoted_deal(pipedrive)
        pipedrive.flush_webhooks(force=True)
    finally:
        sink.stop()
    adapter = crm(pipedrive, server.url)
    # When the deliveries are parsed
    events = [e for d in pipedrive.deliveries if "body" in d for e in adapter.parse_webhook(str(d["body"]).encode())]
    # Then every delivery of the quoted deal gives a deal event and a quote event, with their own dedupe keys
    quote_events = [e for e in events if e.ref == ref("quote", deal["id"])]
    deal_events = [e for e in events if e.ref == ref("deal", deal["id"])]
    assert quote_events and len(quote_events) == len(deal_events)
    assert {e.dedupe_key for e in quote_events}.isdisjoint({e.dedupe_key for e in deal_events})
    assert all(e.dedupe_key.endswith(":quote") for e in quote_events)
    # And the deal in another stage gives deal events only
    assert ref("quote", other["id"]) not in {e.ref for e in events}
    # When the catch-up reads the changes
    changes = list(adapter.iter_changes_since(since))
    # Then the quoted deal is there as a deal and as a quote (the other deal as a deal only)
    refs = [e.ref for e in changes]
    assert ref("deal", deal["id"]) in refs and ref("quote", deal["id"]) in refs
    assert ref("deal", other["id"]) in refs and ref("quote", other["id"]) not in refs
    assert len({e.dedupe_key for e in changes}) == len(changes)
    # And without quote stages no quote event comes at all
    plain = crm(pipedrive, server.url, quote_stages=())
    assert all(e.ref.object_type != "quote" for e in plain.iter_changes_since(since))


def test_quote_sync_quotes_the_deal_once_and_revises_it_when_a_product_changes(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    _, deal = quoted_deal(pipedrive)
    adapter = crm(pipedrive, server.url)
    books = FakeQuoteBooks()
    for code in ("ANV-1", "SETUP"):
        books.items[code] = Item(code=code, name=code)
    store = MemoryStore()
    sync = QuoteSync(adapter, books, store, ContactSync(adapter, books, store, owner="w"), InvoicePolicy(), owner="w")
    quote_ref = ref("quote", deal["id"])
    # When the deal's quote is synced (the write-back fields do not exist yet), and again
    assert sync.sync(quote_ref).action == "created"
    assert sync.sync(quote_ref).action == "unchanged"
    # Then one accounting quote bills the deal's products, and its number and status are on the deal
    (made,) = books.quotes.values()
    assert [line.item_code for line in books.quote_drafts[made.id].lines] == ["ANV-1", "SETUP"]
    assert books.quote_drafts[made.id].reference.startswith(f"pipedrive-quote-{deal['id']} ")
    written = pipedrive.custom_values("deal", deal["id"])
    assert (written["closeloop_quote_number"], written["closeloop_quote_status"]) == (made.number, "SENT")
    # When a product's quantity changes while the deal is still quoted
    (first, _) = pipedrive.deal_products(deal["id"])
    pipedrive.update_deal_product(deal["id"], first["id"], {"quantity": 3})
    # Then the same accounting quote is revised in place, revision 1 on the deal
    assert sync.sync(quote_ref).action == "updated"
    assert len(books.quotes) == 1
    assert books.quote_drafts[made.id].lines[0].quantity == Decimal(3)
    assert pipedrive.custom_values("deal", deal["id"])["closeloop_quote_revision"] == "1"
