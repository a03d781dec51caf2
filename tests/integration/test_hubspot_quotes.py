"""The HubSpot adapter's quotes (QuoteCrm) against the HubSpot sandbox over HTTP: a quote read with its own
line items, deal, buyers and canonical status; a deal's quotes; Closeloop's quote fields created and written
(on the quote, or on the deal where HubSpot refuses custom quote properties); quotes found by the catch-up
scan, since HubSpot sends no quote webhooks; setup making the quote fields."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import ValidationFailed
from closeloop.sync.quotes import QUOTE_PROPERTIES
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve
from closeloop_local.setup import ensure_crm_properties

Sandbox = tuple[HubSpotSandbox, SandboxServer]
WRITE_BACK = {
    "closeloop_quote_number": "QU-0001",
    "closeloop_quote_status": "SENT",
    "closeloop_quote_url": "https://go.xero.com/app/quotes/view/q-1",
    "closeloop_quote_revision": "0",
}


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    opened: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        pair = serve(HubSpotSandbox(**kwargs))
        opened.append(pair)
        return pair

    yield make
    for hubspot, server in opened:
        hubspot.close()
        server.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


def crm(hubspot: HubSpotSandbox, url: str) -> HubSpotCrm:
    return HubSpotCrm(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=url,
        sleep=lambda s: None,
        portal_id=hubspot.portal_id,
    )


def quoted_deal(hubspot: HubSpotSandbox, *, status: str = "APPROVED", buyers: bool = True) -> dict[str, Any]:
    """A company, its deal, and a quote of the deal with two lines of its own; the quote's ids."""
    company = hubspot.create_object("companies", {"name": "Quoted Ltd"})
    deal = hubspot.create_object(
        "deals",
        {"dealname": "Widgets", "dealstage": "appointmentscheduled", "pipeline": "default"},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    links = [{"to_type": "deals", "to_id": deal["id"]}]
    if buyers:
        links.append({"to_type": "companies", "to_id": company["id"]})
    quote = hubspot.create_object(
        "quotes",
        {
            "hs_title": "Widgets for Quoted",
            "hs_status": status,
            "hs_expiration_date": "2027-01-31",
            "hs_quote_number": "20261203-001",
            "hs_currency": "NZD",
        },
        associations=links,
    )
    lines = [
        hubspot.create_object(
            "line_items",
            {"name": name, "hs_sku": sku, "quantity": quantity, "price": price},
            associations=[{"to_type": "quotes", "to_id": quote["id"]}],
        )
        for name, sku, quantity, price in (("Widget", "WID", "3", "12.50"), ("Gadget", "GAD", "1", "40"))
    ]
    return {"company": company["id"], "deal": deal["id"], "quote": quote["id"], "lines": [li["id"] for li in lines]}


def test_an_approved_quote_reads_with_its_lines_deal_buyer_and_status(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    ids = quoted_deal(hubspot)
    # When the adapter reads the quote
    quote = crm(hubspot, server.url).get_quote(ids["quote"])
    # Then it has its own lines, exact, its deal, its company, and reads ready (approved)
    assert quote is not None
    assert quote.status == "ready" and quote.title == "Widgets for Quoted" and quote.number == "20261203-001"
    assert (quote.currency, quote.expiry) == ("NZD", date(2027, 1, 31))
    assert quote.deal is not None and quote.deal.object_id == ids["deal"]
    assert quote.company is not None and quote.company.object_id == ids["company"]
    assert [(li.sku, li.quantity, li.unit_price) for li in quote.line_items] == [
        ("WID", Decimal(3), Decimal("12.50")),
        ("GAD", Decimal(1), Decimal(40)),
    ]
    # And its link is the public page HubSpot made when it was published
    assert quote.url.startswith("https://") and ids["quote"] in quote.url


def test_a_quote_s_recurring_line_reads_with_its_terms(sandbox: Sandbox) -> None:
    # Given an approved quote whose second line bills monthly for a year from 1 January
    hubspot, server = sandbox
    ids = quoted_deal(hubspot)
    hubspot.update_object(
        "line_items",
        ids["lines"][1],
        {
            "recurringbillingfrequency": "monthly",
            "hs_recurring_billing_period": "P12M",
            "hs_recurring_billing_start_date": "2027-01-01",
        },
    )
    # When the adapter reads the quote
    quote = crm(hubspot, server.url).get_quote(ids["quote"])
    # Then the line keeps its terms, so the deal invoiced from the quote schedules it instead of billing it once
    assert quote is not None
    one_off, monthly = quote.line_items
    assert one_off.recurring_frequency is None
    assert (monthly.recurring_frequency, monthly.recurring_periods, monthly.recurring_start) == (
        "monthly",
        12,
        date(2027, 1, 1),
    )


@pytest.mark.parametrize(
    ("hs_status", "status"),
    [
        ("DRAFT", "draft"),
        ("PENDING_APPROVAL", "pending_approval"),
        ("REJECTED", "rejected"),
        ("APPROVAL_NOT_NEEDED", "ready"),
    ],
)
def test_hubspot_approval_states_read_as_canonical_statuses(sandbox: Sandbox, hs_status: str, status: str) -> None:
    hubspot, server = sandbox
    ids = quoted_deal(hubspot, status=hs_status)
    quote = crm(hubspot, server.url).get_quote(ids["quote"])
    assert quote is not None and quote.status == status


def test_a_quote_without_buyers_is_quoted_to_its_deal_s_company(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    ids = quoted_deal(hubspot, buyers=False)
    quote = crm(hubspot, server.url).get_quote(ids["quote"])
    assert quote is not None and quote.company is not None and quote.company.object_id == ids["company"]


def test_a_deal_lists_its_quotes_and_an_unknown_quote_is_none(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    ids = quoted_deal(hubspot)
    adapter = crm(hubspot, server.url)
    second = hubspot.create_object(
        "quotes",
        {"hs_title": "Revised", "hs_status": "DRAFT", "hs_expiration_date": "2027-02-28"},
        associations=[{"to_type": "deals", "to_id": ids["deal"]}],
    )
    # Then the deal's quotes are both, oldest first; a deal without quotes has none; an unknown quote is None
    assert [q.ref.object_id for q in adapter.quotes_of_deal(ids["deal"])] == [ids["quote"], second["id"]]
    other = hubspot.create_object("deals", {"dealname": "Other", "dealstage": "appointmentscheduled"})
    assert adapter.quotes_of_deal(other["id"]) == []
    assert adapter.get_quote("99999999") is None


def test_quote_fields_are_created_on_the_quote_then_written_and_read_back(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    ids = quoted_deal(hubspot)
    adapter = crm(hubspot, server.url)
    # Given the quote fields do not exist yet: the write is refused
    with pytest.raises(ValidationFailed):
        adapter.write_quote(ids["quote"], WRITE_BACK)
    # When they are created (in the quote group) and written again
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES) == [p.name for p in QUOTE_PROPERTIES]
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES) == []
    adapter.write_quote(ids["quote"], WRITE_BACK)
    # Then the quote holds them and reads them back as synced
    assert (hubspot.get_object("quotes", ids["quote"]) or {})["properties"]["closeloop_quote_number"] == "QU-0001"
    quote = adapter.get_quote(ids["quote"])
    assert quote is not None and quote.synced == WRITE_BACK
    made = [r for r in hubspot.state.requests if r.path == "/crm/v3/properties/quotes" and r.method == "POST"]
    assert {json.loads(r.body)["groupName"] for r in made} == {"quoteinformation"}


def test_where_custom_quote_properties_are_refused_the_fields_go_on_the_deal(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    hubspot, server = make_sandbox()
    hubspot.custom_quote_properties = False
    ids = quoted_deal(hubspot)
    adapter = crm(hubspot, server.url)
    # When the quote fields are ensured and written
    with pytest.raises(ValidationFailed):
        adapter.write_quote(ids["quote"], WRITE_BACK)
    assert adapter.ensure_quote_properties(QUOTE_PROPERTIES) == [p.name for p in QUOTE_PROPERTIES]
    adapter.write_quote(ids["quote"], WRITE_BACK)
    # Then they are on the quote's deal, and read back from there
    deal = hubspot.get_object("deals", ids["deal"]) or {}
    assert deal["properties"]["closeloop_quote_status"] == "SENT"
    quote = adapter.get_quote(ids["quote"])
    assert quote is not None and quote.synced == WRITE_BACK and adapter.quote_fields_holder == "deal"


def test_the_catch_up_poll_finds_changed_quotes(sandbox: Sandbox) -> None:
    hubspot, server = sandbox
    start = datetime.now(UTC) - timedelta(seconds=5)
    ids = quoted_deal(hubspot)
    # When the changes since the watermark are read (HubSpot sends no quote webhooks)
    events = list(crm(hubspot, server.url).iter_changes_since(start))
    # Then the quote is among them, as a quote change (its pipeline: deals)
    quote_events = [e for e in events if e.ref.object_type == "quote"]
    assert [e.ref.object_id for e in quote_events] == [ids["quote"]]
    assert (quote_events[0].kind, quote_events[0].source_type) == ("changed", "quote.poll")


def test_hubspot_offers_no_quote_webhook_subscription(sandbox: Sandbox) -> None:
    hubspot, _ = sandbox
    with pytest.raises(ValueError, match="quote"):
        hubspot.configure_webhooks(
            {"targetUrl": "http://127.0.0.1:9/hook", "subscriptions": [{"eventType": "quote.creation"}]}
        )


def test_setup_makes_the_quote_fields(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)
    # When setup's property step runs against HubSpot (whose spec carries quotes)
    ensure_crm_properties(adapter, "hubspot")
    # Then the quote fields exist on quotes
    answer = adapter.http.request("GET", "/crm/v3/properties/quotes").json()
    assert {p.name for p in QUOTE_PROPERTIES} <= {p["name"] for p in answer["results"]}
    out = capsys.readouterr().out
    assert "quote fields on the quote: created or reachable 4" in out
