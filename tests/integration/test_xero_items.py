"""The Xero adapter's catalogue (CatalogueAccounting) against the Xero sandbox over HTTP: create, match,
update (a code rename too), limits, listing, errors, and ProductSync over it.

Published source of every request and answer: Xero's OpenAPI (xero_accounting.yaml: Item, Purchase,
getItems, createItems, getItem, updateItem); tests/contracts/test_xero_items.py holds them to it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from closeloop.errors import Conflict, NotFound, ValidationFailed
from closeloop.models import CrmRef, Item, ItemDraft, ItemLimits, SyncEvent
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.paging import PagingLoop
from closeloop.rules import FieldRules
from closeloop.sync.products import ProductSync
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.mapping import to_xero_item
from closeloop_local.sandboxes.base import LoggedRequest, SandboxServer
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.fakes import FakeCatalogueCrm, MemoryStore, ProcessKilled
from tests.sandbox_adapters import xero_adapter as adapter

API = "/api.xro/2.0"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
    yield xero, server
    server.stop()


@pytest.fixture
def xero(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroSandbox:
    return sandbox[0]


@pytest.fixture
def books(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroAccounting:
    xero, server = sandbox
    return adapter(xero, server.url)


def widget(**kw: Any) -> ItemDraft:
    values: dict[str, Any] = {
        "code": "WIDGET-1",
        "name": "Widget",
        "description": "A widget",
        "unit_price": Decimal("12.50"),
        "unit_cost": Decimal("4.00"),
    }
    values.update(kw)
    return ItemDraft(**values)


def seed_finance_item(xero: XeroSandbox, code: str = "WIDGET-1") -> dict[str, Any]:
    """An item as finance set it up: sales price, account and tax; cost and purchase account."""
    return xero.seed_item(
        Code=code,
        Name="Widget (finance)",
        Description="Finance's text",
        SalesDetails={"UnitPrice": "10.00", "AccountCode": "200", "TaxType": "OUTPUT2"},
        PurchaseDetails={"UnitPrice": "3.00", "AccountCode": "310", "TaxType": "INPUT2"},
    )


def sent(request: LoggedRequest) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.body, parse_float=Decimal)
    return body


def query(request: LoggedRequest) -> dict[str, list[str]]:
    return parse_qs(request.query)


# ---- limits and create ------------------------------------------------------------------------------------


def test_item_limits_are_xero_s_published_lengths(books: XeroAccounting) -> None:
    # XS Item: Code max 30, Name max 50, Description max 4000
    assert books.item_limits == ItemLimits(code=30, name=50, description=4000)


def test_create_sends_exact_money_and_a_key_and_answers_the_item(xero: XeroSandbox, books: XeroAccounting) -> None:
    # When an item is created from a draft
    created = books.create_item(widget(), idempotency_key="product-p1-create")

    # Then one PUT /Items carried the draft's decimals literally, the key, and no section value left unset
    [put] = xero.state.calls("PUT", f"{API}/Items")
    assert put.headers["idempotency-key"] == "product-p1-create"
    assert query(put)["unitdp"] == ["4"]
    assert b'"UnitPrice": 12.50' in put.body or b'"UnitPrice":12.50' in put.body
    assert sent(put) == {
        "Items": [
            {
                "Code": "WIDGET-1",
                "Name": "Widget",
                "Description": "A widget",
                "SalesDetails": {"UnitPrice": Decimal("12.50")},
                "PurchaseDetails": {"UnitPrice": Decimal("4.00")},
            }
        ]
    }
    # And the answer is the saved item: its ItemID and the comparable fields as Xero holds them
    assert created.id == xero.items()[0]["ItemID"] and created.code == "WIDGET-1"
    assert created.fields == {
        "name": "Widget",
        "description": "A widget",
        "unit_price": "12.5",
        "unit_cost": "4",
        "tax_code": "",
        "sales_account": "",
        "purchase_account": "",
    }


def test_get_items_finds_the_created_item_with_its_id_and_fields(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given an item finance set up
    seeded = seed_finance_item(xero)

    # When it is asked for by code (another case) along with a missing one
    found = books.get_items(["widget-1", "NOPE"])

    # Then it comes back keyed as asked, with its id and every comparable field
    assert set(found) == {"widget-1"}
    item = found["widget-1"]
    assert item.id == seeded["ItemID"]
    assert item.fields == {
        "name": "Widget (finance)",
        "description": "Finance's text",
        "unit_price": "10",
        "unit_cost": "3",
        "tax_code": "OUTPUT2",
        "sales_account": "200",
        "purchase_account": "310",
    }


def test_a_retried_create_with_the_same_key_makes_one_item(xero: XeroSandbox, books: XeroAccounting) -> None:
    # When the same create is sent twice with one key (a retry after a lost answer, within Xero's window)
    first = books.create_item(widget(), idempotency_key="product-p1-create")
    again = books.create_item(widget(), idempotency_key="product-p1-create")

    # Then Xero holds one item and both answers name it
    assert len(xero.items()) == 1
    assert first.id == again.id


def test_a_taken_code_is_a_conflict_not_a_retry(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given an item already coded widget-1 (codes are unique whatever their case)
    seed_finance_item(xero, "widget-1")

    # When another is created with that code, Then it is a Conflict, sent once
    with pytest.raises(Conflict, match="already exists"):
        books.create_item(widget(), idempotency_key="k-dup")
    assert len(xero.state.calls("PUT", f"{API}/Items")) == 1
    assert len(xero.items()) == 1


def test_a_code_longer_than_xero_takes_is_refused_as_validation_failed(books: XeroAccounting) -> None:
    with pytest.raises(ValidationFailed, match="Code must not be more than 30 characters"):
        books.create_item(widget(code="X" * 31), idempotency_key="k-long")


def test_an_unknown_account_is_refused_as_validation_failed(books: XeroAccounting) -> None:
    with pytest.raises(ValidationFailed, match="Account code '999'"):
        books.create_item(widget(sales_account="999"), idempotency_key="k-account")


# ---- update -------------------------------------------------------------------------------------------------


def test_update_writes_only_the_named_fields_inside_the_whole_section(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given finance's item, read as the sync reads it
    seed_finance_item(xero)
    item = books.get_items(["WIDGET-1"])["WIDGET-1"]

    # When only the price is written (the draft's other values differ too)
    saved = books.update_item(
        item, widget(name="CRM name", unit_price=Decimal("12.50")), ["unit_price"], idempotency_key="k-upd"
    )

    # Then one POST /Items/{ItemID} sent the code, and the sales section whole with only its price changed
    [post] = xero.state.calls("POST", f"{API}/Items/{item.id}")
    assert post.headers["idempotency-key"] == "k-upd"
    assert sent(post) == {
        "Items": [
            {
                "Code": "WIDGET-1",
                "SalesDetails": {"UnitPrice": Decimal("12.50"), "AccountCode": "200", "TaxType": "OUTPUT2"},
            }
        ]
    }
    # And Xero's item kept its name, account, tax and cost
    assert saved.id == item.id
    assert saved.fields == {**item.fields, "unit_price": "12.5"}
    assert xero.items()[0]["Name"] == "Widget (finance)"


def test_update_with_nothing_the_draft_sets_makes_no_write(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given an item, When the only field named is one the draft leaves empty ("not set by us")
    seed_finance_item(xero)
    item = books.get_items(["WIDGET-1"])["WIDGET-1"]
    saved = books.update_item(item, widget(description=""), ["description"], idempotency_key="k-none")

    # Then nothing is posted and the item is answered as it is
    assert xero.state.calls("POST", f"{API}/Items/{item.id}") == []
    assert saved.fields["description"] == "Finance's text"


def test_a_code_rename_keeps_the_item_and_frees_the_old_code(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given an item coded WIDGET-1
    created = books.create_item(widget(), idempotency_key="k-create")

    # When its code is renamed (SKU_ITEM_CODES now maps the SKU elsewhere)
    renamed = books.update_item(created, widget(code="WIDGET-ONE"), ["code"], idempotency_key="k-rename")

    # Then the same item (same ItemID) answers to the new code, and the old code is gone
    assert (renamed.id, renamed.code) == (created.id, "WIDGET-ONE")
    assert books.get_items(["WIDGET-1"]) == {}
    assert books.get_items(["WIDGET-ONE"])["WIDGET-ONE"].id == created.id
    assert len(xero.items()) == 1


def test_a_rename_to_a_taken_code_is_a_conflict(xero: XeroSandbox, books: XeroAccounting) -> None:
    created = books.create_item(widget(), idempotency_key="k-create")
    seed_finance_item(xero, "TAKEN")
    with pytest.raises(Conflict):
        books.update_item(created, widget(code="TAKEN"), ["code"], idempotency_key="k-rename")
    assert books.get_items(["WIDGET-1"])["WIDGET-1"].id == created.id


def test_updating_an_item_deleted_in_xero_is_not_found(books: XeroAccounting) -> None:
    gone = Item(code="WIDGET-1", id="0e9a2c4d-1111-4222-8333-444455556666")
    with pytest.raises(NotFound):
        books.update_item(gone, widget(), ["name"], idempotency_key="k-gone")


def test_an_item_without_an_id_is_found_by_code_before_the_update(xero: XeroSandbox, books: XeroAccounting) -> None:
    seeded = seed_finance_item(xero)
    saved = books.update_item(Item(code="WIDGET-1"), widget(), ["name"], idempotency_key="k-code")
    assert saved.id == seeded["ItemID"] and xero.items()[0]["Name"] == "Widget"


# ---- listing ------------------------------------------------------------------------------------------------


def test_iter_items_reads_every_item_in_one_unpaged_call(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given more items than one page of any paged Xero list
    for n in range(130):
        xero.seed_item(Code=f"SKU-{n:03d}", Name=f"Item {n}", SalesDetails={"UnitPrice": "1.00"})

    # When the catalogue is listed
    items = list(books.iter_items())

    # Then every item came back from one GET /Items (XS publishes no paging for it), with ids and fields
    assert len(items) == 130 and len({i.id for i in items}) == 130
    [call] = xero.state.calls("GET", f"{API}/Items")
    assert "page" not in query(call) and query(call)["unitdp"] == ["4"]
    assert items[0].fields["unit_price"] == "1"


def offline_adapter(handler: Any) -> XeroAccounting:
    tokens = RefreshingTokens(
        "xero",
        MemoryStore(),
        seed=lambda fresh: "refresh-token",
        refresh=lambda token: TokenGrant(access_token="access", expires_in=1800, refresh_token="rotated"),
        write_back=lambda token: None,
    )
    return XeroAccounting(
        base_url="https://api.xero.test",
        tokens=tokens,
        tenant_id=lambda: "tenant-1",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def _item_row(n: int) -> dict[str, Any]:
    return {"ItemID": f"00000000-0000-4000-8000-{n:012d}", "Code": f"SKU-{n}", "Name": f"Item {n}"}


def test_iter_items_follows_pages_when_an_answer_says_there_are_more() -> None:
    # Given a Xero that (against XS) answered GET /Items with a pagination of three pages
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = int(request.url.params.get("page", "1"))
        rows = [_item_row(page * 10 + n) for n in range(2)]
        return httpx.Response(200, json={"pagination": {"page": page, "pageCount": 3}, "Items": rows})

    # When the catalogue is listed, Then all three pages are read, the first without a page parameter
    items = list(offline_adapter(handler).iter_items())
    assert [i.code for i in items] == ["SKU-10", "SKU-11", "SKU-20", "SKU-21", "SKU-30", "SKU-31"]
    assert [r.url.params.get("page") for r in seen] == [None, "2", "3"]


def test_iter_items_refuses_a_page_answered_twice() -> None:
    # Given a Xero whose pagination says three pages but that answers page 1 whatever page is asked
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"pagination": {"page": 1, "pageCount": 3}, "Items": [_item_row(1)]})

    # When the catalogue is listed, Then the repeated page is a PagingLoop, not the same items again
    with pytest.raises(PagingLoop):
        list(offline_adapter(handler).iter_items())


def test_a_rename_answered_as_another_item_is_refused_not_linked() -> None:
    # Given a Xero that answered an update by id with another item (GUESSES["item_code_rename"] wrong)
    current = {**_item_row(1), "Code": "OLD"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"Items": [current]})
        return httpx.Response(200, json={"Items": [{**_item_row(2), "Code": "NEW"}]})

    books = offline_adapter(handler)
    item = Item(code="OLD", id=current["ItemID"])
    with pytest.raises(Exception, match="item_code_rename"):
        books.update_item(item, widget(code="NEW"), ["code"], idempotency_key="k")


# ---- mapping ------------------------------------------------------------------------------------------------


def test_a_tracked_item_s_purchase_account_is_its_cogs_account() -> None:
    # XS Purchase: AccountCode is not applicable to tracked items, COGSAccountCode only to them
    tracked = {"Code": "T", "IsTrackedAsInventory": True, "PurchaseDetails": {"COGSAccountCode": "310"}}
    body = to_xero_item(widget(purchase_account="311"), ["purchase_account"], tracked)
    assert body == {"Code": "T", "PurchaseDetails": {"COGSAccountCode": "311"}}
    untracked = to_xero_item(widget(purchase_account="311"), ["purchase_account"], {"Code": "U"})
    assert untracked == {"Code": "U", "PurchaseDetails": {"AccountCode": "311"}}


# ---- ProductSync over the adapter and its sandbox -------------------------------------------------------------


class LosingFirstCreateAnswer:
    """The Xero adapter whose first create reaches Xero but whose answer never comes back (a Lambda
    stopped mid-call): what the sync must survive without a second item."""

    def __init__(self, books: XeroAccounting) -> None:
        self.books = books
        self.name = books.name
        self.item_limits = books.item_limits
        self.lost = False

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        return self.books.get_items(codes)

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        item = self.books.create_item(draft, idempotency_key=idempotency_key)
        if not self.lost:
            self.lost = True
            raise ProcessKilled("after PUT /Items")
        return item

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        return self.books.update_item(item, draft, fields, idempotency_key=idempotency_key)

    def iter_items(self) -> Iterator[Item]:
        return self.books.iter_items()


def _event(ref: CrmRef, key: str) -> SyncEvent:
    return SyncEvent(
        ref=ref, event_id=key, kind="changed", occurred_at=NOW, source_type="product.change", dedupe_key=key
    )


def test_product_sync_creates_one_item_survives_a_lost_answer_and_updates_it(
    xero: XeroSandbox, books: XeroAccounting
) -> None:
    # Given a CRM product and the Xero adapter whose first create answer is lost
    crm = FakeCatalogueCrm(name="hubspot")
    ref = crm.add("p1", sku="WIDGET-1", name="Widget", description="A widget", unit_price=Decimal("12.50"))
    store = MemoryStore()
    losing = LosingFirstCreateAnswer(books)
    sync = ProductSync(crm, losing, store, owner="w1", clock=lambda: NOW, rules=FieldRules.load())

    # When the product syncs and the worker dies after Xero created the item
    with pytest.raises(ProcessKilled):
        sync.sync(ref, [_event(ref, "e1")])

    # Then the redelivery finds the item by its code and links it: still one item in Xero
    outcome = sync.sync(ref, [_event(ref, "e1")])
    assert outcome.action == "matched"
    assert len(xero.items()) == 1 and len(xero.state.calls("PUT", f"{API}/Items")) == 1
    item_id = xero.items()[0]["ItemID"]
    assert store.get_mapping(ref, "xero").accounting_id == item_id  # type: ignore[union-attr]

    # When the CRM's price and name change
    crm.add("p1", sku="WIDGET-1", name="Widget Pro", description="A widget", unit_price=Decimal("14.00"))
    updated = sync.sync(ref, [_event(ref, "e2")])

    # Then the same Xero item carries them, and nothing else was created
    assert updated.action == "updated"
    [stored] = xero.items()
    assert stored["ItemID"] == item_id and stored["Name"] == "Widget Pro"
    assert stored["SalesDetails"]["UnitPrice"] == Decimal("14.0000")

    # And a second delivery of the same change writes nothing
    assert sync.sync(ref, [_event(ref, "e2")]).action == "unchanged"
    assert len(xero.state.calls("POST", f"{API}/Items/{item_id}")) == 1
