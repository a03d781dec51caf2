"""The HubSpot adapter's quote calls (a quote read with its associations, its line items, a deal's quotes, the
quote fields created and written, the change scan over quotes, the deal fallback) and the sandbox's answers, held
against HubSpot's published contract (operations.json: the quotes spec uses the generic object components).
The pair loop makes no quote, so this drives the calls itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from closeloop.sync.quotes import QUOTE_PROPERTIES
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve
from tests.contracts.contract import load

WRITE_BACK = {"closeloop_quote_number": "QU-0001", "closeloop_quote_status": "SENT"}


def _quote_calls(hubspot: HubSpotSandbox, adapter: HubSpotCrm) -> None:
    start = datetime.now(UTC) - timedelta(seconds=5)
    company = hubspot.create_object("companies", {"name": "Quoted Ltd"})
    deal = hubspot.create_object(
        "deals",
        {"dealname": "Widgets", "dealstage": "appointmentscheduled", "pipeline": "default"},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    quote = hubspot.create_object(
        "quotes",
        {"hs_title": "Widgets", "hs_status": "APPROVED", "hs_expiration_date": "2027-01-31", "hs_currency": "NZD"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    hubspot.create_object(
        "line_items",
        {"name": "Widget", "hs_sku": "WID", "quantity": "2", "price": "12.50"},
        associations=[{"to_type": "quotes", "to_id": quote["id"]}],
    )
    assert adapter.get_quote(str(quote["id"])) is not None
    assert adapter.get_quote("99999999") is None
    assert len(adapter.quotes_of_deal(str(deal["id"]))) == 1
    adapter.ensure_quote_properties(QUOTE_PROPERTIES)
    adapter.write_quote(str(quote["id"]), WRITE_BACK)
    assert any(e.ref.object_type == "quote" for e in adapter.iter_changes_since(start))


def test_every_quote_exchange_follows_hubspot_s_contract() -> None:
    contract = load("hubspot")
    for custom_quote_properties in (True, False):  # on the quote, then the deal fallback
        with recording() as recorder:
            hubspot, server = serve(HubSpotSandbox())
            hubspot.custom_quote_properties = custom_quote_properties
            try:
                adapter = HubSpotCrm(
                    client_secret=hubspot.client_secret,
                    access_token=hubspot.access_token,
                    base_url=server.url,
                    sleep=lambda s: None,
                    portal_id=hubspot.portal_id,
                )
                _quote_calls(hubspot, adapter)
            finally:
                hubspot.close()
                server.stop()
        quote_calls = [e for e in recorder.exchanges if "quotes" in e.path]
        assert {e.method for e in quote_calls} >= {"GET", "POST"}
        # Then each request and answer validates against HubSpot's published operations
        violations = sorted({str(v) for exchange in recorder.exchanges for v in contract.check(exchange)})
        assert not violations, "\n".join(violations)
