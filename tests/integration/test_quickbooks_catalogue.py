"""The QuickBooks catalogue (items) against the QuickBooks sandbox over HTTP: create, match, update, rename,
limits, paging, accounts, errors, and ProductSync over the adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest

from closeloop.errors import Conflict, NotFound, RetriableError, ValidationFailed
from closeloop.models import CrmRef, ItemDraft, SyncEvent
from closeloop.sync.products import ProductSync
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox, serve
from tests.fakes import FakeCatalogueCrm, MemoryStore
from tests.quickbooks_adapters import adapter

API = "/v3/company/*"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    qbo, server = serve()
    yield qbo, server
    server.stop()


def widget(**kw: Any) -> ItemDraft:
    values: dict[str, Any] = {
        "code": "WIDGET-1",
        "name": "Blue widget",
        "description": "A widget, blue",
        "unit_price": Decimal("12.50"),
    }
    values.update(kw)
    return ItemDraft(**values)


def items_named(qbo: QuickBooksSandbox, name: str) -> list[dict[str, Any]]:
    return [row for row in qbo.rows("Item") if row["Name"] == name]


def test_create_then_find_by_sku_with_every_field(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    # When an item is created from a draft with a cost
    created = books.create_item(widget(unit_cost=Decimal("4.00")), idempotency_key="item-1")
    # Then QuickBooks holds it with the SKU as Sku, the name as Name, the cost and the default accounts
    row = items_named(qbo, "Blue widget")[0]
    assert (row["Sku"], row["Description"], row["Type"]) == ("WIDGET-1", "A widget, blue", "Service")
    assert (row["UnitPrice"], row["PurchaseCost"]) == (Decimal("12.50"), Decimal("4.00"))
    assert row["IncomeAccountRef"]["value"] == "1"  # the Income account with the lowest Id
    assert row["ExpenseAccountRef"]["value"] == "80"  # Cost of Goods Sold, required once PurchaseCost is given
    # And it is found again by its code, case-insensitively, with id and comparable fields
    found = books.get_items(["WIDGET-1", "widget-1", "NOPE"])
    assert set(found) == {"WIDGET-1", "widget-1"}
    assert found["WIDGET-1"].id == created.id == row["Id"]
    assert found["WIDGET-1"].fields == {
        "name": "Blue widget",
        "description": "A widget, blue",
        "unit_price": "12.5",
        "unit_cost": "4",
        "tax_code": "",
        "sales_account": "1",
        "purchase_account": "80",
    }


def test_a_repeated_create_replays_and_a_taken_name_is_a_conflict(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    first = books.create_item(widget(), idempotency_key="item-1")
    # When the same create is sent again (a retry after a lost answer), Then QBO replays the first answer
    assert books.create_item(widget(), idempotency_key="item-1").id == first.id
    assert len(qbo.rows("Item")) == 1
    # When another product with the same name is created, Then QBO's 6240 is a Conflict
    with pytest.raises(Conflict):
        books.create_item(widget(code="WIDGET-2"), idempotency_key="item-2")


class LoseFirstItemAnswer(httpx.HTTPTransport):
    """Delivers every request; the answer to the first item write is lost on the way back."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/item") and not self.lost:
            self.lost += 1
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_lost_create_answer_is_retried_with_the_same_requestid(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    transport = LoseFirstItemAnswer()
    books = adapter(qbo, server.url, transport=transport)
    # When QBO creates the item but its answer is lost
    item = books.create_item(widget(), idempotency_key="item-1")
    # Then the retry carried the same requestid and got the first item back: one item
    writes = qbo.state.calls("POST", f"{API}/item")
    assert transport.lost == 1 and len(writes) == 2
    assert len({w.query for w in writes}) == 1
    assert [row["Id"] for row in qbo.rows("Item")] == [item.id]


def test_an_item_of_the_older_convention_is_found_by_name_and_gets_its_sku(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    # Given an item made before SKUs were written: Name is the code, the display name in Description
    QuickBooksDriver(qbo).seed_item("WIDGET-1", "Blue widget", Decimal("10"))
    books = adapter(qbo, server.url)
    found = books.get_items(["WIDGET-1"])["WIDGET-1"]
    assert (found.name, found.fields["name"]) == ("Blue widget", "WIDGET-1")
    # When its name is written
    saved = books.update_item(found, widget(), ["name"], idempotency_key="u-1")
    # Then the Name is the product's, the Sku the code (so it is still found), the price untouched
    row = qbo.rows("Item")[0]
    assert (row["Name"], row["Sku"], row["UnitPrice"]) == ("Blue widget", "WIDGET-1", Decimal("10"))
    assert saved.fields["name"] == "Blue widget"
    assert books.get_items(["WIDGET-1"])["WIDGET-1"].id == found.id


def test_an_item_whose_sku_names_another_code_is_not_taken_by_its_name(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    qbo.seed("Item", Name="WIDGET-1", Sku="OTHER", Type="Service", IncomeAccountRef={"value": "1"})
    books = adapter(qbo, server.url)
    assert books.get_items(["WIDGET-1"]) == {}
    assert set(books.get_items(["OTHER"])) == {"OTHER"}


def test_update_writes_only_the_named_fields_and_renames_the_code(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    item = books.create_item(widget(), idempotency_key="item-1")
    # Given finance edited the description in QuickBooks
    qbo.edit("Item", item.id, Description="Finance's words")
    # When only the price is written
    saved = books.update_item(
        item, widget(unit_price=Decimal("15"), description="ignored"), ["unit_price"], idempotency_key="u-1"
    )
    # Then only the price changed, through a sparse update with the current SyncToken
    row = qbo.rows("Item")[0]
    assert (row["UnitPrice"], row["Description"], row["Name"]) == (Decimal("15"), "Finance's words", "Blue widget")
    assert saved.fields["unit_price"] == "15"
    sent = [r for r in qbo.state.calls("POST", f"{API}/item") if b'"Id"' in r.body]
    assert sent and b'"sparse": true' in sent[-1].body.replace(b'"sparse":true', b'"sparse": true')
    # When the code is renamed
    renamed = books.update_item(saved, widget(code="WIDGET-9"), ["code"], idempotency_key="u-2")
    # Then the item is found by the new code only
    assert renamed.code == "WIDGET-9"
    assert set(books.get_items(["WIDGET-1", "WIDGET-9"])) == {"WIDGET-9"}
    assert qbo.rows("Item")[0]["Sku"] == "WIDGET-9"


def test_update_of_a_gone_item_is_not_found(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    item = books.create_item(widget(), idempotency_key="item-1")
    qbo.edit("Item", item.id, Active=False)  # QBO "deletes" an item by making it inactive
    with pytest.raises(NotFound):
        books.update_item(item, widget(), ["name"], idempotency_key="u-1")


def test_limits_are_the_published_ones_and_the_sandbox_refuses_longer(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    limits = books.item_limits
    assert (limits.code, limits.name, limits.description) == (100, 100, 4000)
    with pytest.raises(ValidationFailed, match="Max:100"):
        books.create_item(widget(name="N" * 101), idempotency_key="long-name")
    with pytest.raises(ValidationFailed, match="Max:100"):
        books.create_item(widget(code="C" * 101), idempotency_key="long-code")
    books.create_item(widget(name="N" * 100, code="C" * 100, description="D" * 4000), idempotency_key="ok")
    assert len(qbo.rows("Item")) == 1


class SmallPages(QuickBooksAccounting):
    MAX_RESULTS: ClassVar[int] = 2


def test_iter_items_pages_through_active_sellable_items(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    for n in range(5):
        qbo.seed("Item", Name=f"Item {n}", Sku=f"SKU-{n}", Type="Service", IncomeAccountRef={"value": "1"})
    qbo.seed("Item", Name="Old", Sku="SKU-OLD", Type="Service", IncomeAccountRef={"value": "1"}, Active=False)
    qbo.seed("Item", Name="A category", Type="Category")
    books = adapter(qbo, server.url, cls=SmallPages)
    codes = [item.code for item in books.iter_items()]
    # Then every active sellable item came, over several pages of 2
    assert codes == [f"SKU-{n}" for n in range(5)]
    assert len(qbo.state.calls("GET", f"{API}/query")) >= 3


def test_two_items_with_one_sku_are_refused_not_guessed(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    for name in ("One", "Two"):
        qbo.seed("Item", Name=name, Sku="DUP", Type="Service", IncomeAccountRef={"value": "1"})
    books = adapter(qbo, server.url)
    with pytest.raises(ValidationFailed, match="several items with SKU 'DUP'"):
        books.get_items(["DUP"])


def _with_accounts(qbo: QuickBooksSandbox, url: str, income: str, expense: str = "") -> QuickBooksAccounting:
    return adapter(qbo, url, item_income_account=income, item_expense_account=expense)


def test_accounts_named_in_settings_are_used_and_an_unknown_one_is_refused(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = _with_accounts(qbo, server.url, "sales of product income", "7")
    books.create_item(widget(unit_cost=Decimal("3")), idempotency_key="item-1")
    row = qbo.rows("Item")[0]
    assert (row["IncomeAccountRef"]["value"], row["ExpenseAccountRef"]["value"]) == ("79", "7")
    # The draft's own accounts win over the settings
    books.create_item(widget(code="W2", name="W2", sales_account="1"), idempotency_key="item-2")
    assert items_named(qbo, "W2")[0]["IncomeAccountRef"]["value"] == "1"
    # An account the company lacks is a ValidationFailed naming the setting, and nothing is created
    missing = _with_accounts(qbo, server.url, "No such account")
    with pytest.raises(ValidationFailed, match="QUICKBOOKS_ITEM_INCOME_ACCOUNT"):
        missing.create_item(widget(code="W3", name="W3"), idempotency_key="item-3")
    assert len(qbo.rows("Item")) == 2


# -- ProductSync over the adapter and its sandbox ---------------------------------------------------------


class CrashAfterCreate(QuickBooksAccounting):
    """QBO creates the item, then the worker dies before it hears back (once)."""

    crashed = False

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Any:
        item = super().create_item(draft, idempotency_key=idempotency_key)
        if not CrashAfterCreate.crashed:
            CrashAfterCreate.crashed = True
            raise RetriableError("the worker died after the create", vendor="quickbooks")
        return item


def _event(ref: CrmRef, key: str) -> SyncEvent:
    return SyncEvent(
        ref=ref, event_id=key, kind="changed", occurred_at=NOW, source_type="product.change", dedupe_key=key
    )


def test_product_sync_creates_once_finds_after_a_lost_answer_and_updates(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    crm, store = FakeCatalogueCrm(), MemoryStore()
    books = adapter(qbo, server.url, cls=CrashAfterCreate)
    CrashAfterCreate.crashed = False
    sync = ProductSync(crm, books, store, owner="worker-1", clock=lambda: NOW)
    ref = crm.add("p1", sku="WIDGET-1", name="Blue widget", description="A widget", unit_price=Decimal("12.50"))
    # When the first sync's create answer is lost, Then the sync fails retriably
    with pytest.raises(RetriableError):
        sync.sync(ref, [_event(ref, "e1")])
    # When it runs again, Then it finds the item by SKU instead of creating a second
    again = sync.sync(ref, [_event(ref, "e1")])
    assert again.action == "matched"
    assert len(qbo.rows("Item")) == 1
    # When the CRM's price and name change, Then the item is updated in place
    crm.add("p1", sku="WIDGET-1", name="Blue widget XL", description="A widget", unit_price=Decimal("14"))
    updated = sync.sync(ref, [_event(ref, "e2")])
    assert updated.action == "updated"
    row = qbo.rows("Item")[0]
    assert (row["Name"], row["UnitPrice"], row["Sku"]) == ("Blue widget XL", Decimal("14"), "WIDGET-1")
    # And a sync with nothing new changes nothing
    assert sync.sync(ref, [_event(ref, "e3")]).action == "unchanged"
    assert len(qbo.rows("Item")) == 1
