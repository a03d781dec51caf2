"""The calls a SugarCRM quotes and contracts adapter will make, and the sandbox's answers, held against Sugar's
contract (tests/contracts/sugarcrm/operations.json: Quotes, ProductBundles, Products and Contracts typed as
Sugar 12.0's vardefs). No adapter exists yet (the ports are being designed), so the calls are made directly."""

from __future__ import annotations

import json

import httpx

from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.sugarcrm import serve
from tests.contracts.contract import load

API = "/rest/v11_24"


def test_quote_and_contract_exchanges_follow_sugars_contract() -> None:
    # Given a quote with two lines, a contract, and a client that logs in and reads them as the poller would
    with recording() as recorder:
        sugar, server = serve()
        try:
            account = sugar.create_record("Accounts", {"name": "Acme"})
            opportunity = sugar.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
            widget = sugar.create_record("ProductTemplates", {"name": "Widget", "mft_part_num": "W-1"})
            quote = sugar.create_quote(
                {"name": "Q1", "quote_stage": "Delivered", "date_quote_expected_closed": "2027-01-31",
                 "billing_account_id": account["id"], "opportunity_id": opportunity["id"]},
                [{"name": "G", "products": [{"product_template_id": widget["id"], "quantity": "2",
                                             "discount_price": "10"}, {"name": "Fee", "discount_price": "5"}]}],
            )  # fmt: skip
            contract = sugar.create_record(
                "Contracts", {"name": "Support", "status": "signed", "start_date": "2027-01-01",
                              "end_date": "2027-12-31", "account_id": account["id"],
                              "opportunity_id": opportunity["id"], "total_contract_value": "1200"},
            )  # fmt: skip
            with httpx.Client(base_url=server.url + API, timeout=10) as http:
                login = {"grant_type": "password", "client_id": "sugar", "client_secret": "", "platform": "closeloop",
                         "username": sugar.username, "password": sugar.password}  # fmt: skip
                token = http.post("/oauth2/token", json=login).json()["access_token"]
                http.headers["OAuth-Token"] = token
                poll = {"filter": [{"date_modified": {"$gte": "2000-01-01T00:00:00+00:00"}}], "max_num": 1,
                        "order_by": "date_modified:ASC,id:ASC"}  # fmt: skip
                assert http.post("/Quotes/filter", json=poll).status_code == 200
                assert http.get(f"/Quotes/{quote['id']}").status_code == 200
                groups = http.get(f"/Quotes/{quote['id']}/link/product_bundles").json()["records"]
                assert http.get(f"/ProductBundles/{groups[0]['id']}/link/products").status_code == 200
                written = http.put(f"/Quotes/{quote['id']}", json={"quote_stage": "Closed Accepted"})
                assert written.status_code == 200
                assert http.get("/Quotes/missing").status_code == 404
                assert http.post("/Contracts/filter", json={"filter": [{"status": "signed"}]}).status_code == 200
                assert http.get(f"/Contracts/{contract['id']}").status_code == 200
                assert http.get(f"/Contracts/{contract['id']}/link/opportunities").status_code == 200
        finally:
            server.stop()
    contract_ = load("sugarcrm")
    names = {contract_.operation(e.method, e.path).name for e in recorder.exchanges}  # type: ignore[union-attr]
    assert {
        "POST /rest/v11_{n}/Quotes/filter",
        "GET /rest/v11_{n}/Quotes/{record}",
        "PUT /rest/v11_{n}/Quotes/{record}",
        "GET /rest/v11_{n}/Quotes/{record}/link/product_bundles",
        "GET /rest/v11_{n}/ProductBundles/{record}/link/products",
        "POST /rest/v11_{n}/Contracts/filter",
        "GET /rest/v11_{n}/Contracts/{record}",
        "GET /rest/v11_{n}/Contracts/{record}/link/opportunities",
    } <= names
    # When each exchange is held against the contract
    violations = [str(v) for exchange in recorder.exchanges for v in contract_.check(exchange)]
    # Then none departs from it
    assert not violations, "\n".join(sorted(set(violations)))


def _get(path: str, answer: object) -> Exchange:
    return Exchange(
        host="127.0.0.1:1",
        method="GET",
        path=path,
        query="",
        headers={},
        body=b"",
        status=200,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )


def test_a_quote_number_as_text_and_a_line_quantity_as_a_number_are_violations() -> None:
    contract = load("sugarcrm")
    quote = {"id": "q", "_module": "Quotes", "quote_num": "7"}
    line = {"id": "l", "_module": "Products", "quantity": 2}
    assert contract.check(_get("/rest/v11_24/Quotes/q", quote))
    assert contract.check(_get("/rest/v11_24/ProductBundles/b/link/products", {"next_offset": -1, "records": [line]}))
    # while the generic record schema of other modules still takes any field
    assert contract.check(_get("/rest/v11_24/Accounts/a", {"id": "a", "_module": "Accounts", "quote_num": "7"})) == []
