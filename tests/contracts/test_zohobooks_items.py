"""Every item request the Zoho Books adapter sends and every answer the sandbox gives, held against the
contract written from Zoho's items page (operations.json: List items, Create an Item, Get an item, Update an
item). No stack needed: the adapter talks to the sandbox directly while the recorder is on."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from closeloop.errors import Conflict
from closeloop.models import ItemDraft
from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox, serve
from tests.contracts.contract import load
from tests.sandbox_adapters import zohobooks_adapter


def _item_exchanges() -> list[Exchange]:
    """A catalogue's life in Zoho Books: create, a duplicate SKU, lookups, updates, a rename, the list. (An
    over-long name is the contract's violation, never sent: ProductSync fits names to ``item_limits``.)"""
    with recording() as recorder:
        zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
        try:
            books = zohobooks_adapter(zoho, server.url)
            zoho.seed_item(sku="SVC", name="Service", rate="50")
            draft = ItemDraft(code="WIDGET-1", name="Widget", description="A widget", unit_price=Decimal("12.50"))
            item = books.create_item(draft.model_copy(update={"unit_cost": Decimal("4")}), idempotency_key="k-1")
            with pytest.raises(Conflict):
                books.create_item(draft, idempotency_key="k-2")
            books.update_item(
                item, draft.model_copy(update={"code": "WIDGET-A"}), ["code", "name"], idempotency_key="u"
            )
            service = books.get_items(["SVC"])["SVC"]
            books.update_item(
                service,
                ItemDraft(code="SVC", name="Service", unit_cost=Decimal(20)),
                ["unit_cost"],
                idempotency_key="u2",
            )
            list(books.iter_items())
        finally:
            server.stop()
    return [e for e in recorder.exchanges if e.path.startswith("/books/v3/items")]


def test_every_item_exchange_follows_zoho_s_items_page() -> None:
    # Given the item exchanges of a catalogue's life
    exchanges = _item_exchanges()
    contract = load("zohobooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert operations == {
        "GET /books/v3/items",
        "POST /books/v3/items",
        "GET /books/v3/items/{item_id}",
        "PUT /books/v3/items/{item_id}",
    }
    # When each is held against the contract
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    # Then none departs from it: the refusals too are Zoho's error envelope
    assert violations == []
    assert {e.status for e in exchanges} == {200, 201, 400}


def test_an_item_create_without_a_rate_or_with_a_field_zoho_does_not_list_is_a_violation() -> None:
    contract = load("zohobooks")

    def check(body: object) -> list[str]:
        exchange = Exchange(
            host="127.0.0.1:1",
            method="POST",
            path="/books/v3/items",
            query="",
            headers={"content-type": "application/json"},
            body=json.dumps(body).encode(),
            status=201,
            response_headers={"content-type": "application/json"},
            response_body=json.dumps({"code": 0, "message": "ok", "item": {"item_id": "1", "name": "W"}}).encode(),
        )
        return [v.message for v in contract.check(exchange)]

    assert check({"name": "W", "rate": 1}) == []
    assert any("rate" in m for m in check({"name": "W"}))
    assert any("code" in m for m in check({"name": "W", "rate": 1, "code": "W"}))
    assert any("100" in m or "long" in m for m in check({"name": "n" * 101, "rate": 1}))
