"""QuickBooks recurring templates <-> canonical schedules (closeloop.vendors.quickbooks.mapping): every
frequency as an interval and back, when a template reads as ended, and the reference of a generated invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, get_args

import pytest

from closeloop.models import Frequency
from closeloop.vendors.quickbooks.client import row_id
from closeloop.vendors.quickbooks.mapping import (
    frequency_of,
    interval_of,
    reference_of,
    schedule_info,
    template_of,
    to_schedule,
    writable_recurring_info,
)

TODAY = date(2027, 3, 1)


@pytest.mark.parametrize("frequency", get_args(Frequency))
def test_every_frequency_is_an_interval_that_reads_back_as_itself(frequency: str) -> None:
    interval, every = interval_of(frequency)
    assert interval in ("Weekly", "Monthly", "Yearly")
    assert frequency_of(interval, every) == frequency


def test_intervals_without_a_canonical_frequency_read_as_none() -> None:
    assert frequency_of("Daily", 1) is None
    assert frequency_of("Weekly", 5) is None
    assert frequency_of("", 1) is None


def test_schedule_info_pins_the_start_s_day() -> None:
    start, end = date(2027, 1, 31), date(2028, 1, 31)
    assert schedule_info("monthly", start, end) == {
        "IntervalType": "Monthly",
        "NumInterval": 1,
        "DayOfMonth": 31,
        "StartDate": "2027-01-31",
        "EndDate": "2028-01-31",
    }
    assert schedule_info("annual", start, end)["MonthOfYear"] == "January"
    assert schedule_info("fortnightly", start, end)["DayOfWeek"] == "Sunday"


def template(**info: Any) -> dict[str, Any]:
    schedule = {"IntervalType": "Monthly", "NumInterval": 3, "StartDate": "2027-01-01", "EndDate": "2027-12-31"}
    schedule.update(info.pop("schedule", {}))
    return {
        "Id": "7",
        "SyncToken": "2",
        "CustomerRef": {"value": "5"},
        "CurrencyRef": {"value": "USD"},
        "TotalAmt": Decimal("110.00"),
        "TxnTaxDetail": {"TotalTax": Decimal("10.00")},
        "RecurringInfo": {"Name": "crm-deal-1/quarterly", "RecurType": "Automated", "Active": True, **info,
                          "ScheduleInfo": schedule},
    }  # fmt: skip


def test_a_running_template_is_active_with_its_next_date_and_money() -> None:
    schedule = to_schedule(template(schedule={"NextDate": "2027-04-01"}), TODAY)
    assert (schedule.id, schedule.reference, schedule.status, schedule.approved) == (
        "7",
        "crm-deal-1/quarterly",
        "active",
        True,
    )
    assert (schedule.frequency, schedule.next_invoice_date, schedule.end_date) == (
        "quarterly",
        date(2027, 4, 1),
        date(2027, 12, 31),
    )
    assert (schedule.sub_total, schedule.total) == (Decimal("100.00"), Decimal("110.00"))


def test_when_a_template_reads_as_ended() -> None:
    assert to_schedule(template(Active=False, schedule={"NextDate": "2027-04-01"}), TODAY).status == "ended"
    assert to_schedule(template(RecurType="UnScheduled"), TODAY).status == "ended"
    finished = template(schedule={"EndDate": "2027-02-01", "PreviousDate": "2027-01-01"})
    assert to_schedule(finished, TODAY).status == "ended"
    # No NextDate but an end still ahead: QBO may not have answered one; it is not taken for ended
    assert to_schedule(template(), TODAY).status == "active"
    assert to_schedule(template(RecurType="Reminded"), TODAY).approved is False


def test_the_template_is_read_from_either_envelope_and_sent_back_without_read_only_dates() -> None:
    row = template(schedule={"NextDate": "2027-04-01", "PreviousDate": "2027-01-01"})
    assert template_of({"RecurringTransaction": {"Invoice": row}}) == row
    assert template_of({"QueryResponse": {"RecurringTransaction": [{"Invoice": row}]}}) == row
    assert template_of({"QueryResponse": {}}) is None
    assert row_id({"Invoice": row}) == "7" and row_id(row) == "7"
    sent = writable_recurring_info(row)
    assert "NextDate" not in sent["ScheduleInfo"] and "PreviousDate" not in sent["ScheduleInfo"]
    assert sent["Name"] == "crm-deal-1/quarterly"


def test_a_generated_invoice_s_reference_is_its_template_s() -> None:
    generated = {"DocNumber": "1042", "PrivateNote": "crm-deal-1/quarterly\nhttps://crm/1"}
    named = {**generated, "RecurDataRef": {"value": "7", "name": "crm-deal-1/quarterly"}}
    assert reference_of(named) == "crm-deal-1/quarterly"
    unnamed = {**generated, "RecurDataRef": {"value": "7"}}
    assert reference_of(unnamed) == "crm-deal-1/quarterly"  # the PrivateNote copied from the template
    assert reference_of({"DocNumber": "1042", "RecurDataRef": {"value": "7"}}) == "1042"
    # A one-off invoice keeps its own rule: the PrivateNote only when it matches the DocNumber
    assert reference_of(generated) == "1042"
    assert reference_of({"DocNumber": "crm-deal-1", "PrivateNote": "crm-deal-1 Big deal"}) == "crm-deal-1 Big deal"
