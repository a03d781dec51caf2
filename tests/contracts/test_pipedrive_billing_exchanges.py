"""Deal products with billing, as the sandbox is asked and answers them, held against Pipedrive's contract
(tests/contracts/pipedrive/operations.json: the deal-product models of pipedrive/client-nodejs v2). No adapter
reads or writes billing yet, so the calls are the ones its port will need: add, list, update, remove."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.pipedrive import serve
from tests.contracts.contract import load

TOKEN = "sandbox-pipedrive-api-token"


def test_deal_product_billing_exchanges_follow_pipedrives_contract() -> None:
    # Given a deal and a product, and a client calling the deal-product routes while the sandbox records
    with recording() as recorder:
        pipedrive, server = serve()
        try:
            product = pipedrive.create("product", {"name": "Support", "code": "SUP"})
            deal = pipedrive.create("deal", {"title": "Subscription"})
            today = datetime.fromtimestamp(pipedrive.now(), UTC).date().isoformat()
            base = f"/api/v2/deals/{deal['id']}/products"
            with httpx.Client(base_url=server.url, headers={"x-api-token": TOKEN}, timeout=10) as api:
                line = {"product_id": product["id"], "item_price": 49.5, "quantity": 1}
                monthly = api.post(base, json={**line, "billing_frequency": "monthly", "billing_frequency_cycles": 12,
                                               "billing_start_date": today})  # fmt: skip
                assert monthly.status_code == 201, monthly.text
                assert api.post(base, json=line).status_code == 201  # one-time
                assert api.post(base, json={**line, "billing_frequency": "annually"}).status_code == 201
                assert api.get(base, params={"limit": 2}).status_code == 200
                row = monthly.json()["data"]["id"]
                assert api.patch(f"{base}/{row}", json={"billing_frequency_cycles": 24}).status_code == 200
                assert api.patch(f"{base}/{row}", json={"billing_frequency_cycles": 500}).status_code == 400
                assert api.patch(f"{base}/999", json={"quantity": 2}).status_code == 404
                assert api.delete(f"{base}/{row}").status_code == 200
        finally:
            server.stop()
    contract = load("pipedrive")
    operations = {contract.operation(e.method, e.path).name for e in recorder.exchanges}  # type: ignore[union-attr]
    assert {
        "POST /api/v2/deals/{id}/products",
        "PATCH /api/v2/deals/{id}/products/{product_attachment_id}",
        "DELETE /api/v2/deals/{id}/products/{product_attachment_id}",
        "GET /api/v2/deals/{id}/products",
    } <= operations
    # When each exchange is held against the contract, the refused request included
    violations = [str(v) for exchange in recorder.exchanges for v in contract.check(exchange)]
    # Then only the request the sandbox refused departs from it (cycles above 208), and every answer follows it
    assert violations == [
        "pipedrive: PATCH /api/v2/deals/{id}/products/{product_attachment_id} [request] "
        "billing_frequency_cycles: 500 is greater than the maximum of 208"
    ]


def _exchange(method: str, path: str, body: object, answer: object, status: int = 200) -> Exchange:
    return Exchange(
        host="api.pipedrive.com",
        method=method,
        path=path,
        query="",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode() if body is not None else b"",
        status=status,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )


def test_a_one_time_row_with_cycles_and_a_weekly_row_without_are_violations() -> None:
    contract = load("pipedrive")
    one_time = {"id": 1, "billing_frequency": "one-time", "billing_frequency_cycles": 3}
    weekly = {"id": 2, "billing_frequency": "weekly", "billing_frequency_cycles": None}
    found = [
        contract.check(_exchange("GET", "/api/v2/deals/1/products", None, {"success": True, "data": [row]}))
        for row in (one_time, weekly)
    ]
    assert all(found), found
    request = {"product_id": 1, "item_price": 1, "quantity": 1, "billing_frequency": "weekly"}
    answer = {"success": True, "data": {"id": 1}}
    assert contract.check(_exchange("POST", "/api/v2/deals/1/products", request, answer, 201))
