"""What the SugarCRM adapter reads for recurring lines (a won opportunity's service revenue line items with
Closeloop's billing frequency dropdown, its contracts, the revenue line item and contract catch-up poll, the
Studio field check) and the sandbox's answers, held against Sugar's contract
(tests/contracts/sugarcrm/operations.json, ``$defs.RevenueLineItem`` and ``$defs.Contract``)."""

from __future__ import annotations

from datetime import UTC, datetime

from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.sugarcrm import serve
from tests.contracts.contract import load
from tests.sandbox_adapters import sugarcrm_adapter


def test_the_recurring_line_exchanges_follow_sugars_contract() -> None:
    # Given a won opportunity with a monthly service line and a contract ending early, read and polled
    with recording() as recorder:
        sugar, server = serve()
        try:
            account = sugar.create_record("Accounts", {"name": "Acme"})
            deal = sugar.create_record("Opportunities", {"name": "Deal", "account_id": account["id"]})
            host = sugar.create_record("ProductTemplates", {"name": "Hosting", "mft_part_num": "HOST"})
            sugar.create_record(
                "RevenueLineItems",
                {"name": "Hosting", "opportunity_id": deal["id"], "product_template_id": host["id"],
                 "discount_price": "50", "service": True, "service_start_date": "2027-01-01",
                 "service_duration_value": 1, "service_duration_unit": "year",
                 "closeloop_billing_frequency_c": "monthly"},
            )  # fmt: skip
            sugar.create_record(
                "Contracts",
                {"name": "C", "opportunity_id": deal["id"], "status": "signed", "start_date": "2027-01-01",
                 "end_date": "2027-06-15", "total_contract_value": "300"},
            )  # fmt: skip
            sugar.update_record("Opportunities", str(deal["id"]), {"sales_stage": "Closed Won"})
            crm = sugarcrm_adapter(sugar, server.url)
            read = crm.get_deal(str(deal["id"]))
            list(crm.iter_changes_since(datetime(2000, 1, 1, tzinfo=UTC)))
            crm.ensure_recurring_line_properties()
        finally:
            server.stop()
    assert read is not None and read.line_items[0].recurring_frequency == "monthly"
    contract = load("sugarcrm")
    names = {op.name for e in recorder.exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {
        "GET /rest/v11_{n}/Opportunities/{record}/link/revenuelineitems",
        "GET /rest/v11_{n}/Opportunities/{record}/link/contracts",
        "POST /rest/v11_{n}/Contracts/filter",
        "POST /rest/v11_{n}/{module}/filter",
        "GET /rest/v11_{n}/metadata",
    } <= names
    # When each exchange is held against the contract; then none departs from it
    violations = [str(v) for exchange in recorder.exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
