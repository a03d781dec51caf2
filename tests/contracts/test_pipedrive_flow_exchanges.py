"""Every request the Pipedrive adapter makes for the quote, recurring and purchase-order flows, every answer the
sandbox gives it and every deal webhook the sandbox sends meanwhile, held against Pipedrive's contract
(tests/contracts/pipedrive/operations.json, from pipedrive/client-nodejs): the deal read as a quote with its
products (billing included), the closeloop_quote_* and flow write-back fields made through dealFields (an enum
with options, numbers, dates) and written by PATCH, and the catch-up read of the quoted deal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from closeloop.sync.purchase_orders import PURCHASE_ORDER_PROPERTIES
from closeloop.sync.quotes import QUOTE_PROPERTIES
from closeloop.sync.recurring import SCHEDULE_PROPERTIES
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop_local.sandboxes.base import SandboxServer, recording
from closeloop_local.sandboxes.pipedrive import PipedriveSandbox, serve
from tests.contracts.contract import load


def _flow_calls(pipedrive: PipedriveSandbox, url: str, hooks_url: str) -> None:
    adapter = PipedriveCrm(api_token=pipedrive.api_token, base_url=url, quote_stages=("3",), sleep=lambda s: None)
    pipedrive.add_webhook({"subscription_url": hooks_url, "event_action": "*", "event_object": "deal"})
    since = datetime.fromtimestamp(int(pipedrive.now()), UTC)
    today = since.date().isoformat()
    org = pipedrive.create("organization", {"name": "Acme Ltd"})
    product = pipedrive.create(
        "product", {"name": "Hosting", "code": "HOST", "prices": [{"currency": "EUR", "price": 50}]}
    )
    deal = pipedrive.create("deal", {"title": "Contract", "org_id": org["id"], "currency": "EUR", "stage_id": 3})
    line = {"product_id": product["id"], "item_price": "50", "quantity": 1}
    pipedrive.add_deal_product(
        deal["id"],
        {**line, "billing_frequency": "monthly", "billing_frequency_cycles": 12, "billing_start_date": today},
    )
    pipedrive.add_deal_product(deal["id"], line)
    deal_id = str(deal["id"])
    quote = adapter.get_quote(deal_id)
    assert quote is not None and quote.status == "ready"
    assert quote.line_items[0].recurring_periods == 12
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES)
    adapter.write_quote(
        deal_id,
        {"closeloop_quote_number": "QU-1", "closeloop_quote_status": "SENT", "closeloop_quote_revision": "0",
         "closeloop_quote_url": "https://books.example/q/1"},
    )  # fmt: skip
    adapter.ensure_properties("deal", (*SCHEDULE_PROPERTIES, *PURCHASE_ORDER_PROPERTIES))
    adapter.update_deals(
        {deal_id: {"closeloop_schedule_ids": "sched-1", "closeloop_next_invoice_date": today,
                   "closeloop_annual_value": "600.00", "closeloop_purchase_orders": "PO-0001"}}
    )  # fmt: skip
    assert any(e.ref.object_type == "quote" for e in adapter.iter_changes_since(since))
    pipedrive.flush_webhooks(force=True)


def _accept(environ: object, start_response: Callable[[str, list[tuple[str, str]]], object]) -> list[bytes]:
    """A webhook receiver that accepts every delivery (a WSGI app answering 200)."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_the_flow_exchanges_and_deal_webhooks_follow_pipedrives_contract() -> None:
    # Given the flows' calls made against a recorded sandbox, deal webhooks delivered to a receiver
    sink = SandboxServer(_accept).start()
    try:
        with recording() as recorder:
            pipedrive, server = serve()
            try:
                _flow_calls(pipedrive, server.url, sink.url)
            finally:
                server.stop()
    finally:
        sink.stop()
    contract = load("pipedrive")
    operations = {contract.operation(e.method, e.path).name for e in recorder.exchanges}  # type: ignore[union-attr]
    assert {
        "GET /api/v2/deals/{id}",
        "GET /api/v2/deals/{id}/products",
        "GET /api/v2/dealFields",
        "POST /api/v2/dealFields",
        "PATCH /api/v2/deals/{id}",
        "GET /v1/recents",
    } <= operations
    # When each exchange is held against the contract
    violations = [str(v) for exchange in recorder.exchanges for v in contract.check(exchange)]
    # Then none departs from it
    assert not violations, "\n".join(sorted(set(violations)))
    # And every deal webhook the sandbox sent matches the v2 delivery schema
    bodies = [str(d["body"]).encode() for d in pipedrive.deliveries if "body" in d]
    assert bodies
    webhook_violations = [str(v) for body in bodies for v in contract.check_webhook("event", body)]
    assert not webhook_violations, "\n".join(webhook_violations)
