"""Zoho Books records <-> the canonical models: contacts, contact persons, items and invoices, both ways.

Pure conversions, no calls. Contacts carry our number stamp in a unique custom field (``cf_closeloop_ref``),
invoices the deal key (the reference's first word, ``hubspot-deal-<id>``) in ``cf_closeloop_deal``; Zoho shows
a custom field as ``custom_fields``, ``custom_field_hash`` or a flattened ``cf_…`` key (GUESSES
["list_rows_carry_custom_fields"]). Money is Decimal both ways.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any, cast

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
    LineAmountTypes,
    PurchaseOrder,
    PurchaseOrderDraft,
    QuoteDraft,
    RepeatingSchedule,
    ScheduleDraft,
    Supplier,
    money_text,
)
from closeloop.vendors.zohobooks.client import VENDOR
from closeloop.wire import to_decimal

#: Zoho's invoice statuses as the canonical InvoiceStatus (overdue, unpaid, viewed and partially paid
#: invoices are approved and awaiting payment; the sync logic works out overdue itself).
INVOICE_STATUSES: dict[str, str] = {
    "draft": "DRAFT",
    "pending_approval": "SUBMITTED",
    "approved": "SUBMITTED",
    "sent": "AUTHORISED",
    "viewed": "AUTHORISED",
    "unpaid": "AUTHORISED",
    "overdue": "AUTHORISED",
    "partially_paid": "AUTHORISED",
    "paid": "PAID",
    "void": "VOIDED",
}
#: Words a company name is compared and searched without.
LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def deal_key(reference: str) -> str:
    """The deal part of an invoice reference: ``hubspot-deal-3000001`` of ``hubspot-deal-3000001 Big deal``."""
    parts = reference.split()
    return parts[0] if parts else ""


def custom_field(record: Mapping[str, Any], api_name: str) -> str:
    """A custom field's value: from ``custom_fields`` by api_name, else the flattened ``cf_…`` keys."""
    for field in record.get("custom_fields") or []:
        if isinstance(field, Mapping) and field.get("api_name") == api_name:
            return str(field.get("value") or "")
    hashed: Mapping[str, Any] = record.get("custom_field_hash") or {}
    return str(hashed.get(api_name) or record.get(api_name) or "")


#: Zoho's item attribute for each canonical product field (zoho.com/books/api/v3/items, "Attribute").
ITEM_KEYS: dict[str, str] = {
    "name": "name",
    "description": "description",
    "unit_price": "rate",
    "unit_cost": "purchase_rate",
    "tax_code": "tax_id",
    "sales_account": "account_id",
    "purchase_account": "purchase_account_id",
}
#: Money among them (a JSON number, compared as ``money_text``).
ITEM_MONEY = frozenset({"rate", "purchase_rate"})
#: The purchase side of an item: written only with an item type that includes purchases
#: (GUESSES["item_type_for_cost"]).
PURCHASE_KEYS = frozenset({"purchase_rate", "purchase_account_id"})


def item_values(row: Mapping[str, Any]) -> dict[str, str]:
    """An item's comparable PRODUCT_FIELDS values as Zoho holds them (money as ``money_text``; "" when absent)."""
    values: dict[str, str] = {}
    for field, key in ITEM_KEYS.items():
        raw = row.get(key)
        if key in ITEM_MONEY:
            values[field] = "" if raw is None or raw == "" else money_text(as_decimal(raw))
        else:
            values[field] = "" if raw is None else str(raw)
    return values


def to_item(row: Mapping[str, Any]) -> Item:
    """A Zoho item as the canonical Item: the SKU is the item code, ``item_id`` its id."""
    rate = row.get("rate")
    return Item(
        code=str(row.get("sku") or ""),
        name=str(row.get("name") or ""),
        unit_price=None if rate is None or rate == "" else as_decimal(rate),
        account_code=str(row.get("account_id") or ""),
        tax_type=str(row.get("tax_id") or ""),
        id=str(row.get("item_id") or ""),
        fields=item_values(row),
    )


def _draft_values(draft: ItemDraft) -> dict[str, Any]:
    """The draft in Zoho's keys; a money value not set by us is 0 (``rate`` is required; 0: no price)."""
    return {
        "name": draft.name,
        "description": draft.description,
        "rate": draft.unit_price if draft.unit_price is not None else 0,
        "purchase_rate": draft.unit_cost if draft.unit_cost is not None else 0,
        "tax_id": draft.tax_code,
        "account_id": draft.sales_account,
        "purchase_account_id": draft.purchase_account,
    }


def new_item_body(draft: ItemDraft) -> dict[str, Any]:
    """The ``POST /items`` body: the SKU, name and rate always; the rest only where the draft sets it. A cost
    or purchase account makes the item ``sales_and_purchases`` (GUESSES["item_type_for_cost"])."""
    values = _draft_values(draft)
    body: dict[str, Any] = {"name": draft.name, "sku": draft.code, "rate": values["rate"]}
    for key, given in (
        ("description", draft.description),
        ("purchase_rate", draft.unit_cost is not None),
        ("tax_id", draft.tax_code),
        ("account_id", draft.sales_account),
        ("purchase_account_id", draft.purchase_account),
    ):
        if given:
            body[key] = values[key]
    body["item_type"] = "sales_and_purchases" if PURCHASE_KEYS & set(body) else "sales"
    return body


def item_update_body(draft: ItemDraft, fields: Collection[str], current: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PUT /items/{id}`` body: the named PRODUCT_FIELDS (``code``: the SKU) from ``draft``, with the
    item's current ``name`` and ``rate`` when not named (GUESSES["item_update_body"]), and a type that
    includes purchases when the purchase side is written (GUESSES["item_type_for_cost"])."""
    values = _draft_values(draft)
    body: dict[str, Any] = {"name": current.get("name") or draft.name, "rate": current.get("rate") or 0}
    for field in fields:
        if field == "code":
            body["sku"] = draft.code
        elif field in ITEM_KEYS:
            body[ITEM_KEYS[field]] = values[ITEM_KEYS[field]]
    # The page's item types: sales, purchases, sales_and_purchases, inventory (default sales); only a sales
    # item lacks a purchase side.
    if PURCHASE_KEYS & set(body) and str(current.get("item_type") or "sales") == "sales":
        body["item_type"] = "sales_and_purchases"
    return body


def norm_tax(value: str) -> str:
    """A tax number without spaces or punctuation, upper case: the form two tax numbers are compared in."""
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def name_key(name: str) -> str:
    """Case, punctuation, "the" and legal suffixes ignored: a candidate key for a normalised-name match."""
    words = [w for w in re.findall(r"[\w']+", name.casefold().replace("&", " and ")) if w not in LEGAL_WORDS]
    return " ".join(words)


def search_word(name: str) -> str:
    """The longest significant word of a name, for ``contact_name_contains``."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in LEGAL_WORDS]
    return max(words, key=len) if words else name


def as_decimal(value: Any) -> Decimal:
    """A Zoho number (a JSON number read exactly) as Decimal; FatalError when it is none."""
    return to_decimal(value, who="Zoho", vendor=VENDOR)


def to_customer(contact: Mapping[str, Any], *, tax_number_field: str, contact_ref_field: str) -> AccountingCustomer:
    """A Zoho contact (read in full) as the comparable canonical fields."""
    persons: list[Mapping[str, Any]] = list(contact.get("contact_persons") or [])
    primary: Mapping[str, Any] = next((p for p in persons if p.get("is_primary_contact")), {})
    address: Mapping[str, Any] = contact.get("billing_address") or {}
    people = ";".join(
        f"{p.get('first_name') or ''}|{p.get('last_name') or ''}|{str(p.get('email') or '').lower()}"
        for p in persons
        if not p.get("is_primary_contact")
    )
    email = str(primary.get("email") or contact.get("email") or "").lower()
    fields = {
        "name": str(contact.get("contact_name") or ""),
        "first_name": str(primary.get("first_name") or contact.get("first_name") or ""),
        "last_name": str(primary.get("last_name") or contact.get("last_name") or ""),
        "email": email,
        "phone": str(primary.get("phone") or contact.get("phone") or ""),
        "tax_number": str(contact.get(tax_number_field) or ""),
        "address.line1": str(address.get("address") or ""),
        "address.line2": str(address.get("street2") or ""),
        "address.city": str(address.get("city") or ""),
        "address.region": str(address.get("state") or ""),
        "address.postal_code": str(address.get("zip") or ""),
        "address.country": str(address.get("country") or ""),
        "people": people,
    }
    return AccountingCustomer(
        id=str(contact.get("contact_id") or ""),
        name=fields["name"],
        number=custom_field(contact, contact_ref_field),
        email=email,
        tax_number=fields["tax_number"],
        status="ACTIVE" if str(contact.get("status", "active")) == "active" else "ARCHIVED",
        fields=fields,
    )


def contact_body(
    customer: Customer,
    current: Mapping[str, Any] | None,
    fields: set[str],
    *,
    tax_number_field: str,
    max_other_persons: int,
) -> dict[str, Any]:
    """The Zoho contact fields for the canonical ``fields``, merged into ``current`` (None: a create)."""
    body: dict[str, Any] = {}
    if "name" in fields:
        body["contact_name"] = customer.name
        if customer.ref.object_type == "company":
            body["company_name"] = customer.name
    if current is None:
        body["contact_type"] = "customer"
        body["customer_sub_type"] = "business" if customer.ref.object_type == "company" else "individual"
    if "tax_number" in fields:
        body[tax_number_field] = customer.tax_number
    if any(f.startswith("address.") for f in fields):
        old: Mapping[str, Any] = (current or {}).get("billing_address") or {}
        a = customer.address
        address = {
            "address": ("address.line1", a.line1),
            "street2": ("address.line2", a.line2),
            "city": ("address.city", a.city),
            "state": ("address.region", a.region),
            "zip": ("address.postal_code", a.postal_code),
            "country": ("address.country", a.country),
        }
        body["billing_address"] = {
            key: value if field in fields else str(old.get(key) or "") for key, (field, value) in address.items()
        }
    person_fields = {"first_name", "last_name", "email", "phone", "people"}
    if fields & person_fields:
        body["contact_persons"] = contact_persons(customer, current, fields, max_others=max_other_persons)
    return body


def contact_persons(
    customer: Customer, current: Mapping[str, Any] | None, fields: set[str], *, max_others: int
) -> list[dict[str, Any]]:
    """The primary person's named fields from ``customer`` (the rest kept), and the CRM's other people
    when ``people`` is named (at most ``max_others``; else the current ones kept). Existing persons keep their ids."""
    persons: list[Mapping[str, Any]] = list((current or {}).get("contact_persons") or [])
    old_primary: Mapping[str, Any] = next((p for p in persons if p.get("is_primary_contact")), {})
    primary: dict[str, Any] = {k: old_primary[k] for k in ("contact_person_id",) if old_primary.get(k)}
    for field, key, value in (
        ("first_name", "first_name", customer.first_name),
        ("last_name", "last_name", customer.last_name),
        ("email", "email", customer.email),
        ("phone", "phone", customer.phone),
    ):
        primary[key] = value if field in fields or not old_primary else str(old_primary.get(key) or "")
    primary["is_primary_contact"] = True
    others_now = [p for p in persons if not p.get("is_primary_contact")]
    if "people" in fields:
        by_email = {str(p.get("email") or "").casefold(): p for p in others_now if p.get("email")}
        others: list[dict[str, Any]] = []
        for person in sorted(customer.people, key=lambda p: p.crm_id)[:max_others]:
            entry: dict[str, Any] = {
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": person.email,
                "is_primary_contact": False,
            }
            known = by_email.get(person.email.casefold()) if person.email else None
            if known and known.get("contact_person_id"):
                entry["contact_person_id"] = known["contact_person_id"]
            others.append(entry)
    else:
        others = [
            {k: p[k] for k in ("contact_person_id", "first_name", "last_name", "email", "phone") if k in p}
            | {"is_primary_contact": False}
            for p in others_now
        ]
    has_primary = any(primary.get(k) for k in ("first_name", "last_name", "email", "phone"))
    return ([primary] if has_primary or old_primary else []) + others


def to_invoice(row: Mapping[str, Any], *, url: str, reference: str | None = None) -> Invoice:
    """A Zoho invoice (in full, or a list row) as the canonical Invoice; ``url``: where a person opens it;
    ``reference``: its reference when the row's own ``reference_number`` is not it (a recurring invoice's
    child that did not copy its profile's)."""
    invoice_id = str(row.get("invoice_id") or "")
    total = as_decimal(row.get("total"))
    balance = as_decimal(row.get("balance"))
    tax = as_decimal(row.get("tax_total"))
    paid = row.get("payment_made")
    return Invoice(
        id=invoice_id,
        number=str(row.get("invoice_number") or ""),
        reference=str(row.get("reference_number") or "") if reference is None else reference,
        status=INVOICE_STATUSES.get(str(row.get("status") or "draft"), "AUTHORISED"),
        customer_id=str(row.get("customer_id") or ""),
        currency=str(row.get("currency_code") or ""),
        issue_date=parse_day(row.get("date")),
        due_date=parse_day(row.get("due_date")),
        sub_total=as_decimal(row["sub_total"]) if row.get("sub_total") is not None else total - tax,
        total_tax=tax,
        total=total,
        amount_paid=as_decimal(paid) if paid is not None else total - balance,
        amount_due=balance,
        last_payment_date=parse_day(row.get("last_payment_date")),
        url=url,
        updated_at=parse_utc(row.get("last_modified_time")),
    )


def invoice_body(
    draft: InvoiceDraft, key: str, item_ids: Mapping[str, str], *, invoice_ref_field: str
) -> dict[str, Any]:
    """The ``PUT /invoices`` body for ``draft``, stamped with the deal ``key``; ``item_ids``: Zoho's item id by
    casefolded SKU (every line's item must be there)."""
    return {
        "customer_id": draft.customer_id,
        "reference_number": draft.reference,
        "date": draft.issue_date.isoformat(),
        "due_date": draft.due_date.isoformat(),
        "is_inclusive_tax": draft.line_amount_types == "Inclusive",
        "discount_type": "item_level",
        "line_items": [
            invoice_line(line, draft.line_amount_types, item_ids[line.item_code.casefold()]) for line in draft.lines
        ],
        "custom_fields": [{"api_name": invoice_ref_field, "value": key}],
        # The invoice is made from its quote's estimate: Zoho marks it invoiced (GUESSES["estimate_invoiced_by_link"]).
        **({"invoiced_estimate_id": draft.accounting_quote_id} if draft.accounting_quote_id else {}),
    }


def invoice_line(line: InvoiceLine, amounts: LineAmountTypes, item_id: str) -> dict[str, Any]:
    """One line item: the discount as ``"10%"``, the tax id unless the amounts carry no tax."""
    out: dict[str, Any] = {
        "item_id": item_id,
        "description": line.description,
        "quantity": line.quantity,
        "rate": line.unit_amount,
    }
    if line.discount_rate is not None:
        out["discount"] = f"{format(line.discount_rate, 'f')}%"
    if amounts != "NoTax" and line.tax_type and line.tax_type.upper() != "NONE":
        out["tax_id"] = line.tax_type
    return out


def upsert_headers(field: str, value: str) -> dict[str, str]:
    """Zoho's upsert: a create that finds ``field`` (a unique custom field) already ``value`` updates that record."""
    return {"X-Unique-Identifier-Key": field, "X-Unique-Identifier-Value": value, "X-Upsert": "true"}


# -- estimates (the quote port) ---------------------------------------------------------------------------

#: Zoho's estimate statuses (the estimates page: draft, sent, invoiced, accepted, declined, expired) as the
#: canonical ones: one to one.
ESTIMATE_STATUSES: dict[str, AccountingQuoteStatus] = {
    "draft": "DRAFT",
    "sent": "SENT",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "expired": "EXPIRED",
    "invoiced": "INVOICED",
}


def estimate_body(draft: QuoteDraft, key: str, item_ids: Mapping[str, str], *, quote_ref_field: str) -> dict[str, Any]:
    """The ``POST /estimates`` (and ``PUT /estimates/{id}``) body for ``draft``, stamped with the CRM quote
    ``key`` in the unique custom field ``quote_ref_field``; lines and tax as an invoice's. The currency is the
    customer's (a Zoho rule, as invoices), so it is not sent."""
    body: dict[str, Any] = {
        "customer_id": draft.customer_id,
        "reference_number": draft.reference,
        "date": draft.issue_date.isoformat(),
        "is_inclusive_tax": draft.line_amount_types == "Inclusive",
        "discount_type": "item_level",
        "line_items": [
            invoice_line(line, draft.line_amount_types, item_ids[line.item_code.casefold()]) for line in draft.lines
        ],
        "custom_fields": [{"api_name": quote_ref_field, "value": key}],
    }
    body["expiry_date"] = draft.expiry.isoformat() if draft.expiry is not None else ""
    return body


def to_quote(row: Mapping[str, Any], *, url: str) -> AccountingQuote:
    """A Zoho estimate (in full, or a list row) as the canonical AccountingQuote; ``url``: where a person
    opens it."""
    total = as_decimal(row.get("total"))
    tax = as_decimal(row.get("tax_total"))
    return AccountingQuote(
        id=str(row.get("estimate_id") or ""),
        number=str(row.get("estimate_number") or ""),
        reference=str(row.get("reference_number") or ""),
        status=ESTIMATE_STATUSES.get(str(row.get("status") or "draft"), "SENT"),
        customer_id=str(row.get("customer_id") or ""),
        currency=str(row.get("currency_code") or ""),
        issue_date=parse_day(row.get("date")),
        expiry=parse_day(row.get("expiry_date")),
        sub_total=as_decimal(row["sub_total"]) if row.get("sub_total") is not None else total - tax,
        total_tax=tax,
        total=total,
        url=url,
        updated_at=parse_utc(row.get("last_modified_time")),
    )


# -- recurring invoices (the RecurringAccounting port) ---------------------------------------------------

#: The canonical period unit -> Zoho's ``recurrence_frequency`` (the recurring invoices page: days, weeks,
#: months or years, with ``repeat_every``). Whole years are sent as years, as Zoho's own "Yearly" reads.
RECURRENCE_UNITS: dict[str, str] = {"week": "weeks", "month": "months"}
#: The ``recurrence_name`` limit (the page: "Max-length [100]").
RECURRENCE_NAME_MAX = 100
#: Zoho's recurring invoice statuses (the page: active, stopped, expired): a stopped profile (how Closeloop
#: ends one) and an expired one (past its end date) make no more invoices.
ENDED_RECURRING_STATUSES = frozenset({"stopped", "expired"})


def recurrence_of(frequency: str) -> tuple[str, int]:
    """The canonical frequency as Zoho's ``(recurrence_frequency, repeat_every)``: quarterly is (months, 3),
    annual (years, 1), biennial (years, 2), fortnightly (weeks, 2)."""
    unit, count = FREQUENCY_PERIODS[frequency]
    if unit == "month" and count % 12 == 0:
        return "years", count // 12
    return RECURRENCE_UNITS[unit], count


def frequency_of(recurrence: str, every: int) -> Frequency | None:
    """Zoho's ``(recurrence_frequency, repeat_every)`` as the canonical frequency, None when it has none
    (daily, every 5 weeks...)."""
    period: tuple[str, int] | None = {
        "days": ("week", every // 7) if every % 7 == 0 else None,
        "weeks": ("week", every),
        "months": ("month", every),
        "years": ("month", every * 12),
    }.get(recurrence)
    for frequency, known in FREQUENCY_PERIODS.items():
        if period == known:
            return cast(Frequency, frequency)
    return None


def recurring_invoice_body(draft: ScheduleDraft, item_ids: Mapping[str, str]) -> dict[str, Any]:
    """The ``POST /recurringinvoices`` body for ``draft``: our reference is both the ``recurrence_name``
    (unique per organisation: it finds the profile again and refuses a second one) and the
    ``reference_number`` (its child invoices carry it, GUESSES["recurring_child_reference"], so the payment
    poller tells them apart); the frequency, start and end dates, the due days as ``payment_terms``, the
    currency (Zoho refuses one other than the customer's), and lines and tax as an invoice's. Zoho's
    profile has no status of its own: see ``ZohoBooksAccounting.create_schedule``."""
    recurrence, every = recurrence_of(draft.frequency)
    return {
        "recurrence_name": draft.reference,
        "reference_number": draft.reference,
        "customer_id": draft.customer_id,
        "currency_code": draft.currency,
        "recurrence_frequency": recurrence,
        "repeat_every": every,
        "start_date": draft.start.isoformat(),
        "end_date": draft.end.isoformat(),
        "payment_terms": draft.due_days,
        "is_inclusive_tax": draft.line_amount_types == "Inclusive",
        "line_items": [
            invoice_line(line, draft.line_amount_types, item_ids[line.item_code.casefold()]) for line in draft.lines
        ],
    }


def _whole(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def to_schedule(row: Mapping[str, Any]) -> RepeatingSchedule:
    """A Zoho recurring invoice (read in full: list rows carry no ``sub_total``) as the canonical schedule.
    ``approved`` is true while it is active: Zoho makes each child invoice by itself (drafts or sent as the
    organisation's preference says, which the API does not show)."""
    status = str(row.get("status") or "active")
    ended = status in ENDED_RECURRING_STATUSES
    total = as_decimal(row.get("total"))
    tax = row.get("tax_total")
    sub_total = row.get("sub_total")
    return RepeatingSchedule(
        id=str(row.get("recurring_invoice_id") or ""),
        reference=str(row.get("recurrence_name") or ""),
        status="ended" if ended else "active",
        approved=not ended,
        frequency=frequency_of(str(row.get("recurrence_frequency") or ""), _whole(row.get("repeat_every")) or 1),
        customer_id=str(row.get("customer_id") or ""),
        currency=str(row.get("currency_code") or ""),
        start_date=parse_day(row.get("start_date")),
        next_invoice_date=None if ended else parse_day(row.get("next_invoice_date")),
        end_date=parse_day(row.get("end_date")),
        sub_total=as_decimal(sub_total)
        if sub_total is not None
        else total - (as_decimal(tax) if tax is not None else Decimal(0)),
        total=total,
    )


# -- purchase orders and vendors (the PurchasingAccounting port) -------------------------------------------

#: Zoho's purchase order statuses (the purchase order page) in the upper-case words the other systems use.
PURCHASE_ORDER_STATUSES: dict[str, str] = {
    "draft": "DRAFT",
    "pending_approval": "SUBMITTED",
    "approved": "AUTHORISED",
    "open": "AUTHORISED",
    "partially_billed": "AUTHORISED",
    "billed": "BILLED",
    "closed": "BILLED",
    "cancelled": "CANCELLED",
}


def to_supplier(contact: Mapping[str, Any]) -> Supplier:
    """A Zoho vendor contact as a Supplier."""
    return Supplier(
        id=str(contact.get("contact_id") or ""),
        name=str(contact.get("contact_name") or ""),
        status="ACTIVE" if str(contact.get("status", "active")) == "active" else "ARCHIVED",
    )


def purchase_order_body(draft: PurchaseOrderDraft, items: Mapping[str, Item]) -> dict[str, Any]:
    """The ``POST /purchaseorders`` body for ``draft`` (Zoho creates it a draft): the vendor, our reference in
    ``reference_number``, the date (and delivery date), and each line at its unit cost (``rate``): a line with
    an item code names the Zoho item (``item_id``) and its purchase account where the item has one (else Zoho
    applies its default); a line without one is a free line named by its description. The currency is the
    vendor's (a Zoho rule): not sent. ``items``: the Zoho items by casefolded SKU."""
    lines: list[dict[str, Any]] = []
    for line in draft.lines:
        out: dict[str, Any] = {"description": line.description, "quantity": line.quantity, "rate": line.unit_cost}
        if line.item_code:
            item = items[line.item_code.casefold()]
            out["item_id"] = item.id
            if item.fields.get("purchase_account"):
                out["account_id"] = item.fields["purchase_account"]
        else:
            out["name"] = line.description
        lines.append(out)
    body: dict[str, Any] = {
        "vendor_id": draft.supplier_id,
        "reference_number": draft.reference,
        "date": draft.issue_date.isoformat(),
        "line_items": lines,
    }
    if draft.delivery_date is not None:
        body["delivery_date"] = draft.delivery_date.isoformat()
    return body


def to_purchase_order(row: Mapping[str, Any], *, url: str) -> PurchaseOrder:
    """A Zoho purchase order (in full, or a list row) as the canonical PurchaseOrder; ``url``: where a person
    opens it."""
    return PurchaseOrder(
        id=str(row.get("purchaseorder_id") or ""),
        number=str(row.get("purchaseorder_number") or ""),
        reference=str(row.get("reference_number") or ""),
        status=PURCHASE_ORDER_STATUSES.get(str(row.get("status") or "draft"), str(row.get("status") or "").upper()),
        supplier_id=str(row.get("vendor_id") or ""),
        currency=str(row.get("currency_code") or ""),
        total=as_decimal(row.get("total")),
        url=url,
    )
