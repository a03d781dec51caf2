"""QuickBooksSandbox over real HTTP: OAuth rotation, auth faults, query language, writes, batch, CDC, limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from closeloop_local.sandboxes.quickbooks import (
    DEFAULT_REALM_ID,
    DEFAULT_REFRESH_TOKEN,
    QuickBooksDriver,
    QuickBooksSandbox,
    serve,
)
from tests.quickbooks_sandbox_client import BASE, Qbo, code_of, exact


@pytest.fixture
def qbo() -> Iterator[Qbo]:
    sandbox, server = serve()
    client = Qbo(sandbox, server).login()
    yield client
    client.http.close()
    server.stop()


# -- OAuth and auth --------------------------------------------------------------------------------------


def test_refresh_token_rotates_daily_and_the_old_one_has_a_grace(qbo: Qbo) -> None:
    # Given a refresh inside the day answers the same refresh token
    same = qbo.refresh(DEFAULT_REFRESH_TOKEN).json()
    assert same["refresh_token"] == DEFAULT_REFRESH_TOKEN and same["expires_in"] == 3600
    # When a day has passed, Then a new value comes back
    qbo.sandbox.state.clock.advance(86400)
    rotated = qbo.refresh(DEFAULT_REFRESH_TOKEN).json()["refresh_token"]
    assert rotated != DEFAULT_REFRESH_TOKEN
    # And the old value still answers (with the current pair) inside its grace, then invalid_grant
    assert qbo.refresh(DEFAULT_REFRESH_TOKEN).json()["refresh_token"] == rotated
    qbo.sandbox.state.clock.advance(86401)
    late = qbo.refresh(DEFAULT_REFRESH_TOKEN)
    assert late.status_code == 400 and late.json() == {"error": "invalid_grant"}
    assert qbo.refresh(rotated, auth=("x", "y")).json() == {"error": "invalid_client"}


def test_bad_token_gets_the_gateways_lower_case_401_and_wrong_realm_403(qbo: Qbo) -> None:
    qbo.sandbox.expire_access_tokens()
    reply = qbo.query("select * from Customer")
    assert reply.status_code == 401
    assert reply.json()["fault"]["error"][0]["code"] == "3200"
    qbo.login()
    wrong = qbo.http.get(
        "/v3/company/1/query",
        params={"query": "select * from Customer"},
        headers={"Authorization": f"Bearer {qbo.token}"},
    )
    assert wrong.status_code == 403


# -- query language --------------------------------------------------------------------------------------


def test_query_escapes_in_like_paging_and_active_default(qbo: Qbo) -> None:
    for name in ("O'Brien", "Acme", "Acme Two", "Gone"):
        qbo.sandbox.seed("Customer", DisplayName=name, Active=name != "Gone")
    rows = exact(qbo.query("select * from Customer where DisplayName = 'o\\'brien'"))["QueryResponse"]["Customer"]
    assert [r["DisplayName"] for r in rows] == ["O'Brien"]
    like = exact(qbo.query("select * from Customer where DisplayName LIKE 'Acme%' ORDERBY DisplayName DESC"))
    assert [r["DisplayName"] for r in like["QueryResponse"]["Customer"]] == ["Acme Two", "Acme"]
    within = exact(qbo.query("select * from Customer where Id IN ('1', '4') STARTPOSITION 1 MAXRESULTS 1"))
    assert [r["Id"] for r in within["QueryResponse"]["Customer"]] == ["1"]  # Gone (4) is inactive
    every = exact(qbo.query("select count(*) from Customer where Active IN (true, false)"))
    assert every["QueryResponse"] == {"totalCount": 4}
    assert exact(qbo.query("select * from Customer where DisplayName = 'nobody'"))["QueryResponse"] == {}


def test_unsupported_syntax_and_unfilterable_fields_are_refused(qbo: Qbo) -> None:
    ored = qbo.query("select * from Customer where DisplayName = 'a' OR DisplayName = 'b'")
    assert ored.status_code == 400 and code_of(ored) == "4000"
    notes = qbo.query("select * from Customer where Notes = 'x'")
    assert notes.status_code == 400 and code_of(notes) == "4001"


# -- writes ----------------------------------------------------------------------------------------------


def test_display_name_unique_across_entities_and_synctoken_enforced(qbo: Qbo) -> None:
    qbo.sandbox.seed("Employee", DisplayName="Pat Smith")
    taken = qbo.call("POST", "customer", {"DisplayName": "pat smith"})
    assert taken.status_code == 400 and code_of(taken) == "6240"
    colon = qbo.call("POST", "customer", {"DisplayName": "A:B"})
    assert colon.status_code == 400
    created = qbo.call("POST", "customer", {"DisplayName": "Zed", "PrimaryTaxIdentifier": "123-45-6789"}).json()
    customer = created["Customer"]
    assert customer["SyncToken"] == "0" and customer["PrimaryTaxIdentifier"] == "XXXXXX56789"
    update = {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "GivenName": "Zed"}
    assert qbo.call("POST", "customer", update).json()["Customer"]["SyncToken"] == "1"
    stale = qbo.call("POST", "customer", update)
    assert stale.status_code == 400 and code_of(stale) == "5010"


def test_requestid_replays_the_first_response(qbo: Qbo) -> None:
    first = qbo.call("POST", "customer", {"DisplayName": "Once"}, requestid="r-1")
    again = qbo.call("POST", "customer", {"DisplayName": "Once"}, requestid="r-1")
    assert first.json()["Customer"]["Id"] == again.json()["Customer"]["Id"]
    assert len(qbo.sandbox.rows("Customer")) == 1
    too_long = qbo.call("POST", "customer", {"DisplayName": "Twice"}, requestid="x" * 51)
    assert too_long.status_code == 400


def test_invoice_rules_void_and_payment(qbo: Qbo) -> None:
    driver = QuickBooksDriver(qbo.sandbox)
    driver.seed_item("WIDGET", "Widget", Decimal("10"))
    customer_id = driver.seed_customer("Buyer", email="buyer@x.test")
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": 25,
        "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 2, "UnitPrice": 10},
    }
    wrong = qbo.call("POST", "invoice", {"CustomerRef": {"value": customer_id}, "Line": [line]})
    assert wrong.status_code == 400 and code_of(wrong) == "6070"
    line["Amount"] = 20
    body = {"CustomerRef": {"value": customer_id}, "Line": [line], "DocNumber": "D-1", "PrivateNote": "ref"}
    invoice = exact(qbo.call("POST", "invoice", body))["Invoice"]
    assert invoice["TotalAmt"] == Decimal("20") and invoice["BillEmail"] == {"Address": "buyer@x.test"}
    duplicate = qbo.call("POST", "invoice", body)
    assert duplicate.status_code == 400 and code_of(duplicate) == "6140"
    assert qbo.call("POST", "invoice", body, include="allowduplicatedocnum").status_code == 200
    other = qbo.call("POST", "invoice", {**body, "CurrencyRef": {"value": "EUR"}})
    assert other.status_code == 400  # a customer's currency is fixed
    # When a payment is recorded, Then the invoice's balance drops and links back to it
    driver.approve_and_pay(invoice["Id"], Decimal("5.00"), date(2026, 10, 1))
    paid = exact(qbo.call("GET", f"invoice/{invoice['Id']}"))["Invoice"]
    assert paid["Balance"] == Decimal("15.00") and paid["LinkedTxn"][0]["TxnType"] == "Payment"
    # And a void zeroes the amounts and prepends "Voided" to the PrivateNote (only without payments)
    second = exact(qbo.call("GET", "invoice/4"))["Invoice"]
    voided = exact(qbo.call("POST", "invoice", {"Id": "4", "SyncToken": second["SyncToken"]}, operation="void"))
    assert voided["Invoice"]["TotalAmt"] == 0 and voided["Invoice"]["PrivateNote"].startswith("Voided")
    assert [i.status for i in driver.invoices()] == ["AUTHORISED", "VOIDED"]


NOT_FOUND = "Not Found"  # the plain-text 404 of a path under the company that no route serves
QUERY = "query?query=select%20*%20from%20Customer"
BATCH = '{"BatchItemRequest": [{"bId": "1", "Query": "select * from Customer"}]}'


@pytest.mark.parametrize(
    ("method", "tail", "body", "status", "holds"),
    [
        # (method, path under the company, body, status, what the answer holds: a top-level key of the JSON
        # body, "Fault <code>", or NOT_FOUND)
        ("GET", QUERY, None, 200, "QueryResponse"),
        ("POST", "query", "select * from Customer", 200, "QueryResponse"),  # the statement as the body
        ("PUT", "query", "select * from Customer", 200, "QueryResponse"),  # any method but GET: the body
        ("OPTIONS", "query", "select * from Customer", 200, "QueryResponse"),
        ("DELETE", "query", None, 400, "Fault 4000"),  # an empty statement
        ("GET", "Query", None, 404, NOT_FOUND),  # query is lower case only
        ("GET", "query/x", None, 404, NOT_FOUND),
        ("POST", "batch", BATCH, 200, "BatchItemResponse"),
        ("GET", "batch", None, 404, NOT_FOUND),
        ("GET", "cdc", None, 400, "Fault 2020"),  # routed: entities and changedSince missing
        ("POST", "cdc", None, 404, NOT_FOUND),
        ("GET", "preferences", None, 200, "Preferences"),
        ("GET", "preferences/", None, 200, "Preferences"),  # slashes around the path do not matter
        ("POST", "preferences", None, 404, NOT_FOUND),
        ("GET", "Preferences", None, 404, NOT_FOUND),
        ("GET", "customer/{id}", None, 200, "Customer"),
        ("GET", "Customer/{id}", None, 200, "Customer"),  # entity names in any case
        ("GET", "CUSTOMER/{id}/", None, 200, "Customer"),
        ("GET", "/customer/{id}", None, 200, "Customer"),  # a doubled slash after the realm
        ("GET", "customer//{id}", None, 404, NOT_FOUND),  # but not inside the path
        ("GET", "customer/999", None, 400, "Fault 610"),
        ("GET", "account/1", None, 200, "Account"),
        ("GET", "payment/1", None, 400, "Fault 610"),
        ("GET", "customer", None, 404, NOT_FOUND),
        ("GET", "customer/{id}/x", None, 404, NOT_FOUND),
        ("PUT", "customer/{id}", None, 404, NOT_FOUND),
        ("DELETE", "customer/{id}", None, 404, NOT_FOUND),
        ("POST", "customer/{id}", None, 404, NOT_FOUND),
        ("PATCH", "customer", None, 404, NOT_FOUND),
        ("POST", "customer", '{"DisplayName": "Routed Two"}', 200, "Customer"),
        ("POST", "Vendor", '{"DisplayName": "Routed Vendor"}', 200, "Vendor"),
        ("POST", "customer", "[]", 400, "Fault 2500"),
        ("POST", "customer?operation=void", "{}", 400, "Fault 6000"),
        ("POST", "invoice/999/send", None, 400, "Fault 610"),  # routed: the invoice is missing
        ("POST", "Invoice/999/send", None, 400, "Fault 610"),
        ("POST", "customer/{id}/send", None, 404, NOT_FOUND),  # invoices only
        ("GET", "invoice/999/send", None, 404, NOT_FOUND),
        ("POST", "invoice/999/Send", None, 404, NOT_FOUND),
        ("POST", "invoice/999/send/x", None, 404, NOT_FOUND),
        ("GET", "widgets/1", None, 404, NOT_FOUND),
        ("POST", "widgets", "{}", 404, NOT_FOUND),
        ("GET", "/", None, 404, NOT_FOUND),  # the company's path with only slashes after it
    ],
)
def test_every_route_answers_as_quickbooks_and_anything_else_is_the_plain_404(
    qbo: Qbo, method: str, tail: str, body: str | None, status: int, holds: str
) -> None:
    # Given a customer
    customer_id = qbo.sandbox.seed("Customer", DisplayName="Routed")["Id"]
    # When a request is sent under the company (a path, not joined by httpx: slashes are kept as written)
    response = qbo.http.request(
        method,
        f"{BASE}/{tail.format(id=customer_id)}",
        content=body,
        headers={"Authorization": f"Bearer {qbo.token}"},
    )
    # Then it gets the route's answer, with Intuit's transaction id whatever the answer
    assert response.status_code == status
    assert "intuit_tid" in response.headers
    if holds == NOT_FOUND:
        assert (response.headers["content-type"], response.text) == ("text/plain", NOT_FOUND)
        return
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    payload = response.json()
    assert "time" in payload
    if holds.startswith("Fault "):
        assert code_of(response) == holds.removeprefix("Fault ")
    else:
        assert holds in payload


def test_head_takes_no_route_but_query_answers_any_method(qbo: Qbo) -> None:
    # Given a customer
    customer_id = qbo.sandbox.seed("Customer", DisplayName="Routed")["Id"]
    auth = {"Authorization": f"Bearer {qbo.token}"}
    # Then HEAD is no GET: a read, preferences and cdc answer the plain 404 (werkzeug would match a GET rule)
    assert qbo.http.head(f"{BASE}/customer/{customer_id}", headers=auth).status_code == 404
    assert qbo.http.head(f"{BASE}/preferences", headers=auth).status_code == 404
    assert qbo.http.head(f"{BASE}/cdc", headers=auth).status_code == 404
    # And query takes its statement from the (empty) body: a parse error
    assert qbo.http.head(f"{BASE}/query", headers=auth).status_code == 400
    assert [r.status for r in qbo.sandbox.state.calls("HEAD")] == [404, 404, 404, 400]


def test_unrouted_paths_check_auth_realm_and_requestid_first_and_other_paths_are_plain_404s(qbo: Qbo) -> None:
    auth = {"Authorization": f"Bearer {qbo.token}"}
    # Then an unknown path under the company still needs a valid token, the company's realm and a short requestid
    assert qbo.http.get(f"{BASE}/widgets").status_code == 401
    assert qbo.http.get("/v3/company/1/widgets", headers=auth).status_code == 403
    too_long = qbo.http.post(f"{BASE}/widgets", params={"requestid": "x" * 51}, headers=auth, content="{}")
    assert (too_long.status_code, code_of(too_long)) == (400, "6000")
    # And paths outside a company, or the token endpoint with another method, are a plain 404 with no tid
    for method, path in [
        ("GET", "/oauth2/v1/tokens/bearer"),
        ("POST", "/oauth2/v1/tokens/bearer/"),
        ("GET", BASE),
        ("GET", f"{BASE}/"),
        ("GET", "/v3/company//customer/1"),
        ("GET", "/"),
    ]:
        answer = qbo.http.request(method, path, headers=auth)
        answer_is = (answer.status_code, answer.text, answer.headers["content-type"])
        assert answer_is == (404, NOT_FOUND, "text/plain"), (method, path)
        assert "intuit_tid" not in answer.headers, (method, path)


def test_batch_limits_and_per_item_faults(qbo: Qbo) -> None:
    qbo.sandbox.seed("Vendor", DisplayName="Taken")
    items = [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Taken"}},
        {"bId": "2", "Query": "select * from Vendor"},
    ]
    answers = qbo.call("POST", "batch", {"BatchItemRequest": items}).json()["BatchItemResponse"]
    assert answers[0]["Fault"]["Error"][0]["code"] == "6240"
    assert answers[1]["QueryResponse"]["Vendor"][0]["DisplayName"] == "Taken"
    too_many = [{"bId": str(i), "Query": "select * from Item"} for i in range(31)]
    assert qbo.call("POST", "batch", {"BatchItemRequest": too_many}).status_code == 400


def test_cdc_look_back_and_deleted_invoices(qbo: Qbo) -> None:
    old = qbo.call("GET", "cdc", entities="Invoice", changedSince="2000-01-01T00:00:00-08:00")
    assert old.status_code == 400
    driver = QuickBooksDriver(qbo.sandbox)
    driver.seed_item("W", "W", Decimal("1"))
    customer_id = driver.seed_customer("C")
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": 1,
        "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1},
    }
    invoice = qbo.call("POST", "invoice", {"CustomerRef": {"value": customer_id}, "Line": [line]}).json()["Invoice"]
    qbo.call("POST", "invoice", {"Id": invoice["Id"], "SyncToken": "0"}, operation="delete")
    since = invoice["MetaData"]["CreateTime"]
    blocks = qbo.call("GET", "cdc", entities="Invoice,Payment", changedSince=since).json()["CDCResponse"][0]
    assert blocks["QueryResponse"][0]["Invoice"][0]["status"] == "Deleted"


def test_throttle_answers_429_without_retry_after() -> None:
    sandbox, server = serve(QuickBooksSandbox(minute_limit=1))
    client = Qbo(sandbox, server).login()
    try:
        assert client.query("select * from Item").status_code == 200
        throttled = client.query("select * from Item")
        assert throttled.status_code == 429 and "retry-after" not in throttled.headers
        assert "ThrottleExceeded" in throttled.json()["Fault"]["Error"][0]["Message"]
    finally:
        client.http.close()
        server.stop()


def test_driver_environment_and_customers(qbo: Qbo) -> None:
    driver = QuickBooksDriver(qbo.sandbox)
    env = driver.environment("http://127.0.0.1:1")
    assert env["ACCOUNTING_PROVIDER"] == "quickbooks" and env["QUICKBOOKS_REALM_ID"] == DEFAULT_REALM_ID
    customer_id = driver.seed_customer("Acme", email="a@acme.test", tax_number="GB1")
    seen = driver.customers()[0]
    assert (seen.id, seen.name, seen.email, seen.tax_number) == (customer_id, "Acme", "a@acme.test", "GB1")
