"""SugarSandbox over real HTTP: platform sessions, errors, filter API, links, quirks, web logic hooks, driver."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from closeloop.models import CrmRef
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.drivers import CrmDriver, DealLine
from closeloop_local.sandboxes.sugarcrm import SugarCrmDriver, SugarSandbox, serve
from tests.sugar_sandbox_client import API, Sugar


def test_token_answer_has_sugars_shape(sugar: Sugar) -> None:
    answer = sugar.login()
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 3600
    assert answer["refresh_expires_in"] == 1209600 and answer["refresh_token"] and answer["download_token"]


def test_one_session_per_platform(sugar: Sugar) -> None:
    # Given two logins on our platform and one on "base"
    first = sugar.login()
    base = sugar.login("base")
    second = sugar.login()
    # Then the second login on the same platform killed the first one's access and refresh tokens
    assert sugar.call("GET", "/metadata", first["access_token"]).json()["error"] == "invalid_grant"
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": "sugar",
               "client_secret": "", "platform": "closeloop"}  # fmt: skip
    refused = sugar.http.post("/oauth2/token", json=refresh)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    # And the other platform's session and the newest one both work
    assert sugar.call("GET", "/metadata", base["access_token"]).status_code == 200
    assert sugar.call("GET", "/metadata", second["access_token"]).status_code == 200
    # And a refresh rotates: the refreshed pair replaces the platform's session
    renewed = sugar.http.post("/oauth2/token", json={**refresh, "refresh_token": second["refresh_token"]})
    assert renewed.status_code == 200
    assert sugar.call("GET", "/metadata", second["access_token"]).status_code == 401


def test_login_errors(sugar: Sugar) -> None:
    wrong = sugar.http.post(
        "/oauth2/token",
        json={
            "grant_type": "password",
            "client_id": "sugar",
            "client_secret": "",
            "platform": "closeloop",
            "username": "closeloop-api",
            "password": "nope",
        },  # fmt: skip
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "need_login")
    unknown = sugar.http.post("/oauth2/token", json={"grant_type": "password", "client_id": "sugar", "platform": "x"})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_parameter")
    client = sugar.http.post("/oauth2/token", json={"grant_type": "password", "client_id": "other"})
    assert client.status_code == 401 and client.json()["error"] == "invalid_client"


def test_missing_and_expired_tokens(sugar: Sugar) -> None:
    missing = sugar.http.get("/Accounts/x")
    assert (missing.status_code, missing.json()) == (
        401,
        {"error": "need_login", "error_message": "No valid authentication for user."},
    )
    sugar.sandbox.state.clock.advance(3601)
    expired = sugar.call("GET", "/Accounts/x")
    assert (expired.status_code, expired.json()["error"]) == (401, "invalid_grant")


def test_records_404_and_put_ignores_unknown_fields(sugar: Sugar) -> None:
    created = sugar.call("POST", "/Accounts", json={"name": "Acme", "no_such_field": "x", "vat_number_c": "GB1"}).json()
    assert created["_module"] == "Accounts" and created["vat_number_c"] == "GB1" and "no_such_field" not in created
    # PUT answers with the saved record; a field the module lacks is silently dropped
    saved = sugar.call("PUT", f"/Accounts/{created['id']}", json={"name": "Acme Ltd", "ghost_c": "1"}).json()
    assert saved["name"] == "Acme Ltd" and "ghost_c" not in saved
    # GET with fields: only those, plus id, date_modified and the envelope
    read = sugar.call("GET", f"/Accounts/{created['id']}", params={"fields": "name"}).json()
    assert set(read) == {"id", "name", "date_modified", "_acl", "_module"}
    gone = sugar.call("GET", "/Accounts/nope")
    assert gone.status_code == 404 and gone.json() == {
        "error": "not_found",
        "error_message": "Could not find record: nope in module: Accounts",
    }
    bad = sugar.call("PUT", f"/Accounts/{created['id']}", json={"closeloop_total_paid_c": "lots"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_parameter")


NOT_FOUND = (404, "not_found", "Your requested resource was not found.")
NO_METHOD = (404, "no_method", "Could not find the HTTP method of your request for this path.")
NO_RECORD = (404, "not_found", "Could not find record: nope in module: Accounts")
NO_FILTER_RECORD = (404, "not_found", "Could not find record: filter in module: Accounts")


@pytest.mark.parametrize(
    ("method", "path", "answer"),
    [
        ("GET", "/Widgets/{id}", NOT_FOUND),  # not a module
        ("GET", "/accounts/{id}", NOT_FOUND),  # module names are case-sensitive
        ("GET", "/AccountsX/{id}", NOT_FOUND),
        ("GET", "/", NOT_FOUND),
        ("POST", "/ping", NOT_FOUND),  # ping and metadata answer GET only; another method is not_found
        ("PUT", "/metadata", NOT_FOUND),
        ("GET", "/oauth2/token", NOT_FOUND),  # with a session: the token endpoint is POST only
        ("GET", "/Accounts", NO_METHOD),  # a module's path with a method no route has
        ("PATCH", "/Accounts/{id}", NO_METHOD),
        ("POST", "/Accounts/{id}", NO_METHOD),
        ("HEAD", "/Accounts/{id}", NO_METHOD),  # no HEAD, though GET answers there
        ("PATCH", "/Accounts/nope", NO_RECORD),  # a record's path: the record is looked up first
        ("GET", "/Accounts/filter", NO_FILTER_RECORD),  # filter is POST; GET reads a record named filter
        ("GET", "/Accounts/{id}/contacts", NO_METHOD),  # paths under a module no route has
        ("GET", "/Accounts/{id}/link", NO_METHOD),
        ("GET", "/Accounts/{id}/rel/contacts", NO_METHOD),
        ("POST", "/Accounts/{id}/link/contacts", NO_METHOD),
        ("GET", "/Accounts/{id}/link/contacts/more", NO_METHOD),
        ("GET", "/Accounts/{id}/link/nope", (404, "not_found", "Could not find a relationship named: nope")),
    ],
)
def test_unrouted_requests_get_sugars_404s(sugar: Sugar, method: str, path: str, answer: tuple[int, str, str]) -> None:
    # Given an account
    account = sugar.sandbox.create_record("Accounts", {"name": "Acme"})
    # When a request no route serves is sent with a session
    response = sugar.call(method, sugar.url + API + path.format(id=account["id"]))
    # Then Sugar answers 404 with its error label and message (HEAD: the status only, it has no body)
    assert response.status_code == answer[0]
    if method != "HEAD":
        assert response.json() == {"error": answer[1], "error_message": answer[2]}


def test_routes_tolerate_extra_slashes_and_only_the_token_endpoint_needs_no_session(sugar: Sugar) -> None:
    # Given an account
    account = sugar.sandbox.create_record("Accounts", {"name": "Acme"})
    api = sugar.url + API  # whole URLs: httpx would drop the leading slashes of a path joined to its base URL
    # Then doubled and trailing slashes reach the same route
    read = sugar.call("GET", f"{api}//Accounts//{account['id']}/")
    assert (read.status_code, read.json()["id"]) == (200, account["id"])
    assert sugar.call("GET", f"{api}/ping/").json() == "pong"
    # And a request without a session is refused before routing, even to an unknown path
    unknown = sugar.http.get(f"{api}/Widgets/x")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "need_login")
    # And the token endpoint answers without a session at its path (a trailing slash too), not at a doubled slash
    body = {"grant_type": "password", "client_id": "sugar", "client_secret": "", "platform": "closeloop",
            "username": sugar.sandbox.username, "password": sugar.sandbox.password}  # fmt: skip
    assert sugar.http.post(f"{api}/oauth2/token/", json=body).status_code == 200
    doubled = sugar.http.post(f"{api}//oauth2/token", json=body)
    assert (doubled.status_code, doubled.json()["error"]) == (401, "need_login")


def test_filter_operators_paging_and_errors(sugar: Sugar) -> None:
    for i, stage in enumerate(("Prospecting", "Closed Won", "Closed Won", "Closed Lost", "Closed Won")):
        sugar.sandbox.create_record(
            "Opportunities", {"name": f"Deal {i}", "sales_stage": stage, "date_closed": f"2024-05-0{i + 1}"}
        )
    won_may = [{"sales_stage": "Closed Won"}, {"date_closed": {"$gte": "2024-05-02", "$lt": "2024-05-05"}}]
    page = sugar.filter("Opportunities", filter=won_may, max_num=1, order_by="date_closed:ASC", fields="name")
    assert [r["name"] for r in page["records"]] == ["Deal 1"] and page["next_offset"] == 1
    last = sugar.filter("Opportunities", filter=won_may, max_num=1, offset=1, order_by="date_closed:ASC")
    assert [r["name"] for r in last["records"]] == ["Deal 2"] and last["next_offset"] == -1
    either = [{"$or": [{"name": {"$starts": "deal 0"}}, {"sales_stage": {"$in": ["Closed Lost"]}}]}]
    assert sorted(r["name"] for r in sugar.filter("Opportunities", filter=either)["records"]) == ["Deal 0", "Deal 3"]
    unknown = sugar.call("POST", "/Opportunities/filter", json={"filter": [{"nope": "x"}]})
    assert (unknown.status_code, unknown.json()["error"]) == (422, "invalid_parameter")
    operator = sugar.call("POST", "/Opportunities/filter", json={"filter": [{"name": {"$near": "x"}}]})
    assert operator.status_code == 422


def test_revenue_line_items_roll_up_and_closed_stage_cascades(sugar: Sugar) -> None:
    sandbox = sugar.sandbox
    product = sandbox.create_record(
        "ProductTemplates", {"name": "Widget", "mft_part_num": "WID-1", "discount_price": "5"}
    )
    deal = sandbox.create_record("Opportunities", {"name": "Big", "sales_stage": "Prospecting"})
    for quantity in ("2", "3"):
        sandbox.create_record(
            "RevenueLineItems",
            {"opportunity_id": deal["id"], "product_template_id": product["id"], "quantity": quantity,
             "sales_stage": "Prospecting"},
        )  # fmt: skip
    # The opportunity's amount is the sum of its lines (the unit price copied from the product)
    assert sandbox.get_record("Opportunities", deal["id"])["amount"] == "25.000000"  # type: ignore[index]
    # Closing the opportunity cascades the stage to its open lines
    sugar.call("PUT", f"/Opportunities/{deal['id']}", json={"sales_stage": "Closed Won"})
    lines = sugar.call("GET", f"/Opportunities/{deal['id']}/link/revenuelineitems", params={"max_num": "1"}).json()
    assert lines["next_offset"] == 1 and lines["records"][0]["sales_stage"] == "Closed Won"
    missing = sugar.call("GET", "/Opportunities/nope/link/revenuelineitems")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_metadata_lists_custom_fields(sugar: Sugar) -> None:
    meta = sugar.call("GET", "/metadata", params={"type_filter": "modules", "module_filter": "Opportunities"}).json()
    fields = meta["modules"]["Opportunities"]["fields"]
    assert fields["closeloop_invoice_number_c"]["source"] == "custom_fields"
    assert fields["sales_stage"]["type"] == "enum" and list(meta["modules"]) == ["Opportunities"]


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append((dict(request.headers), request.get_data()))
        return Response("", status=self.status)(environ, start_response)


@pytest.mark.parametrize("status", [200, 500])
def test_web_logic_hooks_are_queued_sent_once_and_never_retried(sugar: Sugar, status: int) -> None:
    receiver = Receiver(status)
    server = SandboxServer(receiver).start()
    try:
        sugar.sandbox.add_hook("Accounts", f"{server.url}/hook/secret")
        created = sugar.call("POST", "/Accounts", json={"name": "Acme"}).json()
        # Nothing is sent until the dispatch job runs
        assert receiver.requests == [] and sugar.sandbox.pending_hooks() == 1
        deliveries = sugar.sandbox.run_hook_job()
        headers, body = receiver.requests[0]
        payload = json.loads(body)
        assert (payload["bean"], payload["event"], payload["isUpdate"]) == ("Account", "after_save", False)
        assert payload["data"]["id"] == created["id"] and payload["dataChanges"] == {}
        assert headers["User-Agent"] == "SugarCrm" and not any("signature" in h.lower() for h in headers)
        assert deliveries[0]["ok"] is (status == 200)
        # Whatever the answer, the payload is gone: a later job run sends nothing again
        sugar.sandbox.run_hook_job()
        assert len(receiver.requests) == 1
    finally:
        server.stop()


def test_faults_come_before_auth_and_rate_limit_has_a_retry_after() -> None:
    sandbox, server = serve(SugarSandbox(requests_per_second=2))
    client = Sugar(sandbox, server)
    try:
        sandbox.state.faults.append(Fault(f"{API}/Accounts/*", 503))
        assert client.http.get("/Accounts/x").status_code == 503
        answers = [client.call("GET", "/metadata") for _ in range(3)]
        limited = answers[-1]
        assert (limited.status_code, limited.json()["error"], limited.headers["Retry-After"]) == (
            429,
            "too_many_requests",
            "1",
        )
    finally:
        client.http.close()
        server.stop()


def test_driver_wins_a_deal_subscribes_and_reads_fields(sugar: Sugar) -> None:
    driver: CrmDriver = SugarCrmDriver(sugar.sandbox, webhook_token="tok")
    env = driver.environment("http://sugar.local")
    assert env["CRM_PROVIDER"] == "sugarcrm" and env["SUGARCRM_WEBHOOK_TOKEN"] == "tok"
    company = driver.create_company("Acme", email="a@acme.test", tax_number="GB1", country="GB")
    driver.update_company(company, phone="+44 1")
    lines = [
        DealLine("WID-1", "Widget", Decimal(2), Decimal("10.50")),
        DealLine("WID-1", "Widget", Decimal(1), Decimal(3)),
    ]
    deal = driver.create_won_deal(company, lines, currency="NZD")
    record = sugar.sandbox.get_record("Opportunities", deal.object_id)
    assert record is not None and (record["sales_stage"], record["amount"]) == ("Closed Won", "24.000000")
    assert all(r["sales_stage"] == "Closed Won" for r in sugar.sandbox.records("RevenueLineItems"))
    assert len(sugar.sandbox.records("ProductTemplates")) == 1
    sugar.sandbox.update_record("Opportunities", deal.object_id, {"closeloop_invoice_number_c": "INV-1"})
    assert driver.deal_fields(deal) == {"closeloop_invoice_number": "INV-1"}
    sugar.sandbox.update_record("Accounts", company.object_id, {"closeloop_total_paid_c": "5"})
    assert driver.customer_fields(company) == {"closeloop_total_paid": "5"}
    driver.subscribe("https://hooks.example/")
    urls = {h["url"] for h in sugar.sandbox.hooks()}
    assert urls == {
        "https://hooks.example/webhooks/sugarcrm/contacts/tok",
        "https://hooks.example/webhooks/sugarcrm/deals/tok",
    }
    assert isinstance(company, CrmRef) and company.crm == "sugarcrm"


def test_the_product_catalog_defaults_to_active_filters_by_status_and_has_the_supplier_field(sugar: Sugar) -> None:
    sandbox = sugar.sandbox
    # Given two catalogue entries, one retired, and one deleted
    widget = sandbox.create_record("ProductTemplates", {"name": "Widget", "mft_part_num": "W-1", "cost_price": "4"})
    sandbox.create_record("ProductTemplates", {"name": "Old", "mft_part_num": "O-1", "active_status": "Retired"})
    gone = sandbox.create_record("ProductTemplates", {"name": "Gone", "mft_part_num": "G-1"})
    sandbox.delete_record("ProductTemplates", str(gone["id"]))
    # Then a new entry is Active (the vardef's default), money comes back as a decimal string, and the filter
    # API lists the live entries, by status too
    assert (widget["active_status"], widget["cost_price"]) == ("Active", "4.000000")
    listed = sugar.filter("ProductTemplates", fields="name,active_status", order_by="name:ASC")
    assert [(r["name"], r["active_status"]) for r in listed["records"]] == [("Old", "Retired"), ("Widget", "Active")]
    active = sugar.filter("ProductTemplates", filter=[{"active_status": "Active"}], fields="mft_part_num")
    assert [r["mft_part_num"] for r in active["records"]] == ["W-1"]
    # And the metadata lists Closeloop's supplier field as a custom field
    meta = sugar.call("GET", "/metadata", params={"type_filter": "modules", "module_filter": "ProductTemplates"})
    fields = meta.json()["modules"]["ProductTemplates"]["fields"]
    supplier = fields["closeloop_supplier_c"]
    assert (supplier["type"], supplier["source"]) == ("varchar", "custom_fields")
    assert fields["active_status"]["type"] == "enum"


def test_the_driver_hooks_the_product_catalog_to_the_contacts_route(sugar: Sugar) -> None:
    driver = SugarCrmDriver(sugar.sandbox, webhook_token="tok")
    driver.subscribe("https://hooks.example/")
    hooks = {(h["module"], h["trigger_event"]): h["url"] for h in sugar.sandbox.hooks()}
    assert hooks[("ProductTemplates", "after_save")] == "https://hooks.example/webhooks/sugarcrm/contacts/tok"
    assert hooks[("ProductTemplates", "after_delete")] == "https://hooks.example/webhooks/sugarcrm/contacts/tok"
    # A save queues one payload naming the bean class
    sugar.sandbox.create_record("ProductTemplates", {"name": "Widget", "mft_part_num": "W-1"})
    assert sugar.sandbox.pending_hooks() == 1
    queued = sugar.sandbox._queue[0].payload  # noqa: SLF001 - what the dispatch job will send
    assert (queued["bean"], queued["event"], queued["data"]["mft_part_num"]) == ("ProductTemplate", "after_save", "W-1")


def test_control_api_seeds_reads_and_resets(sugar: Sugar) -> None:
    control = httpx.Client(base_url=sugar.url)
    created = control.post("/_sandbox/records/Accounts", json={"name": "Seeded"}).json()
    assert control.get(f"/_sandbox/records/Accounts/{created['id']}").json()["name"] == "Seeded"
    assert control.post("/_sandbox/clock", json={"advance": 5}).status_code == 200
    assert control.get("/_sandbox/requests").json()["requests"][0]["path"] == f"{API}/oauth2/token"
    control.post("/_sandbox/reset")
    assert sugar.sandbox.records("Accounts") == [] and sugar.sandbox.state.requests == []
    control.close()


def test_versions_above_the_configured_maximum_are_301_incorrect_version_before_auth(sugar: Sugar) -> None:
    # Given a sandbox standing in for Sugar 13.3 (highest REST version v11_23)
    sugar.sandbox.max_api_version = "v11_23"
    with httpx.Client(base_url=sugar.url) as raw:
        # When a call names v11_24, even without a token: 301 with Sugar's documented label and the range
        refused = raw.get("/rest/v11_24/ping")
        assert refused.status_code == 301
        assert refused.json() == {
            "error": "incorrect_version",
            "error_message": "Please change your requested API version to value between 10 and 11.23.",
        }
        # And the versions it answers go on to authentication and routing
        assert raw.get("/rest/v11_23/ping").json()["error"] == "need_login"
        assert raw.get("/rest/v11/ping", headers={"OAuth-Token": sugar.token}).json() == "pong"
        assert raw.get("/rest/v10/ping", headers={"OAuth-Token": sugar.token}).json() == "pong"
    # And a malformed maximum is refused when the sandbox is made
    with pytest.raises(ValueError, match="v11_24"):
        SugarSandbox(max_api_version="latest")
