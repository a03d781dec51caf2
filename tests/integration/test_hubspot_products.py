"""The HubSpot adapter's product catalogue (CatalogueCrm) against the HubSpot sandbox over HTTP: products read
live and archived, listed page by page, found by the catch-up poll and by ``product.*`` webhooks, line items
naming their product, the supplier property made by setup, and ProductSync over all of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import FatalError
from closeloop.models import CrmRef
from closeloop.sync.products import ProductSync
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import LoggedRequest, SandboxServer
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve
from closeloop_local.setup import PRODUCT_PROPERTIES, ensure_crm_properties
from tests.fakes import FakeCatalogueBooks, MemoryStore, ProcessKilled

Sandbox = tuple[HubSpotSandbox, SandboxServer]


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    opened: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        pair = serve(HubSpotSandbox(**kwargs))
        opened.append(pair)
        return pair

    yield make
    for hubspot, server in opened:
        hubspot.close()
        server.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


def crm(hubspot: HubSpotSandbox, url: str, cls: type[HubSpotCrm] = HubSpotCrm) -> HubSpotCrm:
    return cls(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=url,
        sleep=lambda s: None,
        portal_id=hubspot.portal_id,
    )


def with_supplier_property(hubspot: HubSpotSandbox, url: str) -> HubSpotCrm:
    adapter = crm(hubspot, url)
    adapter.ensure_properties("product", PRODUCT_PROPERTIES)
    return adapter


def requests_to(hubspot: HubSpotSandbox, path: str) -> list[LoggedRequest]:
    return [r for r in hubspot.state.requests if r.path == path]


def query(request: LoggedRequest) -> dict[str, str]:
    return dict(parse_qsl(request.query))


def test_a_product_reads_with_exact_price_cost_and_supplier(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    # Given the supplier property made by setup, and a product of the library
    adapter = with_supplier_property(hubspot, server.url)
    made = hubspot.create_object(
        "products",
        {
            "name": "Widget",
            "description": "A blue widget",
            "price": "12.50",
            "hs_sku": "WIDGET-1",
            "hs_cost_of_goods_sold": "4.10",
            "closeloop_supplier": "Acme Supplies",
        },
    )
    # When it is read
    product = adapter.get_product(str(made["id"]))
    # Then every catalogue field is there, money exact
    assert product is not None
    assert product.ref == CrmRef(crm="hubspot", object_type="product", object_id=str(made["id"]))
    assert (product.sku, product.name, product.description, product.supplier) == (
        "WIDGET-1",
        "Widget",
        "A blue widget",
        "Acme Supplies",
    )
    assert (product.unit_price, product.unit_cost) == (Decimal("12.50"), Decimal("4.10"))
    assert not product.archived and product.updated_at is not None


def test_a_deleted_product_reads_as_archived_and_an_unknown_one_as_none(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)
    made = hubspot.create_object("products", {"name": "Old widget", "hs_sku": "OLD-1"})
    # Given the product deleted in HubSpot (archived, restorable)
    hubspot.archive_object("products", made["id"])
    # Then it reads with archived set, through a second read with archived=true
    product = adapter.get_product(str(made["id"]))
    assert product is not None and product.archived and product.sku == "OLD-1"
    reads = requests_to(hubspot, f"/crm/v3/objects/products/{made['id']}")
    assert [query(r).get("archived") for r in reads[-2:]] == ["false", "true"]
    # And an id HubSpot never had is None
    assert adapter.get_product("999") is None


class SmallPages(HubSpotCrm):
    LIST_PAGE_SIZE: ClassVar[int] = 2


def test_the_catalogue_lists_every_product_live_then_archived_page_by_page(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    # Given five live products and two deleted ones, listed two a page
    live = [hubspot.create_object("products", {"name": f"P{n}", "hs_sku": f"SKU-{n}"})["id"] for n in range(5)]
    gone = [hubspot.create_object("products", {"name": f"G{n}", "hs_sku": f"OLD-{n}"})["id"] for n in range(2)]
    adapter = crm(hubspot, server.url, SmallPages)
    for product_id in gone:
        hubspot.archive_object("products", product_id)
    before = len(requests_to(hubspot, "/crm/v3/objects/products"))
    # When the catalogue is listed
    products = list(adapter.iter_products())
    # Then each product comes once, the archived ones marked
    assert [p.ref.object_id for p in products] == [str(i) for i in (*live, *gone)]
    assert [p.archived for p in products] == [False] * 5 + [True] * 2
    # And it took three pages of live products and one of archived ones
    lists = requests_to(hubspot, "/crm/v3/objects/products")[before:]
    assert [(query(r).get("archived"), query(r).get("after")) for r in lists] == [
        ("false", None),
        ("false", str(live[2])),
        ("false", str(live[4])),
        ("true", None),
    ]


def test_a_product_the_app_may_not_read_is_a_fatal_error_for_product_reads(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    hubspot, server = make_sandbox(product_scope=False)
    made = hubspot.create_object("products", {"name": "Widget", "hs_sku": "W"})
    # Given a private app without crm.objects.products.read: reading a product is refused (403), not retried
    with pytest.raises(FatalError) as caught:
        crm(hubspot, server.url).get_product(str(made["id"]))
    assert caught.value.status == 403
    assert "MISSING_SCOPES" in str(caught.value)


def test_the_catch_up_poll_finds_changed_products(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)
    start = datetime.now(UTC) - timedelta(seconds=5)
    company = hubspot.create_object("companies", {"name": "Changed Ltd"})
    product = hubspot.create_object("products", {"name": "Widget", "hs_sku": "W-1", "price": "3"})
    # When the changes since the watermark are read
    events = list(adapter.iter_changes_since(start))
    # Then the product is among them, as a product change
    assert {str(e.ref) for e in events} == {f"hubspot/company/{company['id']}", f"hubspot/product/{product['id']}"}
    product_event = next(e for e in events if e.ref.object_type == "product")
    assert (product_event.kind, product_event.source_type) == ("changed", "product.poll")


def test_the_catch_up_poll_goes_on_without_the_products_scope(make_sandbox: Callable[..., Sandbox]) -> None:
    hubspot, server = make_sandbox(product_scope=False)
    start = datetime.now(UTC) - timedelta(seconds=5)
    company = hubspot.create_object("companies", {"name": "Changed Ltd"})
    hubspot.create_object("products", {"name": "Widget", "hs_sku": "W-1"})
    # When the poll runs for an app HubSpot refuses products (403)
    events = list(crm(hubspot, server.url).iter_changes_since(start))
    # Then companies, contacts and deals are still caught up, products skipped
    assert [str(e.ref) for e in events] == [f"hubspot/company/{company['id']}"]
    assert requests_to(hubspot, "/crm/v3/objects/products/search")[-1].status == 403


@pytest.fixture
def receiver() -> Iterator[tuple[list[bytes], str]]:
    bodies: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bodies.append(Request(environ).get_data())
        return Response("", status=200)(environ, start_response)

    with SandboxServer(app) as server:
        yield bodies, f"{server.url}/webhooks/hubspot/contacts"


def test_product_webhooks_parse_as_product_events(sandbox: Sandbox, receiver: tuple[list[bytes], str]) -> None:
    hubspot, server = sandbox
    bodies, target = receiver
    adapter = crm(hubspot, server.url)
    # Given the app subscribed to HubSpot's product events
    subscriptions = ["product.creation", "product.propertyChange:price", "product.deletion"]
    hubspot.configure_webhooks({"target_url": target, "mode": "manual", "subscriptions": subscriptions})
    # When a product is created, repriced and deleted
    made = hubspot.create_object("products", {"name": "Widget", "hs_sku": "W-1", "price": "3"})
    hubspot.update_object("products", made["id"], {"price": "4"})
    hubspot.archive_object("products", made["id"])
    hubspot.flush_webhooks()
    # Then the deliveries parse into product events of the right kinds, about that product
    events = [e for body in bodies for e in adapter.parse_webhook(body)]
    assert {str(e.ref) for e in events} == {f"hubspot/product/{made['id']}"}
    assert sorted(e.kind for e in events) == ["changed", "changed", "created", "deleted"]
    assert {e.property_name for e in events if e.kind == "changed"} == {"price"}


def test_a_deal_line_names_the_product_it_was_made_from(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    product = hubspot.create_object("products", {"name": "Widget", "hs_sku": "W-1", "price": "3"})
    deal = hubspot.create_object("deals", {"dealname": "Order", "pipeline": "default", "dealstage": "closedwon"})
    hubspot.create_object(
        "line_items",
        {"hs_product_id": str(product["id"]), "quantity": "2"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    hubspot.create_object(
        "line_items", {"name": "Custom work", "price": "10"}, associations=[{"to_type": "deals", "to_id": deal["id"]}]
    )
    # When the deal is read
    read = crm(hubspot, server.url).get_deal(str(deal["id"]))
    # Then the line made from a product names it (and HubSpot copied its SKU), the other names none
    assert read is not None
    assert [(li.sku, li.product_id) for li in read.line_items] == [("W-1", str(product["id"])), ("", "")]


def test_setup_makes_the_supplier_property_once(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)
    # When setup's property step runs twice against HubSpot
    ensure_crm_properties(adapter, "hubspot")
    ensure_crm_properties(adapter, "hubspot")
    # Then the supplier property exists in the product information group, made once
    posts = [r for r in requests_to(hubspot, "/crm/v3/properties/products") if r.method == "POST"]
    created = [json.loads(r.body) for r in posts]
    assert [(c["name"], c["groupName"], c["type"]) for c in created] == [
        ("closeloop_supplier", "productinformation", "string")
    ]
    out = capsys.readouterr().out
    assert "product: created 1 (closeloop_supplier), 0 already there" in out
    assert "product: created 0 (-), 1 already there" in out


# -- ProductSync over the adapter and its sandbox -----------------------------------------------------------


def test_product_sync_creates_one_item_survives_a_lost_answer_and_updates_it(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    adapter = with_supplier_property(hubspot, server.url)
    books, store = FakeCatalogueBooks(), MemoryStore()

    def product_sync() -> ProductSync:
        return ProductSync(adapter, books, store, owner="worker-1")

    made = hubspot.create_object(
        "products",
        {"name": "Widget", "description": "Blue", "price": "12.50", "hs_sku": "W-1", "hs_cost_of_goods_sold": "4"},
    )
    ref = CrmRef(crm="hubspot", object_type="product", object_id=str(made["id"]))
    # Given the item's create reaches the books but its answer is lost (the worker dies)
    books.lose_create_answer = True
    with pytest.raises(ProcessKilled):
        product_sync().sync(ref)
    store.leases.clear()  # the dead worker's lease ran out
    # When the product is synced again
    again = product_sync().sync(ref)
    # Then the item made before is found, not made twice, with HubSpot's values
    assert again.action == "matched"
    assert list(books.items) == ["W-1"]
    assert books.items["W-1"].fields == {
        "name": "Widget",
        "description": "Blue",
        "unit_price": "12.5",
        "unit_cost": "4",
    }
    # And a price change in HubSpot flows to the item, and only the price is written
    hubspot.update_object("products", made["id"], {"price": "13"})
    updated = product_sync().sync(ref)
    assert (updated.action, updated.detail) == ("updated", "unit_price")
    assert books.items["W-1"].fields["unit_price"] == "13"
    assert [w[0] for w in books.writes] == ["create", "update"]
