"""Pure conversions between Closeloop's canonical models and Xero's JSON: contacts, invoices, line items,
items, Xero's timestamps and the pieces of a ``where`` filter. No HTTP here.

Vendor facts encoded here (Xero's OpenAPI spec v16): dates come as .NET ``/Date(ms+0000)/`` (plus an ISO
``…String`` twin); a ``where`` string literal doubles its double quotes and a date is ``DateTime(y, m, d)``;
``searchTerm`` is a substring match; a contact has up to 5 ContactPersons and an empty POBOX address.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from closeloop.dates import parse_timestamp
from closeloop.models import (
    AccountingCustomer,
    AccountingQuote,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    ItemDraft,
    PurchaseOrder,
    PurchaseOrderDraft,
    QuoteDraft,
    Supplier,
    money_text,
)
from closeloop.wire import to_decimal

MAX_CONTACT_PERSONS = 5


def quote_literal(value: str) -> str:
    """A string literal for Xero's ``where`` (Dynamic LINQ: a double quote is written twice)."""
    return '"' + value.replace('"', '""') + '"'


_NET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_xero_datetime(value: Any) -> datetime | None:
    """A Xero timestamp, or None when absent or unreadable.

    .NET JSON ``/Date(1573755038314+0000)/`` is milliseconds since the epoch in UTC (the offset only says
    which zone wrote it); ISO 8601 keeps its own offset, a naive one is UTC.
    """
    match = _NET_DATE.match(value.strip()) if isinstance(value, str) else None
    if match:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    return parse_timestamp(value)


def xero_datetime(row: Mapping[str, Any], key: str) -> datetime | None:
    """``row[key]`` (.NET or ISO), else its ISO twin ``row[key + "String"]``."""
    return parse_xero_datetime(row.get(key)) or parse_xero_datetime(row.get(f"{key}String"))


def xero_date(row: Mapping[str, Any], key: str) -> date | None:
    stamp = xero_datetime(row, key)
    return stamp.date() if stamp else None


def last_payment_date(row: Mapping[str, Any]) -> date | None:
    """The latest live payment's date, else FullyPaidOnDate."""
    days = [
        day
        for payment in row.get("Payments") or []
        if str(payment.get("Status") or "AUTHORISED") != "DELETED" and (day := xero_date(payment, "Date"))
    ]
    return max(days) if days else xero_date(row, "FullyPaidOnDate")


def datetime_literal(day: date) -> str:
    """A date for ``where`` (Dynamic LINQ): ``DateTime(2024, 01, 31)``, midnight UTC."""
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


#: Canonical InvoiceLine field -> Xero LineItem field, each sent only when set.
LINE_FIELDS: tuple[tuple[str, str], ...] = (
    ("item_code", "ItemCode"),
    ("description", "Description"),
    ("quantity", "Quantity"),
    ("unit_amount", "UnitAmount"),
    ("tax_type", "TaxType"),
    ("account_code", "AccountCode"),
    ("discount_rate", "DiscountRate"),
)


def to_xero_line(line: InvoiceLine) -> dict[str, Any]:
    """One Xero LineItem: the fields of ``line`` that are set (Decimals kept for ``dumps_exact``)."""
    values = ((xero, getattr(line, field)) for field, xero in LINE_FIELDS)
    return {xero: value for xero, value in values if value is not None and value != ""}


def to_xero_invoice(draft: InvoiceDraft, invoice_type: str) -> dict[str, Any]:
    """A Xero Invoice body for ``draft``: every value decided by the draft, none left to Xero's defaults."""
    body: dict[str, Any] = {
        "Type": invoice_type,
        "Contact": {"ContactID": draft.customer_id},
        "LineItems": [to_xero_line(line) for line in draft.lines],
        "LineAmountTypes": draft.line_amount_types,
        "Status": draft.status,
        "Date": draft.issue_date.isoformat(),
        "DueDate": draft.due_date.isoformat(),
        "CurrencyCode": draft.currency,
        "Reference": draft.reference,
    }
    if draft.url:
        body["Url"] = draft.url  # shown in Xero as "Go to …": the way back to the CRM deal
    return body


def to_item(row: Mapping[str, Any]) -> Item:
    """A Xero Item: its sales defaults (price as Decimal, None when the item has none), its ItemID, and the
    comparable PRODUCT_FIELDS values as Xero holds them (``item_fields_of``)."""
    sales: Mapping[str, Any] = row.get("SalesDetails") or {}
    price = sales.get("UnitPrice")
    return Item(
        code=str(row.get("Code") or ""),
        name=str(row.get("Name") or ""),
        unit_price=None if price is None else xero_decimal(price),
        account_code=str(sales.get("AccountCode") or ""),
        tax_type=str(sales.get("TaxType") or ""),
        id=str(row.get("ItemID") or ""),
        fields=item_fields_of(row),
    )


def _money_of(section: Mapping[str, Any]) -> str:
    price = section.get("UnitPrice")
    return money_text(None if price is None else xero_decimal(price))


def purchase_account_key(row: Mapping[str, Any]) -> str:
    """Where an item keeps its purchase account: ``COGSAccountCode`` for an item tracked as inventory,
    ``AccountCode`` otherwise (XS Purchase: AccountCode "not applicable to the purchase details of tracked
    items", COGSAccountCode "only applicable to the purchase details of tracked items")."""
    return "COGSAccountCode" if row.get("IsTrackedAsInventory") else "AccountCode"


def item_fields_of(row: Mapping[str, Any]) -> dict[str, str]:
    """The PRODUCT_FIELDS values of a Xero Item: the sales price, tax type and account from ``SalesDetails``,
    the cost and purchase account from ``PurchaseDetails``; money as ``money_text``, absent as ""."""
    sales: Mapping[str, Any] = row.get("SalesDetails") or {}
    purchase: Mapping[str, Any] = row.get("PurchaseDetails") or {}
    return {
        "name": str(row.get("Name") or ""),
        "description": str(row.get("Description") or ""),
        "unit_price": _money_of(sales),
        "unit_cost": _money_of(purchase),
        "tax_code": str(sales.get("TaxType") or ""),
        "sales_account": str(sales.get("AccountCode") or ""),
        "purchase_account": str(purchase.get(purchase_account_key(row)) or ""),
    }


def to_xero_item(draft: ItemDraft, fields: Collection[str], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Xero Item body writing the named PRODUCT_FIELDS of ``draft`` (and its code: XS requires ``Code``
    on every Item). A draft's empty text or None is "not set by us" and is not sent.

    A ``SalesDetails`` or ``PurchaseDetails`` section is sent whole: the values ``current`` (the item as Xero
    holds it, for an update) has, with the named ones replaced, so it is right whether Xero merges a section
    or replaces it (GUESSES["item_details_sent_whole"]). Money stays Decimal for ``dumps_exact``."""
    wanted = set(fields)
    row: Mapping[str, Any] = current or {}
    body: dict[str, Any] = {"Code": draft.code if "code" in wanted or not row else str(row.get("Code") or "")}
    if "name" in wanted and draft.name:
        body["Name"] = draft.name
    if "description" in wanted and draft.description:
        body["Description"] = draft.description
    sales = {
        "UnitPrice": draft.unit_price if "unit_price" in wanted else None,
        "AccountCode": draft.sales_account if "sales_account" in wanted else "",
        "TaxType": draft.tax_code if "tax_code" in wanted else "",
    }
    purchase = {
        "UnitPrice": draft.unit_cost if "unit_cost" in wanted else None,
        purchase_account_key(row): draft.purchase_account if "purchase_account" in wanted else "",
    }
    for key, values in (("SalesDetails", sales), ("PurchaseDetails", purchase)):
        given = {k: v for k, v in values.items() if v is not None and v != ""}
        if given:
            body[key] = {**(row.get(key) or {}), **given}
    return body


LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def chunk_key(key: str, body: Mapping[str, Any], limit: int) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{key[: limit - len(digest) - 1]}-{digest}"


def or_queries(clauses: Sequence[str], max_chars: int) -> list[str]:
    """``clauses`` joined with ``||`` into as few ``where`` expressions as fit ``max_chars`` once URL-encoded."""
    queries: list[str] = []
    current: list[str] = []
    size = 0
    for clause in clauses:
        cost = len(quote(clause, safe="")) + 6
        if current and size + cost > max_chars:
            queries.append("||".join(current))
            current, size = [], 0
        current.append(clause)
        size += cost
    if current:
        queries.append("||".join(current))
    return queries


def search_word(name: str) -> str:
    """The longest significant word of a name: Xero's searchTerm is a substring match."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in LEGAL_WORDS]
    return max(words, key=len) if words else name


def to_xero(customer: Customer, fields: Collection[str]) -> dict[str, Any]:
    """The Xero Contact fields for the named canonical ``fields`` of ``customer``."""
    wanted = set(fields)
    body: dict[str, Any] = {}
    simple = {
        "name": ("Name", customer.name),
        "first_name": ("FirstName", customer.first_name),
        "last_name": ("LastName", customer.last_name),
        "email": ("EmailAddress", customer.email),
        "tax_number": ("TaxNumber", customer.tax_number),
    }
    for field, (xero_name, value) in simple.items():
        if field in wanted:
            body[xero_name] = value
    if "phone" in wanted:
        body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": customer.phone}]
    if any(f.startswith("address.") for f in wanted):
        a = customer.address
        body["Addresses"] = [
            {
                "AddressType": "STREET",
                "AddressLine1": a.line1,
                "AddressLine2": a.line2,
                "City": a.city,
                "Region": a.region,
                "PostalCode": a.postal_code,
                "Country": a.country,
            }
        ]
    if "people" in wanted:
        body["ContactPersons"] = [
            {"FirstName": p.first_name, "LastName": p.last_name, "EmailAddress": p.email, "IncludeInEmails": True}
            for p in sorted(customer.people, key=lambda p: p.crm_id)[:MAX_CONTACT_PERSONS]
        ]
    return body


def to_customer(contact: Mapping[str, Any]) -> AccountingCustomer:
    """A Xero Contact as the comparable canonical fields."""
    phones = contact.get("Phones") or []
    phone: Mapping[str, Any] = next((p for p in phones if p.get("PhoneType") == "DEFAULT"), {})
    addresses = contact.get("Addresses") or []
    # The address with any content (a city and a country alone count), the STREET one first: Xero also
    # returns an empty POBOX address on every contact.
    _parts = ("AddressLine1", "AddressLine2", "City", "Region", "PostalCode", "Country")
    filled = [a for a in addresses if any(a.get(k) for k in _parts)]
    street = [a for a in filled if a.get("AddressType") == "STREET"]
    address: Mapping[str, Any] = (street or filled or [{}])[0]
    people = ";".join(
        f"{p.get('FirstName', '')}|{p.get('LastName', '')}|{str(p.get('EmailAddress', '')).lower()}"
        for p in contact.get("ContactPersons") or []
    )
    fields = {
        "name": str(contact.get("Name", "")),
        "first_name": str(contact.get("FirstName", "")),
        "last_name": str(contact.get("LastName", "")),
        "email": str(contact.get("EmailAddress", "")).lower(),
        "phone": " ".join(
            str(phone.get(k, "")) for k in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber") if phone.get(k)
        ),
        "tax_number": str(contact.get("TaxNumber", "")),
        "address.line1": str(address.get("AddressLine1", "")),
        "address.line2": str(address.get("AddressLine2", "")),
        "address.city": str(address.get("City", "")),
        "address.region": str(address.get("Region", "")),
        "address.postal_code": str(address.get("PostalCode", "")),
        "address.country": str(address.get("Country", "")),
        "people": people,
    }
    return AccountingCustomer(
        id=str(contact.get("ContactID", "")),
        name=fields["name"],
        number=str(contact.get("ContactNumber", "")),
        email=fields["email"],
        tax_number=fields["tax_number"],
        status=str(contact.get("ContactStatus", "ACTIVE")),
        fields=fields,
    )


def to_invoice(row: Mapping[str, Any], view_url: str) -> Invoice:
    """A Xero Invoice (JSON read with Decimal numbers) as the canonical Invoice; ``view_url`` is where a person
    opens it, with ``{id}`` for its id."""
    invoice_id = str(row.get("InvoiceID") or "")
    contact: Mapping[str, Any] = row.get("Contact") or {}
    updated = xero_datetime(row, "UpdatedDateUTC")
    return Invoice(
        id=invoice_id,
        number=str(row.get("InvoiceNumber") or ""),
        reference=str(row.get("Reference") or ""),
        status=str(row.get("Status") or "DRAFT"),
        customer_id=str(contact.get("ContactID") or ""),
        currency=str(row.get("CurrencyCode") or ""),
        issue_date=xero_date(row, "Date"),
        due_date=xero_date(row, "DueDate"),
        sub_total=xero_decimal(row.get("SubTotal")),
        total_tax=xero_decimal(row.get("TotalTax")),
        total=xero_decimal(row.get("Total")),
        amount_paid=xero_decimal(row.get("AmountPaid")),
        amount_due=xero_decimal(row.get("AmountDue")),
        last_payment_date=last_payment_date(row),
        url=view_url.format(id=quote(invoice_id, safe="")) if invoice_id else "",
        updated_at=updated.astimezone(UTC) if updated else None,
    )


def xero_decimal(value: Any) -> Decimal:
    """A Xero number (Decimal already, an int or a numeric string) as Decimal; absent is zero."""
    return to_decimal(value, who="Xero", vendor="xero")


def to_xero_purchase_order(draft: PurchaseOrderDraft) -> dict[str, Any]:
    """A Xero PurchaseOrder body for ``draft``: the supplier by ContactID, lines at unit cost (exclusive of
    tax; each line's tax type left to the item's PurchaseDetails or the organisation's default), the
    reference that carries the deal and the supplier, always the draft's status."""
    lines = []
    for line in draft.lines:
        row: dict[str, Any] = {"Description": line.description, "Quantity": line.quantity, "UnitAmount": line.unit_cost}
        if line.item_code:
            row["ItemCode"] = line.item_code
        lines.append(row)
    body: dict[str, Any] = {
        "Contact": {"ContactID": draft.supplier_id},
        "LineItems": lines,
        "LineAmountTypes": "Exclusive",
        "Date": draft.issue_date.isoformat(),
        "CurrencyCode": draft.currency,
        "Reference": draft.reference,
        "Status": draft.status,
    }
    if draft.delivery_date is not None:
        body["DeliveryDate"] = draft.delivery_date.isoformat()
    return body


def to_purchase_order(row: Mapping[str, Any], view_url: str) -> PurchaseOrder:
    """A Xero PurchaseOrder (JSON read with Decimal numbers) as the canonical PurchaseOrder; ``view_url`` is
    where a person opens it, with ``{id}`` for its id."""
    order_id = str(row.get("PurchaseOrderID") or "")
    contact: Mapping[str, Any] = row.get("Contact") or {}
    return PurchaseOrder(
        id=order_id,
        number=str(row.get("PurchaseOrderNumber") or ""),
        reference=str(row.get("Reference") or ""),
        status=str(row.get("Status") or "DRAFT"),
        supplier_id=str(contact.get("ContactID") or ""),
        currency=str(row.get("CurrencyCode") or ""),
        total=xero_decimal(row.get("Total")),
        url=view_url.format(id=quote(order_id, safe="")) if order_id else "",
    )


def to_supplier(contact: Mapping[str, Any]) -> Supplier:
    """A Xero contact as a supplier (any contact can be one: IsSupplier only says it has bills already)."""
    return Supplier(
        id=str(contact.get("ContactID") or ""),
        name=str(contact.get("Name") or ""),
        status=str(contact.get("ContactStatus") or "ACTIVE"),
    )


#: The canonical line amount types as Xero's quotes spell them (XS QuoteLineAmountTypes: upper case, unlike
#: invoices' LineAmountTypes).
QUOTE_LINE_AMOUNT_TYPES = {"Exclusive": "EXCLUSIVE", "Inclusive": "INCLUSIVE", "NoTax": "NOTAX"}
#: XS Quote.Title "maxLength: 100".
QUOTE_TITLE_MAX = 100


def to_xero_quote(draft: QuoteDraft, status: str | None = None) -> dict[str, Any]:
    """A Xero Quote body for ``draft`` (XS Quote): contact, lines, dates, currency, reference and title.
    ``status``: the status to send (the draft's on a create; left out of a revision, so it stays)."""
    body: dict[str, Any] = {
        "Contact": {"ContactID": draft.customer_id},
        "LineItems": [to_xero_line(line) for line in draft.lines],
        "LineAmountTypes": QUOTE_LINE_AMOUNT_TYPES[draft.line_amount_types],
        "Date": draft.issue_date.isoformat(),
        "CurrencyCode": draft.currency,
        "Reference": draft.reference,
    }
    if status:
        body["Status"] = status
    if draft.expiry is not None:
        body["ExpiryDate"] = draft.expiry.isoformat()
    if draft.title:
        body["Title"] = draft.title[:QUOTE_TITLE_MAX]
    return body


def to_quote(row: Mapping[str, Any], view_url: str) -> AccountingQuote:
    """A Xero Quote as the canonical AccountingQuote; ``view_url`` has ``{id}`` for its id. Xero's statuses
    (XS QuoteStatusCodes) are the canonical ones; Xero has no EXPIRED (the sync derives it)."""
    quote_id = str(row.get("QuoteID") or "")
    contact: Mapping[str, Any] = row.get("Contact") or {}
    updated = xero_datetime(row, "UpdatedDateUTC")
    status = str(row.get("Status") or "DRAFT")
    return AccountingQuote(
        id=quote_id,
        number=str(row.get("QuoteNumber") or ""),
        reference=str(row.get("Reference") or ""),
        status=status if status in QUOTE_STATUSES else "DRAFT",
        customer_id=str(contact.get("ContactID") or ""),
        currency=str(row.get("CurrencyCode") or ""),
        issue_date=xero_date(row, "Date"),
        expiry=xero_date(row, "ExpiryDate"),
        sub_total=xero_decimal(row.get("SubTotal")),
        total_tax=xero_decimal(row.get("TotalTax")),
        total=xero_decimal(row.get("Total")),
        url=view_url.format(id=quote(quote_id, safe="")) if quote_id else "",
        updated_at=updated.astimezone(UTC) if updated else None,
    )


QUOTE_STATUSES = frozenset({"DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED", "DELETED"})
