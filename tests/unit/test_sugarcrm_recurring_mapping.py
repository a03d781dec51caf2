"""SugarCRM's recurring line mapping without HTTP: a service revenue line item's term in billing periods, and
an opportunity's contracts capping the term at the last billing period starting by the latest contract end."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import LineItem
from closeloop.vendors.sugarcrm.mapping import contract_end, ended_by_contract, service_terms


def line(frequency: str, value: Any, unit: str, **more: Any) -> dict[str, Any]:
    return {"closeloop_billing_frequency_c": frequency, "service": "1", "service_start_date": "2027-01-31",
            "service_duration_value": value, "service_duration_unit": unit, **more}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "periods"),
    [
        (line("monthly", 2, "years"), 24),
        (line("annual", 3, "Year"), 3),
        (line("semi_annual", "18", "month"), 3),
        (line("fortnightly", 28, "day"), 2),
        (line("every_5_years", 5, "year"), 1),
    ],
)
def test_a_service_term_is_counted_in_billing_periods(fields: dict[str, Any], periods: int) -> None:
    terms = service_terms(fields, "revenue line item 1")
    assert (terms["recurring_periods"], terms["recurring_start"]) == (periods, date(2027, 1, 31))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (line("monthly", 0, "month"), "is not a whole number of years, months or days"),
        (line("monthly", "1.5", "year"), "is not a whole number of years, months or days"),
        (line("monthly", 1, "year", service_start_date="31/01/2027"), "service_start_date is not a date"),
        (line("annual", 18, "month"), "not a whole number of annual billing periods"),
    ],
)
def test_unreadable_terms_fail_naming_the_line(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as failure:
        service_terms(fields, "revenue line item 7")
    assert "revenue line item 7" in str(failure.value)


def test_a_contract_caps_the_term_at_the_last_period_starting_by_its_end() -> None:
    monthly = LineItem(
        crm_id="1", recurring_frequency="monthly", recurring_start=date(2027, 1, 31), recurring_periods=12
    )
    # Month ends clamp: the periods start 31 Jan, 28 Feb, 31 Mar ...
    assert ended_by_contract(monthly, date(2027, 3, 30), None).recurring_end == date(2027, 2, 28)
    assert ended_by_contract(monthly, date(2027, 3, 31), None).recurring_end == date(2027, 3, 31)
    # A contract at or past the term's end leaves the line as it is (it never lengthens a term)
    assert ended_by_contract(monthly, date(2027, 12, 31), None) is monthly
    assert ended_by_contract(monthly, date(2030, 1, 1), None) is monthly
    # A contract ending before the service starts ends the line before it starts (the flow refuses it)
    assert ended_by_contract(monthly, date(2027, 1, 1), None).recurring_end == date(2027, 1, 1)
    # Weekly, starting at the deal's close date when the line has no start of its own
    weekly = LineItem(crm_id="2", recurring_frequency="weekly", recurring_periods=52)
    assert ended_by_contract(weekly, date(2027, 1, 20), date(2027, 1, 4)).recurring_end == date(2027, 1, 18)
    # One-off lines and lines without a term are left alone
    assert ended_by_contract(LineItem(crm_id="3"), date(2027, 1, 1), None).recurring_end is None


def test_the_latest_contract_end_bounds_the_opportunity() -> None:
    contracts = [{"id": "a", "end_date": "2027-06-30"}, {"id": "b", "end_date": "2027-12-31"}, {"id": "c"}]
    assert contract_end(contracts, "9") == date(2027, 12, 31)
    assert contract_end([{"id": "c", "end_date": ""}], "9") is None
    with pytest.raises(ValidationFailed, match="contract x of opportunity 9 end_date is not a date"):
        contract_end([{"id": "x", "end_date": "soon"}], "9")
