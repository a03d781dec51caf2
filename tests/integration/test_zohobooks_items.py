"""The Zoho Books catalogue (CatalogueAccounting) against the Zoho Books sandbox over HTTP: create, match,
update with a SKU rename, the published limits, paging, errors, a lost create answer, and ProductSync on top."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop.errors import Conflict, NotFound, Unanswered, ValidationFailed
from closeloop.models import PRODUCT_FIELDS, CrmRef, ItemDraft, ItemLimits, SyncEvent
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.sync.products import ProductSync
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.zohobooks import PURCHASE_ACCOUNT, TAXES, ZohoBooksSandbox, serve
from tests.fakes import FakeCatalogueCrm, MemoryStore
from tests.sandbox_adapters import LoseAnswers
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on

API = "/books/v3"
VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield zoho, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> ZohoBooksAccounting:
    return books_on(sandbox[0], sandbox[1].url)


def widget(**kw: Any) -> ItemDraft:
    values: dict[str, Any] = {
        "code": "WIDGET-1",
        "name": "Widget",
        "description": "A widget",
        "unit_price": Decimal("12.50"),
        "unit_cost": Decimal("4.00"),
    }
    return ItemDraft(**(values | kw))


def calls(zoho: ZohoBooksSandbox, method: str, path: str) -> int:
    return len(zoho.state.calls(method, f"{API}{path}"))


def stored(zoho: ZohoBooksSandbox, sku: str) -> dict[str, Any]:
    (item,) = [i for i in zoho.items() if i["sku"] == sku]
    return item


# -- create and match -------------------------------------------------------------------------------------


def test_create_sends_the_draft_and_the_item_is_found_again_by_sku(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    # When an item is created from a draft with a cost
    created = books.create_item(widget(), idempotency_key="k-1")
    # Then Zoho holds it under the SKU, with price and cost exact, as an item sold and bought
    item = stored(zoho, "WIDGET-1")
    assert (item["name"], item["description"], item["rate"], item["purchase_rate"]) == (
        "Widget",
        "A widget",
        Decimal("12.50"),
        Decimal("4.00"),
    )
    assert item["item_type"] == "sales_and_purchases"
    body = json.loads(zoho.state.calls("POST", f"{API}/items")[-1].body)
    assert body["rate"] == 12.5 and "idempotency" not in json.dumps(body).lower()
    # And the answer is the canonical item: id, code, and every product field as Zoho holds it
    assert (created.id, created.code) == (item["item_id"], "WIDGET-1")
    assert created.fields == {
        "name": "Widget",
        "description": "A widget",
        "unit_price": "12.5",
        "unit_cost": "4",
        "tax_code": "",
        "sales_account": item["account_id"],
        "purchase_account": PURCHASE_ACCOUNT,
    }
    assert set(created.fields) == set(PRODUCT_FIELDS)
    # And a lookup by the code in another case finds the same item, with the same fields
    found = books.get_items(["widget-1", "NOPE"])
    assert list(found) == ["widget-1"]
    assert found["widget-1"] == created


def test_a_draft_without_a_cost_makes_a_sales_item_and_rate_is_required_so_no_price_is_zero(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    created = books.create_item(ItemDraft(code="SVC", name="Service", tax_code=VAT20), idempotency_key="k")
    item = stored(zoho, "SVC")
    assert (item["item_type"], item["rate"], item["tax_id"]) == ("sales", Decimal("0.00"), VAT20)
    assert (created.fields["unit_price"], created.fields["unit_cost"], created.fields["tax_code"]) == ("0", "0", VAT20)


def test_a_taken_sku_or_name_is_a_conflict_and_inactive_items_are_not_found(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    books.create_item(widget(), idempotency_key="k-1")
    zoho.seed_item(sku="OLD-1", name="Old thing", rate="1", status="inactive")
    # When a create names a SKU (any case) or a name another item holds
    with pytest.raises(Conflict):
        books.create_item(widget(code="widget-1", name="Other"), idempotency_key="k-2")
    with pytest.raises(Conflict):
        books.create_item(widget(code="WIDGET-2", name="WIDGET"), idempotency_key="k-3")
    # Then nothing was added; and an inactive item is no match
    assert len(zoho.items()) == 2
    assert books.get_items(["OLD-1"]) == {}


# -- update -----------------------------------------------------------------------------------------------


def test_update_writes_only_the_named_fields_and_keeps_finance_s_values(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    # Given an item finance made, with its own price, cost, tax and accounts
    row = zoho.seed_item(
        sku="WIDGET-1",
        name="Widget (finance)",
        rate="13.00",
        purchase_rate="4.20",
        item_type="sales_and_purchases",
        tax_id=VAT20,
        purchase_account_id="982000000000570",
    )
    item = books.get_items(["WIDGET-1"])["WIDGET-1"]
    assert item.fields["unit_cost"] == "4.2" and item.fields["purchase_account"] == "982000000000570"
    # When only the description is written
    saved = books.update_item(item, widget(description="Blue widget"), ["description"], idempotency_key="u")
    # Then the description changed and everything else is as finance left it
    now = stored(zoho, "WIDGET-1")
    assert now["description"] == "Blue widget"
    assert (now["name"], now["rate"], now["purchase_rate"], now["tax_id"]) == (
        "Widget (finance)",
        Decimal("13.00"),
        Decimal("4.20"),
        VAT20,
    )
    assert saved.id == row["item_id"] and saved.fields["description"] == "Blue widget"
    put = json.loads(zoho.state.calls("PUT", f"{API}/items/{row['item_id']}")[-1].body)
    assert set(put) == {"name", "rate", "description"}


def test_a_code_in_the_fields_renames_the_sku_and_a_taken_one_is_a_conflict(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    item = books.create_item(widget(), idempotency_key="k-1")
    books.create_item(widget(code="GADGET", name="Gadget"), idempotency_key="k-2")
    # When the code and the price are written
    renamed = books.update_item(
        item, widget(code="WIDGET-A", unit_price=Decimal("15")), ["code", "unit_price"], idempotency_key="u"
    )
    # Then the same item carries the new SKU and price; the old SKU finds nothing, the new one finds it
    assert (renamed.id, renamed.code, renamed.fields["unit_price"]) == (item.id, "WIDGET-A", "15")
    assert books.get_items(["WIDGET-1"]) == {}
    assert books.get_items(["WIDGET-A"])["WIDGET-A"].id == item.id
    # And a rename to a SKU another item holds is a conflict that changes nothing
    with pytest.raises(Conflict):
        books.update_item(renamed, widget(code="gadget"), ["code"], idempotency_key="u2")
    assert stored(zoho, "WIDGET-A")["item_id"] == item.id


def test_writing_a_cost_onto_a_sales_item_makes_it_sold_and_bought(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    zoho.seed_item(sku="SVC", name="Service", rate="50")
    item = books.get_items(["SVC"])["SVC"]
    saved = books.update_item(item, widget(code="SVC", unit_cost=Decimal("20")), ["unit_cost"], idempotency_key="u")
    assert stored(zoho, "SVC")["item_type"] == "sales_and_purchases"
    assert saved.fields["unit_cost"] == "20" and saved.fields["unit_price"] == "50"


def test_updating_an_item_that_is_gone_is_not_found(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    item = books.create_item(widget(), idempotency_key="k-1")
    del zoho.items_by_id[item.id]
    with pytest.raises(NotFound):
        books.update_item(item, widget(), ["name"], idempotency_key="u")


# -- limits, paging, list rows ------------------------------------------------------------------------------


def test_the_published_limits_are_declared_and_the_sandbox_holds_to_them(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    # Given the limits of the items page: name 100, description 2000, no SKU length published
    assert books.item_limits == ItemLimits(code=0, name=100, description=2000)
    # Then a name or a description one character over is refused, and at the limit is taken
    with pytest.raises(ValidationFailed):
        books.create_item(widget(name="n" * 101), idempotency_key="k-1")
    with pytest.raises(ValidationFailed):
        books.create_item(widget(description="d" * 2001), idempotency_key="k-2")
    books.create_item(widget(name="n" * 100, description="d" * 2000), idempotency_key="k-3")
    assert len(zoho.items()) == 1


def test_iter_items_walks_every_page_of_the_active_items(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    for n in range(5):
        zoho.seed_item(sku=f"SKU-{n}", name=f"Item {n}", rate=str(n + 1))
    zoho.seed_item(sku="GONE", name="Gone", rate="1", status="inactive")
    books = books_on(zoho, server.url, cls=PagesOfTwo)
    # When every item is read, two a page
    items = list(books.iter_items())
    # Then the five active ones come back, with their fields, over three pages
    assert [i.code for i in items] == [f"SKU-{n}" for n in range(5)]
    assert [i.fields["unit_price"] for i in items] == ["1", "2", "3", "4", "5"]
    assert calls(zoho, "GET", "/items") == 3


def test_list_rows_without_the_purchase_fields_are_read_in_full() -> None:
    # Given an organisation whose item list rows leave out cost and accounts (GUESSES["item_list_rows_full"])
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000, item_summaries=True))
    try:
        zoho.seed_item(sku="WIDGET-1", name="Widget", rate="13", purchase_rate="4.20", item_type="sales_and_purchases")
        books = books_on(zoho, server.url)
        # When the item is looked up by SKU
        item = books.get_items(["WIDGET-1"])["WIDGET-1"]
        # Then its cost is the one finance entered (read in full), never taken for missing
        assert item.fields["unit_cost"] == "4.2" and item.fields["purchase_account"] == PURCHASE_ACCOUNT
        assert calls(zoho, "GET", f"/items/{item.id}") == 1
    finally:
        server.stop()


def test_a_create_refused_otherwise_for_a_sku_that_now_exists_is_a_conflict() -> None:
    # Given Zoho refusing a create with a code the adapter does not know, while the SKU exists
    # (GUESSES["item_duplicate_code"])
    row = {"item_id": "9", "name": "Widget", "sku": "WIDGET-1", "rate": 1, "status": "active"}
    row |= {"purchase_rate": 0, "purchase_account_id": "", "account_id": "1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json={"code": 9999, "message": "This SKU is in use."})
        page = {"has_more_page": False}
        return httpx.Response(200, json={"code": 0, "message": "success", "items": [row], "page_context": page})

    tokens = RefreshingTokens(
        "zohobooks",
        MemoryStore(),
        seed=lambda fresh: "refresh-token",
        refresh=lambda token: TokenGrant(access_token="access", expires_in=3600, refresh_token=token),
        write_back=lambda token: None,
    )
    books = ZohoBooksAccounting(
        base_url="https://www.zohoapis.test",
        tokens=tokens,
        organization_id=lambda: "org-1",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    # Then the refusal is a Conflict (which the catalogue sync resolves by linking)
    with pytest.raises(Conflict):
        books.create_item(widget(), idempotency_key="k")


def test_a_lost_create_answer_is_never_resent(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/items"))
    # When Zoho makes the item and its answer is lost
    with pytest.raises(Unanswered):
        books.create_item(widget(), idempotency_key="k-1")
    # Then the create was sent once, and the item is there to be found
    assert calls(zoho, "POST", "/items") == 1
    assert list(books.get_items(["WIDGET-1"])) == ["WIDGET-1"]


# -- ProductSync over the adapter and its sandbox ------------------------------------------------------------


def _event(ref: CrmRef, key: str) -> SyncEvent:
    return SyncEvent(
        ref=ref, event_id=key, kind="changed", occurred_at=NOW, source_type="product.change", dedupe_key=key
    )


def _product_sync(crm: FakeCatalogueCrm, books: ZohoBooksAccounting, store: MemoryStore) -> ProductSync:
    return ProductSync(crm, books, store, owner="worker-1", clock=lambda: NOW)


def test_product_sync_creates_one_item_finds_it_after_a_lost_answer_and_updates_it(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/items"))
    crm, store = FakeCatalogueCrm(), MemoryStore()
    ref = crm.add("p1", sku="WIDGET-1", name="Widget", unit_price=Decimal("12.50"), unit_cost=Decimal("4"))
    sync: Callable[[str], Any] = lambda key: _product_sync(crm, books, store).sync(ref, [_event(ref, key)])  # noqa: E731
    # When the first sync's create reaches Zoho but its answer is lost
    with pytest.raises(Unanswered):
        sync("e1")
    # And the delivery is retried
    outcome = sync("e1")
    # Then the item made the first time is linked, not made again
    assert outcome.action == "matched"
    assert len(zoho.items()) == 1 and calls(zoho, "POST", "/items") == 1
    (item,) = zoho.items()
    assert store.get_mapping(ref, "zohobooks").accounting_id == item["item_id"]  # type: ignore[union-attr]
    # When the CRM renames the product and changes its price
    crm.add("p1", sku="WIDGET-1", name="Widget Pro", unit_price=Decimal("14.00"), unit_cost=Decimal("4"))
    outcome = sync("e2")
    # Then the same item carries the CRM's name and price, and finance's cost stays
    assert outcome.action == "updated"
    (item,) = zoho.items()
    assert (item["name"], item["rate"], item["purchase_rate"]) == ("Widget Pro", Decimal("14.00"), Decimal("4.00"))
    # And a repeated delivery writes nothing
    puts = calls(zoho, "PUT", "/items/*")
    assert sync("e2").action == "unchanged"
    assert calls(zoho, "PUT", "/items/*") == puts


def test_product_sync_shortens_a_long_name_to_zoho_s_limit(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    books = books_on(zoho, server.url)
    crm, store = FakeCatalogueCrm(), MemoryStore()
    ref = crm.add("p1", sku="LONG-1", name="L" * 130, unit_price=Decimal("1"))
    assert _product_sync(crm, books, store).sync(ref, [_event(ref, "e1")]).action == "created"
    (item,) = zoho.items()
    assert len(item["name"]) == 100 and item["name"].endswith("…")
