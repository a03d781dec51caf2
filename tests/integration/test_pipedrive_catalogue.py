"""The Pipedrive adapter's product catalogue (CatalogueCrm) against the Pipedrive sandbox over HTTP: products
read with SKU, price, cost and supplier; paging; errors; product events from webhooks and the catch-up poll;
and ``ProductSync`` over the adapter (a fake accounting side) creating, re-finding and updating one item."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import AuthRevoked, RetriableError
from closeloop.models import CrmRef, SyncEvent
from closeloop.ports import PropertyDefinition
from closeloop.sync.products import ProductSync
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.fakes import FakeCatalogueBooks, MemoryStore, ProcessKilled

SUPPLIER = PropertyDefinition("closeloop_supplier", "Supplier", description="Who Closeloop orders it from")


@pytest.fixture
def sandbox() -> Iterator[tuple[PipedriveSandbox, SandboxServer]]:
    pipedrive, server = serve()
    yield pipedrive, server
    server.stop()


def crm(pipedrive: PipedriveSandbox, url: str, **kwargs: Any) -> PipedriveCrm:
    return PipedriveCrm(api_token=lambda: pipedrive.api_token, base_url=url, sleep=lambda s: None, **kwargs)


def ref(object_id: object) -> CrmRef:
    return CrmRef(crm="pipedrive", object_type="product", object_id=str(object_id))


def test_setup_makes_the_supplier_product_field_without_a_description_once(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    adapter = crm(pipedrive, server.url)
    # When the product properties are ensured twice
    assert adapter.ensure_properties("product", [SUPPLIER]) == ["closeloop_supplier"]
    assert adapter.ensure_properties("product", [SUPPLIER]) == []
    # Then one product field exists, made by POST /api/v2/productFields without a description (its add request
    # documents none), as a text field
    posts = pipedrive.state.calls("POST", "/api/v2/productFields")
    assert len(posts) == 1
    assert json.loads(posts[0].body) == {"field_name": "closeloop_supplier", "field_type": "varchar"}
    assert pipedrive.field_key("product", "closeloop_supplier") is not None


def test_a_product_reads_with_its_sku_price_cost_and_supplier(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    adapter = crm(pipedrive, server.url)
    adapter.ensure_properties("product", [SUPPLIER])
    key = pipedrive.field_key("product", "closeloop_supplier")
    assert key is not None
    made = pipedrive.create(
        "product",
        {
            "name": "Widget",
            "code": "WIDGET-1",
            "description": "A widget",
            "prices": [{"currency": "eur", "price": "12.50", "cost": "4.20"}],
            "custom_fields": {key: "Acme Supplies"},
        },
    )
    # When it is read
    product = adapter.get_product(str(made["id"]))
    # Then every value is Pipedrive's, money exact
    assert product is not None
    assert (product.ref, product.sku, product.name, product.description) == (
        ref(made["id"]),
        "WIDGET-1",
        "Widget",
        "A widget",
    )
    assert (product.unit_price, product.unit_cost, product.currency) == (Decimal("12.50"), Decimal("4.20"), "EUR")
    assert (product.supplier, product.archived) == ("Acme Supplies", False)
    assert product.updated_at is not None
    # And one price needs no currency choice: the user is never asked for
    assert pipedrive.state.calls("GET", "/v1/users/me") == []


def test_among_several_prices_the_users_default_currency_is_the_unit_price(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    several = pipedrive.create(
        "product",
        {
            "name": "Gadget",
            "code": "G-1",
            "prices": [{"currency": "EUR", "price": 9, "cost": 3}, {"currency": "USD", "price": "10.99", "cost": 0}],
        },
    )
    foreign = pipedrive.create(
        "product",
        {"name": "Far", "code": "F-1", "prices": [{"currency": "EUR", "price": 1}, {"currency": "GBP", "price": 2}]},
    )
    adapter = crm(pipedrive, server.url)
    # When the two are read
    gadget, far = adapter.get_product(str(several["id"])), adapter.get_product(str(foreign["id"]))
    # Then the USD price (the sandbox user's default currency) is the unit price, and a cost of 0 is no cost
    assert gadget is not None and (gadget.unit_price, gadget.unit_cost, gadget.currency) == (
        Decimal("10.99"),
        None,
        "USD",
    )
    # And a product with no price in that currency has none (never a price in another currency)
    assert far is not None and (far.unit_price, far.unit_cost, far.currency) == (None, None, "")
    # And the user was read once
    assert len(pipedrive.state.calls("GET", "/v1/users/me")) == 1


def test_a_missing_or_deleted_product_is_none(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    gone = pipedrive.create("product", {"name": "Gone", "code": "GONE"})
    pipedrive.delete("product", gone["id"])
    adapter = crm(pipedrive, server.url)
    assert adapter.get_product(str(gone["id"])) is None
    assert adapter.get_product("98765") is None
    assert adapter.get_product("not-an-id") is None


def test_iter_products_pages_over_the_whole_catalogue_without_the_deleted(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    made = [pipedrive.create("product", {"name": f"P{i}", "code": f"SKU-{i}"}) for i in range(5)]
    pipedrive.delete("product", made[2]["id"])
    adapter = crm(pipedrive, server.url)
    adapter.PAGE_SIZE = 2  # type: ignore[misc]
    # When the catalogue is listed two at a time
    products = list(adapter.iter_products())
    # Then every live product comes once, oldest first, over two pages, each with its default price of 0
    assert [p.sku for p in products] == ["SKU-0", "SKU-1", "SKU-3", "SKU-4"]
    assert all(p.unit_price == Decimal(0) and p.currency == "USD" for p in products)
    assert len(pipedrive.state.calls("GET", "/api/v2/products")) == 2


def test_a_refused_token_and_server_errors_surface_as_their_errors(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    made = pipedrive.create("product", {"name": "Widget", "code": "W"})
    # A revoked token is a setup error
    with pytest.raises(AuthRevoked):
        list(PipedriveCrm(api_token="wrong", base_url=server.url, sleep=lambda s: None).iter_products())
    # A lasting server error is retried, then surfaces as retriable
    pipedrive.state.faults.append(Fault(f"/api/v2/products/{made['id']}", 503, times=10))
    with pytest.raises(RetriableError):
        crm(pipedrive, server.url).get_product(str(made["id"]))


class Inbox:
    """A webhook receiver keeping each delivery's body (every delivery answered 200)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.bodies.append(Request(environ).get_data())
        return Response("{}", status=200)(environ, start_response)


def product_events(adapter: PipedriveCrm, bodies: list[bytes]) -> list[SyncEvent]:
    return [e for body in bodies for e in adapter.parse_webhook(body) if e.ref.object_type == "product"]


def test_product_webhooks_and_the_catch_up_poll_give_product_events(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    inbox = Inbox()
    hooks = SandboxServer(inbox).start()
    try:
        pipedrive.add_webhook({"subscription_url": hooks.url, "event_action": "*", "event_object": "product"})
        since = datetime.fromtimestamp(int(pipedrive.now()), UTC)
        made = pipedrive.create("product", {"name": "Widget", "code": "W"})
        pipedrive.update("product", made["id"], {"prices": [{"currency": "USD", "price": 12}]})
        gone = pipedrive.create("product", {"name": "Gone", "code": "G"})
        pipedrive.delete("product", gone["id"])
        pipedrive.flush_webhooks(force=True)
        adapter = crm(pipedrive, server.url)
        # When the deliveries are parsed
        events = product_events(adapter, inbox.bodies)
        # Then each is a product event for the contacts pipeline, by kind, deduplicated by Pipedrive's event id
        assert [(e.ref, e.kind, e.source_type) for e in events] == [
            (ref(made["id"]), "created", "product.create"),
            (ref(made["id"]), "changed", "product.change"),
            (ref(gone["id"]), "created", "product.create"),
            (ref(gone["id"]), "deleted", "product.delete"),
        ]
        assert len({e.dedupe_key for e in events}) == 4
        # And the catch-up poll finds the same products, the deleted one as deleted
        polled = {e.ref: e.kind for e in adapter.iter_changes_since(since)}
        assert polled == {ref(made["id"]): "changed", ref(gone["id"]): "deleted"}
        assert "product" in pipedrive.state.calls("GET", "/v1/recents")[0].query
    finally:
        hooks.stop()


def test_product_sync_over_pipedrive_creates_one_item_refinds_it_after_a_lost_answer_and_updates_it(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    adapter = crm(pipedrive, server.url)
    adapter.ensure_properties("product", [SUPPLIER])
    made = pipedrive.create(
        "product",
        {"name": "Widget", "code": "WIDGET-1", "description": "A widget",
         "prices": [{"currency": "USD", "price": "12.50", "cost": "4"}]},
    )  # fmt: skip
    books, store = FakeCatalogueBooks(lose_create_answer=True), MemoryStore()
    sync = ProductSync(adapter, books, store, owner="worker-1", clock=lambda: datetime.now(UTC))
    # When the first sync creates the item but its answer is lost
    with pytest.raises(ProcessKilled):
        sync.sync(ref(made["id"]))
    # And the event is retried
    again = sync.sync(ref(made["id"]))
    # Then the item made before is found by its code and linked: one item, one create
    assert again.action == "matched"
    assert list(books.items) == ["WIDGET-1"]
    assert [w[0] for w in books.writes] == ["create"]
    assert books.items["WIDGET-1"].fields == {
        "name": "Widget",
        "description": "A widget",
        "unit_price": "12.5",
        "unit_cost": "4",
    }
    # When the price and the name change in Pipedrive
    pipedrive.update("product", made["id"], {"name": "Widget Pro", "prices": [{"currency": "USD", "price": "14"}]})
    updated = sync.sync(ref(made["id"]))
    # Then only those CRM-owned fields are written to the same item
    assert updated.action == "updated"
    assert books.writes[-1] == ("update", "WIDGET-1", ("name", "unit_price"))
    assert books.items["WIDGET-1"].fields["unit_price"] == "14"
    assert books.items["WIDGET-1"].fields["name"] == "Widget Pro"
    assert len(books.items) == 1
