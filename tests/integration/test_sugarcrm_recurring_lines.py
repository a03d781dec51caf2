"""SugarCRM service revenue line items billed on a schedule, against the Sugar sandbox over HTTP: the Studio
dropdown ``closeloop_billing_frequency_c`` with the service term (``service_start_date``,
``service_duration_value``/``_unit``) read into LineItem's recurring terms; terms that are not a whole number of
billing periods failing naming the line; the opportunity's contract ending early reaching the recurring flow
(hook and catch-up poll, then the term read as ended at the contract's end); a removed service line ending its
schedule. The accounting side is the in-memory FakeBooks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import ConfigurationError, ValidationFailed
from closeloop.models import Item
from closeloop.sync.invoices import InvoicePolicy
from closeloop.sync.recurring import RecurringFlow, SchedulePolicy
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.sugarcrm.webhooks import parse_delivery
from closeloop_local import setup
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.sugarcrm import SugarSandbox, serve
from tests.fakes import FakeBooks, MemoryStore
from tests.sandbox_adapters import sugarcrm_adapter

START = date(2027, 1, 1)


@pytest.fixture
def sandbox() -> Iterator[tuple[SugarSandbox, SandboxServer]]:
    sugar, server = serve()
    yield sugar, server
    server.stop()


def service(frequency: str, value: int, unit: str, start: date = START) -> dict[str, Any]:
    return {
        "service": True,
        "service_start_date": start.isoformat(),
        "service_duration_value": value,
        "service_duration_unit": unit,
        "closeloop_billing_frequency_c": frequency,
    }


def opportunity(sugar: SugarSandbox, *lines: dict[str, Any]) -> tuple[str, list[str]]:
    """A Closed Won opportunity of ``lines`` (revenue line items on the HOST product), and the lines' ids."""
    account = sugar.create_record("Accounts", {"name": "Acme"})
    host = sugar.create_record("ProductTemplates", {"name": "Hosting", "mft_part_num": "HOST"})
    deal = sugar.create_record(
        "Opportunities", {"name": "Contract", "account_id": account["id"], "date_closed": "2026-12-15"}
    )
    ids = [
        str(
            sugar.create_record(
                "RevenueLineItems",
                {
                    "name": f"Line {n}",
                    "opportunity_id": deal["id"],
                    "product_template_id": host["id"],
                    "discount_price": "50",
                    "quantity": "1",
                    **line,
                },
            )["id"]
        )  # fmt: skip
        for n, line in enumerate(lines, 1)
    ]
    sugar.update_record("Opportunities", str(deal["id"]), {"sales_stage": "Closed Won"})
    return str(deal["id"]), ids


def sandbox_now(sugar: SugarSandbox) -> datetime:
    return datetime.fromtimestamp(sugar.state.clock.now(), UTC)


def flow(crm: SugarCrm) -> tuple[RecurringFlow, FakeBooks, MemoryStore]:
    books, store = FakeBooks(), MemoryStore()
    books.items["HOST"] = Item(code="HOST", name="Hosting")
    policy = SchedulePolicy(invoices=InvoicePolicy(default_currency="USD"))
    return (
        RecurringFlow(crm, books, books, store, policy, owner="w", clock=lambda: datetime(2026, 12, 20, tzinfo=UTC)),
        books,
        store,
    )


def test_service_lines_with_a_billing_frequency_read_as_recurring_terms(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    # Given service lines with Closeloop's billing frequency, one without, and a plain line
    sugar, server = sandbox
    deal_id, _ = opportunity(
        sugar,
        service("monthly", 1, "year"),
        service("weekly", 364, "day"),
        service("quarterly", 24, "month"),
        {"closeloop_billing_frequency_c": "annual"},  # a frequency but not a service: no term
        service("", 1, "year"),  # a service without a frequency: billed once
        {},
    )
    # When the opportunity is read
    read = sugarcrm_adapter(sugar, server.url).get_deal(deal_id)
    # Then each frequency with its service term is the line's recurring terms, in billing periods
    assert read is not None
    terms = [
        (li.recurring_frequency, li.recurring_periods, li.recurring_start, li.recurring_end)
        for li in sorted(read.line_items, key=lambda li: li.name)  # created in one second: ordered by id
    ]
    assert terms == [
        ("monthly", 12, START, None),
        ("weekly", 52, START, None),
        ("quarterly", 8, START, None),
        ("annual", None, None, None),
        (None, None, None, None),
        (None, None, None, None),
    ]
    # And the price is the line's own (per period when the frequency is set: README, Recurring lines)
    assert {li.unit_price for li in read.line_items} == {Decimal(50)}
    # And Sugar calculated the service's end, which the adapter does not need
    ends = {line["name"]: line.get("service_end_date") for line in sugar.records("RevenueLineItems")}
    assert (ends["Line 1"], ends["Line 2"], ends["Line 4"]) == ("2027-12-31", "2027-12-30", None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (service("monthly", 10, "day"), "service duration 10 day is not a whole number of monthly billing periods"),
        (service("weekly", 1, "month"), "not a whole number of weekly billing periods"),
        (service("quarterly", 7, "month"), "not a whole number of quarterly billing periods"),
        (service("daily", 1, "year"), "unknown billing frequency 'daily'"),
        ({**service("monthly", 1, "year"), "service_duration_unit": "fortnight"}, "is not a whole number of years"),
    ],
)
def test_a_term_that_is_not_whole_billing_periods_fails_naming_the_line(
    sandbox: tuple[SugarSandbox, SandboxServer], fields: dict[str, Any], message: str
) -> None:
    sugar, server = sandbox
    deal_id, (line_id,) = opportunity(sugar, fields)
    with pytest.raises(ValidationFailed, match=message) as failure:
        sugarcrm_adapter(sugar, server.url).get_deal(deal_id)
    assert f"revenue line item {line_id}" in str(failure.value)


def test_a_frequency_without_a_service_term_is_a_failed_sync_naming_the_line(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    deal_id, _ = opportunity(sugar, {"name": "Support", "closeloop_billing_frequency_c": "monthly"})
    crm = sugarcrm_adapter(sugar, server.url)
    recurring, books, _ = flow(crm)
    read = crm.get_deal(deal_id)
    assert read is not None
    with pytest.raises(ValidationFailed, match="'Support' has no term"):
        recurring.off_invoice(read)
    assert books.schedules == {}


def test_a_contract_ending_early_reaches_the_recurring_flow(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    # Given a won opportunity with a year of monthly service, scheduled, and its contract for that year
    sugar, server = sandbox
    deal_id, _ = opportunity(sugar, service("monthly", 1, "year"))
    contract = sugar.create_record(
        "Contracts",
        {"name": "Hosting 2027", "opportunity_id": deal_id, "status": "signed", "start_date": "2027-01-01",
         "end_date": "2027-12-31"},
    )  # fmt: skip
    crm = sugarcrm_adapter(sugar, server.url)
    recurring, books, store = flow(crm)
    read = crm.get_deal(deal_id)
    assert read is not None
    assert read.line_items[0].recurring_end is None  # the contract covers the whole term
    recurring.follow(read, "C1", None)
    (schedule,) = books.schedules.values()
    assert (schedule.start_date, schedule.end_date) == (START, date(2027, 12, 1))
    sugar.add_hook("Contracts", "http://127.0.0.1:9/unreachable")  # the payload is kept, its delivery fails
    since = sandbox_now(sugar)
    # When the contract is cut short: it now ends on 15 June 2027
    sugar.update_record("Contracts", str(contract["id"]), {"end_date": "2027-06-15"})
    # Then its hook is a change of the opportunity
    (delivery,) = sugar.run_hook_job()
    (event,) = parse_delivery(str(delivery["body"]).encode())
    assert (event.ref.object_type, event.ref.object_id, event.kind) == ("deal", deal_id, "changed")
    # And so is its row in the catch-up poll
    polled = [e for e in crm.iter_changes_since(since) if e.source_type == "Contracts.date_modified"]
    assert [(e.ref.object_type, e.ref.object_id) for e in polled] == [("deal", deal_id)]
    # And the opportunity's line now reads billed until June (the last period starting by the contract's end)
    read = crm.get_deal(deal_id)
    assert read is not None
    assert read.line_items[0].recurring_end == date(2027, 6, 1)
    # And the recurring flow flags the schedule for a person (a schedule is never cut automatically)
    recurring.follow(read, "C1", None)
    assert books.schedules[schedule.id].end_date == date(2027, 12, 1)
    flags = [a.detail for a in store.list_audit(read.ref) if a.action == "flagged"]
    assert flags == [
        "the monthly contract now ends 2027-06-01, its schedule 2027-12-01: shorten the schedule in accounting "
        "(it is not cut automatically)"
    ]


def test_a_contract_ending_before_the_service_starts_fails_naming_the_line(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    deal_id, _ = opportunity(sugar, {"name": "Support", **service("monthly", 1, "year")})
    sugar.create_record("Contracts", {"name": "C", "opportunity_id": deal_id, "end_date": "2026-12-31"})
    crm = sugarcrm_adapter(sugar, server.url)
    recurring, books, _ = flow(crm)
    read = crm.get_deal(deal_id)
    assert read is not None
    with pytest.raises(ValidationFailed, match="'Support' ends before it starts"):
        recurring.off_invoice(read)
    assert books.schedules == {}


def test_a_removed_service_line_ends_its_schedule(sandbox: tuple[SugarSandbox, SandboxServer]) -> None:
    # Given a scheduled monthly service line
    sugar, server = sandbox
    deal_id, (line_id, _) = opportunity(sugar, service("monthly", 1, "year"), {})
    crm = sugarcrm_adapter(sugar, server.url)
    recurring, books, _ = flow(crm)
    read = crm.get_deal(deal_id)
    assert read is not None
    recurring.follow(read, "C1", None)
    (schedule,) = books.schedules.values()
    sugar.add_hook("RevenueLineItems", "http://127.0.0.1:9/unreachable", "after_delete")
    # When the service line is deleted in Sugar
    sugar.delete_record("RevenueLineItems", line_id)
    # Then its hook is a change of the opportunity (the filter API never lists deleted records)
    (delivery,) = sugar.run_hook_job()
    (event,) = parse_delivery(str(delivery["body"]).encode())
    assert (event.ref.object_type, event.ref.object_id, event.kind) == ("deal", deal_id, "changed")
    # And following it ends the schedule
    read = crm.get_deal(deal_id)
    assert read is not None
    recurring.follow(read, "C1", None)
    assert books.schedules[schedule.id].status == "ended"


def test_without_the_frequency_field_setup_names_the_studio_dropdown(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    sugar.remove_field("RevenueLineItems", "closeloop_billing_frequency_c")
    crm = sugarcrm_adapter(sugar, server.url)
    with pytest.raises(
        ConfigurationError, match=r"closeloop_billing_frequency_c \(DropDown, label 'Billing frequency'"
    ):
        crm.ensure_recurring_line_properties()
    sugar.add_field("RevenueLineItems", "closeloop_billing_frequency_c", "enum")
    assert crm.ensure_recurring_line_properties() == []


def test_closeloop_setup_sugarcrm_names_the_dropdown_and_the_schedule_fields(
    sandbox: tuple[SugarSandbox, SandboxServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an instance without the billing frequency dropdown nor the schedules' deal fields
    sugar, server = sandbox
    sugar.remove_field("RevenueLineItems", "closeloop_billing_frequency_c")
    sugar.remove_field("Opportunities", "closeloop_schedule_ids_c")
    crm = sugarcrm_adapter(sugar, server.url)
    # When `closeloop setup sugarcrm` checks the fields; then it names the missing deal field for an admin
    with pytest.raises(ConfigurationError, match=r"Opportunities lacks .*closeloop_schedule_ids_c"):
        setup.ensure_crm_properties(crm, "sugarcrm")
    # And, once that is added, the dropdown on revenue line items
    sugar.add_field("Opportunities", "closeloop_schedule_ids_c")
    with pytest.raises(ConfigurationError, match=r"RevenueLineItems lacks .*closeloop_billing_frequency_c"):
        setup.ensure_crm_properties(crm, "sugarcrm")
    # And with both added, setup passes
    sugar.add_field("RevenueLineItems", "closeloop_billing_frequency_c", "enum")
    setup.ensure_crm_properties(crm, "sugarcrm")
    assert "recurring fields: created 0 (-)" in capsys.readouterr().out
