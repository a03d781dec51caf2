"""QuickBooksSandbox's RecurringTransaction over real HTTP: Invoice templates with RecurringInfo (Intuit's XSD
names), read, query, update at the SyncToken, deactivate, delete, and the daily run that makes their invoices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop_local.sandboxes.base import WireEncoder
from closeloop_local.sandboxes.quickbooks import COMPANY_ZONE, QuickBooksDriver, serve
from closeloop_local.sandboxes.schedules import Recurrence, add_months
from tests.sandboxes.test_quickbooks_sandbox import Qbo, code_of, exact


@pytest.fixture
def qbo() -> Iterator[Qbo]:
    sandbox, server = serve()
    client = Qbo(sandbox, server).login()
    yield client
    client.http.close()
    server.stop()


def _today(qbo: Qbo) -> date:
    from datetime import datetime  # noqa: PLC0415 - the sandbox's own clock, in the company's zone

    return datetime.fromtimestamp(qbo.sandbox.state.clock.now(), COMPANY_ZONE).date()


def _template(qbo: Qbo, name: str = "Deal 7 monthly", **schedule: Any) -> dict[str, Any]:
    customer = qbo.sandbox.seed("Customer", DisplayName=f"Acme {name}")
    item = qbo.sandbox.seed("Item", Name=f"Support {name}", UnitPrice=Decimal("100"), IncomeAccountRef={"value": "1"})
    info = {"IntervalType": "Monthly", "NumInterval": 1, "StartDate": _today(qbo).isoformat(), **schedule}
    return {
        "Invoice": {
            "CustomerRef": {"value": customer["Id"]},
            "PrivateNote": "closeloop deal 7",
            "CustomerMemo": {"value": "Your monthly support"},
            "DocNumber": "TPL-7",
            "TxnDate": "2026-01-01",
            "DueDate": "2026-01-31",
            "Line": [
                {
                    "DetailType": "SalesItemLineDetail",
                    "Amount": 200,
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 2, "UnitPrice": 100},
                }
            ],
            "RecurringInfo": {"Name": name, "RecurType": "Automated", "Active": True, "ScheduleInfo": info},
        }
    }


def _post(qbo: Qbo, body: dict[str, Any], **params: str) -> httpx.Response:
    """POST a template (Decimals read back from earlier answers go out as exact JSON numbers)."""
    return qbo.call("POST", "recurringtransaction", json.loads(json.dumps(body, cls=WireEncoder)), **params)


def _create(qbo: Qbo, body: dict[str, Any]) -> dict[str, Any]:
    reply = _post(qbo, body)
    assert reply.status_code == 200, reply.text
    invoice: dict[str, Any] = exact(reply)["RecurringTransaction"]["Invoice"]
    return invoice


def test_a_template_is_created_read_and_queried_with_its_next_date(qbo: Qbo) -> None:
    # Given a monthly Automated template on the 1st, for at most 3 invoices
    today = _today(qbo)
    template = _create(qbo, _template(qbo, DayOfMonth=1, MaxOccurrences=3))
    # Then QBO computed its totals and NextDate (the first 1st on or after today), and kept the schedule
    first = add_months(today, 0, 1) if today.day == 1 else add_months(today.replace(day=1), 1)
    schedule = template["RecurringInfo"]["ScheduleInfo"]
    assert schedule["NextDate"] == first.isoformat()
    assert (schedule["IntervalType"], schedule["NumInterval"], schedule["MaxOccurrences"]) == ("Monthly", 1, 3)
    assert template["TotalAmt"] == Decimal("200.00") and template["SyncToken"] == "0"
    # When it is read by id, Then the answer is the page's QueryResponse holding the one template
    read = exact(qbo.call("GET", f"recurringtransaction/{template['Id']}"))
    assert read["QueryResponse"]["RecurringTransaction"] == [{"Invoice": template}]
    # And a query finds it by Id, pages, counts; an unfilterable property is a 4001
    found = exact(qbo.query(f"select * from RecurringTransaction where Id = '{template['Id']}'"))
    assert found["QueryResponse"]["RecurringTransaction"][0]["Invoice"]["Id"] == template["Id"]
    _create(qbo, _template(qbo, "Deal 8 yearly", IntervalType="Yearly"))
    paged = exact(qbo.query("select * from RecurringTransaction startposition 2 maxresults 1"))["QueryResponse"]
    assert paged["startPosition"] == 2 and len(paged["RecurringTransaction"]) == 1
    assert exact(qbo.query("select count(*) from RecurringTransaction"))["QueryResponse"] == {"totalCount": 2}
    assert code_of(qbo.query("select * from RecurringTransaction where RecurringInfo.Name = 'x'")) == "4001"
    assert code_of(qbo.call("GET", "recurringtransaction/999")) == "610"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda t: t["Invoice"].pop("RecurringInfo"), "2020"),
        (lambda t: t["Invoice"]["RecurringInfo"].pop("Name"), "2020"),
        (lambda t: t["Invoice"]["RecurringInfo"].update(RecurType="Sometimes"), "2500"),
        (lambda t: t["Invoice"]["RecurringInfo"]["ScheduleInfo"].update(IntervalType="Hourly"), "2500"),
        (lambda t: t["Invoice"]["RecurringInfo"]["ScheduleInfo"].pop("StartDate"), "2020"),
        (lambda t: t["Invoice"]["RecurringInfo"]["ScheduleInfo"].update(DayOfMonth=32), "2500"),
        (lambda t: t["Invoice"]["RecurringInfo"]["ScheduleInfo"].update(DayOfWeek="Funday"), "2500"),
        (lambda t: t["Invoice"]["RecurringInfo"]["ScheduleInfo"].update(EndDate="2000-01-01"), "6000"),
        (lambda t: t["Invoice"]["RecurringInfo"].pop("ScheduleInfo"), "2020"),
        (lambda t: t["Invoice"].update(Line=[]), "6000"),
        (lambda t: t["Invoice"].update(CustomerRef={"value": "999"}), "610"),
        (lambda t: t.update(Bill=t.pop("Invoice")), "2500"),
    ],
)
def test_a_template_quickbooks_would_refuse_is_refused_and_nothing_is_kept(qbo: Qbo, change: Any, code: str) -> None:
    body = _template(qbo)
    change(body)
    reply = _post(qbo, body)
    assert reply.status_code == 400 and code_of(reply) == code
    assert qbo.sandbox.recurring_templates() == []


def test_names_are_unique_and_an_unscheduled_template_has_no_next_date(qbo: Qbo) -> None:
    _create(qbo, _template(qbo, "Same"))
    again = _template(qbo, "Other")
    again["Invoice"]["RecurringInfo"]["Name"] = "same"
    assert code_of(_post(qbo, again)) == "6240"
    body = _template(qbo, "By hand")
    body["Invoice"]["RecurringInfo"] = {"Name": "By hand", "RecurType": "UnScheduled", "Active": True}
    assert "ScheduleInfo" not in _create(qbo, body)["RecurringInfo"]


def test_update_needs_the_sync_token_and_deactivating_drops_the_next_date(qbo: Qbo) -> None:
    template = _create(qbo, _template(qbo, IntervalType="Weekly", DayOfWeek="Monday", NumInterval=2))
    assert date.fromisoformat(template["RecurringInfo"]["ScheduleInfo"]["NextDate"]).weekday() == 0
    stale = {**template, "SyncToken": "7", "sparse": True}
    assert code_of(_post(qbo, {"Invoice": stale})) == "5010"
    # When the schedule is extended (a sparse update of RecurringInfo with an EndDate)
    info = template["RecurringInfo"]
    end = (_today(qbo) + timedelta(days=365)).isoformat()
    info["ScheduleInfo"]["EndDate"] = end
    sparse = {"Id": template["Id"], "SyncToken": "0", "sparse": True, "RecurringInfo": info}
    extended = _create(qbo, {"Invoice": sparse})
    assert extended["RecurringInfo"]["ScheduleInfo"]["EndDate"] == end and extended["SyncToken"] == "1"
    assert extended["Line"] == template["Line"]  # a sparse update keeps what it does not name
    # When it is deactivated (Active false), Then it has no NextDate and makes no invoice
    info["Active"] = False
    stopped = _create(qbo, {"Invoice": {"Id": template["Id"], "SyncToken": "1", "sparse": True, "RecurringInfo": info}})
    assert stopped["RecurringInfo"]["Active"] is False and "NextDate" not in stopped["RecurringInfo"]["ScheduleInfo"]
    assert qbo.sandbox.run_recurring(_today(qbo) + timedelta(days=400)) == []


def test_delete_needs_the_sync_token_and_removes_the_template(qbo: Qbo) -> None:
    template = _create(qbo, _template(qbo))
    gone = {"Invoice": {"Id": template["Id"], "SyncToken": "3"}}
    assert code_of(_post(qbo, gone, operation="delete")) == "5010"
    gone["Invoice"]["SyncToken"] = "0"
    reply = exact(_post(qbo, gone, operation="delete"))
    assert reply["RecurringTransaction"] == {"Invoice": {"Id": template["Id"], "status": "Deleted", "domain": "QBO"}}
    assert code_of(qbo.call("GET", f"recurringtransaction/{template['Id']}")) == "610"


def test_the_daily_run_makes_each_due_invoice_from_the_template_until_max_occurrences(qbo: Qbo) -> None:
    # Given a monthly template on the 1st for at most 2 invoices, and a hand-made invoice holding number 1001
    template = _create(qbo, _template(qbo, DayOfMonth=1, MaxOccurrences=2))
    first = date.fromisoformat(template["RecurringInfo"]["ScheduleInfo"]["NextDate"])
    customer = template["CustomerRef"]["value"]
    line = template["Line"][0]
    qbo.sandbox.seed("Invoice", CustomerRef={"value": customer}, DocNumber="1001", Line=[line])
    driver = QuickBooksDriver(qbo.sandbox)
    # When QuickBooks runs before the day, Then nothing is made
    assert driver.run_recurring(first - timedelta(days=1)) == []
    # When it runs three months later, Then two invoices are made (MaxOccurrences), one per due day
    made = qbo.sandbox.run_recurring(add_months(first, 3))
    assert [m["TxnDate"] for m in made] == [first.isoformat(), add_months(first, 1).isoformat()]
    for invoice in made:
        assert invoice["RecurDataRef"] == {"value": template["Id"], "name": "Deal 7 monthly"}
        assert invoice["PrivateNote"] == "closeloop deal 7"
        assert invoice["CustomerMemo"] == {"value": "Your monthly support"}
        assert invoice["TotalAmt"] == Decimal("200.00") and invoice["Balance"] == Decimal("200.00")
        assert date.fromisoformat(invoice["DueDate"]) - date.fromisoformat(invoice["TxnDate"]) == timedelta(days=30)
    assert [m["DocNumber"] for m in made] == ["1002", "1003"]  # the next free numbers, never TPL-7
    # And the template has no NextDate left, its PreviousDate is the last run, and its SyncToken moved
    after = exact(qbo.call("GET", f"recurringtransaction/{template['Id']}"))["QueryResponse"]
    schedule = after["RecurringTransaction"][0]["Invoice"]["RecurringInfo"]["ScheduleInfo"]
    assert "NextDate" not in schedule and schedule["PreviousDate"] == add_months(first, 1).isoformat()
    # And the made invoices are ordinary invoices (queryable, as a poller reads them)
    listed = exact(qbo.query("select * from Invoice where DocNumber = '1003'"))["QueryResponse"]["Invoice"]
    assert listed[0]["RecurDataRef"]["value"] == template["Id"]


def test_reminded_templates_make_nothing_and_the_control_api_runs_the_schedules(qbo: Qbo) -> None:
    body = _template(qbo, IntervalType="Daily")
    body["Invoice"]["RecurringInfo"]["RecurType"] = "Reminded"
    _create(qbo, body)
    assert qbo.sandbox.run_recurring(_today(qbo) + timedelta(days=5)) == []
    daily = _create(qbo, _template(qbo, "Daily one", IntervalType="Daily", NumInterval=2))
    on = date.fromisoformat(daily["RecurringInfo"]["ScheduleInfo"]["NextDate"]) + timedelta(days=4)
    reply = qbo.http.post("/_sandbox/recurring/run", json={"on": on.isoformat()})
    assert [i["RecurDataRef"]["value"] for i in reply.json()["Invoice"]] == [daily["Id"]] * 3


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        (Recurrence("day", 3, date(2026, 1, 30)), ["2026-01-30", "2026-02-02", "2026-02-05"]),
        (Recurrence("week", 1, date(2026, 1, 1), weekday=0), ["2026-01-05", "2026-01-12", "2026-01-19"]),
        (Recurrence("month", 1, date(2026, 1, 31)), ["2026-01-31", "2026-02-28", "2026-03-31"]),
        (Recurrence("month", 2, date(2026, 1, 20), day_of_month=5), ["2026-03-05", "2026-05-05", "2026-07-05"]),
        (
            Recurrence("month", 1, date(2026, 1, 1), weekday=1, week_of_month=2),
            ["2026-01-13", "2026-02-10", "2026-03-10"],
        ),
        (
            Recurrence("month", 1, date(2026, 1, 1), weekday=4, week_of_month=5),
            ["2026-01-30", "2026-02-27", "2026-03-27"],
        ),
        (Recurrence("year", 1, date(2024, 2, 29)), ["2024-02-29", "2025-02-28", "2026-02-28"]),
        (Recurrence("year", 1, date(2026, 6, 1), month=3, day_of_month=15), ["2027-03-15", "2028-03-15", "2029-03-15"]),
        (Recurrence("month", 1, date(2026, 1, 1), end=date(2026, 2, 15)), ["2026-01-01", "2026-02-01"]),
    ],
)
def test_schedule_dates(recurrence: Recurrence, expected: list[str]) -> None:
    dates = recurrence.dates()
    assert [d.isoformat() for d, _ in zip(dates, range(3), strict=False)] == expected
