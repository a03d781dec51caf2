"""What the SugarCRM adapter's flow reads and writes (quotes with their grouped lines, quote write-back, the
quote and quoted-line catch-up poll) and the sandbox's answers, held against Sugar's contract
(tests/contracts/sugarcrm/operations.json)."""

from __future__ import annotations

from datetime import UTC, datetime

from closeloop.sync.quotes import QUOTE_PROPERTIES
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.sugarcrm import serve
from tests.contracts.contract import load
from tests.sandbox_adapters import sugarcrm_adapter


def test_the_quote_port_exchanges_follow_sugars_contract() -> None:
    # Given a quote of two groups on an opportunity, read, written and polled by the adapter
    with recording() as recorder:
        sugar, server = serve()
        try:
            account = sugar.create_record("Accounts", {"name": "Acme"})
            deal = sugar.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
            widget = sugar.create_record("ProductTemplates", {"name": "Widget", "mft_part_num": "W-1"})
            quote = sugar.create_quote(
                {"name": "Q1", "quote_stage": "Delivered", "billing_account_id": account["id"],
                 "opportunity_id": deal["id"], "date_quote_expected_closed": "2027-01-31"},
                [{"name": "A", "products": [{"product_template_id": widget["id"], "quantity": "2"}]},
                 {"name": "B", "products": [{"name": "Fee", "discount_price": "5"}]}],
            )  # fmt: skip
            sugar.update_record("Products", str(sugar.quote_lines(str(quote["id"]))[0]["id"]), {"mft_part_num": ""})
            crm = sugarcrm_adapter(sugar, server.url)
            quote_id = str(quote["id"])
            crm.get_quote(quote_id)
            crm.quotes_of_deal(str(deal["id"]))
            crm.write_quote(quote_id, {"closeloop_quote_number": "QU-1", "closeloop_quote_status": "SENT"})
            crm.ensure_quote_properties(QUOTE_PROPERTIES)
            crm.get_quote("missing")
            list(crm.iter_changes_since(datetime(2000, 1, 1, tzinfo=UTC)))
        finally:
            server.stop()
    contract = load("sugarcrm")
    names = {op.name for e in recorder.exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {
        "GET /rest/v11_{n}/Quotes/{record}",
        "PUT /rest/v11_{n}/Quotes/{record}",
        "POST /rest/v11_{n}/Quotes/filter",
        "GET /rest/v11_{n}/Quotes/{record}/link/product_bundles",
        "GET /rest/v11_{n}/ProductBundles/{record}/link/products",
        "GET /rest/v11_{n}/{module}/{record}/link/{link_name}",
        "POST /rest/v11_{n}/ProductTemplates/filter",
        "POST /rest/v11_{n}/{module}/filter",
    } <= names
    # When each exchange is held against the contract; then none departs from it
    violations = [str(v) for exchange in recorder.exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
