"""The HubSpot adapter's catalogue calls (products read, listed live and archived, polled; line items with their
product; the supplier property made) and the sandbox's answers and ``product.*`` webhooks, held against HubSpot's
published contract (operations.json). The pair loop makes no product yet, so this drives the calls itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import FatalError
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import Exchange, SandboxServer, recording
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve
from closeloop_local.setup import PRODUCT_PROPERTIES
from tests.contracts.contract import load


class SmallPages(HubSpotCrm):
    LIST_PAGE_SIZE: ClassVar[int] = 2


def _adapter(hubspot: HubSpotSandbox, url: str) -> HubSpotCrm:
    return SmallPages(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=url,
        sleep=lambda s: None,
        portal_id=hubspot.portal_id,
    )


def _catalogue_calls(hubspot: HubSpotSandbox, adapter: HubSpotCrm, target: str) -> None:
    """Every catalogue call the adapter makes, each at least once, and product webhooks sent to ``target``."""
    hubspot.configure_webhooks(
        {
            "target_url": target,
            "mode": "manual",
            "subscriptions": ["product.creation", "product.propertyChange", "product.deletion"],
        }
    )
    start = datetime.now(UTC) - timedelta(seconds=5)
    adapter.ensure_properties("product", PRODUCT_PROPERTIES)
    ids = [
        hubspot.create_object(
            "products",
            {"name": f"P{n}", "hs_sku": f"SKU-{n}", "price": "9.90", "closeloop_supplier": "Acme"},
        )["id"]
        for n in range(3)
    ]
    hubspot.update_object("products", ids[0], {"price": "10"})
    hubspot.archive_object("products", ids[2])
    deal = hubspot.create_object("deals", {"dealname": "Order", "pipeline": "default", "dealstage": "closedwon"})
    hubspot.create_object(
        "line_items", {"hs_product_id": str(ids[0]), "quantity": "1"}, [{"to_type": "deals", "to_id": deal["id"]}]
    )
    assert adapter.get_product(str(ids[0])) is not None
    assert adapter.get_product(str(ids[2])) is not None  # the archived read
    assert adapter.get_product("999") is None  # two 404s
    assert len(list(adapter.iter_products())) == 3  # live pages, then the archived page
    assert any(e.ref.object_type == "product" for e in adapter.iter_changes_since(start))
    deal_read = adapter.get_deal(str(deal["id"]))
    assert deal_read is not None and deal_read.line_items[0].product_id == str(ids[0])
    hubspot.flush_webhooks()


def test_the_catalogue_exchanges_and_product_webhooks_follow_hubspots_contract() -> None:
    webhooks: list[bytes] = []

    def receive(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        webhooks.append(Request(environ).get_data())
        return Response("", status=200)(environ, start_response)

    # Given the adapter's catalogue calls recorded against the sandbox, one without the products scope too
    with recording() as recorder, SandboxServer(receive) as receiver:
        hubspot, server = serve()
        refused, refused_server = serve(HubSpotSandbox(product_scope=False))
        try:
            _catalogue_calls(hubspot, _adapter(hubspot, server.url), f"{receiver.url}/webhooks/hubspot/contacts")
            product = refused.create_object("products", {"name": "Widget"})
            with pytest.raises(FatalError):
                _adapter(refused, refused_server.url).get_product(str(product["id"]))
        finally:
            for sandbox, running in ((hubspot, server), (refused, refused_server)):
                sandbox.close()
                running.stop()
    exchanges: list[Exchange] = [e for e in recorder.exchanges if e.path.startswith(("/crm", "/account-info"))]
    contract = load("hubspot")
    # When each exchange and each webhook body is held against the contract
    violations = [v for exchange in exchanges for v in contract.check(exchange)]
    violations += [v for body in webhooks for v in contract.check_webhook("event", body)]
    # Then none departs from it, and every kind of call was made (list, read, search, properties, 403)
    assert not violations, "\n".join(sorted({str(v) for v in violations}))
    assert webhooks
    made = {(e.method, e.path, e.status) for e in exchanges}
    assert ("GET", "/crm/v3/objects/products", 200) in made
    assert ("POST", "/crm/v3/objects/products/search", 200) in made
    assert ("POST", "/crm/v3/properties/products", 201) in made
    assert ("GET", "/crm/v3/objects/products/999", 404) in made
    assert any(status == 403 and path.startswith("/crm/v3/objects/products/") for _, path, status in made)
