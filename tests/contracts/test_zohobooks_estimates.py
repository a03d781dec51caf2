"""The Zoho Books sandbox's estimate answers held against the contract written from Zoho's estimates page
(operations.json: Create an Estimate, List estimates, Get an estimate, Update an Estimate, Mark an estimate as
sent / accepted / declined; Create an invoice with invoiced_estimate_id). No adapter sends estimates yet, so the
exchanges are an estimate's life driven over HTTP."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksSandbox, serve
from tests.contracts.contract import load

VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))


def _estimate_exchanges() -> list[Exchange]:
    with recording() as recorder:
        zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
        try:
            customer = str(zoho.seed_contact(contact_name="Acme")["contact_id"])
            item = str(zoho.seed_item(sku="WIDGET", name="Widget", rate="19.99")["item_id"])
            access = httpx.post(
                f"{server.url}/oauth/v2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": zoho.initial_refresh_token,
                    "client_id": zoho.client_id,
                    "client_secret": zoho.client_secret,
                },
            ).json()["access_token"]

            def call(method: str, path: str, body: Any = None, **params: str) -> dict[str, Any]:
                reply = httpx.request(
                    method,
                    f"{server.url}/books/v3{path}",
                    params={"organization_id": zoho.organization_id, **params},
                    headers={"Authorization": f"Zoho-oauthtoken {access}"},
                    content=json.dumps(body) if body is not None else None,
                )
                answer: dict[str, Any] = reply.json()
                return answer

            line = {"item_id": item, "quantity": 3, "rate": 19.99, "discount": "10%", "tax_id": VAT20}
            body = {
                "customer_id": customer,
                "line_items": [line],
                "date": "2026-01-10",
                "expiry_date": "2099-02-09",
                "reference_number": "hubspot-quote-7",
                "custom_fields": [{"api_name": "cf_closeloop_quote", "value": "hubspot:7"}],
            }
            made = call("POST", "/estimates", body)["estimate"]
            path = f"/estimates/{made['estimate_id']}"
            call(
                "POST",
                "/estimates",
                {**body, "estimate_number": "Q-1", "custom_fields": []},
                ignore_auto_number_generation="true",
            )
            call("POST", "/estimates", {**body, "line_items": [], "custom_fields": []})
            call("GET", path)
            call("GET", "/estimates", reference_number="hubspot-quote-7", per_page="1")
            call("GET", "/estimates", last_modified_time=made["last_modified_time"], customer_id=customer)
            call("PUT", path, {"expiry_date": "2099-03-01", "notes": "Valid two months"})
            call("POST", f"{path}/status/accepted")  # a draft: refused
            call("POST", f"{path}/status/sent")
            call("POST", f"{path}/status/accepted")
            call("GET", "/estimates/999")
            invoice = {"customer_id": customer, "line_items": [line], "invoiced_estimate_id": made["estimate_id"]}
            call("POST", "/invoices", invoice)
            call("GET", path)
        finally:
            server.stop()
    return [e for e in recorder.exchanges if e.path.startswith("/books/v3/")]


def test_every_estimate_exchange_follows_zoho_s_estimates_page() -> None:
    # Given an estimate's life recorded against the sandbox
    exchanges = _estimate_exchanges()
    contract = load("zohobooks")
    names = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert names == {
        "GET /books/v3/estimates",
        "POST /books/v3/estimates",
        "GET /books/v3/estimates/{estimate_id}",
        "PUT /books/v3/estimates/{estimate_id}",
        "POST /books/v3/estimates/{estimate_id}/status/sent",
        "POST /books/v3/estimates/{estimate_id}/status/accepted",
        "POST /books/v3/invoices",
    }
    # When each is held against the contract, Then none departs from it but the create without lines (the
    # page requires line_items), which the sandbox refuses in Zoho's error envelope
    empty = [e for e in exchanges if e.method == "POST" and b'"line_items": []' in e.body]
    violations = [str(v) for exchange in exchanges if exchange not in empty for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
    assert len(empty) == 1 and empty[0].status == 400
    assert [v.where for v in contract.check(empty[0])] == ["request"]
    assert {e.status for e in exchanges} == {200, 201, 400, 404}
    assert json.loads(exchanges[-1].response_body)["estimate"]["status"] == "invoiced"


def test_an_estimate_with_a_status_zoho_does_not_list_or_a_write_with_an_unlisted_field_is_a_violation() -> None:
    contract = load("zohobooks")

    def check(method: str, path: str, body: Any, status: int, answer: Any) -> list[str]:
        exchange = Exchange(
            host="127.0.0.1:1",
            method=method,
            path=path,
            query="",
            headers={"content-type": "application/json"},
            body=json.dumps(body).encode() if body is not None else b"",
            status=status,
            response_headers={"content-type": "application/json"},
            response_body=json.dumps(answer).encode(),
        )
        return [v.message for v in contract.check(exchange)]

    row = {"estimate_id": "1", "estimate_number": "EST-000001", "status": "sent"}
    ok = {"code": 0, "message": "success", "estimate": row}
    assert check("GET", "/books/v3/estimates/1", None, 200, ok) == []
    assert check("GET", "/books/v3/estimates/1", None, 200, {**ok, "estimate": {**row, "status": "approved"}})
    write = {"customer_id": "1", "line_items": [{"item_id": "2"}]}
    assert check("PUT", "/books/v3/estimates/1", write, 200, ok) == []
    assert check("PUT", "/books/v3/estimates/1", {**write, "expiry": "2026-01-01"}, 200, ok)
