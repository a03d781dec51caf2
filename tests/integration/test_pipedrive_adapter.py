"""The Pipedrive adapter against the Pipedrive sandbox over HTTP: customers, deals, fields, limits, webhooks and
the webhook body schema generated from the parser's model (it accepts Pipedrive's deliveries, refuses what the
parser refuses)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from werkzeug.wrappers import Request, Response

from closeloop.errors import AuthRevoked, ConfigurationError, NotFound, RateLimited, ValidationFailed, WebhookRejected
from closeloop.models import CrmRef
from closeloop.paging import PagingLoop
from closeloop.ports import WebhookRequest
from closeloop.sync.invoices import CUSTOMER_PROPERTIES, DEAL_PROPERTIES
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.drivers import DealLine
from closeloop_local.sandboxes.pipedrive import PipedriveDriver, PipedriveSandbox, serve

USER, PASSWORD, SECRET = "closeloop", "basic-pass", "path-secret-1234-Hq7Wc2Zr9Lm4Tx8Vb5Nd3Kp6"


@pytest.fixture
def sandbox() -> Iterator[tuple[PipedriveSandbox, SandboxServer]]:
    pipedrive, server = serve()
    yield pipedrive, server
    server.stop()


def crm(pipedrive: PipedriveSandbox, url: str, **kwargs: Any) -> PipedriveCrm:
    return PipedriveCrm(
        api_token=lambda: pipedrive.api_token,
        webhook_user=USER,
        webhook_password=PASSWORD,
        webhook_path_secret=SECRET,
        base_url=url,
        sleep=lambda s: None,
        **kwargs,
    )


def ref(object_type: str, object_id: object) -> CrmRef:
    return CrmRef.model_validate({"crm": "pipedrive", "object_type": object_type, "object_id": str(object_id)})


def seed_org(pipedrive: PipedriveSandbox) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    vat = pipedrive.add_field("organization", "VAT number")
    org = pipedrive.create(
        "organization",
        {
            "name": "Acme Ltd",
            "address": {"value": "1 Long Lane, London", "street_number": "1", "route": "Long Lane",
                        "locality": "London", "postal_code": "EC1A 9HF", "country": "United Kingdom"},
            "custom_fields": {vat: "GB123"},
        },
    )  # fmt: skip
    ann = pipedrive.create(
        "person",
        {
            "name": "Ann Archer",
            "org_id": org["id"],
            "emails": [{"value": "old@acme.test"}, {"value": "ANN@acme.test", "primary": True}],
            "phones": [{"value": "+44 1", "primary": True}],
        },
    )
    bob = pipedrive.create("person", {"name": "Bob Baker", "org_id": org["id"], "emails": [{"value": "bob@acme.test"}]})
    return org, ann, bob


def test_organization_resolves_with_its_persons_vat_and_address(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    org, ann, bob = seed_org(pipedrive)
    adapter = crm(pipedrive, server.url)
    # When the organization is resolved
    customer = adapter.resolve_customer(ref("company", org["id"]))
    # Then the oldest person is the primary contact (primary email of its array), the others are people
    assert customer is not None
    assert (customer.name, customer.email, customer.phone, customer.tax_number) == (
        "Acme Ltd",
        "ann@acme.test",
        "+44 1",
        "GB123",
    )
    assert (customer.first_name, customer.last_name) == ("Ann", "Archer")
    assert (customer.address.line1, customer.address.city, customer.address.postal_code) == (
        "1 Long Lane",
        "London",
        "EC1A 9HF",
    )
    assert [p.email for p in customer.people] == ["bob@acme.test"]
    # And a person of the organization resolves to the organization (the billable customer)
    via_person = adapter.resolve_customer(ref("contact", bob["id"]))
    assert via_person is not None and via_person.ref == ref("company", org["id"])
    assert ann["id"] < bob["id"]


def test_person_without_organization_is_its_own_customer_and_missing_ones_are_none(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    solo = pipedrive.create("person", {"first_name": "Sol", "last_name": "Trader", "emails": [{"value": "s@t.test"}]})
    gone = pipedrive.create("organization", {"name": "Gone"})
    pipedrive.delete("organization", gone["id"])
    adapter = crm(pipedrive, server.url)
    customer = adapter.resolve_customer(ref("contact", solo["id"]))
    assert customer is not None
    assert (customer.ref, customer.name, customer.email) == (ref("contact", solo["id"]), "Sol Trader", "s@t.test")
    assert adapter.resolve_customer(ref("company", gone["id"])) is None
    assert adapter.resolve_customer(ref("company", 999)) is None
    assert adapter.resolve_customer(ref("contact", "not-a-number")) is None


def test_resolve_customers_reads_persons_and_organizations_in_batches(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    org, ann, bob = seed_org(pipedrive)
    solo = pipedrive.create("person", {"name": "Sol"})
    refs = [ref("company", org["id"]), ref("contact", ann["id"]), ref("contact", solo["id"]), ref("contact", 404)]
    adapter = crm(pipedrive, server.url)
    adapter.resolve_customer(ref("company", org["id"]))  # warms the field cache
    pipedrive.state.reset_log()
    # When four refs are resolved at once
    resolved = adapter.resolve_customers(refs)
    # Then every ref is a key, the org's two refs share one customer, and the reads were batched by ids
    assert set(resolved) == set(refs)
    assert resolved[refs[0]] == resolved[refs[1]]
    company = resolved[refs[0]]
    assert company is not None and company.ref == refs[0]
    solo_customer = resolved[refs[2]]
    assert solo_customer is not None and solo_customer.ref == refs[2]
    assert resolved[refs[3]] is None
    paths = [(r.path, r.query) for r in pipedrive.state.requests]
    assert len([p for p in paths if p[0] == "/api/v2/persons" and "ids=" in p[1]]) == 1
    assert len([p for p in paths if p[0] == "/api/v2/organizations"]) == 1
    assert len(paths) == 3  # persons by ids, organizations by ids, the organization's persons


def deal_with_products(pipedrive: PipedriveSandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    org = pipedrive.create("organization", {"name": "Acme"})
    person = pipedrive.create("person", {"name": "Ann", "org_id": org["id"]})
    widget = pipedrive.create("product", {"name": "Widget", "code": "SKU-W"})
    gadget = pipedrive.create("product", {"name": "Gadget", "code": "SKU-G"})
    deal = pipedrive.create(
        "deal", {"title": "Big deal", "currency": "eur", "org_id": org["id"], "person_id": person["id"]}
    )
    pipedrive.add_deal_product(deal["id"], {"product_id": widget["id"], "item_price": "10.10", "quantity": 3})
    pipedrive.add_deal_product(
        deal["id"],
        {"product_id": gadget["id"], "item_price": "100", "quantity": 2, "discount": 10, "discount_type": "percentage"},
    )
    pipedrive.add_deal_product(
        deal["id"],
        {"product_id": widget["id"], "item_price": "50", "quantity": 4, "discount": 20, "discount_type": "amount"},
    )
    return org, deal


def test_get_deal_reads_products_as_line_items_with_skus_and_exact_money(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    org, deal = deal_with_products(pipedrive)
    adapter = crm(pipedrive, server.url)
    # Given the deal is still open
    open_deal = adapter.get_deal(str(deal["id"]))
    assert open_deal is not None and not open_deal.is_won and open_deal.close_date is None
    # When it is won and read again
    pipedrive.update("deal", deal["id"], {"status": "won"})
    won = adapter.get_deal(str(deal["id"]))
    # Then status won is what counts; value, currency, parties, link and lines are exact
    assert won is not None and won.is_won
    assert won.amount == Decimal("30.3") + Decimal("180") + Decimal("180")
    assert won.currency == "EUR"
    assert won.company == ref("company", org["id"]) and won.contact is not None
    assert won.close_date == datetime.now(UTC).date()
    assert won.url == f"https://{pipedrive.company_domain}.pipedrive.com/deal/{deal['id']}"
    widget, gadget, discounted = won.line_items
    # Each line names the product it was made from (the catalogue sync's key)
    (widget_id,), (gadget_id,) = pipedrive.find("product", code="SKU-W"), pipedrive.find("product", code="SKU-G")
    assert [line.product_id for line in won.line_items] == [str(widget_id), str(gadget_id), str(widget_id)]
    assert (widget.sku, widget.quantity, widget.unit_price, widget.discount_percent) == (
        "SKU-W",
        Decimal(3),
        Decimal("10.10"),
        None,
    )
    assert (gadget.sku, gadget.unit_price, gadget.discount_percent, gadget.amount) == (
        "SKU-G",
        Decimal(100),
        Decimal(10),
        Decimal(180),
    )
    # An amount discount of 20 over 4 units is folded into the unit price, exactly
    assert (discounted.unit_price, discounted.discount_percent, discounted.amount) == (Decimal(45), None, Decimal(180))
    # And a deal that does not exist is None
    assert adapter.get_deal("987654") is None


def test_iter_won_deals_pages_and_keeps_only_the_won_time_range(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    start = datetime.fromtimestamp(int(pipedrive.now()), UTC)
    early = pipedrive.create("deal", {"title": "early", "status": "won"})
    pipedrive.state.clock.advance(3600)
    inside = [pipedrive.create("deal", {"title": f"in {i}", "status": "won", "value": "10.5"}) for i in range(3)]
    pipedrive.create("deal", {"title": "open"})
    pipedrive.state.clock.advance(3600)
    pipedrive.create("deal", {"title": "late", "status": "won"})
    # Given the early deal was edited later (its update time moves, its won time does not)
    pipedrive.update("deal", early["id"], {"title": "early, edited"})
    adapter = crm(pipedrive, server.url)
    adapter.PAGE_SIZE = 2  # type: ignore[misc]
    # When the won deals of the middle hour are listed
    deals = list(adapter.iter_won_deals(start + timedelta(minutes=30), start + timedelta(minutes=90)))
    # Then exactly the three won inside it come, over several pages, without line items
    assert [d.ref.object_id for d in deals] == [str(d["id"]) for d in inside]
    assert all(d.is_won and d.amount == Decimal("10.5") and d.line_items == () for d in deals)
    assert len(pipedrive.state.calls("GET", "/api/v2/deals")) >= 2


def test_iter_changes_since_reads_recents_paged_as_stable_events(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    pipedrive.create("organization", {"name": "before"})
    pipedrive.state.clock.advance(60)
    since = datetime.fromtimestamp(int(pipedrive.now()), UTC)
    org = pipedrive.create("organization", {"name": "Acme"})
    person = pipedrive.create("person", {"name": "Ann"})
    deal = pipedrive.create("deal", {"title": "D"})
    product = pipedrive.create("product", {"name": "Widget", "code": "SKU-W"})
    pipedrive.delete("person", person["id"])
    adapter = crm(pipedrive, server.url)
    adapter.PAGE_SIZE = 2  # type: ignore[misc]
    # When the changes since then are read
    events = list(adapter.iter_changes_since(since))
    again = list(adapter.iter_changes_since(since))
    # Then each changed company/contact/deal/product comes once, deletions as such, with stable dedupe keys
    # (products joined the poll with the catalogue sync: this test's expectations changed with it)
    kinds = {(e.ref.object_type, e.ref.object_id): e.kind for e in events}
    assert kinds == {
        ("company", str(org["id"])): "changed",
        ("contact", str(person["id"])): "deleted",
        ("deal", str(deal["id"])): "changed",
        ("product", str(product["id"])): "changed",
    }
    assert [e.dedupe_key for e in events] == [e.dedupe_key for e in again]
    assert len(pipedrive.state.calls("GET", "/v1/recents")) == 4


def scripted(pages: dict[str, dict[str, Any]], asked: list[str]) -> httpx.MockTransport:
    """Pipedrive answering each GET from ``pages`` by its query's paging position (``cursor`` or ``start``)."""

    def answer(request: httpx.Request) -> httpx.Response:
        position = request.url.params.get("cursor", request.url.params.get("start", ""))
        asked.append(position)
        return httpx.Response(200, json=pages[position])

    return httpx.MockTransport(answer)


def test_a_repeated_v2_cursor_is_a_paging_loop_after_the_rows_before_it() -> None:
    # Given a v2 list whose third page hands back the first page's cursor
    pages = {
        "": {"success": True, "data": [{"id": 1}], "additional_data": {"next_cursor": "c1"}},
        "c1": {"success": True, "data": [{"id": 2}], "additional_data": {"next_cursor": "c2"}},
        "c2": {"success": True, "data": [{"id": 3}], "additional_data": {"next_cursor": "c1"}},
    }
    asked: list[str] = []
    adapter = PipedriveCrm(api_token="t", transport=scripted(pages, asked), company_domain="acme")
    # When the deals are listed
    with pytest.raises(PagingLoop, match="c1"):
        list(adapter.iter_won_deals(datetime(2026, 1, 1), datetime(2027, 1, 1)))
    # Then each page was read once, in order, and the loop refused before reading c1 again
    assert asked == ["", "c1", "c2"]


def test_a_recents_next_start_that_goes_back_is_refused_even_to_an_unread_offset() -> None:
    # Given /v1/recents pages at 0 and 2, and the page at 2 pointing back to 1 (never read, but not ahead)
    def recents(start: int, ids: list[int], next_start: int) -> dict[str, Any]:
        rows = [{"item": "deal", "id": i, "data": {"id": i, "update_time": "2026-01-01 00:00:00"}} for i in ids]
        pagination = {"start": start, "limit": 2, "more_items_in_collection": True, "next_start": next_start}
        return {"success": True, "data": rows, "additional_data": {"pagination": pagination}}

    pages = {"0": recents(0, [1, 2], 2), "2": recents(2, [3, 4], 1)}
    asked: list[str] = []
    adapter = PipedriveCrm(api_token="t", transport=scripted(pages, asked))
    events: list[str] = []
    # When the changes are read
    with pytest.raises(PagingLoop, match="/v1/recents"):
        events.extend(e.ref.object_id for e in adapter.iter_changes_since(datetime(2026, 1, 1, tzinfo=UTC)))
    # Then the rows before it came, and offset 1 was never asked for
    assert events == ["1", "2", "3", "4"] and asked == ["0", "2"]


def test_write_back_needs_the_fields_then_maps_names_to_hashes(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    deal = pipedrive.create("deal", {"title": "D"})
    adapter = crm(pipedrive, server.url)
    values = {
        "closeloop_invoice_number": "INV-0001",
        "closeloop_payment_status": "partially_paid",
        "closeloop_amount_due": "12.30",
        "closeloop_last_payment_date": "2026-03-04",
    }
    # Given the fields do not exist: the write is refused before anything is sent (the sync creates them)
    with pytest.raises(ValidationFailed):
        adapter.update_deals({str(deal["id"]): values})
    assert pipedrive.state.calls("PATCH") == []
    # When they are ensured (twice: the second time creates nothing) and the write is repeated
    assert len(adapter.ensure_properties("deal", DEAL_PROPERTIES)) == len(DEAL_PROPERTIES)
    assert adapter.ensure_properties("deal", DEAL_PROPERTIES) == []
    adapter.update_deals({str(deal["id"]): values})
    # Then Pipedrive holds them by hash (the enum as its option), and the deal reads them back by name
    assert PipedriveDriver(pipedrive).deal_fields(ref("deal", deal["id"])) == {**values, "closeloop_amount_due": "12.3"}
    key = pipedrive.field_key("deal", "closeloop_invoice_number")
    assert key is not None and len(key) == 40
    patch = json.loads(pipedrive.state.calls("PATCH")[-1].body)
    assert patch["custom_fields"][key] == "INV-0001"
    read = adapter.get_deal(str(deal["id"]))
    assert read is not None and read.synced["closeloop_payment_status"] == "partially_paid"
    # And "" clears a value
    adapter.update_deals({str(deal["id"]): {"closeloop_invoice_number": ""}})
    assert "closeloop_invoice_number" not in PipedriveDriver(pipedrive).deal_fields(ref("deal", deal["id"]))


def test_field_created_elsewhere_is_found_by_rereading_the_definitions(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    deal = pipedrive.create("deal", {"title": "D"})
    adapter = crm(pipedrive, server.url)
    assert adapter.get_deal(str(deal["id"])) is not None  # caches the (empty) definitions
    # Given another worker created the field since
    pipedrive.add_field("deal", "closeloop_invoice_number")
    # When this adapter writes it
    adapter.update_deals({str(deal["id"]): {"closeloop_invoice_number": "INV-9"}})
    # Then it re-read the definitions once instead of failing
    assert PipedriveDriver(pipedrive).deal_fields(ref("deal", deal["id"])) == {"closeloop_invoice_number": "INV-9"}


def test_every_deal_is_written_and_then_the_first_failure_raised(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    deal = pipedrive.create("deal", {"title": "D"})
    adapter = crm(pipedrive, server.url)
    adapter.ensure_properties("deal", DEAL_PROPERTIES)
    # When one deal of two is gone, and a value is not an option of the enum
    with pytest.raises(NotFound):
        adapter.update_deals(
            {"424242": {"closeloop_invoice_number": "X"}, str(deal["id"]): {"closeloop_amount_paid": "5"}}
        )
    with pytest.raises(ValidationFailed):
        adapter.update_deals({str(deal["id"]): {"closeloop_payment_status": "bribed"}})
    # Then the existing deal was still written
    assert PipedriveDriver(pipedrive).deal_fields(ref("deal", deal["id"])) == {"closeloop_amount_paid": "5"}


def test_update_customers_writes_organizations_and_persons(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    org = pipedrive.create("organization", {"name": "Acme"})
    solo = pipedrive.create("person", {"name": "Sol"})
    adapter = crm(pipedrive, server.url)
    assert adapter.ensure_properties("company", CUSTOMER_PROPERTIES)
    assert adapter.ensure_properties("contact", CUSTOMER_PROPERTIES)
    adapter.update_customers(
        {
            ref("company", org["id"]): {"closeloop_outstanding_balance": "100.25"},
            ref("contact", solo["id"]): {"closeloop_total_paid": "7"},
        }
    )
    driver = PipedriveDriver(pipedrive)
    assert driver.customer_fields(ref("company", org["id"])) == {"closeloop_outstanding_balance": "100.25"}
    assert driver.customer_fields(ref("contact", solo["id"])) == {"closeloop_total_paid": "7"}
    with pytest.raises(ValueError, match="not a customer"):
        adapter.update_customers({ref("deal", 1): {}})


def test_a_refused_api_token_is_a_setup_error_not_a_retry(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    adapter = PipedriveCrm(api_token="revoked", base_url=server.url, sleep=lambda s: None)
    with pytest.raises(AuthRevoked, match="PIPEDRIVE_API_TOKEN"):
        adapter.get_deal("1")
    assert len(pipedrive.state.requests) == 1


def test_an_error_body_names_pipedrives_code_and_message_without_pii() -> None:
    # Given Pipedrive refusing a write with its error body (the message quotes an email)
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            field = {"field_code": "h" * 40, "field_name": "closeloop_status", "field_type": "varchar"}
            return httpx.Response(200, json={"success": True, "data": [field], "additional_data": {}})
        error = {"success": False, "error": "Bad value for ann@acme.test", "errorCode": 400, "error_info": "docs"}
        return httpx.Response(400, json=error)

    adapter = PipedriveCrm(api_token="t", transport=httpx.MockTransport(answer), sleep=lambda s: None)
    # When a deal is written
    with pytest.raises(ValidationFailed) as caught:
        adapter.update_deals({"1": {"closeloop_status": "Paid"}})
    # Then the error says what Pipedrive said, with its code, and the email masked
    assert "[400] Bad value for <email>" in str(caught.value) and "ann@" not in str(caught.value)


def test_a_401_is_a_revoked_token_whatever_its_body() -> None:
    for body in (b"<html>nope</html>", b'{"success": false, "error": "unauthorized access", "errorCode": 401}'):
        transport = httpx.MockTransport(lambda request, body=body: httpx.Response(401, content=body))
        adapter = PipedriveCrm(api_token="t", transport=transport, sleep=lambda s: None)
        with pytest.raises(AuthRevoked, match="PIPEDRIVE_API_TOKEN") as caught:
            adapter.get_deal("1")
        assert caught.value.status == 401


def test_burst_429_is_retried_after_its_retry_after(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    deal = pipedrive.create("deal", {"title": "D"})
    slept: list[float] = []
    adapter = crm(pipedrive, server.url)
    adapter._sleep = slept.append  # noqa: SLF001 - observe the backoff
    pipedrive.state.faults.append(
        Fault("/api/v2/deals/*", 429, times=2, headers={"Retry-After": "2", "x-ratelimit-remaining": "0"})
    )
    # When the first two reads are over the burst limit
    found = adapter.get_deal(str(deal["id"]))
    # Then the adapter waited at least Retry-After each time and got the deal
    assert found is not None
    assert len(slept) == 2 and all(s >= 2 for s in slept)


def test_spent_daily_budget_is_rate_limited_without_waiting() -> None:
    pipedrive, server = serve(PipedriveSandbox(daily_token_budget=15))
    try:
        deal = pipedrive.create("deal", {"title": "D"})
        adapter = crm(pipedrive, server.url, company_domain="acme")
        assert adapter.get_deal(str(deal["id"])) is not None  # 1 + 10 tokens
        # When the budget cannot pay for the products list any more
        with pytest.raises(RateLimited) as caught:
            adapter.get_deal(str(deal["id"]))
        # Then it is a daily problem (the burst window had room), raised after one refused call
        assert caught.value.problem == "daily"
        assert [r.status for r in pipedrive.state.requests][-1] == 429
        assert len([r for r in pipedrive.state.requests if r.status == 429]) == 1
    finally:
        server.stop()


def test_server_errors_are_retried_then_surface(sandbox: tuple[PipedriveSandbox, SandboxServer]) -> None:
    pipedrive, server = sandbox
    org = pipedrive.create("organization", {"name": "Acme"})
    pipedrive.state.faults.append(Fault("/api/v2/organizations", 502, times=1))
    assert crm(pipedrive, server.url).resolve_customer(ref("company", org["id"])) is not None


# -- webhooks ------------------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_verify_webhook_needs_both_the_basic_credentials_and_the_path_secret() -> None:
    adapter = PipedriveCrm(webhook_user=USER, webhook_password=PASSWORD, webhook_path_secret=SECRET)
    good_uri = f"https://hooks.example.com/webhooks/pipedrive/deals/{SECRET}"
    adapter.verify_webhook(WebhookRequest("POST", good_uri, basic(USER, PASSWORD), b"{}"))
    rejected = [
        (good_uri, {}),
        (good_uri, basic(USER, "wrong")),
        (good_uri, basic("someone", PASSWORD)),
        (good_uri, {"Authorization": "Basic !!!"}),
        (good_uri, {"Authorization": "Bearer x"}),
        ("https://hooks.example.com/webhooks/pipedrive/deals/guess", basic(USER, PASSWORD)),
        ("https://hooks.example.com/webhooks/pipedrive/deals", basic(USER, PASSWORD)),
    ]
    for uri, headers in rejected:
        with pytest.raises(WebhookRejected) as caught:
            adapter.verify_webhook(WebhookRequest("POST", uri, headers, b"not even json"))
        assert caught.value.status == 401


@pytest.mark.parametrize("configured", ["", "short-path-secret", "x" * 31])
def test_a_missing_or_short_path_secret_is_a_configuration_error_never_a_match(configured: str) -> None:
    # Given a deployment whose URL secret is unset or guessable (under 32 characters)
    adapter = PipedriveCrm(webhook_user=USER, webhook_password=PASSWORD, webhook_path_secret=configured)
    # When a delivery carries exactly that secret
    request = WebhookRequest("POST", f"https://hooks.example.com/webhooks/pipedrive/deals/{configured}",
                             basic(USER, PASSWORD), b"{}")  # fmt: skip
    # Then it is refused as misconfiguration (the API answers 503 and alarms), naming the key, not the value
    with pytest.raises(ConfigurationError, match="PIPEDRIVE_WEBHOOK_PATH_SECRET") as caught:
        adapter.verify_webhook(request)
    assert not configured or configured not in str(caught.value)


def test_parse_webhook_rejects_malformed_bodies_and_ignores_other_entities() -> None:
    adapter = PipedriveCrm()
    for body in (b"\xff", b"{", b"[]", b'{"meta": {"id": "x"}}', b'{"meta": {"id": "x", "action": "change",'
                 b' "entity": "deal", "entity_id": "1", "timestamp": "soon"}}'):  # fmt: skip
        with pytest.raises(WebhookRejected) as caught:
            adapter.parse_webhook(body)
        assert caught.value.status == 400
    note = {
        "meta": {"id": "u", "action": "create", "entity": "note", "entity_id": "5", "timestamp": "2026-01-01T00:00:00Z"}
    }
    assert adapter.parse_webhook(json.dumps(note).encode()) == []


class Inbox:
    """Closeloop's webhook route in miniature: verify then parse what the sandbox delivers."""

    def __init__(self, adapter: PipedriveCrm, public_base: str, fail_first: int = 0) -> None:
        self.adapter = adapter
        self.public_base = public_base
        self.fail_first = fail_first
        self.events: list[Any] = []
        self.statuses: list[int] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        uri = self.public_base + request.path
        try:
            self.adapter.verify_webhook(
                WebhookRequest(request.method, uri, dict(request.headers.items()), request.get_data())
            )
            events = self.adapter.parse_webhook(request.get_data())
            status = 500 if self.fail_first > 0 else 200
            self.fail_first -= 1
            if status == 200:
                self.events.extend(events)
        except WebhookRejected as exc:
            status = exc.status
        self.statuses.append(status)
        return Response("{}", status=status)(environ, start_response)


def test_sandbox_deliveries_verify_and_parse_into_pipeline_events() -> None:
    pipedrive, api = serve()
    inbox = Inbox(crm(pipedrive, api.url), "https://hooks.example.com", fail_first=1)
    hooks = SandboxServer(inbox).start()
    try:
        driver = PipedriveDriver(pipedrive)
        driver.path_secret, driver.webhook_user, driver.webhook_password = SECRET, USER, PASSWORD
        driver.subscribe(hooks.url)
        product = pipedrive.create("product", {"name": "Widget", "code": "SKU-W"})
        # When a company is created and a won deal is made for it (open, products, then won)
        company = driver.create_company("Acme", email="a@acme.test")
        deal = driver.create_won_deal(company, [DealLine("SKU", "Widget", Decimal(1), Decimal(5))], currency="EUR")
        driver.flush_webhooks()
        # Then every delivery verified (the first failed once and came back with the same event)
        assert 401 not in inbox.statuses and inbox.statuses[0] == 500
        types = {(e.ref.object_type, e.kind) for e in inbox.events}
        assert {("company", "created"), ("contact", "created"), ("deal", "created"), ("deal", "changed")} <= types
        # (products have a webhook now, for the catalogue sync: the product's creation is an event too)
        assert any(e.ref.object_id == str(product["id"]) for e in inbox.events if e.ref.object_type == "product")
        won = [e for e in inbox.events if e.ref == deal and e.property_name == "status"]
        assert len(won) == 1 and won[0].kind == "changed" and won[0].source_type == "deal.change"
        dedupe = [e.dedupe_key for e in inbox.events]
        assert len(dedupe) == len(set(dedupe))
        first = json.loads(next(d for d in pipedrive.deliveries if d.get("attempt") == 2)["body"])
        redelivered = inbox.adapter.parse_webhook(json.dumps(first).encode())[0]
        assert redelivered.dedupe_key in dedupe  # a redelivery dedupes against the original
        # And a delivery with the wrong password is refused with 401
        for hook in pipedrive.webhooks():
            pipedrive.add_webhook({**hook, "http_auth_password": "wrong", "subscription_url": hook["subscription_url"]})
        pipedrive.update("organization", company.object_id, {"name": "Acme 2"})
        pipedrive.flush_webhooks()
        assert 401 in inbox.statuses
    finally:
        hooks.stop()
        api.stop()


# -- the webhook body schema: generated from the parser's model, held to Pipedrive's deliveries ------------------

ROUTE = "/webhooks/pipedrive/{pipeline}/{secret}"

#: The v2 guide's delivery as /work/shared/vendors/crm.md section 2 quotes it (a deal won, custom money field).
GUIDE_EXAMPLE: dict[str, Any] = {
    "meta": {
        "action": "change", "entity": "deal", "version": "2.0", "company_id": "12882925", "user_id": "18487521",
        "id": "0b1f6f0e-5f7c-4a47-a6a8-3e2b2f0c9d11", "entity_id": "1", "correlation_id": "c0ffee",
        "webhook_id": "99", "webhook_owner_id": "18487521", "type": "general", "is_bulk_edit": False,
        "attempt": 1, "host": "acme.pipedrive.com", "timestamp": "2025-01-01T00:00:00.000Z",
        "change_source": "app", "permitted_user_ids": ["18487521"],
    },
    "data": {
        "id": 1, "title": "test deal", "value": 2, "currency": "USD", "status": "won", "stage_id": 5,
        "pipeline_id": 1, "person_id": 3, "org_id": 2, "custom_fields": {"a" * 40: {"value": 500, "currency": "USD"}},
    },
    "previous": {"status": "open"},
}  # fmt: skip

#: Bodies that are JSON but not a delivery the parser takes (the timestamp's format aside: see below).
REFUSED: list[Any] = [
    [],
    {},
    {"meta": "deal"},
    {"meta": {"id": "x"}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "entity_id": ""}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "action": None}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "entity": 7}},
    {**GUIDE_EXAMPLE, "data": []},
    {**GUIDE_EXAMPLE, "previous": "open"},
]


def validator() -> Draft202012Validator:
    document = openapi_document()
    operation = document["paths"][ROUTE]["post"]
    assert "requestBody" in operation, "the route's body schema is generated from its model"
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_the_schema_accepts_the_v2_guides_delivery_and_the_parser_reads_it() -> None:
    # Given the schema generated from the parser's model
    schema = validator()
    # When the guide's delivery is checked and parsed
    errors = [e.message for e in schema.iter_errors(GUIDE_EXAMPLE)]
    events = PipedriveCrm().parse_webhook(json.dumps(GUIDE_EXAMPLE).encode())
    # Then both take it: a won transition on deal 1
    assert errors == []
    assert [(e.ref.object_id, e.kind, e.property_name, e.actor) for e in events] == [
        ("1", "changed", "status", "userId:18487521")
    ]


def test_every_sandbox_delivery_is_valid_under_the_schema() -> None:
    # Given the sandbox delivering creates, a won deal's changes and a delete to a working inbox
    pipedrive, api = serve()
    inbox = Inbox(crm(pipedrive, api.url), "https://hooks.example.com")
    hooks = SandboxServer(inbox).start()
    try:
        driver = PipedriveDriver(pipedrive)
        driver.path_secret, driver.webhook_user, driver.webhook_password = SECRET, USER, PASSWORD
        driver.subscribe(hooks.url)
        company = driver.create_company("Acme", email="a@acme.test")
        driver.create_won_deal(company, [DealLine("SKU", "Widget", Decimal(1), Decimal("5.10"))], currency="EUR")
        pipedrive.delete("organization", company.object_id)
        driver.flush_webhooks()
        bodies = [json.loads(d["body"]) for d in pipedrive.deliveries if "body" in d]
    finally:
        hooks.stop()
        api.stop()
    # Then there were deliveries of each action, all answered 200 and all valid under the schema
    assert {b["meta"]["action"] for b in bodies} == {"create", "change", "delete"}
    assert set(inbox.statuses) == {200}
    schema = validator()
    assert [e.message for body in bodies for e in schema.iter_errors(body)] == []


@pytest.mark.parametrize("body", REFUSED, ids=[json.dumps(b)[:40] for b in REFUSED])
def test_what_the_parser_refuses_the_schema_refuses(body: Any) -> None:
    # When a body the parser refuses with a 400 is checked against the schema
    with pytest.raises(WebhookRejected) as caught:
        PipedriveCrm().parse_webhook(json.dumps(body).encode())
    # Then the schema refuses it too
    assert caught.value.status == 400
    assert not validator().is_valid(body)


def test_a_timestamp_is_checked_by_the_parser_only() -> None:
    # The schema says "a string" (JSON Schema formats are not asserted); the parser also reads it as a time
    body = {**GUIDE_EXAMPLE, "meta": {**GUIDE_EXAMPLE["meta"], "timestamp": "soon"}}
    assert validator().is_valid(body)
    with pytest.raises(WebhookRejected, match="meta.timestamp: not a timestamp"):
        PipedriveCrm().parse_webhook(json.dumps(body).encode())


def test_org_address_is_written_with_v2_sub_fields_only_and_no_nulls(
    sandbox: tuple[PipedriveSandbox, SandboxServer],
) -> None:
    pipedrive, server = sandbox
    org, _, _ = seed_org(pipedrive)
    pipedrive.update("organization", org["id"], {"address": {**org["address"], "admin_area_level_2": "City"}})
    adapter = crm(pipedrive, server.url)
    # When the canonical address changes (the old adapter sent formatted_address and nulls: the API refuses)
    refused = adapter.update_customer_fields(
        ref("company", org["id"]),
        {"address.line1": "2 Short Street", "address.line2": "Floor 3", "address.region": "", "address.city": "Leeds"},
    )
    # Then it is written, with only the schema's sub-fields, none of them null, and the unmodelled county kept
    assert refused == []
    body = json.loads(pipedrive.state.calls("PATCH", f"/api/v2/organizations/{org['id']}")[-1].body)["address"]
    assert body == {
        "value": "2 Short Street, Floor 3, Leeds, EC1A 9HF, United Kingdom",
        "route": "2 Short Street",
        "subpremise": "Floor 3",
        "locality": "Leeds",
        "admin_area_level_2": "City",
        "postal_code": "EC1A 9HF",
        "country": "United Kingdom",
    }
    customer = adapter.resolve_customer(ref("company", org["id"]))
    assert customer is not None
    assert (customer.address.line1, customer.address.line2, customer.address.city, customer.address.region) == (
        "2 Short Street",
        "Floor 3",
        "Leeds",
        "",
    )


def test_every_pipedrive_guess_says_how_to_confirm_it() -> None:
    from closeloop.vendors.pipedrive.guesses import GUESSES

    assert GUESSES and all("Confirm" in note for note in GUESSES.values())
