"""The Pipedrive sandbox behaves like api.pipedrive.com, over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from closeloop.models import CrmRef
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.drivers import DealLine
from closeloop_local.sandboxes.pipedrive import PipedriveDriver, PipedriveSandbox, serve

TOKEN = "sandbox-pipedrive-api-token"


@dataclass
class Drive:
    sandbox: PipedriveSandbox
    server: SandboxServer
    api: httpx.Client  # authenticated like the production adapter
    control: httpx.Client


@pytest.fixture
def make_drive() -> Iterator[Callable[..., Drive]]:
    opened: list[Drive] = []

    def make(**kwargs: Any) -> Drive:
        sandbox, server = serve(PipedriveSandbox(**kwargs))
        drive = Drive(
            sandbox,
            server,
            httpx.Client(base_url=server.url, headers={"x-api-token": TOKEN}, timeout=10),
            httpx.Client(base_url=server.url, timeout=10),
        )
        opened.append(drive)
        return drive

    yield make
    for drive in opened:
        drive.api.close()
        drive.control.close()
        drive.server.stop()


@pytest.fixture
def drive(make_drive: Callable[..., Drive]) -> Drive:
    return make_drive()


@dataclass
class Receiver:
    """A webhook endpoint: records every POST and answers with queued statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        with self.lock:
            self.received.append(({k.lower(): v for k, v in request.headers.items()}, request.get_data()))
            status = self.statuses.pop(0) if self.statuses else 200
        return Response("ok", status=status)(environ, start_response)

    def payloads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    server = SandboxServer(app).start()
    yield app, server.url
    server.stop()


def test_requests_without_the_api_token_get_pipedrives_401_body(drive: Drive) -> None:
    # When a request carries no token, or a wrong one
    missing = drive.control.get("/api/v2/deals")
    wrong = drive.control.get("/api/v2/deals", headers={"x-api-token": "nope"})
    # Then both get Pipedrive's 401 shape, and the api_token query parameter is accepted too
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["success"] is False
        assert response.json()["error"] == "unauthorized access"
        assert response.json()["errorCode"] == 401
    assert drive.control.get("/api/v2/deals", params={"api_token": TOKEN}).status_code == 200


def test_missing_records_and_unknown_paths_are_404_with_the_error_shape(drive: Drive) -> None:
    response = drive.api.get("/api/v2/deals/999")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": "Deal not found",
        "errorCode": 404,
        "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
        "data": None,
        "additional_data": None,
    }
    assert drive.api.get("/api/v2/nothing").status_code == 404


UNKNOWN = "Unknown method {method} {path}"
ROUTE_ANSWERS: list[tuple[str, str, int, str | None]] = [
    # (method, path, status, error: None for a success, UNKNOWN for the unknown-route answer)
    ("GET", "/api/v2/deals/", 200, None),  # empty path segments do not matter
    ("GET", "/api//v2/deals/1", 200, None),
    ("GET", "/api/v2/deals/1/products", 200, None),
    ("GET", "/api/v2/productFields", 200, None),
    ("GET", "/v1/personFields", 200, None),
    ("GET", "/v1//users/me/", 200, None),
    ("GET", "/v1/webhooks", 200, None),
    ("GET", "/api/v2/nothing", 404, UNKNOWN),
    ("GET", "/", 404, UNKNOWN),
    ("PUT", "/api/v2/deals", 404, UNKNOWN),
    ("PUT", "/api/v2/deals/1", 404, UNKNOWN),
    ("GET", "/api/v2/deals/1/2", 404, UNKNOWN),
    ("GET", "/api/v2/organizations/1/products", 404, UNKNOWN),
    ("PATCH", "/api/v2/dealFields", 404, UNKNOWN),
    ("GET", "/api/v2/dealFields/1", 404, UNKNOWN),
    ("GET", "/v1/deals", 404, UNKNOWN),
    ("DELETE", "/v1/dealFields", 404, UNKNOWN),
    ("POST", "/v1/users/me", 404, UNKNOWN),
    ("POST", "/v1/recents", 404, UNKNOWN),
    ("GET", "/v2/deals", 404, UNKNOWN),
    ("PATCH", "/v1/webhooks", 404, UNKNOWN),
    ("GET", "/v1/webhooks/100", 404, UNKNOWN),
    ("DELETE", "/v1/webhooks/100/x", 404, UNKNOWN),
    ("DELETE", "/v1/webhooks/abc", 404, "Webhook not found"),
    ("GET", "/api/v2/deals/x", 404, "Deal not found"),
    ("PUT", "/api/v2/deals/1/products", 404, UNKNOWN),
    ("PUT", "/api/v2/deals/999/products", 404, "Deal not found"),  # the deal is looked up before the method
]


def test_every_route_answers_and_anything_else_is_pipedrives_unknown_method_404(drive: Drive) -> None:
    drive.sandbox.create("deal", {"title": "Routed"})
    for method, path, status, error in ROUTE_ANSWERS:
        response = drive.api.request(method, path)
        assert response.status_code == status, (method, path)
        if error is None:
            assert response.json()["success"] is True, (method, path)
        else:
            message = error.format(method=method, path=path)
            assert (response.json()["error"], response.json()["errorCode"]) == (message, status), (method, path)
    # HEAD takes no route (werkzeug would match it to a GET rule)
    assert drive.api.head("/api/v2/deals").status_code == 404
    assert drive.api.head("/v1/users/me").status_code == 404
    assert [r.status for r in drive.sandbox.state.calls("HEAD")] == [404, 404]


def test_v2_field_definitions_carry_every_field_the_published_model_requires(drive: Drive) -> None:
    # Given a custom deal field created through the v2 API, beside the built-in fields
    created = drive.api.post("/api/v2/dealFields", json={"field_name": "closeloop_x", "field_type": "varchar"})
    # When the fields are listed
    listed = drive.api.get("/api/v2/dealFields").json()["data"]
    # Then each carries what GetDealFields200ResponseDataInner requires (pipedrive/client-nodejs v2 models)
    required = {"field_name", "field_code", "field_type", "is_custom_field", "is_optional_response_field"}
    for definition in [created.json()["data"], *listed]:
        assert required <= definition.keys()
        assert definition["is_optional_response_field"] is False


def test_custom_fields_are_keyed_by_a_40_char_hash_and_validated(drive: Drive) -> None:
    # Given a text and an enum deal field created through the v2 fields API
    text = drive.api.post(
        "/api/v2/dealFields", json={"field_name": "closeloop_invoice_number", "field_type": "varchar"}
    )
    enum = drive.api.post(
        "/api/v2/dealFields",
        json={"field_name": "closeloop_payment_status", "field_type": "enum", "options": [{"label": "paid"}]},
    )
    text_key, enum_key = text.json()["data"]["field_code"], enum.json()["data"]["field_code"]
    paid_id = enum.json()["data"]["options"][0]["id"]
    assert re.fullmatch(r"[0-9a-f]{40}", text_key)
    deal = drive.api.post("/api/v2/deals", json={"title": "Big deal"}).json()["data"]
    # When values are written by hash (an enum by option id)
    patched = drive.api.patch(
        f"/api/v2/deals/{deal['id']}", json={"custom_fields": {text_key: "INV-1", enum_key: paid_id}}
    )
    # Then they read back by hash, and the v1 list shows the same fields as key/name
    assert patched.status_code == 200
    assert patched.json()["data"]["custom_fields"] == {text_key: "INV-1", enum_key: paid_id}
    v1 = {f["name"]: f["key"] for f in drive.api.get("/v1/dealFields").json()["data"]}
    assert v1["closeloop_invoice_number"] == text_key
    # And an unknown hash, or a label instead of an option id, is a 400 that writes nothing
    assert drive.api.patch(f"/api/v2/deals/{deal['id']}", json={"custom_fields": {"f" * 40: "x"}}).status_code == 400
    assert drive.api.patch(f"/api/v2/deals/{deal['id']}", json={"custom_fields": {enum_key: "paid"}}).status_code == 400
    # And null clears a value
    cleared = drive.api.patch(f"/api/v2/deals/{deal['id']}", json={"custom_fields": {text_key: None}})
    assert cleared.json()["data"]["custom_fields"][text_key] is None


def test_v2_lists_page_by_cursor_and_filter_by_ids_and_org(drive: Drive) -> None:
    org = drive.sandbox.create("organization", {"name": "Acme"})
    for index in range(5):
        drive.sandbox.create("person", {"name": f"P {index}", "org_id": org["id"] if index % 2 == 0 else None})
    # When persons are listed two at a time
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = drive.api.get("/api/v2/persons", params=params).json()
        seen.extend(p["id"] for p in page["data"])
        cursor = page["additional_data"]["next_cursor"]
        if not cursor:
            break
        params["cursor"] = cursor
    # Then every person comes once, in id order; and the filters narrow the list
    assert seen == [1, 2, 3, 4, 5]
    by_org = drive.api.get("/api/v2/persons", params={"org_id": org["id"]}).json()["data"]
    assert [p["id"] for p in by_org] == [1, 3, 5]
    assert [p["id"] for p in drive.api.get("/api/v2/persons", params={"ids": "2,4"}).json()["data"]] == [2, 4]
    assert drive.api.get("/api/v2/persons", params={"ids": ",".join(map(str, range(1, 102)))}).status_code == 400
    assert drive.api.get("/api/v2/persons", params={"limit": 501}).status_code == 400
    # And a name alone is split into first and last name, as Pipedrive does
    assert (by_org[0]["first_name"], by_org[0]["last_name"]) == ("P", "0")


def test_winning_a_deal_sets_won_time_and_products_set_its_value(drive: Drive) -> None:
    product = drive.sandbox.create("product", {"name": "Widget", "code": "SKU-1"})
    deal = drive.api.post("/api/v2/deals", json={"title": "D", "currency": "EUR"}).json()["data"]
    # When two deal products are added (one discounted by an amount) and the deal is won
    drive.api.post(
        f"/api/v2/deals/{deal['id']}/products",
        json={"product_id": product["id"], "item_price": 10.5, "quantity": 2},
    )
    drive.api.post(
        f"/api/v2/deals/{deal['id']}/products",
        json={"product_id": product["id"], "item_price": 100, "quantity": 1, "discount": 5, "discount_type": "amount"},
    )
    won = drive.api.patch(f"/api/v2/deals/{deal['id']}", json={"status": "won"}).json()["data"]
    # Then the value is the sum of the products' sums, exact, and the won time is set
    assert won["value"] == 116
    assert won["status"] == "won" and won["won_time"] and won["close_time"]
    rows = drive.api.get(f"/api/v2/deals/{deal['id']}/products").json()["data"]
    assert [Decimal(str(r["sum"])) for r in rows] == [Decimal("21"), Decimal("95")]
    # And reopening clears the won time; won deals filter by status
    reopened = drive.api.patch(f"/api/v2/deals/{deal['id']}", json={"status": "open"}).json()["data"]
    assert reopened["won_time"] is None
    assert drive.api.get("/api/v2/deals", params={"status": "won"}).json()["data"] == []


def test_burst_limit_answers_429_with_rate_limit_headers(make_drive: Callable[..., Drive]) -> None:
    drive = make_drive(burst_limit=2)
    first = drive.api.get("/api/v2/deals")
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    drive.api.get("/api/v2/deals")
    # When a third request comes within the 2-second window
    refused = drive.api.get("/api/v2/deals")
    # Then it is a 429 with Retry-After and the x-ratelimit headers, and the window frees up later
    assert refused.status_code == 429
    assert refused.json()["error"] == "Request over limit"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-remaining"] == "0"
    drive.sandbox.state.clock.advance(2.5)
    assert drive.api.get("/api/v2/deals").status_code == 200


def test_daily_token_budget_counts_token_costs_until_the_next_day(make_drive: Callable[..., Drive]) -> None:
    # Given a budget of 25 tokens: a v2 list costs 10
    drive = make_drive(daily_token_budget=25)
    assert drive.api.get("/api/v2/deals").headers["x-daily-ratelimit-token-remaining"] == "15"
    drive.api.get("/api/v2/deals")
    # When the budget cannot pay for the next list
    refused = drive.api.get("/api/v2/deals")
    # Then it is refused with the daily header at 0, while a cheaper call still fits, until the next day
    assert refused.status_code == 429
    assert refused.headers["x-daily-ratelimit-token-remaining"] == "5"
    assert drive.api.get("/api/v2/deals/1").status_code == 404  # 1 token
    drive.sandbox.state.clock.advance(86_400)
    assert drive.api.get("/api/v2/deals").status_code == 200


def test_recents_lists_changes_since_a_timestamp_with_v1_paging(drive: Drive) -> None:
    org = drive.sandbox.create("organization", {"name": "Old"})
    drive.sandbox.state.clock.advance(120)
    since = drive.control.get("/_sandbox/clock").json()["now"].replace("T", " ").rstrip("Z")
    drive.sandbox.update("organization", org["id"], {"name": "New"})
    drive.sandbox.create("deal", {"title": "D"})
    drive.sandbox.create("person", {"name": "P"})
    # When recents are read since then, two at a time
    first = drive.api.get("/v1/recents", params={"since_timestamp": since, "limit": 2}).json()
    second = drive.api.get(
        "/v1/recents",
        params={"since_timestamp": since, "limit": 2, "start": first["additional_data"]["pagination"]["next_start"]},
    ).json()
    # Then the three changes come once each, and the last page says there is no more
    items = [(r["item"], r["id"]) for r in first["data"] + second["data"]]
    assert sorted(items) == [("deal", 1), ("organization", 1), ("person", 1)]
    assert second["additional_data"]["pagination"]["more_items_in_collection"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first["data"][0]["data"]["update_time"])
    assert drive.api.get("/v1/recents").status_code == 400


def test_webhooks_deliver_v2_events_with_basic_auth_and_only_changed_fields(
    drive: Drive, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    created = drive.api.post(
        "/v1/webhooks",
        json={
            "subscription_url": f"{url}/hook",
            "event_action": "*",
            "event_object": "deal",
            "http_auth_user": "u",
            "http_auth_password": "p",
            "version": "2.0",
        },
    )
    assert created.status_code == 201
    assert created.json()["data"]["http_auth_password"] == "******"
    deal = drive.sandbox.create("deal", {"title": "D"})
    drive.sandbox.update("deal", deal["id"], {"status": "won"})
    drive.sandbox.create("organization", {"name": "not subscribed"})
    # When the pending deliveries are flushed
    result = drive.sandbox.flush_webhooks()
    # Then one POST per deal event arrived, with Basic credentials, meta/data/previous
    assert result == {"attempts": 2, "succeeded": 2, "failed": 0}
    headers, _ = app.received[0]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    create, change = app.payloads()
    assert (create["meta"]["action"], create["meta"]["entity"], create["previous"]) == ("create", "deal", None)
    assert change["meta"]["action"] == "change" and change["data"]["status"] == "won"
    assert change["previous"]["status"] == "open"
    assert "title" not in change["previous"]  # only what changed
    assert change["meta"]["attempt"] == 1 and change["meta"]["entity_id"] == str(deal["id"])


def test_failed_deliveries_are_retried_after_3_30_150_seconds_with_the_same_event_id(
    drive: Drive, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    drive.sandbox.add_webhook({"subscription_url": url, "event_action": "*", "event_object": "*"})
    app.statuses.extend([500, 503, 500])
    drive.sandbox.create("organization", {"name": "Acme"})
    # When the receiver fails three times
    assert drive.sandbox.flush_webhooks()["failed"] == 1
    assert drive.sandbox.flush_webhooks()["attempts"] == 0  # the retry is not due yet
    for wait in (3, 30, 150):
        drive.sandbox.state.clock.advance(wait)
        drive.sandbox.flush_webhooks()
    # Then the fourth attempt succeeded, every attempt carrying the same event id and its attempt number
    payloads = app.payloads()
    assert [p["meta"]["attempt"] for p in payloads] == [1, 2, 3, 4]
    assert len({p["meta"]["id"] for p in payloads}) == 1
    assert drive.sandbox.pending_webhooks() == 0


def test_ten_failed_first_attempts_ban_the_webhook_and_lose_events(
    drive: Drive, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    drive.sandbox.add_webhook({"subscription_url": url, "event_action": "create", "event_object": "person"})
    app.statuses.extend([500] * 10)
    for index in range(10):
        drive.sandbox.create("person", {"name": f"P{index}"})
        drive.sandbox.flush_webhooks()
    # When an event happens during the 30-minute ban
    drive.sandbox.create("person", {"name": "lost"})
    # Then it is never delivered; after the ban, events flow again
    assert any(d.get("lost") for d in drive.sandbox.deliveries)
    drive.sandbox.state.clock.advance(31 * 60)
    drive.sandbox.create("person", {"name": "after"})
    drive.sandbox.flush_webhooks()
    names = [p["data"]["name"] for p in app.payloads() if p["meta"]["attempt"] == 1]
    assert "lost" not in names and names[-1] == "after"


def test_driver_subscribes_once_and_wins_a_deal_with_products(drive: Drive) -> None:
    driver = PipedriveDriver(drive.sandbox)
    # When setup runs twice
    driver.subscribe("https://hooks.example.com")
    driver.subscribe("https://hooks.example.com")
    # Then there is one webhook per entity (products too, for the catalogue sync: a deliberate change), each
    # with Basic credentials and the path secret
    hooks = drive.sandbox.webhooks()
    assert sorted(h["event_object"] for h in hooks) == ["deal", "organization", "person", "product"]
    assert all(h["subscription_url"].endswith(f"/{driver.path_secret}") for h in hooks)
    assert all(h["http_auth_user"] == driver.webhook_user for h in hooks)
    # And a won deal is open first, with products, then won
    company = driver.create_company("Acme", email="a@acme.test", tax_number="GB1", country="GB", city="London")
    ref = driver.create_won_deal(company, [DealLine("SKU-1", "Widget", Decimal(2), Decimal("10.25"))], currency="GBP")
    deal = drive.sandbox.get("deal", ref.object_id)
    assert deal is not None
    assert (deal["status"], deal["value"], deal["org_id"]) == ("won", Decimal("20.5"), int(company.object_id))
    assert drive.sandbox.custom_values("organization", company.object_id) == {"vat_number": "GB1"}
    assert driver.deal_fields(CrmRef(crm="pipedrive", object_type="deal", object_id=ref.object_id)) == {}


def test_v2_org_address_takes_only_the_schemas_string_sub_fields(drive: Drive) -> None:
    # Given an organization written with the v2 address sub-fields (OrganizationItemAddress)
    address = {"value": "1 Long Lane, Unit 4, London", "street_number": "1", "route": "Long Lane",
               "subpremise": "Unit 4", "locality": "London", "admin_area_level_1": "England",
               "admin_area_level_2": "Greater London", "postal_code": "EC1A 9HF",
               "country": "United Kingdom"}  # fmt: skip
    created = drive.api.post("/api/v2/organizations", json={"name": "Acme", "address": address})
    assert created.status_code in {200, 201}, created.text
    org_id = created.json()["data"]["id"]
    # Then every sub-field is stored and read back
    assert drive.api.get(f"/api/v2/organizations/{org_id}").json()["data"]["address"] == address
    # When a write carries formatted_address, an unknown key or a null sub-field: 400, nothing stored
    for bad in ({**address, "formatted_address": "x"}, {"value": "x", "street": "x"}, {"value": "x", "route": None}):
        refused = drive.api.patch(f"/api/v2/organizations/{org_id}", json={"address": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["success"] is False
    assert drive.api.get(f"/api/v2/organizations/{org_id}").json()["data"]["address"] == address
    # And a null address (nullable in the update schema) clears it
    cleared = drive.api.patch(f"/api/v2/organizations/{org_id}", json={"address": None})
    assert cleared.status_code == 200 and cleared.json()["data"]["address"] is None


# -- the product catalogue ------------------------------------------------------------------------------------


def test_products_keep_one_price_per_currency_and_default_to_a_zero_price(drive: Drive) -> None:
    # When a product is made with two prices through the API
    made = drive.api.post(
        "/api/v2/products",
        json={"name": "Widget", "code": "W-1", "prices": [{"currency": "eur", "price": 12.5, "cost": 4},
                                                          {"currency": "USD", "price": 14}]},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    product = made.json()["data"]
    # Then each entry is stored as prices-array.ts has it: upper-case currency, exact numbers, cost 0 when none
    assert product["prices"] == [
        {"product_id": product["id"], "currency": "EUR", "price": 12.5, "cost": 4, "direct_cost": None, "notes": ""},
        {"product_id": product["id"], "currency": "USD", "price": 14, "cost": 0, "direct_cost": None, "notes": ""},
    ]
    # And a product made without prices gets a price of 0 in the user's default currency
    bare = drive.api.post("/api/v2/products", json={"name": "Bare"}).json()["data"]
    assert [(p["currency"], p["price"]) for p in bare["prices"]] == [("USD", 0)]
    assert drive.api.get("/v1/users/me").json()["data"]["default_currency"] == "USD"
    # When a write repeats a currency, lacks one, or carries a key the price entry does not have: 400
    refused_prices: list[list[dict[str, Any]]] = [
        [{"currency": "USD", "price": 1}, {"currency": "usd", "price": 2}],
        [{"price": 1}],
        [{"currency": "USD", "price": 1, "overhead_cost": 0}],
        [{"currency": "USD", "price": "x"}],
    ]
    for prices in refused_prices:
        refused = drive.api.patch(f"/api/v2/products/{product['id']}", json={"prices": prices})
        assert refused.status_code == 400, prices
        assert refused.json()["success"] is False
    assert drive.api.get(f"/api/v2/products/{product['id']}").json()["data"]["prices"] == product["prices"]


def test_product_fields_are_listed_and_made_like_the_other_field_collections(drive: Drive) -> None:
    # Given the company's own product fields
    fields = drive.api.get("/api/v2/productFields").json()["data"]
    assert [(f["field_code"], f["field_type"], f["is_custom_field"]) for f in fields] == [
        ("name", "varchar", False),
        ("code", "varchar", False),
        ("prices", "price_list", False),
    ]
    # When a custom product field is made
    made = drive.api.post("/api/v2/productFields", json={"field_name": "closeloop_supplier", "field_type": "varchar"})
    assert made.status_code == 200, made.text
    key = made.json()["data"]["field_code"]
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    # Then products carry it under custom_fields by its hash, and a system field type cannot be made
    product = drive.api.post("/api/v2/products", json={"name": "W", "custom_fields": {key: "Acme"}}).json()["data"]
    assert product["custom_fields"] == {key: "Acme"}
    refused = drive.api.post("/api/v2/productFields", json={"field_name": "x", "field_type": "price_list"})
    assert refused.status_code == 400


def test_deleted_products_leave_lists_and_single_reads_and_lists_sort_by_name(drive: Drive) -> None:
    made = [drive.sandbox.create("product", {"name": name}) for name in ("b", "c", "a")]
    drive.sandbox.delete("product", made[1]["id"])
    # Then the deleted one is gone (404) and the others sort by name when asked
    assert drive.api.get(f"/api/v2/products/{made[1]['id']}").status_code == 404
    names = [p["name"] for p in drive.api.get("/api/v2/products", params={"sort_by": "name"}).json()["data"]]
    assert names == ["a", "b"]
    assert drive.api.get("/api/v2/deals", params={"sort_by": "name"}).status_code == 400
