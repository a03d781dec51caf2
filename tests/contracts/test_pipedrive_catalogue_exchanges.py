"""Every request the Pipedrive adapter's catalogue makes, every answer the sandbox gives it and every product
webhook the sandbox sends, held against Pipedrive's contract (tests/contracts/pipedrive/operations.json, from
pipedrive/client-nodejs). The pair loop has no product scenario, so this runs the catalogue itself (no stack)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from closeloop.ports import PropertyDefinition
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes.base import SandboxServer, recording
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.contracts.contract import load


def _catalogue_calls(pipedrive: PipedriveSandbox, url: str, hooks_url: str) -> None:
    adapter = PipedriveCrm(api_token=pipedrive.api_token, base_url=url, sleep=lambda s: None)
    adapter.PAGE_SIZE = 2  # type: ignore[misc]
    pipedrive.add_webhook({"subscription_url": hooks_url, "event_action": "*", "event_object": "product"})
    since = datetime.fromtimestamp(int(pipedrive.now()), UTC)
    adapter.ensure_properties("product", [PropertyDefinition("closeloop_supplier", "Supplier", description="x")])
    supplier = pipedrive.field_key("product", "closeloop_supplier")
    assert supplier is not None
    one = pipedrive.create(
        "product",
        {"name": "Widget", "code": "W-1", "description": "A widget", "custom_fields": {supplier: "Acme"},
         "prices": [{"currency": "EUR", "price": "12.5", "cost": "4"}, {"currency": "USD", "price": "14"}]},
    )  # fmt: skip
    for i in range(3):
        pipedrive.create("product", {"name": f"P{i}", "code": f"SKU-{i}"})
    gone = pipedrive.create("product", {"name": "Gone", "code": "GONE"})
    pipedrive.update("product", one["id"], {"name": "Widget Pro"})
    pipedrive.delete("product", gone["id"])
    deal = pipedrive.create("deal", {"title": "D"})
    pipedrive.add_deal_product(deal["id"], {"product_id": one["id"], "item_price": "12.5", "quantity": 2})
    pipedrive.flush_webhooks(force=True)
    assert adapter.get_product(str(one["id"])) is not None
    assert adapter.get_product(str(gone["id"])) is None  # a 404 answer, held to the Error body
    assert len(list(adapter.iter_products())) == 4
    assert any(e.ref.object_type == "product" for e in adapter.iter_changes_since(since))
    deal_read = adapter.get_deal(str(deal["id"]))
    assert deal_read is not None and deal_read.line_items[0].product_id == str(one["id"])


def _accept(environ: object, start_response: Callable[[str, list[tuple[str, str]]], object]) -> list[bytes]:
    """A webhook receiver that accepts every delivery (a WSGI app answering 200)."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_the_catalogue_exchanges_and_product_webhooks_follow_pipedrives_contract() -> None:
    # Given the catalogue's calls made against a recorded sandbox, product webhooks delivered to a receiver
    sink = SandboxServer(_accept).start()
    try:
        with recording() as recorder:
            pipedrive, server = serve()
            try:
                _catalogue_calls(pipedrive, server.url, sink.url)
            finally:
                server.stop()
    finally:
        sink.stop()
    contract = load("pipedrive")
    paths = {(e.method, e.path.rsplit("/", 1)[0] if e.path[-1].isdigit() else e.path) for e in recorder.exchanges}
    assert {("GET", "/api/v2/products"), ("POST", "/api/v2/productFields"), ("GET", "/api/v2/productFields")} <= paths
    # When each exchange is held against the contract
    violations = [str(v) for exchange in recorder.exchanges for v in contract.check(exchange)]
    # Then none departs from it
    assert not violations, "\n".join(sorted(set(violations)))
    # And every product webhook the sandbox sent matches the v2 delivery schema
    bodies = [str(d["body"]).encode() for d in pipedrive.deliveries if "body" in d]
    assert bodies
    webhook_violations = [str(v) for body in bodies for v in contract.check_webhook("event", body)]
    assert not webhook_violations, "\n".join(webhook_violations)
