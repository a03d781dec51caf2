"""The SugarCRM quote port (QuoteCrm) against the SugarCRM sandbox over HTTP: quotes read with their grouped lines,
stages mapped, Closeloop's quote fields written, quote changes found by web logic hooks and by the catch-up poll
(quoted lines too). The exchanges are held to Sugar's contract in tests/contracts/test_sugarcrm_flow_exchanges.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import ConfigurationError, FatalError, NotFound, ValidationFailed
from closeloop.models import QUOTE_SYNC_FIELDS, CrmRef
from closeloop.ports import QuoteCrm, WebhookRequest
from closeloop.sync.quotes import QUOTE_PROPERTIES
from closeloop.vendors.sugarcrm.quotes import stage_list
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.sugarcrm import SugarCrmDriver, SugarSandbox, serve
from tests.sandbox_adapters import sugarcrm_adapter

API = "/rest/v11_24"
HOOK_TOKEN = "hook-token-8d1e-Qm3xV9pL2rT7wY5zK8nB4cF6"  # noqa: S105 - a test value


@pytest.fixture
def sandbox() -> Iterator[tuple[SugarSandbox, SandboxServer]]:
    sugar, server = serve()
    yield sugar, server
    server.stop()


def record(sugar: SugarSandbox, module: str, record_id: str) -> dict[str, Any]:
    found = sugar.get_record(module, record_id)
    assert found is not None
    return found


def ref(object_type: str, object_id: str) -> CrmRef:
    return CrmRef.model_validate({"crm": "sugarcrm", "object_type": object_type, "object_id": object_id})


def quoted_deal(sugar: SugarSandbox, stage: str = "Delivered") -> dict[str, Any]:
    """An account, its opportunity, two catalogue products and a quote of two groups and three lines."""
    gbp = sugar.create_record("Currencies", {"name": "Pound", "iso4217": "GBP", "conversion_rate": "0.8"})
    account = sugar.create_record("Accounts", {"name": "Acme"})
    contact = sugar.create_record("Contacts", {"first_name": "Ann", "last_name": "Archer"})
    deal = sugar.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
    widget = sugar.create_record(
        "ProductTemplates", {"name": "Widget", "mft_part_num": "WID-1", "discount_price": "10"}
    )
    gadget = sugar.create_record("ProductTemplates", {"name": "Gadget", "mft_part_num": "GAD-1"})
    quote = sugar.create_quote(
        {"name": "Q1", "quote_stage": stage, "date_quote_expected_closed": "2027-01-31", "currency_id": gbp["id"],
         "billing_account_id": account["id"], "billing_contact_id": contact["id"], "opportunity_id": deal["id"]},
        [{"name": "Hardware", "products": [
            {"product_template_id": widget["id"], "quantity": "2", "discount_amount": "10"},
            {"product_template_id": gadget["id"], "name": "Gadget XL", "discount_price": "7.5",
             "discount_amount": "5", "discount_select": False}]},
         {"name": "Services", "products": [{"name": "Setup", "mft_part_num": "SET-1", "discount_price": "50"}]}],
    )  # fmt: skip
    return {"account": account, "contact": contact, "deal": deal, "quote": quote, "widget": widget, "gadget": gadget}


def test_a_quote_reads_with_its_grouped_lines_parties_deal_and_status(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar)
    crm: QuoteCrm = sugarcrm_adapter(sugar, server.url)  # mypy holds the adapter to the port
    quote_id = str(made["quote"]["id"])
    # When the quote is read
    quote = crm.get_quote(quote_id)
    # Then it carries its header, its buyer and its opportunity
    assert quote is not None
    assert (quote.ref, quote.deal) == (ref("quote", quote_id), ref("deal", made["deal"]["id"]))
    assert (quote.title, quote.number, quote.status, quote.currency) == ("Q1", "1", "ready", "GBP")
    assert quote.expiry == date(2027, 1, 31)
    assert (quote.company, quote.contact) == (
        ref("company", made["account"]["id"]),
        ref("contact", made["contact"]["id"]),
    )
    assert quote.url == f"{server.url}/#Quotes/{quote_id}" and quote.updated_at is not None
    # And its lines group by group: SKU, price and discount from the line (copied from the template when added)
    lines = quote.line_items
    assert [(line.name, line.sku, line.product_id) for line in lines] == [
        ("Widget", "WID-1", made["widget"]["id"]),
        ("Gadget XL", "GAD-1", made["gadget"]["id"]),
        ("Setup", "SET-1", ""),
    ]
    assert [(line.quantity, line.unit_price, line.discount_percent, line.amount) for line in lines] == [
        (Decimal(2), Decimal(10), Decimal(10), Decimal(18)),
        (Decimal(1), Decimal("2.5"), None, Decimal("2.5")),  # a money discount of 5 folded into the unit price
        (Decimal(1), Decimal(50), None, Decimal(50)),
    ]


def test_lines_follow_position_not_creation_and_a_bare_line_takes_its_templates_sku(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar)
    quote_id = str(made["quote"]["id"])
    first, second, _ = sugar.quote_lines(quote_id)
    # Given the editor moved the first line below the second, and a line whose part number was cleared
    sugar.update_record("Products", str(first["id"]), {"position": 7})
    sugar.update_record("Products", str(second["id"]), {"mft_part_num": ""})
    crm = sugarcrm_adapter(sugar, server.url)
    # When the quote is read
    quote = crm.get_quote(quote_id)
    # Then the lines come in position order within their group, and the bare line has its template's SKU
    assert quote is not None
    assert [(line.crm_id, line.sku) for line in quote.line_items[:2]] == [
        (second["id"], "GAD-1"),
        (first["id"], "WID-1"),
    ]


def test_the_ready_and_rejected_stages_are_settings(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar, stage="Sent To Customer")
    # Given an org whose own stage "Sent To Customer" means published, and Delivered does not
    crm = sugarcrm_adapter(
        sugar, server.url, quote_ready_stages=stage_list(" Sent To Customer , Closed Accepted"),
        quote_rejected_stages=stage_list("Delivered"),
    )  # fmt: skip
    quote = crm.get_quote(str(made["quote"]["id"]))
    assert quote is not None and quote.status == "ready"
    sugar.update_record("Quotes", str(made["quote"]["id"]), {"quote_stage": "Delivered"})
    again = crm.get_quote(str(made["quote"]["id"]))
    assert again is not None and again.status == "rejected"


def test_a_quote_without_a_buyer_is_billed_to_its_opportunitys_account(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    account = sugar.create_record("Accounts", {"name": "Acme"})
    deal = sugar.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
    quote = sugar.create_quote({"name": "Q", "quote_stage": "Delivered", "opportunity_id": deal["id"]})
    found = sugarcrm_adapter(sugar, server.url).get_quote(str(quote["id"]))
    assert found is not None
    assert (found.company, found.contact, found.line_items) == (ref("company", account["id"]), None, ())
    assert found.currency == "USD"  # the system currency (-99)


def test_a_missing_or_deleted_quote_is_none(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    crm = sugarcrm_adapter(sugar, server.url)
    assert crm.get_quote("missing") is None
    quote = sugar.create_quote({"name": "Q"})
    sugar.delete_record("Quotes", str(quote["id"]))
    assert crm.get_quote(str(quote["id"])) is None


def test_quotes_of_deal_lists_the_opportunitys_quotes_oldest_first(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar)
    sugar.state.clock.advance(2)
    later = sugar.create_quote({"name": "Q2", "quote_stage": "Draft", "opportunity_id": made["deal"]["id"]})
    other = sugar.create_record("Opportunities", {"name": "Other"})
    crm = sugarcrm_adapter(sugar, server.url)
    quotes = crm.quotes_of_deal(str(made["deal"]["id"]))
    assert [(q.ref.object_id, q.status) for q in quotes] == [(made["quote"]["id"], "ready"), (later["id"], "draft")]
    assert len(quotes[0].line_items) == 3
    assert crm.quotes_of_deal(str(other["id"])) == []


def test_write_quote_writes_closeloops_fields_and_reads_them_back(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar)
    quote_id = str(made["quote"]["id"])
    crm = sugarcrm_adapter(sugar, server.url)
    values = {"closeloop_quote_number": "QU-0001", "closeloop_quote_status": "SENT", "closeloop_quote_revision": "0"}
    # When the fields are written, and one cleared again
    crm.write_quote(quote_id, values)
    crm.write_quote(quote_id, {"closeloop_quote_revision": ""})
    # Then Sugar holds them in the _c fields and the quote reads them as synced
    assert record(sugar, "Quotes", quote_id)["closeloop_quote_number_c"] == "QU-0001"
    quote = crm.get_quote(quote_id)
    assert quote is not None
    assert quote.synced == {"closeloop_quote_number": "QU-0001", "closeloop_quote_status": "SENT"}
    with pytest.raises(NotFound):
        crm.write_quote("missing", values)


def test_without_the_studio_fields_a_write_fails_and_ensure_names_what_to_add(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    made = quoted_deal(sugar)
    crm = sugarcrm_adapter(sugar, server.url)
    assert crm.ensure_quote_properties(QUOTE_PROPERTIES) == []  # all present: nothing to create
    # Given an instance where the admin has not added closeloop_quote_url_c
    sugar.remove_field("Quotes", "closeloop_quote_url_c")
    # Then a write naming it is refused (Sugar ignored it silently) and ensure names the Studio field to add
    with pytest.raises(ValidationFailed, match="closeloop_quote_url_c"):
        crm.write_quote(str(made["quote"]["id"]), {"closeloop_quote_url": "https://books/q/1"})
    with pytest.raises(ConfigurationError) as info:
        crm.ensure_quote_properties(QUOTE_PROPERTIES)
    assert "closeloop_quote_url_c (TextField" in info.value.message and "Studio > Quotes" in info.value.message
    assert "closeloop_quote_number_c" not in info.value.message
    assert {p.name for p in QUOTE_PROPERTIES} == set(QUOTE_SYNC_FIELDS)


class Receiver:
    """Stands in for Closeloop's webhook route: records what Sugar POSTs."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((request.url, request.get_data()))
        return Response("{}", status=200, content_type="application/json")(environ, start_response)


def test_quote_and_line_hooks_are_quote_events_the_catch_up_poll_also_finds(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    hook = Receiver()
    hook_server = SandboxServer(hook).start()
    try:
        SugarCrmDriver(sugar, webhook_token=HOOK_TOKEN).subscribe(hook_server.url)
        crm = sugarcrm_adapter(sugar, server.url)
        since = datetime.now(UTC) - timedelta(minutes=5)
        made = quoted_deal(sugar)
        quote_id = str(made["quote"]["id"])
        sugar.run_hook_job()
        # Then the quote's creation is a quote event, and so is each line's (its quote changed)
        for url, body in hook.received:
            crm.verify_webhook(WebhookRequest("POST", url, {}, body))  # raises for a wrong token
        events = [e for _, body in hook.received for e in crm.parse_webhook(body)]
        quote_events = [e for e in events if e.ref == ref("quote", quote_id)]
        assert {e.kind for e in quote_events} >= {"created", "changed"}
        assert any(e.source_type == "Product.after_save" for e in quote_events)
        assert all(e.ref.object_type != "line_item" for e in events)
        # When a line is renamed only (no total moves, so the quote itself is not saved)
        sugar.state.clock.advance(5)
        mark = datetime.fromtimestamp(sugar.state.clock.now(), UTC)
        line = sugar.quote_lines(quote_id)[2]
        before = record(sugar, "Quotes", quote_id)["date_modified"]
        sugar.update_record("Products", str(line["id"]), {"name": "Setup and training"})
        assert record(sugar, "Quotes", quote_id)["date_modified"] == before
        hook.received.clear()
        sugar.run_hook_job()
        (renamed,) = [e for _, body in hook.received for e in crm.parse_webhook(body)]
        # Then the hook and the poll both report a change of its quote, the poll under the hook's key
        assert (renamed.ref, renamed.kind) == (ref("quote", quote_id), "changed")
        polled = [e for e in crm.iter_changes_since(mark) if e.ref == ref("quote", quote_id)]
        assert [e.source_type for e in polled] == ["Products.date_modified"]
        assert (
            polled[0].dedupe_key.startswith(f"Quotes:{quote_id}:") and f":Products:{line['id']}" in polled[0].dedupe_key
        )
        # And every change since the start includes the quote's own record
        assert any(e.source_type == "Quotes.date_modified" for e in crm.iter_changes_since(since))
    finally:
        hook_server.stop()


def test_a_line_hook_without_its_quote_is_ignored() -> None:
    from closeloop.vendors.sugarcrm.webhooks import parse_delivery  # noqa: PLC0415

    data = {"id": "l1", "date_modified": "2027-01-01T10:00:00+00:00"}
    body = json.dumps({"bean": "Product", "event": "after_save", "isUpdate": True, "data": data}).encode()
    assert parse_delivery(body) == []


@pytest.mark.parametrize("status", [403, 404])
def test_an_instance_that_refuses_quotes_still_catches_up_its_other_modules(
    sandbox: tuple[SugarSandbox, SandboxServer], status: int
) -> None:
    sugar, server = sandbox
    account = sugar.create_record("Accounts", {"name": "Acme"})
    # Given a role without Quotes (or an instance without the module): its filter call is refused
    refusal = {"error": "not_authorized" if status == 403 else "not_found", "error_message": "No access"}
    sugar.state.faults.append(Fault(f"{API}/Quotes/filter", status, method="POST", body=refusal))
    crm = sugarcrm_adapter(sugar, server.url)
    # When the catch-up poll runs, the accounts are still found
    events = list(crm.iter_changes_since(datetime.now(UTC) - timedelta(minutes=5)))
    assert ref("company", str(account["id"])) in {e.ref for e in events}
    # But an account scan refused the same way is not skipped
    sugar.state.faults.append(Fault(f"{API}/Accounts/filter", status, method="POST", body=refusal))
    with pytest.raises(FatalError):
        list(crm.iter_changes_since(datetime.now(UTC) - timedelta(minutes=5)))
