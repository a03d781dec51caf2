"""The SugarCRM adapter against the SugarCRM sandbox over HTTP: every port method (the product catalogue too),
tokens, limits, quirks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from werkzeug.wrappers import Request, Response

from closeloop.errors import (
    AuthRevoked,
    ConfigurationError,
    Conflict,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
    WebhookRejected,
)
from closeloop.http import typed_error
from closeloop.models import CrmRef, SyncEvent
from closeloop.oauth import RefreshingTokens
from closeloop.paging import PagingLoop
from closeloop.ports import CatalogueCrm, CrmPort, PropertyDefinition, WebhookRequest
from closeloop.rules import FieldRules
from closeloop.sync.products import ProductSync
from closeloop.vendors.sugarcrm import SPEC
from closeloop.vendors.sugarcrm.adapter import ChangesPosition, SugarCrm
from closeloop.vendors.sugarcrm.client import API_PREFIX, fault_of, parse_api_version, password_grant, read_fault
from closeloop.vendors.sugarcrm.guesses import GUESSES
from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.base import Exchange, Fault, SandboxServer, recording
from closeloop_local.sandboxes.drivers import DealLine
from closeloop_local.sandboxes.sugarcrm import SugarCrmDriver, SugarSandbox, serve
from tests.contracts.contract import load
from tests.fakes import FakeCatalogueBooks, MemoryStore, ProcessKilled

HOOK_TOKEN = "hook-token-8d1e-Qm3xV9pL2rT7wY5zK8nB4cF6"  # noqa: S105 - a test value
TOKEN_PATH = f"{API_PREFIX}/oauth2/token"


@pytest.fixture
def sandbox() -> Iterator[tuple[SugarSandbox, SandboxServer]]:
    sugar, server = serve()
    yield sugar, server
    server.stop()


def adapter(
    sugar: SugarSandbox,
    url: str,
    *,
    store: MemoryStore | None = None,
    password: str | None = None,
    platform: str = "closeloop",
    api_version: str = "discover",
) -> SugarCrm:
    tokens = RefreshingTokens(
        "sugarcrm",
        store or MemoryStore(),
        seed=lambda fresh: "",
        refresh=password_grant(
            url,
            username=lambda: sugar.username,
            password=lambda: password if password is not None else sugar.password,
            platform=platform,
            api_version=api_version,
        ),
        write_back=lambda token: None,
    )
    return SugarCrm(
        instance_url=url, tokens=tokens, webhook_token=HOOK_TOKEN, sleep=lambda s: None, api_version=api_version
    )


def bodies(sugar: SugarSandbox, method: str, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sugar.state.calls(method, path)]


def company(sugar: SugarSandbox) -> tuple[str, list[str]]:
    """An account with two contacts (the older one is the main person) and a multi-line street."""
    account = sugar.create_record(
        "Accounts",
        {
            "name": "Acme Ltd",
            "phone_office": "+44 20 7946 0000",
            "vat_number_c": "GB123456789",
            "billing_address_street": "1 Long Lane\nUnit 4",
            "billing_address_city": "London",
            "billing_address_postalcode": "EC1A 9HF",
            "billing_address_country": "United Kingdom",
        },
    )
    ann = sugar.create_record(
        "Contacts",
        {
            "first_name": "Ann",
            "last_name": "Archer",
            "email": [{"email_address": "Ann@Acme.test", "primary_address": True}],
            "phone_work": "+44 1",
            "account_id": account["id"],
        },
    )
    sugar.state.clock.advance(1)
    bob = sugar.create_record(
        "Contacts", {"first_name": "Bob", "last_name": "Baker", "email": "bob@acme.test", "account_id": account["id"]}
    )
    return str(account["id"]), [str(ann["id"]), str(bob["id"])]


def ref(object_type: str, object_id: str) -> CrmRef:
    return CrmRef.model_validate({"crm": "sugarcrm", "object_type": object_type, "object_id": object_id})


# -- customers -----------------------------------------------------------------------------------------


def test_company_resolves_with_its_people_primary_first(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, (ann, bob) = company(sugar)
    # When the company is resolved
    customer = adapter(sugar, server.url).resolve_customer(ref("company", account_id))
    # Then the oldest contact is the main person and the other one is a contact person
    assert customer is not None
    assert (customer.name, customer.email, customer.first_name, customer.phone) == (
        "Acme Ltd",
        "ann@acme.test",
        "Ann",
        "+44 1",
    )
    assert customer.tax_number == "GB123456789"
    assert [p.crm_id for p in customer.people] == [bob]
    # And Sugar's one-field street becomes two address lines
    assert (customer.address.line1, customer.address.line2, customer.address.city) == (
        "1 Long Lane",
        "Unit 4",
        "London",
    )


def test_contact_resolves_to_its_account_or_to_itself(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, (ann, _) = company(sugar)
    loner = sugar.create_record("Contacts", {"first_name": "Cy", "last_name": "Cole", "email": "cy@solo.test"})
    crm = adapter(sugar, server.url)
    # A contact with an account is billed as the account
    via_account = crm.resolve_customer(ref("contact", ann))
    assert via_account is not None and via_account.ref == ref("company", account_id)
    # A contact without one is a customer of its own
    alone = crm.resolve_customer(ref("contact", str(loner["id"])))
    assert alone is not None and (alone.ref.object_type, alone.name, alone.email) == (
        "contact",
        "Cy Cole",
        "cy@solo.test",
    )
    # A deleted or unknown record is None, not an error
    assert crm.resolve_customer(ref("contact", "no-such-id")) is None
    assert crm.resolve_customer(ref("company", "no-such-id")) is None
    with pytest.raises(ValueError, match="deal"):
        crm.resolve_customer(ref("deal", "1"))


def test_resolve_customers_uses_filter_batches_and_matches_single_reads(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    account_id, (ann, bob) = company(sugar)
    loner = str(sugar.create_record("Contacts", {"first_name": "Cy", "last_name": "Cole"})["id"])
    crm = adapter(sugar, server.url)
    refs = [ref("company", account_id), ref("contact", bob), ref("contact", loner), ref("contact", "gone")]
    # When many customers are resolved at once
    sugar.state.reset_log()
    resolved = crm.resolve_customers(refs)
    # Then the batch costs three filter calls (contacts, accounts, their people), no per-record reads
    api_calls = [r.path for r in sugar.state.requests if not r.path.endswith("/oauth2/token")]
    assert [p.rsplit("/", 2)[-2] for p in api_calls] == ["Contacts", "Accounts", "Contacts"]
    assert all(p.endswith("/filter") for p in api_calls)
    # And every ref is a key, and the answers equal the one-by-one reads
    assert set(resolved) == set(refs)
    assert resolved[ref("contact", "gone")] is None
    assert resolved[ref("contact", bob)] == resolved[ref("company", account_id)]
    assert resolved[ref("company", account_id)] == crm.resolve_customer(ref("company", account_id))
    assert resolved[ref("contact", loner)] == crm.resolve_customer(ref("contact", loner))


# -- deals ---------------------------------------------------------------------------------------------


def won_deal(sugar: SugarSandbox, currency: str = "GBP") -> tuple[str, str]:
    account_id, _ = company(sugar)
    lines = [
        DealLine("WID-1", "Widget", Decimal(2), Decimal("10.50")),
        DealLine("GAD-9", "Gadget", Decimal(1), Decimal("99.99")),
    ]
    deal = SugarCrmDriver(sugar).create_won_deal(ref("company", account_id), lines, currency=currency)
    return account_id, deal.object_id


def test_get_deal_reads_line_items_skus_currency_and_link(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, deal_id = won_deal(sugar)
    sugar.update_record("Opportunities", deal_id, {"closeloop_invoice_number_c": "INV-7"})
    crm = adapter(sugar, server.url)
    # When the deal is read
    deal = crm.get_deal(deal_id)
    # Then it is won, billed to its account, in the currency's ISO code, with exact amounts
    assert deal is not None
    assert (deal.is_won, deal.stage, deal.currency, deal.company) == (
        True,
        "Closed Won",
        "GBP",
        ref("company", account_id),
    )
    assert deal.amount == Decimal("120.99")
    assert sorted((li.sku, li.quantity, li.unit_price, li.amount) for li in deal.line_items) == [
        ("GAD-9", Decimal(1), Decimal("99.99"), Decimal("99.99")),
        ("WID-1", Decimal(2), Decimal("10.5"), Decimal("21")),
    ]
    assert deal.url == f"{server.url}/#Opportunities/{deal_id}"
    assert deal.synced == {"closeloop_invoice_number": "INV-7"}
    # And the currency is looked up once per process
    crm.get_deal(deal_id)
    assert len(sugar.state.calls("GET", f"{API_PREFIX}/Currencies/*")) == 1
    assert crm.get_deal("no-such-deal") is None


def test_discounts_percentage_exact_money_and_inexact_money(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    _, deal_id = won_deal(sugar)
    lines = {r["name"]: r["id"] for r in sugar.records("RevenueLineItems")}
    crm = adapter(sugar, server.url)
    # Given a 10 % discount on one line and 1.00 off the two widgets of the other
    sugar.update_record("RevenueLineItems", lines["Gadget"], {"discount_amount": "10", "discount_select": True})
    sugar.update_record("RevenueLineItems", lines["Widget"], {"discount_amount": "1.00"})
    deal = crm.get_deal(deal_id)
    assert deal is not None
    by_name = {li.name: li for li in deal.line_items}
    # Then the percentage is kept and the money discount is folded into an exact unit price
    assert (by_name["Gadget"].discount_percent, by_name["Gadget"].unit_price) == (Decimal(10), Decimal("99.99"))
    assert by_name["Widget"].unit_price == Decimal("10.00") and by_name["Widget"].discount_percent is None
    # But a money discount that is no exact unit price is refused, never rounded
    sugar.update_record("RevenueLineItems", lines["Widget"], {"quantity": "3", "discount_amount": "1.00"})
    with pytest.raises(ValidationFailed, match="not an exact unit price"):
        crm.get_deal(deal_id)


def test_deal_without_account_names_its_first_contact(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    contact = sugar.create_record("Contacts", {"first_name": "Cy", "last_name": "Cole"})
    deal = sugar.create_record("Opportunities", {"name": "Solo", "amount": "50", "sales_stage": "Prospecting"})
    sugar.link_contact_to_opportunity(str(deal["id"]), str(contact["id"]))
    read = adapter(sugar, server.url).get_deal(str(deal["id"]))
    assert read is not None
    assert (read.company, read.contact, read.is_won, read.currency) == (
        None,
        ref("contact", contact["id"]),
        False,
        "USD",
    )


def test_iter_won_deals_filters_the_close_date_range_and_pages(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    won, lost = "Closed Won", "Closed Lost"
    days = [("2024-04-30", won), ("2024-05-01", won), ("2024-05-15", lost), ("2024-05-20", won)]
    for day, stage in [*days, ("2024-05-31", won), ("2024-06-01", won)]:
        sugar.create_record("Opportunities", {"name": day, "sales_stage": stage, "date_closed": day, "amount": "1"})
    crm = adapter(sugar, server.url)
    crm.PAGE_SIZE = 2  # type: ignore[misc]
    # When May is asked for
    may = list(crm.iter_won_deals(datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)))
    # Then only won deals closed in May come, over several pages
    assert [d.name for d in may] == ["2024-05-01", "2024-05-20", "2024-05-31"]
    assert len(sugar.state.calls("POST", f"{API_PREFIX}/Opportunities/filter")) == 2
    # And a range starting after midnight excludes that day
    later = crm.iter_won_deals(datetime(2024, 5, 1, 9, tzinfo=UTC), datetime(2024, 5, 21, tzinfo=UTC))
    assert [d.name for d in later] == ["2024-05-20"]


# -- webhooks and catch-up -------------------------------------------------------------------------------


class Receiver:
    """Stands in for Closeloop's webhook route: records what Sugar POSTs."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((request.url, request.get_data()))
        return Response("{}", status=self.status, content_type="application/json")(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, SandboxServer]]:
    hook = Receiver()
    server = SandboxServer(hook).start()
    yield hook, server
    server.stop()


def test_hook_delivery_verifies_parses_and_matches_the_catch_up_key(
    sandbox: tuple[SugarSandbox, SandboxServer], receiver: tuple[Receiver, SandboxServer]
) -> None:
    sugar, server = sandbox
    hook, hook_server = receiver
    SugarCrmDriver(sugar, webhook_token=HOOK_TOKEN).subscribe(hook_server.url)
    crm = adapter(sugar, server.url)
    since = datetime.now(UTC) - timedelta(minutes=5)
    # Given an account created in Sugar and the dispatch job run
    account = sugar.create_record("Accounts", {"name": "Hooked Ltd"})
    sugar.run_hook_job()
    url, body = hook.received[0]
    assert url.endswith(f"/webhooks/sugarcrm/contacts/{HOOK_TOKEN}")
    # When Closeloop verifies and parses the delivery
    crm.verify_webhook(WebhookRequest("POST", url, {"Content-Type": "application/json"}, body))
    events = crm.parse_webhook(body)
    # Then it is one "created" company event, whose key the catch-up poll reproduces for the same change
    assert [(e.ref, e.kind) for e in events] == [(ref("company", account["id"]), "created")]
    caught_up = [e for e in crm.iter_changes_since(since) if e.ref == events[0].ref]
    assert [e.dedupe_key for e in caught_up] == [events[0].dedupe_key]
    # And a later update is a "changed" event with a new key
    sugar.state.clock.advance(1)
    sugar.update_record("Accounts", str(account["id"]), {"phone_office": "+1 555"})
    sugar.run_hook_job()
    changed = crm.parse_webhook(hook.received[-1][1])
    assert changed[0].kind == "changed" and changed[0].property_name == "phone_office"
    assert changed[0].dedupe_key != events[0].dedupe_key


def test_two_updates_within_one_second_are_two_changes_and_a_replay_is_one() -> None:
    crm = SugarCrm(instance_url="https://sugar.example", tokens=_NoTokens(), webhook_token=HOOK_TOKEN)
    data = {"id": "a-1", "date_modified": "2024-05-01T10:00:00-04:00", "modified_user_id": "u9"}

    def hook(changes: dict[str, Any]) -> bytes:
        body = {"bean": "Account", "event": "after_save", "isUpdate": True, "data": data, "dataChanges": changes}
        return json.dumps(body).encode()

    # Given two saves of one account within the same second (Sugar's date_modified has whole seconds)
    phone = hook({"phone_office": {"field_name": "phone_office", "before": "", "after": "+44 113"}})
    city = hook({"billing_address_city": {"field_name": "billing_address_city", "before": "", "after": "Leeds"}})
    # Then their hooks are two changes (the replay check and the worker's idempotency keep both)
    assert crm.parse_webhook(phone)[0].dedupe_key != crm.parse_webhook(city)[0].dedupe_key
    # And the same hook delivered again is the same change
    assert crm.parse_webhook(phone)[0].dedupe_key == crm.parse_webhook(phone)[0].dedupe_key


def test_webhook_token_is_checked_before_parsing(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    crm = adapter(sugar, server.url)
    body = b"not even json"
    for uri in (
        "https://hooks.example/webhooks/sugarcrm/deals/wrong-token",
        "https://hooks.example/webhooks/sugarcrm/deals",
        f"https://hooks.example/webhooks/sugarcrm/deals?token={HOOK_TOKEN}",
    ):
        with pytest.raises(WebhookRejected) as info:
            crm.verify_webhook(WebhookRequest("POST", uri, {}, body))
        assert info.value.status == 401
    crm.verify_webhook(WebhookRequest("POST", f"https://hooks.example/webhooks/sugarcrm/deals/{HOOK_TOKEN}/", {}, body))
    unconfigured = SugarCrm(instance_url=server.url, tokens=crm._tokens, webhook_token=lambda: "")
    with pytest.raises(ConfigurationError):
        unconfigured.verify_webhook(WebhookRequest("POST", "https://h/webhooks/sugarcrm/deals/x", {}, body))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff", "UTF-8"),
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"data": {}}', "bean"),
        (b'{"bean": "Opportunity", "data": "x"}', "data"),
        (b'{"bean": "Opportunity", "data": {"date_modified": "2024-05-01T10:00:00+00:00"}}', "data.id"),
        (b'{"bean": "Opportunity", "data": {"id": "1", "date_modified": "yesterday"}}', "date_modified"),
    ],
)
def test_malformed_hook_bodies_are_400(body: bytes, message: str) -> None:
    crm = SugarCrm(instance_url="https://sugar.example", tokens=_NoTokens(), webhook_token=HOOK_TOKEN)
    with pytest.raises(WebhookRejected, match=message) as info:
        crm.parse_webhook(body)
    assert info.value.status == 400


def test_the_webhook_schema_is_the_parsers_model_and_holds_sugars_deliveries(
    sandbox: tuple[SugarSandbox, SandboxServer], receiver: tuple[Receiver, SandboxServer]
) -> None:
    # Given the webhook API's generated schema for the Sugar route (its components alongside)
    document = openapi_document()
    route = document["paths"]["/webhooks/sugarcrm/{pipeline}/{secret}"]["post"]
    schema = {**route["requestBody"]["content"]["application/json"]["schema"], "components": document["components"]}
    validator = Draft202012Validator(schema)
    # And deliveries as the sandbox sends them (a creation, an update, a deletion) and the documented sample
    sugar, _ = sandbox
    hook, hook_server = receiver
    SugarCrmDriver(sugar, webhook_token=HOOK_TOKEN).subscribe(hook_server.url)
    account = sugar.create_record("Accounts", {"name": "Schema Ltd"})
    sugar.state.clock.advance(1)
    sugar.update_record("Accounts", str(account["id"]), {"phone_office": "+1 555"})
    sugar.run_hook_job()
    documented = {
        "bean": "Opportunity",
        "event": "after_save",
        "isUpdate": True,
        "data": {"id": "e0623cdb-1", "date_modified": "2024-05-01T10:23:28-04:00", "sales_stage": "Closed Won"},
        "dataChanges": {"sales_stage": {"field_name": "sales_stage", "before": "Negotiation", "after": "Closed Won"}},
    }
    deliveries = [json.loads(body) for _, body in hook.received] + [documented, {**documented, "dataChanges": []}]
    assert len(deliveries) >= 4
    crm = SugarCrm(instance_url="https://sugar.example", tokens=_NoTokens(), webhook_token=HOOK_TOKEN)
    for delivery in deliveries:
        # Then the schema holds each, and the parser reads each
        assert list(validator.iter_errors(delivery)) == []
        assert crm.parse_webhook(json.dumps(delivery).encode())
    # And a delivery for a module Closeloop does not sync is held and ignored, whatever its record
    other = {"bean": "Notes", "event": "after_save", "data": {"id": "n1"}}
    assert list(validator.iter_errors(other)) == [] and crm.parse_webhook(json.dumps(other).encode()) == []
    # And a body the parser refuses, the schema refuses too
    for refused in ({"bean": "Opportunity"}, {**documented, "data": {"id": ""}}, {**documented, "bean": 5}):
        with pytest.raises(WebhookRejected):
            crm.parse_webhook(json.dumps(refused).encode())
        assert list(validator.iter_errors(refused))


class _NoTokens:
    def access_token(self, stale: str | None = None) -> str:
        raise AssertionError("parsing must not call Sugar")


def test_hook_kinds_modules_and_ignored_beans() -> None:
    crm = SugarCrm(instance_url="https://sugar.example", tokens=_NoTokens(), webhook_token=HOOK_TOKEN)
    data = {"id": "o-1", "date_modified": "2024-05-01T10:00:00-04:00", "modified_user_id": "u9"}

    def parse(**payload: Any) -> list[Any]:
        return crm.parse_webhook(json.dumps({"data": data, **payload}).encode())

    saved = parse(bean="Opportunity", event="after_save", isUpdate=True)
    assert (saved[0].ref, saved[0].kind, saved[0].actor) == (ref("deal", "o-1"), "changed", "userId:u9")
    assert saved[0].dedupe_key == "Opportunities:o-1:2024-05-01T14:00:00Z"
    deleted = parse(bean="Opportunity", event="after_delete", isUpdate=True)
    assert deleted[0].kind == "deleted" and deleted[0].dedupe_key != saved[0].dedupe_key
    assert parse(bean="Contact", isUpdate=False)[0].ref.object_type == "contact"
    assert parse(bean="Call", isUpdate=False) == []


def test_catch_up_pages_by_time_and_skips_nothing_changed_while_paging(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    since = datetime.now(UTC) - timedelta(minutes=1)
    # Given five accounts saved in the same second (more than a page) and two later ones
    ids = [str(sugar.create_record("Accounts", {"name": f"A{i}"})["id"]) for i in range(5)]
    sugar.state.clock.advance(2)
    ids += [str(sugar.create_record("Accounts", {"name": f"B{i}"})["id"]) for i in range(2)]
    crm = adapter(sugar, server.url)
    crm.PAGE_SIZE = 2  # type: ignore[misc]
    # When the poll pages, and one already-seen account is edited in the middle of it
    events = crm.iter_changes_since(since)
    first = [next(events) for _ in range(2)]
    sugar.state.clock.advance(2)
    sugar.update_record("Accounts", first[0].ref.object_id, {"name": "edited"})
    rest = [e for e in events if e.ref.object_type == "company"]
    # Then every account comes once per modification, the edit included, none skipped
    seen = [e.ref.object_id for e in first + rest]
    assert sorted(set(seen)) == sorted(ids)
    assert seen.count(first[0].ref.object_id) == 2
    assert len({e.dedupe_key for e in first + rest}) == len(seen)


def test_a_listing_whose_next_offset_does_not_advance_is_refused_not_cut_short(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    crm = adapter(sugar, server.url)
    # Given Sugar answering the account's contacts link with next_offset 0 on every page
    looping = {"next_offset": 0, "records": [{"id": "c-1", "first_name": "Ann"}]}
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Accounts/*/link/contacts", 200, times=5, body=looping))
    # When the company is resolved
    with pytest.raises(PagingLoop, match="repeated the paging position 0"):
        crm.resolve_customer(ref("company", account_id))
    # Then the loop is refused after one page, instead of the list ending silently after its first page
    assert len(sugar.state.calls("GET", f"{API_PREFIX}/Accounts/{account_id}/link/contacts")) == 1


def test_the_catch_up_position_is_a_keyset_with_an_offset_within_one_second() -> None:
    start = ChangesPosition(datetime(2024, 5, 1, 10, tzinfo=UTC), 0)
    same, later = start.since, start.since + timedelta(seconds=1)
    # A page within the second it started at moves on by offset (unreadable times count as rows read)
    assert start.after([same, None]) == ChangesPosition(same, 2)
    assert ChangesPosition(same, 2).after([same]) == ChangesPosition(same, 3)
    # A page reaching a later second moves the keyset there, from its first row
    assert ChangesPosition(same, 2).after([same, later]) == ChangesPosition(later, 0)


# -- writes and properties ---------------------------------------------------------------------------------


def test_update_deals_writes_custom_fields_and_clears_with_empty(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    _, deal_id = won_deal(sugar)
    crm = adapter(sugar, server.url)
    crm.update_deals({deal_id: {"closeloop_invoice_number": "INV-1", "closeloop_amount_due": "120.99"}})
    assert SugarCrmDriver(sugar).deal_fields(ref("deal", deal_id)) == {
        "closeloop_invoice_number": "INV-1",
        "closeloop_amount_due": "120.99",
    }
    assert bodies(sugar, "PUT", f"{API_PREFIX}/Opportunities/{deal_id}")[0] == {
        "closeloop_invoice_number_c": "INV-1",
        "closeloop_amount_due_c": "120.99",
    }
    crm.update_deals({deal_id: {"closeloop_invoice_number": ""}})
    assert "closeloop_invoice_number" not in SugarCrmDriver(sugar).deal_fields(ref("deal", deal_id))


def test_update_failures_write_the_rest_then_raise_the_first(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    _, deal_id = won_deal(sugar)
    crm = adapter(sugar, server.url)
    # A missing deal is NotFound, and the other deal is still written
    with pytest.raises(NotFound, match="no-such"):
        crm.update_deals({"no-such": {"closeloop_invoice_number": "X"}, deal_id: {"closeloop_invoice_number": "Y"}})
    assert SugarCrmDriver(sugar).deal_fields(ref("deal", deal_id))["closeloop_invoice_number"] == "Y"
    # A value Sugar refuses is ValidationFailed
    with pytest.raises(ValidationFailed):
        crm.update_deals({deal_id: {"closeloop_amount_due": "lots"}})
    # A field the instance lacks is silently ignored by Sugar: the adapter notices and says which
    sugar.remove_field("Opportunities", "closeloop_sync_issue_c")
    with pytest.raises(ValidationFailed, match="closeloop_sync_issue_c"):
        crm.update_deals({deal_id: {"closeloop_sync_issue": "off by 1"}})


def test_sugar_error_bodies_type_the_error_and_name_sugars_label(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    _, deal_id = won_deal(sugar)
    crm = adapter(sugar, server.url)
    # Given Sugar refusing a value with its error body (the message echoes an email)
    refusal = {"error": "invalid_parameter", "error_message": "Invalid value ann@acme.test for amount"}
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Opportunities/*", 422, method="PUT", body=refusal))
    # When the deal is written
    with pytest.raises(ValidationFailed) as info:
        crm.update_deals({deal_id: {"closeloop_amount_due": "x"}})
    # Then the error carries Sugar's label and its redacted message
    assert "[invalid_parameter] Invalid value" in info.value.message
    assert "ann@acme.test" not in info.value.message


def test_the_fault_reader_types_what_the_label_says_and_ignores_other_bodies() -> None:
    conflict = fault_of({"error": "edit_conflict", "error_message": "Edit conflict"})
    assert conflict is not None and (conflict.code, conflict.error) == ("edit_conflict", Conflict)
    assert typed_error(400, fault_of({"error": "not_found"}), "GET x").__class__ is NotFound
    unknown = fault_of({"error": "fatal_error", "error_message": "boom"})
    assert unknown is not None and (unknown.error, unknown.message) == (None, "boom")
    not_faults: list[object] = [[], {"error": ""}, {"message": "x"}, "oops"]
    assert [fault_of(body) for body in not_faults] == [None] * 4
    assert read_fault(httpx.Response(502, text="<html>Bad gateway</html>")) is None


def test_update_customers_writes_accounts_and_rejects_deals(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    crm = adapter(sugar, server.url)
    crm.update_customers({ref("company", account_id): {"closeloop_outstanding_balance": "10.00"}})
    assert SugarCrmDriver(sugar).customer_fields(ref("company", account_id)) == {
        "closeloop_outstanding_balance": "10.00"
    }
    with pytest.raises(ValueError, match="not a customer"):
        crm.update_customers({ref("deal", "1"): {"x": "1"}})


def test_ensure_properties_checks_metadata_and_explains_missing_fields(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    crm = adapter(sugar, server.url)
    definitions = [
        PropertyDefinition("closeloop_invoice_number", "Invoice number"),
        PropertyDefinition("closeloop_payment_status", "Payment status", "enumeration", ("paid", "overdue")),
    ]
    # All present: nothing to create
    assert crm.ensure_properties("deal", definitions) == []
    # One missing: a setup error naming the field, its Studio type and the way to add it
    sugar.remove_field("Opportunities", "closeloop_payment_status_c")
    with pytest.raises(ConfigurationError) as info:
        crm.ensure_properties("deal", definitions)
    assert "closeloop_payment_status_c (DropDown" in info.value.message and "Studio" in info.value.message
    assert "closeloop_invoice_number_c" not in info.value.message
    with pytest.raises(ValueError, match="line_item"):
        crm.ensure_properties("line_item", definitions)


# -- auth, limits, errors -------------------------------------------------------------------------------------


def test_login_uses_the_dedicated_platform_and_reuses_the_token(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    crm: CrmPort = adapter(sugar, server.url)  # the adapter is a full CrmPort (checked by mypy)
    for _ in range(3):
        crm.resolve_customer(ref("company", account_id))
    logins = bodies(sugar, "POST", TOKEN_PATH)
    assert len(logins) == 1
    assert {k: logins[0][k] for k in ("grant_type", "client_id", "client_secret", "platform")} == {
        "grant_type": "password",
        "client_id": "sugar",
        "client_secret": "",
        "platform": "closeloop",
    }
    assert all(r.headers.get("oauth-token") for r in sugar.state.requests if r.path != TOKEN_PATH)


def test_expired_token_refreshes_once_and_a_stolen_session_logs_in_again(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    store = MemoryStore()
    crm = adapter(sugar, server.url, store=store)
    crm.resolve_customer(ref("company", account_id))
    # Given Sugar expires the access token: one 401, one refresh_token grant, the call succeeds
    sugar.expire_access_tokens()
    assert crm.resolve_customer(ref("company", account_id)) is not None
    assert [b["grant_type"] for b in bodies(sugar, "POST", TOKEN_PATH)] == ["password", "refresh_token"]
    # Given someone logs in on the base platform: our session is untouched
    sugar.login_elsewhere("base")
    crm.resolve_customer(ref("company", account_id))
    assert len(sugar.state.calls("POST", TOKEN_PATH)) == 2
    # Given a login elsewhere on OUR platform: access and refresh token die, so the adapter logs in again
    sugar.login_elsewhere("closeloop")
    assert crm.resolve_customer(ref("company", account_id)) is not None
    assert [b["grant_type"] for b in bodies(sugar, "POST", TOKEN_PATH)][2:] == ["refresh_token", "password"]
    stored = store.get_token("sugarcrm")
    session = sugar.session("closeloop")
    assert stored is not None and session is not None and stored.access_token == session.access_token


def test_bad_credentials_or_platform_are_a_setup_error(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    with pytest.raises(AuthRevoked, match="SUGARCRM_PASSWORD") as info:
        adapter(sugar, server.url, password="wrong").resolve_customer(ref("company", "x"))
    assert "need_login" in info.value.message and "wrong" not in info.value.message
    with pytest.raises(AuthRevoked, match="Configure API Platforms"):
        adapter(sugar, server.url, platform="unregistered").resolve_customer(ref("company", "x"))


def test_429_is_retried_after_retry_after_then_surfaces(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    slept: list[float] = []
    crm = adapter(sugar, server.url)
    crm._sleep = slept.append
    # One 429 with Retry-After: waited out, then answered
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Accounts/*", 429, headers={"Retry-After": "2"}))
    assert crm.resolve_customer(ref("company", account_id)) is not None
    assert slept and slept[0] >= 2
    # A limit that does not lift: RateLimited with Sugar's hint
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Accounts/*", 429, times=10, headers={"Retry-After": "1"}))
    with pytest.raises(RateLimited) as info:
        crm.resolve_customer(ref("company", account_id))
    assert info.value.retry_after == 1


def test_sandbox_rate_limit_surfaces_as_rate_limited() -> None:
    sugar, server = serve(SugarSandbox(requests_per_second=1))
    try:
        crm = adapter(sugar, server.url)
        with pytest.raises(RateLimited):
            for _ in range(3):
                crm.resolve_customer(ref("company", "x"))
    finally:
        server.stop()


def test_outage_is_retried_then_unavailable(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    crm = adapter(sugar, server.url)
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Accounts/*", 503, times=1))
    assert crm.resolve_customer(ref("company", account_id)) is not None
    sugar.state.faults.append(Fault(f"{API_PREFIX}/Accounts/*", 500, times=10))
    with pytest.raises(Unavailable):
        crm.resolve_customer(ref("company", account_id))


def test_instance_url_is_required() -> None:
    with pytest.raises(ConfigurationError, match="SUGARCRM_URL"):
        SugarCrm(instance_url="", tokens=_NoTokens(), webhook_token=HOOK_TOKEN)


# -- REST API versions (Sugar 12, 13 and 14 answer different maximums) -----------------------------------


@pytest.mark.parametrize(("highest", "used"), [("v11_20", "v11_20"), ("v11_23", "v11_23"), ("v11_24", "v11_24")])
def test_the_adapter_uses_the_highest_version_the_instance_answers(highest: str, used: str) -> None:
    # Given instances of Sugar 13.0 (v11_20), 13.3 (v11_23) and 14.0 (v11_24)
    sugar, server = serve(SugarSandbox(max_api_version=highest))
    try:
        account_id, _ = company(sugar)
        crm = adapter(sugar, server.url)
        # When the adapter reads and writes (the old adapter always called /rest/v11_24: a 301 on 13.x)
        customer = crm.resolve_customer(ref("company", account_id))
        crm.update_customers({ref("company", account_id): {"closeloop_sync_issue": "none"}})
        # Then it works, and every call after the first refusal goes under the instance's highest version
        assert customer is not None and customer.name == "Acme Ltd"
        assert (sugar.get_record("Accounts", account_id) or {}).get("closeloop_sync_issue_c") == "none"
        refused = [r.path for r in sugar.state.requests if r.status == 301]
        answered = [r.path for r in sugar.state.requests if r.status != 301]
        assert all(p.startswith(f"/rest/{used}/") for p in answered), answered
        # And the version is learnt once: at most the first call (the login) is refused, from the 301's range
        assert refused == ([] if used == "v11_24" else ["/rest/v11_24/oauth2/token"])
    finally:
        server.stop()


def test_a_downgraded_instance_is_rediscovered_mid_run(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    crm = adapter(sugar, server.url)
    assert crm.resolve_customer(ref("company", account_id)) is not None
    # Given the instance is moved to an older release while the process runs (13.0: v11_20)
    sugar.max_api_version = "v11_20"
    sugar.state.reset_log()
    # When the next calls run, the first one is refused once, then repeated under v11_20, and so are the rest
    assert crm.resolve_customer(ref("company", account_id)) is not None
    assert crm.resolve_customer(ref("company", account_id)) is not None
    statuses = [(r.path.split("/")[2], r.status) for r in sugar.state.requests]
    assert statuses[0] == ("v11_24", 301)
    assert all(version == "v11_20" and status == 200 for version, status in statuses[1:]), statuses


def test_without_a_range_in_the_301_the_version_steps_down(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    # Given a server whose 301 message names no range (the wording is a GUESS), refusing v11_24 and v11_23
    body = {"error": "incorrect_version", "error_message": "The version of the API you are using is not correct."}
    sugar.state.faults += [
        Fault("/rest/v11_24/*", 301, times=9, body=body),
        Fault("/rest/v11_23/*", 301, times=9, body=body),
    ]
    # When the adapter logs in and reads
    assert adapter(sugar, server.url).resolve_customer(ref("company", account_id)) is not None
    # Then it tried one minor version lower at a time, and stayed on the first one answered
    versions = [r.path.split("/")[2] for r in sugar.state.requests]
    assert versions[:3] == ["v11_24", "v11_23", "v11_22"] and set(versions[2:]) == {"v11_22"}


def test_a_configured_version_is_used_as_is_and_a_refusal_says_what_to_set(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    account_id, _ = company(sugar)
    # Given SUGARCRM_API_VERSION=v11_20 on a 14.0 instance: every call under v11_20, nothing probed
    assert adapter(sugar, server.url, api_version="v11_20").resolve_customer(ref("company", account_id)) is not None
    assert {r.path.split("/")[2] for r in sugar.state.requests} == {"v11_20"}
    # Given SUGARCRM_API_VERSION=v11_24 on a 13.3 instance: a setup error naming what the instance answers
    sugar.max_api_version = "v11_23"
    with pytest.raises(ConfigurationError, match="SUGARCRM_API_VERSION") as info:
        adapter(sugar, server.url, api_version="v11_24").resolve_customer(ref("company", account_id))
    assert "v11_23" in info.value.message
    # And a malformed setting is refused before any call
    with pytest.raises(ConfigurationError, match="SUGARCRM_API_VERSION"):
        adapter(sugar, server.url, api_version="eleven")


def test_a_plain_redirect_is_a_setup_error_not_a_version(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    # Given SUGARCRM_URL answers with an ordinary redirect (http -> https, a moved host)
    sugar.state.faults.append(
        Fault("/rest/*", 301, times=30, headers={"Location": "https://elsewhere.example/"}, body="")
    )
    with pytest.raises(ConfigurationError, match="SUGARCRM_URL"):
        adapter(sugar, server.url).resolve_customer(ref("company", "x"))
    assert len(sugar.state.requests) == 1


def test_version_settings_parse_and_every_guess_says_how_to_confirm_it() -> None:
    assert parse_api_version("v11_20") == parse_api_version("11.20") == parse_api_version("11_20") == (11, 20)
    assert parse_api_version("v11") == (11, 0)
    with pytest.raises(ValueError, match="v11_20"):
        parse_api_version("latest")
    assert GUESSES and all("Confirm" in note or "confirm" in note for note in GUESSES.values())


@pytest.mark.parametrize("configured", ["", "short-hook-token", "y" * 31])
def test_a_missing_or_short_webhook_token_is_a_configuration_error_never_a_match(configured: str) -> None:
    # Given a deployment whose URL token is unset or guessable (under 32 characters)
    crm = SugarCrm(instance_url="https://sugar.example", tokens=_NoTokens(), webhook_token=configured)
    # When a hook carries exactly that token
    request = WebhookRequest("POST", f"https://hooks.example.com/webhooks/sugarcrm/contacts/{configured}", {}, b"{}")
    # Then it is refused as misconfiguration (503 and an alarm), naming the key, not the value
    with pytest.raises(ConfigurationError, match="SUGARCRM_WEBHOOK_TOKEN") as caught:
        crm.verify_webhook(request)
    assert not configured or configured not in str(caught.value)


# -- product catalogue (CatalogueCrm): ProductTemplates ----------------------------------------------------

PRODUCT_FILTER_PATH = f"{API_PREFIX}/ProductTemplates/filter"
SUPPLIER = PropertyDefinition("closeloop_supplier", "Supplier", description="Set for purchase orders")


def template(sugar: SugarSandbox, sku: str = "WID-1", **values: Any) -> str:
    """A Product Catalog entry as an admin enters it (cost, unit and list price are required in Sugar's UI)."""
    fields = {"name": "Widget", "mft_part_num": sku, "description": "A widget", "discount_price": "12.50",
              "cost_price": "4.00", "list_price": "15.00", **values}  # fmt: skip
    return str(sugar.create_record("ProductTemplates", fields)["id"])


def product_ref(template_id: str) -> CrmRef:
    return CrmRef(crm="sugarcrm", object_type="product", object_id=template_id)


def filter_bodies(sugar: SugarSandbox) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sugar.state.calls("POST", PRODUCT_FILTER_PATH)]


# -- reading products ------------------------------------------------------------------------------------


def test_a_product_template_reads_as_a_product_with_sku_prices_currency_and_supplier(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    # Given a template priced in pounds, with a supplier in Closeloop's Studio field
    gbp = sugar.seed_currency("GBP")
    template_id = template(sugar, currency_id=gbp, closeloop_supplier_c="Parts Ltd", description="A widget\nBlue")
    crm: CatalogueCrm = adapter(sugar, server.url)
    # When it is read
    product = crm.get_product(template_id)
    # Then every catalogue field comes from its Sugar field, money exact
    assert product is not None
    assert (product.ref, product.sku, product.name) == (product_ref(template_id), "WID-1", "Widget")
    assert product.description == "A widget\nBlue"
    assert (product.unit_price, product.unit_cost) == (Decimal("12.5"), Decimal("4"))
    assert (product.currency, product.supplier, product.archived) == ("GBP", "Parts Ltd", False)
    assert product.updated_at is not None and product.updated_at.tzinfo is not None
    # And one GET asked for exactly the fields it reads
    [call] = sugar.state.calls("GET", f"{API_PREFIX}/ProductTemplates/{template_id}")
    assert set(parse_qs(call.query)["fields"][0].split(",")) == set(SugarCrm.PRODUCT_FIELDS)


def test_inactive_and_retired_templates_are_archived_and_an_instance_without_the_field_is_not(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    crm = adapter(sugar, server.url)
    active = template(sugar, "A-1")
    inactive = template(sugar, "I-1", active_status="Inactive")
    retired = template(sugar, "R-1", active_status="Retired")
    archived = {t: crm.get_product(t).archived for t in (active, inactive, retired)}  # type: ignore[union-attr]
    assert archived == {active: False, inactive: True, retired: True}
    # Given an instance whose ProductTemplates lack active_status and Closeloop's supplier field
    sugar.remove_field("ProductTemplates", "active_status")
    sugar.remove_field("ProductTemplates", "closeloop_supplier_c")
    product = crm.get_product(inactive)
    # Then the product reads as on sale, with no supplier (GUESSES: both are safe when absent)
    assert product is not None and (product.archived, product.supplier) == (False, "")


def test_a_deleted_or_unknown_template_is_no_product(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    crm = adapter(sugar, server.url)
    template_id = template(sugar)
    sugar.delete_record("ProductTemplates", template_id)
    assert crm.get_product(template_id) is None
    assert crm.get_product("no-such-template") is None


def test_an_unreadable_price_is_refused_not_read_as_zero(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    template_id = template(sugar)
    body = {"id": template_id, "_module": "ProductTemplates", "name": "Widget", "discount_price": "twelve"}
    sugar.state.faults.append(Fault(f"{API_PREFIX}/ProductTemplates/*", 200, body=body))
    with pytest.raises(ValidationFailed, match="unit price is not a number"):
        adapter(sugar, server.url).get_product(template_id)


def test_the_catalogue_pages_oldest_first_with_inactive_products_and_without_deleted_ones(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    # Given five templates created a second apart, one inactive and one deleted
    ids = []
    for n in range(5):
        ids.append(template(sugar, f"P-{n}", active_status="Inactive" if n == 1 else "Active"))
        sugar.state.clock.advance(1)
    sugar.delete_record("ProductTemplates", ids[3])
    crm = adapter(sugar, server.url)
    crm.PAGE_SIZE = 2  # type: ignore[misc]
    # When the whole catalogue is listed
    products = list(crm.iter_products())
    # Then every live template comes once, oldest first, the inactive one marked archived
    assert [p.ref.object_id for p in products] == [ids[0], ids[1], ids[2], ids[4]]
    assert [p.archived for p in products] == [False, True, False, False]
    # And it took two pages of two, listing the module without a filter
    bodies = filter_bodies(sugar)
    assert [(b["offset"], b["max_num"]) for b in bodies] == [(0, 2), (2, 2)]
    assert all("filter" not in b and b["order_by"] == "date_entered:ASC,id:ASC" for b in bodies)


def test_a_failing_page_is_retried_and_the_listing_goes_on(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    for n in range(3):
        template(sugar, f"P-{n}")
    crm = adapter(sugar, server.url)
    crm.PAGE_SIZE = 2  # type: ignore[misc]
    # Given Sugar answering the second page with a 503 once
    products = crm.iter_products()
    first = [next(products), next(products)]
    sugar.state.faults.append(Fault(PRODUCT_FILTER_PATH, 503, method="POST"))
    # Then the page is asked again and the listing completes, nothing skipped or repeated
    rest = list(products)
    assert len({p.ref for p in first + rest}) == 3
    assert [json.loads(r.body)["offset"] for r in sugar.state.calls("POST", PRODUCT_FILTER_PATH)] == [0, 2, 2]


def test_a_won_deal_s_lines_name_their_product(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    template_id = template(sugar)
    deal = sugar.create_record("Opportunities", {"name": "Big", "sales_stage": "Closed Won"})
    for values in ({"product_template_id": template_id, "quantity": "2"}, {"name": "Set-up", "discount_price": "50"}):
        sugar.create_record("RevenueLineItems", {"opportunity_id": deal["id"], **values})
        sugar.state.clock.advance(1)
    found = adapter(sugar, server.url).get_deal(str(deal["id"]))
    assert found is not None
    assert [(line.sku, line.product_id) for line in found.line_items] == [("WID-1", template_id), ("", "")]


# -- changes ---------------------------------------------------------------------------------------------


def test_a_product_hook_parses_to_a_product_event_the_catch_up_poll_reproduces(
    sandbox: tuple[SugarSandbox, SandboxServer], receiver: tuple[Receiver, SandboxServer]
) -> None:
    sugar, server = sandbox
    hook, hook_server = receiver
    SugarCrmDriver(sugar, webhook_token=HOOK_TOKEN).subscribe(hook_server.url)
    crm = adapter(sugar, server.url)
    since = datetime.now(UTC) - timedelta(minutes=5)
    # Given a template created in the Product Catalog and the dispatch job run
    template_id = template(sugar)
    sugar.run_hook_job()
    url, body = hook.received[0]
    assert url.endswith(f"/webhooks/sugarcrm/contacts/{HOOK_TOKEN}")
    # When Closeloop verifies and parses the delivery
    crm.verify_webhook(WebhookRequest("POST", url, {"Content-Type": "application/json"}, body))
    events = crm.parse_webhook(body)
    # Then it is one "created" product event, whose key the catch-up poll reproduces
    assert [(e.ref, e.kind) for e in events] == [(product_ref(template_id), "created")]
    caught_up = [e for e in crm.iter_changes_since(since) if e.ref.object_type == "product"]
    assert [(e.ref, e.dedupe_key) for e in caught_up] == [(events[0].ref, events[0].dedupe_key)]
    # And a price change is a "changed" event naming the field; a deletion is a "deleted" one
    sugar.state.clock.advance(1)
    sugar.update_record("ProductTemplates", template_id, {"discount_price": "13"})
    sugar.delete_record("ProductTemplates", template_id)
    sugar.run_hook_job()
    later = [crm.parse_webhook(b)[0] for _, b in hook.received[1:]]
    assert [(e.kind, e.property_name) for e in later] == [("changed", "discount_price"), ("deleted", None)]


def test_the_catch_up_poll_pages_product_changes_by_time(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    since = datetime.now(UTC) - timedelta(minutes=1)
    ids = [template(sugar, f"P-{n}") for n in range(3)]
    sugar.state.clock.advance(2)
    sugar.update_record("ProductTemplates", ids[0], {"name": "Widget v2"})
    crm = adapter(sugar, server.url)
    crm.PAGE_SIZE = 2  # type: ignore[misc]
    events = [e for e in crm.iter_changes_since(since) if e.ref.object_type == "product"]
    # Then each template comes once per modification, oldest first (then by id), the edited one last as a change
    assert [e.ref.object_id for e in events] == [*sorted(ids[1:]), ids[0]]
    assert [e.kind for e in events] == ["created", "created", "changed"]
    assert {e.source_type for e in events} == {"ProductTemplates.date_modified"}


def test_setup_checks_the_supplier_field_and_names_it_when_missing(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    crm = adapter(sugar, server.url)
    assert crm.ensure_properties("product", [SUPPLIER]) == []
    sugar.remove_field("ProductTemplates", "closeloop_supplier_c")
    with pytest.raises(ConfigurationError, match=r"ProductTemplates lacks .*closeloop_supplier_c \(TextField"):
        crm.ensure_properties("product", [SUPPLIER])


def test_the_spec_offers_the_catalogue() -> None:
    assert "product" in SPEC.capabilities.objects


# -- the contract ------------------------------------------------------------------------------------------


def test_every_catalogue_exchange_and_product_hook_follows_sugar_s_contract(
    receiver: tuple[Receiver, SandboxServer],
) -> None:
    hook, hook_server = receiver
    # Given every catalogue call made against a recorded sandbox: get, list over pages, a line's products, a miss
    with recording() as recorder:
        sugar, server = serve()
        try:
            SugarCrmDriver(sugar, webhook_token=HOOK_TOKEN).subscribe(hook_server.url)
            crm = adapter(sugar, server.url)
            crm.PAGE_SIZE = 2  # type: ignore[misc]
            ids = [template(sugar, f"P-{n}", closeloop_supplier_c="Parts Ltd") for n in range(3)]
            deal = sugar.create_record("Opportunities", {"name": "Big"})
            sugar.create_record("RevenueLineItems", {"opportunity_id": deal["id"], "product_template_id": ids[0]})
            assert crm.get_product(ids[1]) is not None and crm.get_product("missing") is None
            assert len(list(crm.iter_products())) == 3
            assert crm.get_deal(str(deal["id"])) is not None
            assert list(crm.iter_changes_since(datetime(2020, 1, 1, tzinfo=UTC)))
            sugar.run_hook_job()
        finally:
            server.stop()
    contract = load("sugarcrm")
    exchanges = recorder.exchanges
    # Then the product calls were held to the ProductTemplates operations, and nothing departs from the contract
    used = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {"POST /rest/v11_{n}/ProductTemplates/filter", "GET /rest/v11_{n}/ProductTemplates/{record}"} <= used
    assert [str(v) for e in exchanges for v in contract.check(e)] == []
    # And so were the product hooks' bodies
    product_hooks = [b for _, b in hook.received if json.loads(b)["bean"] == "ProductTemplate"]
    assert len(product_hooks) == 3
    assert [str(v) for b in product_hooks for v in contract.check_webhook("event", b)] == []


def test_the_contract_holds_a_template_s_money_to_decimal_strings() -> None:
    # Given an answer with the unit price as a JSON number (Sugar sends currency fields as strings)
    contract = load("sugarcrm")
    record = {"id": "t-1", "_module": "ProductTemplates", "discount_price": 12.5, "mft_part_num": "W" * 51}
    answer = Exchange(
        host="127.0.0.1:1",
        method="GET",
        path="/rest/v11_24/ProductTemplates/t-1",
        query="",
        headers={},
        body=b"",
        status=200,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(record).encode(),
    )
    found = contract.check(answer)
    # Then both the number and the over-long part number are violations
    assert sorted(v.message.split(":")[0] for v in found) == ["discount_price", "mft_part_num"]


# -- ProductSync over the adapter --------------------------------------------------------------------------


def _event(template_id: str, key: str) -> SyncEvent:
    return SyncEvent.model_validate(
        {
            "ref": product_ref(template_id),
            "event_id": key,
            "kind": "changed",
            "occurred_at": datetime.now(UTC),
            "source_type": "ProductTemplate.after_save",
            "dedupe_key": key,
        }  # fmt: skip
    )


def test_product_sync_over_sugar_creates_one_item_survives_a_lost_answer_and_updates_it(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    crm, books, store = adapter(sugar, server.url), FakeCatalogueBooks(), MemoryStore()

    def sync() -> ProductSync:
        return ProductSync(crm, books, store, owner="worker-1", rules=FieldRules.load())

    template_id = template(sugar)
    ref = product_ref(template_id)
    # Given the books lose the answer to the item's creation (the process dies after the vendor acted)
    books.lose_create_answer = True
    with pytest.raises(ProcessKilled):
        sync().sync(ref, [_event(template_id, "e1")])
    # When the event is delivered again
    outcome = sync().sync(ref, [_event(template_id, "e1")])
    # Then the item made the first time is found and linked: one item, one create
    assert outcome.action == "matched" and list(books.items) == ["WID-1"]
    assert [w[0] for w in books.writes] == ["create"]
    assert books.items["WID-1"].fields == {
        "name": "Widget",
        "description": "A widget",
        "unit_price": "12.5",
        "unit_cost": "4",
    }
    # And a price change in Sugar flows to the item, only that field written
    sugar.state.clock.advance(1)
    sugar.update_record("ProductTemplates", template_id, {"discount_price": "13.75"})
    updated = sync().sync(ref, [_event(template_id, "e2")])
    assert (updated.action, updated.detail) == ("updated", "unit_price")
    assert books.writes[-1] == ("update", "WID-1", ("unit_price",))
    assert books.items["WID-1"].fields["unit_price"] == "13.75"
    # And an inactive template keeps its item untouched
    sugar.update_record("ProductTemplates", template_id, {"active_status": "Inactive", "discount_price": "1"})
    assert sync().sync(ref, [_event(template_id, "e3")]).action == "skipped"
    assert books.items["WID-1"].fields["unit_price"] == "13.75"
