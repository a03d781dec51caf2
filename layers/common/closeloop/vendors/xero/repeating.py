"""Xero RepeatingInvoices: the RecurringAccounting port (``find_schedule``, ``get_schedule``, ``create_schedule``,
``end_schedule``, ``extend_schedule``) as a mixin of XeroAccounting, with its conversions (kept in this module,
apart from the invoice and item ones in ``mapping``).

Vendor facts encoded here (Xero's OpenAPI spec v16, xero_accounting.yaml "XS": getRepeatingInvoices,
createRepeatingInvoices, updateOrCreateRepeatingInvoices, getRepeatingInvoice, updateRepeatingInvoice and the
RepeatingInvoice and Schedule schemas):
- ``PUT /RepeatingInvoices`` creates templates (``summarizeErrors``, ``Idempotency-Key``); ``GET
  /RepeatingInvoices`` takes ``where`` and ``order`` (no paging); ``GET /RepeatingInvoices/{id}`` reads one;
- a template is ``Type`` ACCREC (sales), ``Status`` DRAFT or AUTHORISED (DELETED once deleted), ``Reference``
  ("ACCREC only"), ``LineItems``, ``LineAmountTypes``, ``CurrencyCode`` and a ``Schedule``: ``Period`` with
  ``Unit`` WEEKLY or MONTHLY (so quarterly is 3 MONTHLY, semi-annual 6, annual 12), ``DueDate`` with
  ``DueDateType``, ``StartDate``, ``EndDate`` ("only returned if the template has an end date set") and the
  read-only ``NextScheduledDate``;
- the spec has no update of a template: ``POST /RepeatingInvoices`` "creates or deletes" and ``POST
  /RepeatingInvoices/{id}`` "deletes a specific repeating invoice template" (its example sends Status
  DELETED). So a template is ended by deleting it (the invoices it generated stay), and extended by creating
  its replacement from its next scheduled date, then deleting it;
- the invoices a template generates carry its ``RepeatingInvoiceID`` (XS Invoice.RepeatingInvoiceID).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from closeloop.errors import FatalError
from closeloop.models import FREQUENCY_PERIODS, RepeatingSchedule, ScheduleDraft
from closeloop.vendors.xero.client import read_json
from closeloop.vendors.xero.mapping import quote_literal, to_xero_line, xero_date, xero_decimal
from closeloop.wire import dumps_exact

if TYPE_CHECKING:
    from closeloop.http import VendorHttp

#: Canonical period unit -> Xero's Schedule.Unit.
XERO_UNITS: dict[str, str] = {"week": "WEEKLY", "month": "MONTHLY"}
#: Xero's (Unit, Period) -> the canonical frequency.
FREQUENCY_OF: dict[tuple[str, int], str] = {
    (XERO_UNITS[unit], count): frequency for frequency, (unit, count) in FREQUENCY_PERIODS.items()
}
#: "Due N days after the invoice date" (see GUESSES["repeating_due_date_type"]).
DUE_DATE_TYPE = "DAYSAFTERBILLDATE"
#: Template fields a replacement copies from the template it replaces (read from Xero, not the draft).
_COPIED_LINE_FIELDS = ("ItemCode", "Description", "Quantity", "UnitAmount", "TaxType", "AccountCode", "DiscountRate")


def to_xero_repeating_invoice(draft: ScheduleDraft) -> dict[str, Any]:
    """A Xero RepeatingInvoice body for ``draft``: every value decided by the draft, none left to defaults."""
    unit, count = FREQUENCY_PERIODS[draft.frequency]
    return {
        "Type": "ACCREC",
        "Contact": {"ContactID": draft.customer_id},
        "Schedule": {
            "Period": count,
            "Unit": XERO_UNITS[unit],
            "DueDate": draft.due_days,
            "DueDateType": DUE_DATE_TYPE,
            "StartDate": draft.start.isoformat(),
            "EndDate": draft.end.isoformat(),  # see GUESSES["repeating_end_date_on_create"]
        },
        "LineItems": [to_xero_line(line) for line in draft.lines],
        "LineAmountTypes": draft.line_amount_types,
        "Reference": draft.reference,
        "CurrencyCode": draft.currency,
        "Status": draft.status,
    }


def to_schedule(row: Mapping[str, Any]) -> RepeatingSchedule:
    """A Xero RepeatingInvoice (JSON read with Decimal numbers) as the canonical RepeatingSchedule. Only a
    DELETED template is ``ended``: one past its EndDate stays ``active`` with no next date (Xero keeps it)."""
    schedule: Mapping[str, Any] = row.get("Schedule") or {}
    contact: Mapping[str, Any] = row.get("Contact") or {}
    frequency = FREQUENCY_OF.get((str(schedule.get("Unit") or ""), _int(schedule.get("Period"))))
    status = str(row.get("Status") or "DRAFT")
    return RepeatingSchedule.model_validate(
        {
            "id": str(row.get("RepeatingInvoiceID") or row.get("ID") or ""),
            "reference": str(row.get("Reference") or ""),
            "status": "ended" if status == "DELETED" else "active",
            "approved": status == "AUTHORISED",
            "frequency": frequency,
            "customer_id": str(contact.get("ContactID") or ""),
            "currency": str(row.get("CurrencyCode") or ""),
            "start_date": xero_date(schedule, "StartDate"),
            "next_invoice_date": xero_date(schedule, "NextScheduledDate"),
            "end_date": xero_date(schedule, "EndDate"),
            "sub_total": xero_decimal(row.get("SubTotal")),
            "total": xero_decimal(row.get("Total")),
        }
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _after(day: date, unit: str, period: int) -> date:
    """``day`` moved on by one Xero period (month ends clamp, as ``closeloop.sync.recurring.add_periods``)."""
    if unit == "WEEKLY":
        return day + timedelta(weeks=period)
    months = day.month - 1 + period
    year, month = day.year + months // 12, months % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def replacement_of(row: Mapping[str, Any], end: date) -> dict[str, Any]:
    """The body of the template that replaces ``row`` (a RepeatingInvoice as Xero holds it) and runs until
    ``end``: the same contact, lines, tax, currency, reference, status and terms, starting at ``row``'s next
    scheduled date (or one period after its end, when it has generated its last invoice)."""
    schedule: Mapping[str, Any] = row.get("Schedule") or {}
    unit, period = str(schedule.get("Unit") or "MONTHLY"), _int(schedule.get("Period")) or 1
    start = xero_date(schedule, "NextScheduledDate")
    if start is None:
        last = xero_date(schedule, "EndDate") or xero_date(schedule, "StartDate") or end
        start = _after(last, unit, period)
    lines = [
        {key: line[key] for key in _COPIED_LINE_FIELDS if line.get(key) not in (None, "")}
        for line in row.get("LineItems") or []
    ]
    return {
        "Type": str(row.get("Type") or "ACCREC"),
        "Contact": {"ContactID": str((row.get("Contact") or {}).get("ContactID") or "")},
        "Schedule": {
            "Period": period,
            "Unit": unit,
            "DueDate": _int(schedule.get("DueDate")),
            "DueDateType": str(schedule.get("DueDateType") or DUE_DATE_TYPE),
            "StartDate": start.isoformat(),
            "EndDate": end.isoformat(),
        },
        "LineItems": lines,
        "LineAmountTypes": str(row.get("LineAmountTypes") or "Exclusive"),
        "Reference": str(row.get("Reference") or ""),
        "CurrencyCode": str(row.get("CurrencyCode") or ""),
        "Status": "AUTHORISED" if row.get("Status") == "AUTHORISED" else "DRAFT",
    }


class XeroRepeatingInvoices:
    """RecurringAccounting for Xero (capability ``repeating_invoice``): mixed into XeroAccounting."""

    name: str
    http: VendorHttp
    IDEMPOTENCY_KEY_MAX: ClassVar[int]
    UNIT_DECIMALS: ClassVar[str]
    #: A template's Status once deleted (XS RepeatingInvoice.Status enum).
    DELETED: ClassVar[str] = "DELETED"

    def find_schedule(self, reference: str) -> RepeatingSchedule | None:
        """The live (not DELETED) sales template whose Reference equals ``reference``, or None; of two (a
        replacement made by ``extend_schedule`` before the replaced one was deleted) the one ending last.

        ``GET /RepeatingInvoices?where=Type=="ACCREC"&&Reference=="…"``. Raises IntegrationError subclasses.
        """
        rows = self._live_by_reference(reference)
        return to_schedule(rows[-1]) if rows else None

    def get_schedule(self, schedule_id: str) -> RepeatingSchedule | None:
        """One template by id (``GET /RepeatingInvoices/{id}``), a DELETED one as ``ended``; None on a 404."""
        row = self._repeating_row(schedule_id)
        return to_schedule(row) if row is not None else None

    def create_schedule(self, draft: ScheduleDraft, *, idempotency_key: str) -> RepeatingSchedule:
        """Create the template exactly as drafted (``PUT /RepeatingInvoices?summarizeErrors=true``).

        The answer must carry the EndDate sent (GUESSES["repeating_end_date_on_create"]): a template Xero
        saved without one would bill for ever, so it is deleted at once and FatalError says why. Raises
        ValidationFailed listing Xero's messages on a 400 ValidationException.
        """
        row = self._write_repeating("PUT", "/RepeatingInvoices", to_xero_repeating_invoice(draft), idempotency_key)
        return self._checked_end(row, draft.end, idempotency_key)

    def end_schedule(self, schedule_id: str, *, idempotency_key: str) -> RepeatingSchedule:
        """Delete the template (``POST /RepeatingInvoices/{id}`` with Status DELETED): it generates no more
        invoices, the ones it made stay. A template already deleted, or gone (404), is answered as ended."""
        row = self._repeating_row(schedule_id)
        if row is None:
            return RepeatingSchedule(id=schedule_id, status="ended")
        if row.get("Status") == self.DELETED:
            return to_schedule(row)
        return to_schedule(self._delete_repeating(schedule_id, idempotency_key))

    def extend_schedule(self, schedule: RepeatingSchedule, end: date, *, idempotency_key: str) -> RepeatingSchedule:
        """Make the template run until ``end``. XS has no update of a template, so its replacement is created
        (same contact, lines and terms, from its next scheduled date until ``end``) and then it is deleted.

        Crash-safe: a replacement made by an earlier attempt (the same Reference, another id, ending on
        ``end``) is found before anything is created, and the old template is deleted only after the
        replacement exists, so at no point does the contract lose its billing, and never are two replacements
        made. Raises FatalError when the template is gone, IntegrationError subclasses as Xero answers.
        """
        current = self._repeating_row(schedule.id)
        if current is None or current.get("Status") == self.DELETED:
            raise FatalError(f"Xero repeating invoice {schedule.id} is gone: it cannot be extended", vendor=self.name)
        reference = str(current.get("Reference") or schedule.reference)
        made = next(
            (
                row
                for row in self._live_by_reference(reference)
                if str(row.get("RepeatingInvoiceID")) != schedule.id
                and xero_date(row.get("Schedule") or {}, "EndDate") == end
            ),
            None,
        )
        if made is None:
            key = f"{idempotency_key}#replace"
            made = self._write_repeating("PUT", "/RepeatingInvoices", replacement_of(current, end), key)
            made = self._full_row(made)
        replacement = self._checked_end(made, end, idempotency_key)
        self._delete_repeating(schedule.id, f"{idempotency_key}#delete")
        return replacement

    # -- HTTP --------------------------------------------------------------------------------------

    def _live_by_reference(self, reference: str) -> list[dict[str, Any]]:
        """The live sales templates with this Reference, the one ending last at the end."""
        params = {"where": f'Type=="ACCREC"&&Reference=={quote_literal(reference)}'}
        rows = read_json(self.http.request("GET", "/RepeatingInvoices", params=params)).get("RepeatingInvoices") or []
        live = [
            dict(row)
            for row in rows
            if row.get("Status") != self.DELETED and str(row.get("Reference") or "") == reference
        ]
        return sorted(live, key=lambda row: xero_date(row.get("Schedule") or {}, "EndDate") or date.max)

    def _repeating_row(self, schedule_id: str) -> dict[str, Any] | None:
        if not schedule_id.strip():
            return None
        path = f"/RepeatingInvoices/{quote(schedule_id, safe='')}"
        response = self.http.request("GET", path, ok=(200, 404))
        if response.status_code == 404:  # Xero's 404 is a plain-text page, not JSON
            return None
        rows = read_json(response).get("RepeatingInvoices") or []
        return dict(rows[0]) if rows else None

    def _full_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The template as a GET answers it when a write's answer lacks its schedule (defensive)."""
        if row.get("Schedule"):
            return row
        return self._repeating_row(str(row.get("RepeatingInvoiceID") or "")) or row

    def _write_repeating(self, method: str, path: str, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        response = self.http.request(
            method,
            path,
            params={"summarizeErrors": "true"},
            content=dumps_exact({"RepeatingInvoices": [body]}),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = read_json(response).get("RepeatingInvoices") or []
        if not rows:
            raise FatalError(f"Xero accepted {method} {path} but returned no template", vendor=self.name, status=200)
        return dict(rows[0])

    def _delete_repeating(self, schedule_id: str, idempotency_key: str) -> dict[str, Any]:
        body = {"RepeatingInvoiceID": schedule_id, "Status": self.DELETED}
        response = self.http.request(
            "POST",
            f"/RepeatingInvoices/{quote(schedule_id, safe='')}",
            content=dumps_exact({"RepeatingInvoices": [body]}),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = read_json(response).get("RepeatingInvoices") or []
        return dict(rows[0]) if rows else {"RepeatingInvoiceID": schedule_id, "Status": self.DELETED}

    def _checked_end(self, row: dict[str, Any], end: date, idempotency_key: str) -> RepeatingSchedule:
        """``row`` as a schedule, when it carries an EndDate; else it is deleted and FatalError raised (a
        template without an end would bill for ever: GUESSES["repeating_end_date_on_create"])."""
        schedule = to_schedule(row)
        if schedule.end_date is None:
            self._delete_repeating(schedule.id, f"{idempotency_key}#no-end")
            raise FatalError(
                f"Xero saved repeating invoice {schedule.id} without the EndDate {end.isoformat()} it was sent, so it "
                'was deleted again (see GUESSES["repeating_end_date_on_create"] of the Xero adapter)',
                vendor=self.name,
            )
        return schedule
