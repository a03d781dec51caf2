"""The QuickBooks sandbox's Estimate answers held against Intuit's published contract (entities.json: the
Estimate of Finance.xsd; operations.json: the Estimate page's create rules and QboEstimateStatusEnum). No
adapter sends estimates yet, so the exchanges are an estimate's life driven over HTTP: create, read, query,
accept, a stale update, an invoice made from it, the closed estimate read back."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.quickbooks import DEFAULT_REALM_ID, DEFAULT_REFRESH_TOKEN, QuickBooksDriver, serve
from tests.contracts.contract import load

BASE = f"/v3/company/{DEFAULT_REALM_ID}"


def _estimate_exchanges() -> list[Exchange]:
    with recording() as recorder:
        qbo, server = serve()
        try:
            driver = QuickBooksDriver(qbo)
            driver.seed_item("WIDGET", "Widget", Decimal("10"))
            customer = driver.seed_customer("Buyer", email="buyer@x.test")
            http = httpx.Client(base_url=server.url, timeout=5.0)
            token = http.post(
                "/oauth2/v1/tokens/bearer",
                data={"grant_type": "refresh_token", "refresh_token": DEFAULT_REFRESH_TOKEN},
                auth=("sandbox-qbo-client-id", "sandbox-qbo-client-secret"),
            ).json()["access_token"]

            def call(method: str, tail: str, body: Any = None, **params: str) -> dict[str, Any]:
                reply = http.request(
                    method, f"{BASE}/{tail}", json=body, params=params, headers={"Authorization": f"Bearer {token}"}
                )
                answer: dict[str, Any] = reply.json()
                return answer

            line = {
                "DetailType": "SalesItemLineDetail",
                "Amount": 20,
                "Description": "Two widgets",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "1"},
                    "Qty": 2,
                    "UnitPrice": 10,
                    "TaxCodeRef": {"value": "TAX"},
                },
            }
            head = {"CustomerRef": {"value": customer}, "Line": [line]}
            made = call("POST", "estimate", {**head, "DocNumber": "Q-1", "ExpirationDate": "2026-12-31"})["Estimate"]
            call("GET", f"estimate/{made['Id']}")
            call("GET", "query", query="select * from Estimate where DocNumber = 'Q-1' STARTPOSITION 1 MAXRESULTS 10")
            call("POST", "estimate", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "TxnStatus": "Accepted"})
            call("POST", "estimate", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "TxnStatus": "Rejected"})
            call("POST", "estimate", {**head, "TxnStatus": "Expired"})
            call("GET", "estimate/999")
            call("POST", "invoice", {**head, "LinkedTxn": [{"TxnId": made["Id"], "TxnType": "Estimate"}]})
            call("GET", f"estimate/{made['Id']}")
            http.close()
        finally:
            server.stop()
    return [e for e in recorder.exchanges if e.path.startswith(BASE)]


def test_every_estimate_exchange_follows_intuit_s_contract() -> None:
    # Given an estimate's life recorded against the sandbox
    exchanges = _estimate_exchanges()
    contract = load("quickbooks")
    names = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert names == {
        "POST /v3/company/{realmId}/estimate",
        "GET /v3/company/{realmId}/estimate/{estimateId}",
        "GET /v3/company/{realmId}/query",
        "POST /v3/company/{realmId}/invoice",
    }
    # When each is held against the contract, Then none departs from it (the refusals are Faults) but the
    # request sending a status outside QboEstimateStatusEnum, which the sandbox refuses (2500)
    expired = [e for e in exchanges if b'"Expired"' in e.body]
    violations = [str(v) for exchange in exchanges if exchange not in expired for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
    assert len(expired) == 1 and expired[0].status == 400
    assert [v.where for v in contract.check(expired[0])] == ["request"]
    assert {e.status for e in exchanges} == {200, 400}
    closed = json.loads(exchanges[-1].response_body)["Estimate"]
    assert closed["TxnStatus"] == "Closed"


def test_an_estimate_answer_with_a_status_or_field_intuit_does_not_define_is_a_violation() -> None:
    contract = load("quickbooks")

    def check(estimate: dict[str, Any]) -> list[str]:
        exchange = Exchange(
            host="127.0.0.1:1",
            method="GET",
            path=f"{BASE}/estimate/1",
            query="",
            headers={},
            body=b"",
            status=200,
            response_headers={"content-type": "application/json"},
            response_body=json.dumps({"Estimate": estimate, "time": "2026-01-01T00:00:00-08:00"}).encode(),
        )
        return [v.message for v in contract.check(exchange)]

    good = {"Id": "1", "SyncToken": "0", "TxnStatus": "Pending", "ExpirationDate": "2026-12-31", "TotalAmt": 22}
    assert check(good) == []
    assert check({**good, "TxnStatus": "Expired"})  # not in QboEstimateStatusEnum
    assert check({**good, "Status": "Pending"})  # not an Estimate field of the XSD
