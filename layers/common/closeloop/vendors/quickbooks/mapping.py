"""Pure conversions between canonical records and QuickBooks Online's JSON (Customer, Item, Invoice, recurring
Invoice templates), and the values they are built from (DocNumber, reference, voided state, search words,
schedule intervals). No I/O.

QBO facts encoded here: invoices have no draft state (posted when created); a voided invoice keeps its record
with every amount zeroed and "Voided" put in front of its PrivateNote; money is a JSON number (read with
Decimal, written with the exact literal); the tax id is masked on read (``XXXXXX56789``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from urllib.parse import quote

from closeloop.dates import parse_day, parse_utc
from closeloop.models import (
    FREQUENCY_PERIODS,
    AccountingCustomer,
    AccountingQuote,
    AccountingQuoteStatus,
    Customer,
    Frequency,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    ItemDraft,
    PurchaseOrder,
    PurchaseOrderDraft,
    QuoteDraft,
    RepeatingSchedule,
    ScheduleDraft,
    Supplier,
    money_text,
)
from closeloop.vendors.quickbooks.client import VENDOR
from closeloop.wire import to_decimal

CENT = Decimal("0.01")
WEB_URL = "https://app.qbo.intuit.com"
INVOICE_WEB_PATH = "/app/invoice?txnId={id}"

#: Canonical line_amount_types -> Invoice.GlobalTaxCalculation.
GLOBAL_TAX_CALCULATION: dict[str, str] = {
    "Exclusive": "TaxExcluded",
    "Inclusive": "TaxInclusive",
    "NoTax": "NotApplicable",
}


def doc_number(reference: str, limit: int = 21) -> str:
    """The DocNumber that carries a deal's reference: its first word (``hubspot-deal-3000001``, ≤21 chars).

    A longer key keeps its head and gets a digest tail, so it stays unique and derivable from the reference.
    """
    key = (reference.split() or [""])[0]
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{key[: limit - len(digest) - 1]}-{digest}"


def to_invoice(row: Mapping[str, Any], paid_on: Mapping[str, date]) -> Invoice:
    """A QBO Invoice as canonical; ``paid_on``: the dates of the payments it links to, by payment id."""
    invoice_id = str(row.get("Id") or "")
    total = _decimal(row.get("TotalAmt"))
    balance = _decimal(row.get("Balance"))
    tax = _decimal((row.get("TxnTaxDetail") or {}).get("TotalTax"))
    voided = is_voided(row)
    status = "VOIDED" if voided else ("PAID" if balance == 0 and total > 0 else "AUTHORISED")
    days = [paid_on[p] for p in linked_ids(row, "Payment") if p in paid_on]
    return Invoice(
        id=invoice_id,
        number=str(row.get("DocNumber") or ""),
        reference=reference_of(row),
        status=status,
        customer_id=str((row.get("CustomerRef") or {}).get("value") or ""),
        currency=str((row.get("CurrencyRef") or {}).get("value") or ""),
        issue_date=parse_day(row.get("TxnDate")),
        due_date=parse_day(row.get("DueDate")),
        sub_total=total - tax,
        total_tax=tax,
        total=total,
        amount_paid=max(total - balance, Decimal(0)),
        amount_due=balance,
        last_payment_date=max(days) if days else None,
        url=WEB_URL + INVOICE_WEB_PATH.format(id=quote(invoice_id, safe="")) if invoice_id else "",
        updated_at=parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime")),
    )


def linked_ids(row: Mapping[str, Any], txn_type: str) -> list[str]:
    return [str(t.get("TxnId")) for t in row.get("LinkedTxn") or [] if t.get("TxnType") == txn_type]


def is_voided(row: Mapping[str, Any]) -> bool:
    """Voiding zeroes every amount and puts "Voided" in front of the PrivateNote (there is no status field)."""
    note = str(row.get("PrivateNote") or "")
    return note.startswith("Voided") and _decimal(row.get("TotalAmt")) == 0


def reference_of(row: Mapping[str, Any]) -> str:
    """Our reference: the PrivateNote's first line, else (a void overwrote it) the DocNumber.

    An invoice a recurring template made (``RecurDataRef``) carries the company's next number, not ours: its
    reference is the template's (RecurDataRef's name, which is the template's Name and so our schedule
    reference), else the PrivateNote's first line it copied from the template (see
    GUESSES["recurring_generated_reference"])."""
    note = str(row.get("PrivateNote") or "")
    if note.startswith("Voided"):
        note = note[len("Voided") :].lstrip(" -:\n")
    first = note.splitlines()[0].strip() if note.strip() else ""
    doc = str(row.get("DocNumber") or "")
    template = row.get("RecurDataRef")
    if isinstance(template, Mapping) and template.get("value"):
        return str(template.get("name") or "").strip() or first or doc
    return first if first and doc and doc_number(first) == doc else doc or first


_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def search_word(name: str) -> str:
    """The longest significant word of a name, for ``DisplayName LIKE '%word%'``."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in _LEGAL_WORDS]
    return max(words, key=len) if words else name.strip()


def to_qbo_customer(customer: Customer, fields: Iterable[str], number: str | None) -> dict[str, Any]:
    """The QBO Customer fields for the named canonical ``fields`` (``people`` has no home in QBO)."""
    wanted = set(fields)
    body: dict[str, Any] = {}
    if "name" in wanted:
        body["DisplayName"] = customer.name
        if customer.ref.object_type == "company":
            body["CompanyName"] = customer.name[:100]
    if "first_name" in wanted:
        body["GivenName"] = customer.first_name[:100]
    if "last_name" in wanted:
        body["FamilyName"] = customer.last_name[:100]
    if "email" in wanted:
        body["PrimaryEmailAddr"] = {"Address": customer.email}
    if "phone" in wanted:
        body["PrimaryPhone"] = {"FreeFormNumber": customer.phone}
    if "tax_number" in wanted and customer.tax_number:
        body["PrimaryTaxIdentifier"] = customer.tax_number
    if any(f.startswith("address.") for f in wanted):
        a = customer.address
        body["BillAddr"] = {
            "Line1": a.line1,
            "Line2": a.line2,
            "City": a.city,
            "CountrySubDivisionCode": a.region,
            "PostalCode": a.postal_code,
            "Country": a.country,
        }
    if number:
        body["MiddleName"] = number  # our stamp: see QuickBooksAccounting's docstring for why MiddleName
    return body


_MASKED = re.compile(r"^X{2,}")


def to_customer(row: Mapping[str, Any]) -> AccountingCustomer:
    """A QBO Customer as the comparable canonical fields (a masked tax id and ``people`` are left out)."""
    address: Mapping[str, Any] = row.get("BillAddr") or {}
    tax = str(row.get("PrimaryTaxIdentifier") or "")
    fields = {
        "name": str(row.get("DisplayName", "")),
        "first_name": str(row.get("GivenName", "")),
        "last_name": str(row.get("FamilyName", "")),
        "email": str((row.get("PrimaryEmailAddr") or {}).get("Address", "")).lower(),
        "phone": str((row.get("PrimaryPhone") or {}).get("FreeFormNumber", "")),
        "address.line1": str(address.get("Line1", "")),
        "address.line2": str(address.get("Line2", "")),
        "address.city": str(address.get("City", "")),
        "address.region": str(address.get("CountrySubDivisionCode", "")),
        "address.postal_code": str(address.get("PostalCode", "")),
        "address.country": str(address.get("Country", "")),
    }
    if tax and not _MASKED.match(tax):
        fields["tax_number"] = tax
    return AccountingCustomer(
        id=str(row.get("Id", "")),
        name=fields["name"],
        number=str(row.get("MiddleName", "")),
        email=fields["email"],
        tax_number=fields.get("tax_number", ""),
        status="ACTIVE" if row.get("Active", True) is not False else "ARCHIVED",
        fields=fields,
    )


#: Item lengths as Intuit's XSD documents them for QBO (Finance.xsd, complexType Item, in
#: intuit/QuickBooks-V3-Java-SDK): Sku and Name "Max. length: 100 characters", Description 4000.
ITEM_SKU_MAX = 100
ITEM_NAME_MAX = 100
ITEM_DESCRIPTION_MAX = 4000


def item_code(row: Mapping[str, Any]) -> str:
    """The item code a QBO Item carries: its ``Sku``, else (an item made before SKUs were written) its Name."""
    return str(row.get("Sku") or "").strip() or str(row.get("Name") or "")


def to_item(row: Mapping[str, Any], code: str | None = None) -> Item:
    """A QBO Item as canonical, addressed by ``code`` (default: ``item_code``), with its comparable fields.

    ``name`` is the Item's Name; an item found by the older convention (its Name is the code, the display
    name in Description) keeps Description as the name printed on invoice lines.
    """
    code = item_code(row) if code is None else code
    name = str(row.get("Name") or "")
    description = str(row.get("Description") or "")
    price = row.get("UnitPrice")
    cost = row.get("PurchaseCost")
    unit_price = None if price is None else _decimal(price)
    fields = {
        "name": name,
        "description": description,
        "unit_price": money_text(unit_price),
        "unit_cost": money_text(None if cost is None else _decimal(cost)),
        "tax_code": _ref(row, "SalesTaxCodeRef"),
        "sales_account": _ref(row, "IncomeAccountRef"),
        "purchase_account": _ref(row, "ExpenseAccountRef"),
    }
    legacy = not str(row.get("Sku") or "").strip() and name.casefold() == code.casefold()
    return Item(
        code=code,
        name=(description or name) if legacy else name,
        unit_price=unit_price,
        account_code=fields["sales_account"],
        tax_type=fields["tax_code"],
        id=str(row.get("Id") or ""),
        fields=fields,
    )


def _ref(row: Mapping[str, Any], key: str) -> str:
    return str((row.get(key) or {}).get("value") or "")


#: Canonical PRODUCT_FIELDS -> the QBO Item key that holds each (a reference's ``value`` for the ``*Ref`` keys).
ITEM_KEYS: dict[str, str] = {
    "name": "Name",
    "description": "Description",
    "unit_price": "UnitPrice",
    "unit_cost": "PurchaseCost",
    "tax_code": "SalesTaxCodeRef",
    "sales_account": "IncomeAccountRef",
    "purchase_account": "ExpenseAccountRef",
}


def to_qbo_item(draft: ItemDraft, fields: Iterable[str]) -> dict[str, Any]:
    """The QBO Item keys for the named canonical ``fields`` of ``draft`` (``code`` is the Sku).

    Empty text and None are "not set by us" (``ItemDraft``): such a field is left out, never cleared.
    """
    values: dict[str, Any] = {
        "name": draft.name,
        "description": draft.description,
        "unit_price": draft.unit_price,
        "unit_cost": draft.unit_cost,
        "tax_code": draft.tax_code,
        "sales_account": draft.sales_account,
        "purchase_account": draft.purchase_account,
    }
    body: dict[str, Any] = {}
    for field in fields:
        if field == "code":
            body["Sku"] = draft.code
            continue
        key, value = ITEM_KEYS.get(field), values.get(field)
        if key is None or value is None or value == "":
            continue
        body[key] = {"value": value} if key.endswith("Ref") else value
    return body


def _line_amount(line: InvoiceLine) -> Decimal:
    return (line.quantity * line.unit_amount).quantize(CENT, rounding=ROUND_HALF_UP)


def sales_lines(lines: Sequence[InvoiceLine], item_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``Line`` array of a QBO sales form (Invoice, Estimate) for ``lines`` (Decimals kept for
    ``dumps_exact``); ``item_ids``: the QBO Item Id of each line's item code.

    A discount rate shared by every discounted line becomes one percent-based DiscountLineDetail; differing
    rates are folded into each line's UnitPrice (QBO has no per-line discount), with the line's Amount
    rounded to the cent as QBO requires ``Amount == UnitPrice × Qty``.
    """
    rates = {line.discount_rate for line in lines if line.discount_rate}
    shared = rates.pop() if len(rates) == 1 and all(line.discount_rate for line in lines) else None
    out: list[dict[str, Any]] = []
    for line in lines:
        unit = line.unit_amount
        description = line.description
        if line.discount_rate and shared is None:
            unit = unit * (Decimal(100) - line.discount_rate) / Decimal(100)
            description = f"{description} (less {line.discount_rate.normalize()}%)".strip()
        detail: dict[str, Any] = {
            "ItemRef": {"value": item_ids[line.item_code]},
            "Qty": line.quantity,
            "UnitPrice": unit,
        }
        if line.tax_type:
            detail["TaxCodeRef"] = {"value": line.tax_type}
        out.append(
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": (line.quantity * unit).quantize(CENT, rounding=ROUND_HALF_UP),
                "Description": description,
                "SalesItemLineDetail": detail,
            }
        )
    if shared is not None:
        out.append(
            {
                "DetailType": "DiscountLineDetail",
                "Amount": (sum((_line_amount(x) for x in lines), Decimal(0)) * shared / 100).quantize(CENT),
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": shared},
            }
        )
    return out


def to_qbo_invoice(draft: InvoiceDraft, item_ids: Mapping[str, str]) -> dict[str, Any]:
    """A QBO Invoice body for ``draft`` (Decimals kept for ``dumps_exact``; lines as ``sales_lines``)."""
    note = draft.reference + (f"\n{draft.url}" if draft.url else "")
    return {
        "CustomerRef": {"value": draft.customer_id},
        "Line": sales_lines(draft.lines, item_ids),
        "GlobalTaxCalculation": GLOBAL_TAX_CALCULATION[draft.line_amount_types],
        "CurrencyRef": {"value": draft.currency},
        "TxnDate": draft.issue_date.isoformat(),
        "DueDate": draft.due_date.isoformat(),
        "DocNumber": doc_number(draft.reference),
        "PrivateNote": note[:4000],
        # Made from its quote's estimate: QBO links them and closes it (GUESSES["estimate_closed_by_invoice"]).
        **(
            {"LinkedTxn": [{"TxnId": draft.accounting_quote_id, "TxnType": "Estimate"}]}
            if draft.accounting_quote_id
            else {}
        ),
    }


# -- estimates (the quote port) ---------------------------------------------------------------------------

#: Where a person opens an estimate (see GUESSES["estimate_web_path"]).
ESTIMATE_WEB_PATH = "/app/estimate?txnId={id}"
#: Finance.xsd QboEstimateStatusEnum -> the canonical quote status. QBO has no draft, no expired (the sync
#: derives EXPIRED from ExpirationDate) and no invoiced state: an estimate an invoice was made from is Closed
#: (see GUESSES["estimate_closed_by_update"]).
ESTIMATE_STATUSES: dict[str, AccountingQuoteStatus] = {
    "Pending": "SENT",
    "Accepted": "ACCEPTED",
    "Closed": "INVOICED",
    "Rejected": "DECLINED",
}
#: The TxnStatus a new estimate is given: QBO has no draft, so a DRAFT quote is Pending too.
NEW_ESTIMATE_STATUS = "Pending"
#: The TxnStatus that means "an invoice bills it" (``mark_quote_invoiced``).
INVOICED_ESTIMATE_STATUS = "Closed"


def to_qbo_estimate(draft: QuoteDraft, item_ids: Mapping[str, str]) -> dict[str, Any]:
    """A QBO Estimate body for ``draft`` without its TxnStatus (a revision keeps the estimate's): customer,
    lines (as invoices'), tax mode, currency, dates, DocNumber (the reference's first word, as invoices) and
    the whole reference (which holds the title) and the CRM link in the PrivateNote (not printed)."""
    note = draft.reference + (f"\n{draft.url}" if draft.url else "")
    body: dict[str, Any] = {
        "CustomerRef": {"value": draft.customer_id},
        "Line": sales_lines(draft.lines, item_ids),
        "GlobalTaxCalculation": GLOBAL_TAX_CALCULATION[draft.line_amount_types],
        "CurrencyRef": {"value": draft.currency},
        "TxnDate": draft.issue_date.isoformat(),
        "DocNumber": doc_number(draft.reference),
        "PrivateNote": note[:4000],
    }
    if draft.expiry is not None:
        body["ExpirationDate"] = draft.expiry.isoformat()
    return body


def to_quote(row: Mapping[str, Any]) -> AccountingQuote:
    """A QBO Estimate (or a CDC "Deleted" stub) as the canonical AccountingQuote."""
    estimate_id = str(row.get("Id") or "")
    updated = parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime"))
    if str(row.get("status") or "").lower() == "deleted":
        return AccountingQuote(id=estimate_id, status="DELETED", updated_at=updated)
    total = _decimal(row.get("TotalAmt"))
    tax = _decimal((row.get("TxnTaxDetail") or {}).get("TotalTax"))
    return AccountingQuote(
        id=estimate_id,
        number=str(row.get("DocNumber") or ""),
        reference=reference_of(row),
        status=ESTIMATE_STATUSES.get(str(row.get("TxnStatus") or NEW_ESTIMATE_STATUS), "SENT"),
        customer_id=str((row.get("CustomerRef") or {}).get("value") or ""),
        currency=str((row.get("CurrencyRef") or {}).get("value") or ""),
        issue_date=parse_day(row.get("TxnDate")),
        expiry=parse_day(row.get("ExpirationDate")),
        sub_total=total - tax,
        total_tax=tax,
        total=total,
        url=WEB_URL + ESTIMATE_WEB_PATH.format(id=quote(estimate_id, safe="")) if estimate_id else "",
        updated_at=updated,
    )


# -- recurring transactions (Invoice templates) -------------------------------------------------------------

#: ScheduleDraft.status -> RecurringInfo.RecurType: an approved schedule makes its invoices by itself
#: (Automated); a draft one reminds a person to make each (Reminded), QBO having no draft invoices
#: (see GUESSES["recurring_draft_reminded"]).
RECUR_TYPES: dict[str, str] = {"AUTHORISED": "Automated", "DRAFT": "Reminded"}
#: The RecurTypes that run on a schedule (Finance.xsd RecurringInfo.RecurType; UnScheduled/Manual do not).
SCHEDULED_RECUR_TYPES = frozenset(RECUR_TYPES.values())
#: Finance.xsd WeekEnum and MonthEnum words, in ``date.weekday()`` and calendar order.
WEEK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
#: ScheduleInfo values QBO computes (Finance.xsd: "Read Only"): never sent back.
SCHEDULE_READ_ONLY = ("NextDate", "PreviousDate")


def interval_of(frequency: str) -> tuple[str, int]:
    """A canonical frequency as ScheduleInfo (IntervalType, NumInterval): weeks as Weekly, whole years as
    Yearly (annual -> Yearly 1, biennial -> Yearly 2), other months as Monthly (quarterly -> Monthly 3)."""
    unit, count = FREQUENCY_PERIODS[frequency]
    if unit == "week":
        return "Weekly", count
    return ("Yearly", count // 12) if count % 12 == 0 else ("Monthly", count)


def frequency_of(interval_type: str, num_interval: int) -> Frequency | None:
    """The canonical frequency of a ScheduleInfo interval, None when it has none (Daily, every 5 weeks...)."""
    unit, count = {"Weekly": ("week", 1), "Monthly": ("month", 1), "Yearly": ("month", 12)}.get(interval_type, ("", 0))
    wanted = (unit, count * num_interval)
    return next((cast(Frequency, f) for f, period in FREQUENCY_PERIODS.items() if period == wanted), None)


def schedule_info(frequency: str, start: date, end: date) -> dict[str, Any]:
    """ScheduleInfo for a schedule of ``frequency`` from ``start`` to ``end``, pinned to ``start``'s day of the
    week, month or year (see GUESSES["recurring_day_pinning"])."""
    interval, every = interval_of(frequency)
    info: dict[str, Any] = {"IntervalType": interval, "NumInterval": every}
    if interval == "Weekly":
        info["DayOfWeek"] = WEEK_DAYS[start.weekday()]
    else:
        info["DayOfMonth"] = start.day
        if interval == "Yearly":
            info["MonthOfYear"] = MONTHS[start.month - 1]
    info.update(StartDate=start.isoformat(), EndDate=end.isoformat())
    return info


def to_qbo_template(draft: ScheduleDraft, item_ids: Mapping[str, str]) -> dict[str, Any]:
    """A RecurringTransaction body (``{"Invoice": {...}}``) for ``draft``: the invoice's customer, lines, tax
    and currency as ``to_qbo_invoice`` sends them, no DocNumber (each generated invoice takes the company's
    next number), the reference as RecurringInfo.Name (unique per company: see
    GUESSES["recurring_reference_in_name"]) and as the PrivateNote's first line (copied to every generated
    invoice), and TxnDate/DueDate ``due_days`` apart for the invoices' terms (GUESSES["recurring_template_dates"])."""
    note = draft.reference + (f"\n{draft.url}" if draft.url else "")
    return {
        "Invoice": {
            "CustomerRef": {"value": draft.customer_id},
            "Line": sales_lines(draft.lines, item_ids),
            "GlobalTaxCalculation": GLOBAL_TAX_CALCULATION[draft.line_amount_types],
            "CurrencyRef": {"value": draft.currency},
            "TxnDate": draft.start.isoformat(),
            "DueDate": (draft.start + timedelta(days=draft.due_days)).isoformat(),
            "PrivateNote": note[:4000],
            "RecurringInfo": {
                "Name": draft.reference,
                "RecurType": RECUR_TYPES[draft.status],
                "Active": True,
                "ScheduleInfo": schedule_info(draft.frequency, draft.start, draft.end),
            },
        }
    }


def template_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Invoice template of a RecurringTransaction answer, from either envelope QBO may use
    (``{"RecurringTransaction": {"Invoice": …}}`` or ``{"QueryResponse": {"RecurringTransaction": [{"Invoice":
    …}]}}``: see GUESSES["recurring_read_envelope"]); None when the answer holds no Invoice template."""
    held: Any = payload.get("RecurringTransaction")
    if held is None:
        listed = (payload.get("QueryResponse") or {}).get("RecurringTransaction")
        held = listed[0] if isinstance(listed, list) and listed else None
    if isinstance(held, list):
        held = held[0] if held else None
    row = held.get("Invoice") if isinstance(held, Mapping) else None
    return row if isinstance(row, dict) else None


def writable_recurring_info(row: Mapping[str, Any]) -> dict[str, Any]:
    """A template's RecurringInfo as it can be sent back: whole (a sparse update replaces the object; see
    GUESSES["recurring_ended_inactive"]), without the read-only NextDate and PreviousDate."""
    info = dict(row.get("RecurringInfo") or {})
    schedule = info.get("ScheduleInfo")
    if isinstance(schedule, Mapping):
        info["ScheduleInfo"] = {k: v for k, v in schedule.items() if k not in SCHEDULE_READ_ONLY}
    return info


def to_schedule(row: Mapping[str, Any], today: date) -> RepeatingSchedule:
    """A QBO Invoice template as a canonical schedule. ``ended``: inactive (``Active: false``, how we end
    one), of a type that does not run, or finished (no NextDate and its EndDate before ``today``)."""
    info: Mapping[str, Any] = row.get("RecurringInfo") or {}
    schedule: Mapping[str, Any] = info.get("ScheduleInfo") or {}
    kind = str(info.get("RecurType") or "")
    end = parse_day(schedule.get("EndDate"))
    following = parse_day(schedule.get("NextDate"))
    finished = following is None and end is not None and end < today
    ended = info.get("Active") is False or kind not in SCHEDULED_RECUR_TYPES or finished
    total = _decimal(row.get("TotalAmt"))
    tax = _decimal((row.get("TxnTaxDetail") or {}).get("TotalTax"))
    every = schedule.get("NumInterval")
    return RepeatingSchedule(
        id=str(row.get("Id") or ""),
        reference=str(info.get("Name") or ""),
        status="ended" if ended else "active",
        approved=kind == "Automated",
        frequency=frequency_of(str(schedule.get("IntervalType") or ""), int(every) if every is not None else 1),
        customer_id=_ref(row, "CustomerRef"),
        currency=_ref(row, "CurrencyRef"),
        start_date=parse_day(schedule.get("StartDate")),
        next_invoice_date=None if ended else following,
        end_date=end,
        sub_total=total - tax,
        total=total,
    )


def _decimal(value: Any) -> Decimal:
    return to_decimal(value, who="QuickBooks", vendor=VENDOR)


# -- purchase orders and vendors (the purchasing port) -------------------------------------------------------

#: Where a person opens a purchase order (see GUESSES["purchase_order_web_path"]).
PURCHASE_ORDER_WEB_PATH = "/app/purchaseorder?txnId={id}"
#: Finance.xsd PurchaseOrderStatusEnum -> the canonical purchase order status. QBO has no draft: a purchase
#: order is Open when made (the one writable status besides Closed, meaning received, billed or closed by
#: hand), which reads as Xero's approved-and-not-billed AUTHORISED.
PURCHASE_ORDER_STATUSES = {"Open": "AUTHORISED", "Closed": "CLOSED"}
#: The POStatus a new purchase order is created with (QBO has no draft purchase order: see
#: GUESSES["purchase_order_open_not_draft"]).
NEW_PURCHASE_ORDER_STATUS = "Open"
#: The DocNumber's limit (Intuit: "Max 21 characters", as on sales forms) and the prefix of a digest DocNumber.
PURCHASE_ORDER_DOC_MAX = 21
PURCHASE_ORDER_DOC_PREFIX = "PO-"


def purchase_order_doc_number(reference: str) -> str:
    """The DocNumber that stands for a purchase order's reference: the reference itself when it fits QBO's 21
    characters, else ``PO-`` and the first 18 hex digits of its SHA-256 (72 bits: one company never holds two
    that collide). Our references (``hubspot-deal-3000001-po-acme-supplies``) are longer than 21, so in
    practice the DocNumber is the digest, derived from the whole reference (not its head: references of one
    deal share a long head), and the whole reference is the PrivateNote, which ``find_purchase_order``
    compares exactly."""
    if len(reference) <= PURCHASE_ORDER_DOC_MAX:
        return reference
    digest = hashlib.sha256(reference.encode()).hexdigest()
    return PURCHASE_ORDER_DOC_PREFIX + digest[: PURCHASE_ORDER_DOC_MAX - len(PURCHASE_ORDER_DOC_PREFIX)]


def purchase_lines(
    draft: PurchaseOrderDraft, item_ids: Mapping[str, str], expense_account: str
) -> list[dict[str, Any]]:
    """The ``Line`` array of a QBO PurchaseOrder, one line per draft line at its unit cost, the Amount
    ``Qty × UnitPrice`` to the cent as QBO requires: an item line (ItemBasedExpenseLineDetail: ItemRef, Qty,
    UnitPrice) for a line naming an item, else a category line (AccountBasedExpenseLineDetail) on
    ``expense_account`` whose description carries the quantity and unit cost (a category line has neither)."""
    out: list[dict[str, Any]] = []
    for line in draft.lines:
        amount = (line.quantity * line.unit_cost).quantize(CENT, rounding=ROUND_HALF_UP)
        if line.item_code:
            out.append(
                {
                    "DetailType": "ItemBasedExpenseLineDetail",
                    "Amount": amount,
                    "Description": line.description,
                    "ItemBasedExpenseLineDetail": {
                        "ItemRef": {"value": item_ids[line.item_code]},
                        "Qty": line.quantity,
                        "UnitPrice": line.unit_cost,
                    },
                }
            )
        else:
            quantity = f"{line.quantity.normalize():f} x {line.unit_cost:f}"
            out.append(
                {
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "Amount": amount,
                    "Description": f"{line.description} ({quantity})".strip(),
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": expense_account}},
                }
            )
    return out


def to_qbo_purchase_order(
    draft: PurchaseOrderDraft, item_ids: Mapping[str, str], ap_account: str, expense_account: str = ""
) -> dict[str, Any]:
    """A QBO PurchaseOrder body for ``draft``: the vendor, the AP account, lines at unit cost (``purchase_lines``;
    ``expense_account`` for lines naming no item), currency,
    date, POStatus Open (no draft exists), the DocNumber standing for the reference and the whole reference
    in the PrivateNote (internal: not printed on the purchase order). The draft's delivery date, when set,
    is the ExpectedDate (Finance.xsd: "the date when the delivery of the product is expected")."""
    body: dict[str, Any] = {
        "VendorRef": {"value": draft.supplier_id},
        "APAccountRef": {"value": ap_account},
        "Line": purchase_lines(draft, item_ids, expense_account),
        "CurrencyRef": {"value": draft.currency},
        "TxnDate": draft.issue_date.isoformat(),
        "DocNumber": purchase_order_doc_number(draft.reference),
        "PrivateNote": draft.reference[:4000],
        "POStatus": NEW_PURCHASE_ORDER_STATUS,
    }
    if draft.delivery_date is not None:
        body["ExpectedDate"] = draft.delivery_date.isoformat()
    return body


def to_purchase_order(row: Mapping[str, Any]) -> PurchaseOrder:
    """A QBO PurchaseOrder (JSON read with Decimal numbers) as the canonical PurchaseOrder: its number is the
    DocNumber, its reference the PrivateNote's first line."""
    order_id = str(row.get("Id") or "")
    note = str(row.get("PrivateNote") or "")
    return PurchaseOrder(
        id=order_id,
        number=str(row.get("DocNumber") or ""),
        reference=note.splitlines()[0].strip() if note.strip() else "",
        status=PURCHASE_ORDER_STATUSES.get(str(row.get("POStatus") or NEW_PURCHASE_ORDER_STATUS), "AUTHORISED"),
        supplier_id=str((row.get("VendorRef") or {}).get("value") or ""),
        currency=str((row.get("CurrencyRef") or {}).get("value") or ""),
        total=_decimal(row.get("TotalAmt")),
        url=WEB_URL + PURCHASE_ORDER_WEB_PATH.format(id=quote(order_id, safe="")) if order_id else "",
    )


def to_supplier(row: Mapping[str, Any]) -> Supplier:
    """A QBO Vendor as a supplier: its DisplayName is the name; an inactive one (QBO's delete) is ARCHIVED."""
    return Supplier(
        id=str(row.get("Id") or ""),
        name=str(row.get("DisplayName") or ""),
        status="ARCHIVED" if row.get("Active") is False else "ACTIVE",
    )
