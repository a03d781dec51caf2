"""The HubSpot adapter's deal reads and property writes, against the HubSpot sandbox over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest

from closeloop.errors import FatalError, NotFound, ValidationFailed
from closeloop.models import CrmRef
from closeloop.ports import PropertyDefinition
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve

PARTNER_PIPELINE = "75519611"  # the sandbox's custom pipeline, with numeric stage ids
PARTNER_WON, PARTNER_OPEN = "148613103", "148613101"
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


@pytest.fixture
def sandbox() -> Iterator[tuple[HubSpotSandbox, SandboxServer]]:
    hubspot, server = serve()
    yield hubspot, server
    hubspot.close()
    server.stop()


def crm(
    hubspot: HubSpotSandbox,
    url: str,
    cls: type[HubSpotCrm] = HubSpotCrm,
    sleeps: list[float] | None = None,
    **kwargs: Any,
) -> HubSpotCrm:
    record = sleeps if sleeps is not None else []
    return cls(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=url,
        sleep=record.append,
        **kwargs,
    )


def won_deal(hubspot: HubSpotSandbox, closedate: str, **props: str) -> str:
    values = {"dealname": "Won", "pipeline": "default", "dealstage": "closedwon", "closedate": closedate, **props}
    return str(hubspot.create_object("deals", values)["id"])


def search_bodies(hubspot: HubSpotSandbox) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in hubspot.state.calls("POST", "/crm/v3/objects/deals/search")]


def test_won_deal_in_the_default_pipeline_reads_with_exact_decimals_parties_and_line_items(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    # Given a deal at closedwon with two companies (the higher id is primary), two contacts and 3 line items
    other = hubspot.create_object("companies", {"name": "Other Ltd"})
    acme = hubspot.create_object("companies", {"name": "Acme Ltd"})
    contacts = [hubspot.create_object("contacts", {"email": f"{n}@acme.test"}) for n in ("ann", "bob")]
    deal = hubspot.create_object(
        "deals",
        {
            "dealname": "Acme renewal",
            "pipeline": "default",
            "dealstage": "closedwon",
            "amount": "1234.50",
            "deal_currency_code": "EUR",
            "closedate": "2026-11-20T10:00:00Z",
            "hubspot_owner_id": "777",
        },
        associations=[
            {"to_type": "companies", "to_id": other["id"]},
            {"to_type": "companies", "to_id": acme["id"], "primary": True},
            {"to_type": "contacts", "to_id": contacts[1]["id"]},
            {"to_type": "contacts", "to_id": contacts[0]["id"]},
        ],
    )
    product = hubspot.create_object("products", {"name": "Widget", "price": "19.99", "hs_sku": "W-1"})
    link = [{"to_type": "deals", "to_id": deal["id"]}]
    items = [
        hubspot.create_object(
            "line_items", {"hs_product_id": product["id"], "quantity": "3", "hs_discount_percentage": "10"}, link
        ),
        hubspot.create_object("line_items", {"name": "Setup", "quantity": "0.5", "price": "1234.5678"}, link),
        hubspot.create_object(
            "line_items", {"name": "Support", "hs_sku": "S-1", "quantity": "2", "price": "100", "discount": "5"}, link
        ),
    ]

    # When the adapter reads it
    got = crm(hubspot, server.url).get_deal(str(deal["id"]))

    # Then every value is exact, the stage is won and the primary company wins over the lower id
    assert got is not None
    assert got.ref == CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"]))
    assert (got.name, got.currency, got.stage, got.pipeline, got.owner_id) == (
        "Acme renewal",
        "EUR",
        "closedwon",
        "default",
        "777",
    )
    assert isinstance(got.amount, Decimal)
    assert str(got.amount) == "1234.50"
    assert got.is_won is True
    assert got.close_date == date(2026, 11, 20)
    assert got.company == CrmRef(crm="hubspot", object_type="company", object_id=str(acme["id"]))
    assert got.contact == CrmRef(crm="hubspot", object_type="contact", object_id=str(contacts[0]["id"]))
    assert got.updated_at is not None
    assert [li.crm_id for li in got.line_items] == [str(i["id"]) for i in items]
    widget, setup, support = got.line_items
    assert (widget.name, widget.sku, widget.quantity, widget.unit_price) == ("Widget", "W-1", 3, Decimal("19.99"))
    assert widget.discount_percent == Decimal("10")
    assert widget.amount == Decimal("53.973")
    assert (setup.quantity, setup.unit_price, setup.discount_percent) == (Decimal("0.5"), Decimal("1234.5678"), None)
    assert setup.amount == Decimal("617.2839")
    # A unit discount (HubSpot ``discount``) is folded into the unit price, so the line total still matches
    assert (support.sku, support.unit_price, support.amount) == ("S-1", Decimal(95), Decimal(190))
    assert support.quantity * support.unit_price == support.amount
    for line in got.line_items:
        assert all(isinstance(v, Decimal) for v in (line.quantity, line.unit_price, line.amount))
    # And the link opens the deal in the account's portal, read from account-info as HubSpot answers it
    assert got.url == f"https://app.hubspot.com/contacts/{hubspot.portal_id}/record/0-3/{deal['id']}"


def test_stage_is_won_only_when_closed_with_probability_one_in_the_deals_own_pipeline(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    # Given deals in the custom pipeline (numeric stage ids) and in the default one
    stages = {
        "custom won": (PARTNER_PIPELINE, PARTNER_WON),
        "custom open": (PARTNER_PIPELINE, PARTNER_OPEN),
        "default open": ("default", "contractsent"),
        "default lost": ("default", "closedlost"),
    }
    ids = {
        name: hubspot.create_object("deals", {"dealname": name, "pipeline": p, "dealstage": s})["id"]
        for name, (p, s) in stages.items()
    }
    adapter = crm(hubspot, server.url)

    # When each is read
    won = {name: adapter.get_deal(str(deal_id)) for name, deal_id in ids.items()}

    # Then only the closed stage with probability 1.0 is won
    assert {name: d.is_won for name, d in won.items() if d is not None} == {
        "custom won": True,
        "custom open": False,
        "default open": False,
        "default lost": False,
    }
    assert won["custom won"] is not None
    assert (won["custom won"].pipeline, won["custom won"].stage) == (PARTNER_PIPELINE, PARTNER_WON)
    # And the pipelines were read once for all four deals
    assert len(hubspot.state.calls("GET", "/crm/v3/pipelines/deals")) == 1


def test_missing_deal_is_none(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    assert crm(hubspot, server.url).get_deal("20999999999") is None


def test_calls_per_get_deal_and_cached_account_lookups(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    # Given two won deals with one line item each
    deals = [won_deal(hubspot, "2026-11-20") for _ in range(2)]
    for deal_id in deals:
        hubspot.create_object("line_items", {"name": "X", "quantity": "1", "price": "1"}, [("deals", deal_id)])
    adapter = crm(hubspot, server.url)

    # When both are read
    adapter.get_deal(deals[0])
    first = len(hubspot.state.requests)
    adapter.get_deal(deals[1])
    second = len(hubspot.state.requests) - first

    # Then the first read also fetches pipelines and asks once for the portal id; later reads
    # cost the deal, its line-item associations and the line items only
    assert [r.path for r in hubspot.state.requests[:first]] == [
        f"/crm/v3/objects/deals/{deals[0]}",
        f"/crm/v4/objects/deals/{deals[0]}/associations/line_items",
        "/crm/v3/objects/line_items/batch/read",
        "/crm/v3/pipelines/deals",
        "/account-info/v3/details",
    ]
    assert second == 3


def test_pipelines_are_refreshed_when_a_stage_is_unknown_and_after_ten_minutes(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    now = [1_800_000_000.0]
    adapter = crm(hubspot, server.url, clock=lambda: now[0])
    default_deal = won_deal(hubspot, "2026-11-20")
    partner_deal = hubspot.create_object(
        "deals", {"dealname": "P", "pipeline": PARTNER_PIPELINE, "dealstage": PARTNER_WON}
    )["id"]
    pipelines = httpx.get(
        f"{server.url}/crm/v3/pipelines/deals", headers={"Authorization": f"Bearer {hubspot.access_token}"}
    ).json()
    hubspot.state.reset_log()
    # Given a first pipelines answer that does not know the custom pipeline yet (created after it was cached)
    only_default = {"results": [p for p in pipelines["results"] if p["id"] == "default"]}
    hubspot.state.faults.append(Fault("/crm/v3/pipelines/deals", 200, body=only_default))

    # When a default deal, then a custom-pipeline deal are read
    first = adapter.get_deal(default_deal)
    second = adapter.get_deal(str(partner_deal))

    # Then the unknown stage triggered one refresh and was resolved as won
    assert first is not None and first.is_won
    assert second is not None and second.is_won
    assert len(hubspot.state.calls("GET", "/crm/v3/pipelines/deals")) == 2

    # And the cache holds for ten minutes, then is read again
    now[0] += 599
    adapter.get_deal(default_deal)
    assert len(hubspot.state.calls("GET", "/crm/v3/pipelines/deals")) == 2
    now[0] += 2
    adapter.get_deal(default_deal)
    assert len(hubspot.state.calls("GET", "/crm/v3/pipelines/deals")) == 3


def test_deal_url_from_configured_portal_or_account_info_and_ms_epoch_close_dates(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    deal_id = won_deal(hubspot, "2026-11-20T10:00:00Z")
    # Given a configured portal id, the link uses it and account-info is never asked
    configured = crm(hubspot, server.url, portal_id=62515).get_deal(deal_id)
    assert configured is not None
    assert configured.url == f"https://app.hubspot.com/contacts/62515/record/0-3/{deal_id}"
    assert not hubspot.state.calls("GET", "/account-info/*")

    # Given an account-info answer as HubSpot gives it (EU data centre), and a deal whose close date is ms epoch
    raw = httpx.get(
        f"{server.url}/crm/v3/objects/deals/{deal_id}",
        params={"properties": "dealname,dealstage,pipeline,closedate"},
        headers={"Authorization": f"Bearer {hubspot.access_token}"},
    ).json()
    raw["properties"]["closedate"] = "1795168800000"  # 2026-11-20T10:00:00Z
    hubspot.state.faults.extend(
        [
            Fault("/account-info/v3/details", 200, body={"portalId": 26001, "uiDomain": "app-eu1.hubspot.com"}),
            Fault(f"/crm/v3/objects/deals/{deal_id}", 200, method="GET", body=raw),
        ]
    )
    adapter = crm(hubspot, server.url)

    # When the deal is read twice
    got = adapter.get_deal(deal_id)
    adapter.get_deal(deal_id)

    # Then the link points into the account's UI domain, the date parses, and account-info was asked once
    assert got is not None
    assert got.url == f"https://app-eu1.hubspot.com/contacts/26001/record/0-3/{deal_id}"
    assert got.close_date == date(2026, 11, 20)
    assert len(hubspot.state.calls("GET", "/account-info/v3/details")) == 1


@pytest.mark.parametrize("refusal", ["missing scope (403)", "not served (404)"])
def test_deal_url_stays_empty_and_reads_go_on_when_account_info_is_refused(refusal: str) -> None:
    # Given a private app without the scope account-info needs, or an account-info path answering 404
    hubspot, server = serve(HubSpotSandbox(account_info_scope=not refusal.startswith("missing")))
    try:
        if refusal.startswith("not served"):
            hubspot.state.faults.append(Fault("/account-info/v3/details", 404, method="GET"))
        deal_id = won_deal(hubspot, "2026-11-20")
        adapter = crm(hubspot, server.url)

        # When the deal is read twice
        first = adapter.get_deal(deal_id)
        second = adapter.get_deal(deal_id)

        # Then both reads succeed without a link, and account-info was asked once (its refusal is remembered)
        assert first is not None and second is not None
        assert (first.url, second.url, first.is_won) == ("", "", True)
        asked = hubspot.state.calls("GET", "/account-info/v3/details")
        assert [r.status for r in asked] == [403 if refusal.startswith("missing") else 404]
    finally:
        hubspot.close()
        server.stop()


def test_update_deals_writes_150_deals_in_two_batches(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    # Given 150 deals
    ids = [str(hubspot.create_object("deals", {"dealname": f"D{i}"})["id"]) for i in range(150)]

    # When a property is written on each (and one value cleared)
    updates = {deal_id: {"description": f"paid {n}", "dealname": f"D{n}!"} for n, deal_id in enumerate(ids)}
    updates[ids[0]] = {"description": ""}
    crm(hubspot, server.url).update_deals(updates)

    # Then two batch calls of 100 and 50 carried them, and HubSpot holds the values
    calls = hubspot.state.calls("POST", "/crm/v3/objects/deals/batch/update")
    assert [len(json.loads(c.body)["inputs"]) for c in calls] == [100, 50]
    stored = hubspot.get_object("deals", ids[149])
    assert stored is not None
    assert (stored["properties"]["description"], stored["properties"]["dealname"]) == ("paid 149", "D149!")
    first = hubspot.get_object("deals", ids[0])
    assert first is not None
    assert "description" not in first["properties"]


def test_update_deals_raises_typed_errors(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    deal_id = str(hubspot.create_object("deals", {"dealname": "D"})["id"])
    adapter = crm(hubspot, server.url)

    # Given a batch naming a deal that does not exist: the others are written, then NotFound names it
    with pytest.raises(NotFound, match="20999999999"):
        adapter.update_deals({deal_id: {"description": "ok"}, "20999999999": {"description": "x"}})
    stored = hubspot.get_object("deals", deal_id)
    assert stored is not None
    assert stored["properties"]["description"] == "ok"

    # Given a property HubSpot does not know: the batch is refused as invalid
    with pytest.raises(ValidationFailed):
        adapter.update_deals({deal_id: {"no_such_property": "x"}})

    # Given a first batch HubSpot refuses: the second batch is still written before the error surfaces
    ids = [str(hubspot.create_object("deals", {"dealname": f"D{i}"})["id"]) for i in range(101)]
    hubspot.state.faults.append(
        Fault("/crm/v3/objects/deals/batch/update", 400, body={"status": "error", "category": "VALIDATION_ERROR"})
    )
    with pytest.raises(ValidationFailed):
        adapter.update_deals({i: {"description": "late"} for i in ids})
    last = hubspot.get_object("deals", ids[100])
    assert last is not None
    assert last["properties"]["description"] == "late"


def test_update_customers_groups_companies_and_contacts(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    company = hubspot.create_object("companies", {"name": "Acme"})
    contact = hubspot.create_object("contacts", {"email": "ann@acme.test"})

    # When a company and a contact are updated together
    crm(hubspot, server.url).update_customers(
        {
            CrmRef(crm="hubspot", object_type="company", object_id=str(company["id"])): {"description": "owes 10"},
            CrmRef(crm="hubspot", object_type="contact", object_id=str(contact["id"])): {"jobtitle": "CFO"},
        }
    )

    # Then each went through its own batch endpoint
    assert len(hubspot.state.calls("POST", "/crm/v3/objects/companies/batch/update")) == 1
    assert len(hubspot.state.calls("POST", "/crm/v3/objects/contacts/batch/update")) == 1
    stored_company, stored_contact = (
        hubspot.get_object("companies", company["id"]),
        hubspot.get_object("contacts", contact["id"]),
    )
    assert stored_company is not None and stored_company["properties"]["description"] == "owes 10"
    assert stored_contact is not None and stored_contact["properties"]["jobtitle"] == "CFO"
    with pytest.raises(ValueError, match="not a customer"):
        crm(hubspot, server.url).update_customers({CrmRef(crm="hubspot", object_type="deal", object_id="1"): {}})


DEFINITIONS = (
    PropertyDefinition("closeloop_invoice_number", "Invoice number"),
    PropertyDefinition("closeloop_amount_due", "Amount due", "number"),
    PropertyDefinition("closeloop_paid_at", "Paid at", "datetime"),
    PropertyDefinition("closeloop_due_date", "Due date", "date"),
    PropertyDefinition("closeloop_payment_status", "Payment status", "enumeration", ("draft", "paid")),
)


def test_ensure_properties_creates_once_then_is_idempotent(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)

    # When the properties are ensured twice
    created = adapter.ensure_properties("deal", DEFINITIONS)
    again = adapter.ensure_properties("deal", DEFINITIONS)

    # Then they were created once, with HubSpot's types and field types, in the deal group
    assert created == [d.name for d in DEFINITIONS]
    assert again == []
    assert len(hubspot.state.calls("GET", "/crm/v3/properties/deals")) == 2
    assert len(hubspot.state.calls("POST", "/crm/v3/properties/deals")) == len(DEFINITIONS)
    headers = {"Authorization": f"Bearer {hubspot.access_token}"}
    kinds = {}
    for definition in DEFINITIONS:
        stored = httpx.get(f"{server.url}/crm/v3/properties/deals/{definition.name}", headers=headers).json()
        kinds[definition.name] = (stored["type"], stored["fieldType"], stored["groupName"])
        if definition.type == "enumeration":
            assert [(o["label"], o["value"]) for o in stored["options"]] == [("draft", "draft"), ("paid", "paid")]
            # HubSpot's OptionInput fields: hidden is required, displayOrder keeps the order shown
            assert [(o["displayOrder"], o["hidden"]) for o in stored["options"]] == [(0, False), (1, False)]
    assert kinds == {
        "closeloop_invoice_number": ("string", "text", "dealinformation"),
        "closeloop_amount_due": ("number", "number", "dealinformation"),
        "closeloop_paid_at": ("datetime", "date", "dealinformation"),
        "closeloop_due_date": ("date", "date", "dealinformation"),
        "closeloop_payment_status": ("enumeration", "select", "dealinformation"),
    }


def test_ensure_properties_counts_a_409_race_as_existing(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    # Given another process creates the first property between our list and our create
    hubspot.state.faults.append(
        Fault("/crm/v3/properties/companies", 409, method="POST", body={"category": "OBJECT_ALREADY_EXISTS"})
    )

    # When two company properties are ensured
    created = crm(hubspot, server.url).ensure_properties(
        "company", [PropertyDefinition("a_one", "One"), PropertyDefinition("a_two", "Two")]
    )

    # Then the conflicted one is not reported as created by us, the other is, in the company group
    assert created == ["a_two"]
    stored = httpx.get(
        f"{server.url}/crm/v3/properties/companies/a_two", headers={"Authorization": f"Bearer {hubspot.access_token}"}
    ).json()
    assert stored["groupName"] == "companyinformation"


def test_iter_won_deals_returns_won_deals_closed_in_the_range_across_pages(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    # Given 120 won deals in November (both pipelines), and deals that must not come back
    expected = [
        won_deal(hubspot, f"2026-11-{1 + n % 30:02d}T{n % 24:02d}:00:00Z", amount=f"{n}.25") for n in range(119)
    ]
    expected.append(
        str(
            hubspot.create_object(
                "deals",
                {"dealname": "P", "pipeline": PARTNER_PIPELINE, "dealstage": PARTNER_WON, "closedate": "2026-11-30"},
            )["id"]
        )
    )
    won_deal(hubspot, "2026-10-31T23:59:59Z")  # before the range
    won_deal(hubspot, "2026-12-01T00:00:00Z")  # the end is exclusive
    hubspot.create_object("deals", {"dealname": "open", "dealstage": "contractsent", "closedate": "2026-11-15"})
    hubspot.create_object("deals", {"dealname": "lost", "dealstage": "closedlost", "closedate": "2026-11-15"})
    sleeps: list[float] = []

    # When the won deals of November are listed
    deals = list(crm(hubspot, server.url, sleeps=sleeps).iter_won_deals(*NOVEMBER))

    # Then exactly the 120 come back, once each, won, with their amounts and no parties or line items
    assert sorted(d.ref.object_id for d in deals) == sorted(expected)
    assert all(d.is_won and d.company is None and not d.line_items for d in deals)
    assert deals[0].amount == Decimal("0.25")
    # And the search paged with one filter group (closedate range AND won stages), 100 per page
    bodies = search_bodies(hubspot)
    assert [b.get("after") for b in bodies] == [None, "100"]
    filters = bodies[0]["filterGroups"][0]["filters"]
    assert len(bodies[0]["filterGroups"]) == 1
    assert filters[:2] == [
        {"propertyName": "closedate", "operator": "GTE", "value": str(int(NOVEMBER[0].timestamp() * 1000))},
        {"propertyName": "closedate", "operator": "LT", "value": str(int(NOVEMBER[1].timestamp() * 1000))},
    ]
    assert filters[2] == {"propertyName": "dealstage", "operator": "IN", "values": ["148613103", "closedwon"]}
    assert bodies[0]["limit"] == 100
    # And consecutive searches were spaced (5 requests/second per account)
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= HubSpotCrm.SEARCH_MIN_INTERVAL


class SmallCap(HubSpotCrm):
    SEARCH_RESULT_CAP: ClassVar[int] = 5
    SEARCH_PAGE_SIZE: ClassVar[int] = 2


def test_a_range_over_the_search_cap_is_split_in_halves(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    # Given 12 won deals spread over November, and a search that pages at most 5 results per query
    expected = [won_deal(hubspot, f"2026-11-{1 + 2 * n:02d}T12:00:00Z") for n in range(12)]

    # When they are listed
    deals = list(crm(hubspot, server.url, SmallCap).iter_won_deals(*NOVEMBER))

    # Then every deal comes back once, and no query paged past the cap
    assert sorted(d.ref.object_id for d in deals) == sorted(expected)
    bodies = search_bodies(hubspot)
    assert len(bodies) > 3
    ranges = {
        (b["filterGroups"][0]["filters"][0]["value"], b["filterGroups"][0]["filters"][1]["value"]) for b in bodies
    }
    assert len(ranges) > 1
    assert max(int(b.get("after", 0)) for b in bodies) < SmallCap.SEARCH_RESULT_CAP


def test_the_split_also_works_when_search_reports_no_total(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    expected = [won_deal(hubspot, f"2026-11-{1 + 2 * n:02d}T12:00:00Z") for n in range(12)]
    forward = httpx.HTTPTransport()

    def without_total(request: httpx.Request) -> httpx.Response:
        answer = forward.handle_request(
            httpx.Request(request.method, request.url, headers=request.headers, content=request.content)
        )
        answer.read()
        if not request.url.path.endswith("/search"):
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
        body = answer.json()
        body.pop("total", None)
        return httpx.Response(answer.status_code, json=body)

    # Given a search answer without ``total``: the cap is noticed only while paging
    adapter = crm(hubspot, server.url, SmallCap, transport=httpx.MockTransport(without_total))

    # When the deals are listed
    deals = list(adapter.iter_won_deals(*NOVEMBER))
    forward.close()

    # Then the rest of the range is split and nothing is returned twice
    ids = [d.ref.object_id for d in deals]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(expected)


def test_more_than_the_cap_in_one_millisecond_is_refused(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    for _ in range(SmallCap.SEARCH_RESULT_CAP + 1):
        won_deal(hubspot, "2026-11-20T10:00:00Z")
    with pytest.raises(FatalError, match="more than 5 won deals"):
        list(crm(hubspot, server.url, SmallCap).iter_won_deals(*NOVEMBER))


def test_closeloop_setup_hubspot_creates_properties_the_sandbox_accepts_by_spec(
    sandbox: tuple[HubSpotSandbox, SandboxServer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse  # noqa: PLC0415

    from closeloop import runtime  # noqa: PLC0415
    from closeloop.sync.invoices import CUSTOMER_PROPERTIES, DEAL_PROPERTIES  # noqa: PLC0415
    from closeloop.sync.purchase_orders import PURCHASE_ORDER_PROPERTIES  # noqa: PLC0415
    from closeloop_local import setup  # noqa: PLC0415

    # Given a private app's settings in the environment (the sandbox refuses a definition missing the
    # spec's required fields, options included)
    hubspot, server = sandbox
    for key, value in {
        "CRM_PROVIDER": "hubspot",
        "HUBSPOT_API_URL": server.url,
        "HUBSPOT_ACCESS_TOKEN": hubspot.access_token,
        "HUBSPOT_CLIENT_SECRET": hubspot.client_secret,
        "CREDENTIALS_SECRET_ID": "",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        # When `closeloop setup hubspot` runs twice
        assert setup.main(argparse.Namespace(system="hubspot", secret_id=None)) == 0
        assert setup.main(argparse.Namespace(system="hubspot", secret_id=None)) == 0
    finally:
        runtime.reset()
    # Then every property was created once, enumerations with complete options, and the rerun found them
    posts = hubspot.state.calls("POST", "/crm/v3/properties/deals") + hubspot.state.calls(
        "POST", "/crm/v3/properties/companies"
    )
    # (the deal's purchase order numbers too: setup makes that property whatever PURCHASE_ORDERS says)
    assert len(posts) == len(DEAL_PROPERTIES) + len(PURCHASE_ORDER_PROPERTIES) + len(CUSTOMER_PROPERTIES)
    assert all(p.status == 201 for p in posts)
    for post in posts:
        body = json.loads(post.body)
        assert {"name", "label", "type", "fieldType", "groupName"} <= body.keys()
        for option in body.get("options", []):
            assert option.keys() >= {"label", "value", "displayOrder", "hidden"}
    assert "0 already there" in capsys.readouterr().out.splitlines()[0]
