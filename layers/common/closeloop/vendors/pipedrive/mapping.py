"""Pipedrive records <-> Closeloop's canonical models, without I/O: v2 persons, addresses, deal products,
products (the catalogue), custom-field definitions and their values (enum option ids <-> labels), and exact
numbers.

- Custom fields are keyed by a 40-character hash (``field_code``), not by name. Closeloop names its fields
  with the canonical names (``closeloop_invoice_number``) and maps names <-> hashes through the field
  definitions (``CustomField``). ``enum`` values travel as option ids, mapped to and from labels here.
- Money (deal value, prices, quantities, number fields) is read as exact Decimals, never through float.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.dates import parse_timestamp
from closeloop.errors import ValidationFailed
from closeloop.models import Address, CrmRef, LineItem, Person, Product


@dataclass(frozen=True)
class CustomField:
    """One custom-field definition: its hash key, name, type and (enum/set) option ids by label."""

    key: str
    name: str
    type: str
    options: dict[str, int] = field(default_factory=dict)

    def label(self, option_id: Any) -> str:
        return next((label for label, oid in self.options.items() if str(oid) == str(option_id)), str(option_id))


@dataclass
class FieldTable:
    """One object type's custom-field definitions by name and by hash key, and when they were read."""

    by_name: dict[str, CustomField]
    by_key: dict[str, CustomField]
    read_at: float


def read_person(obj: Mapping[str, Any]) -> Person:
    """A v2 person: first/last name (else its whole name as first), primary email (lower case) and phone."""
    first, last = clean(obj.get("first_name")), clean(obj.get("last_name"))
    if not (first or last):
        first = clean(obj.get("name"))
    return Person(
        crm_id=str(obj["id"]),
        first_name=first,
        last_name=last,
        email=primary_value(obj.get("emails")).lower(),
        phone=primary_value(obj.get("phones")),
    )


def read_line_item(row: Mapping[str, Any], product: Mapping[str, Any] | None) -> LineItem:
    """A deal product row (with its product, for the name and SKU) as a LineItem with exact amounts."""
    item_id = str(row["id"])
    what = f"deal product {item_id}"
    quantity = read_number(row.get("quantity"), f"{what} quantity")
    quantity = quantity if quantity is not None else Decimal(1)
    price = read_number(row.get("item_price"), f"{what} item_price") or Decimal(0)
    discount = read_number(row.get("discount"), f"{what} discount") or Decimal(0)
    percent: Decimal | None = None
    if discount and clean(row.get("discount_type")) == "amount":
        # An amount off the whole line. LineItem has no line discount: fold it into the unit price when
        # that is exact, else express it as a percentage (the invoice's amount check shows any cent).
        per_unit = discount / quantity if quantity else discount
        if quantity and per_unit * quantity == discount:
            price -= per_unit
        elif price and quantity:
            percent = (discount * 100 / (price * quantity)).quantize(Decimal("0.000001"))
    elif discount:
        percent = discount
    gross = price * quantity
    net = gross - (gross * percent / 100 if percent else Decimal(0))
    return LineItem(
        crm_id=item_id,
        name=clean(row.get("name")) or clean((product or {}).get("name")),
        sku=clean((product or {}).get("code")),
        product_id=clean(row.get("product_id")),
        quantity=quantity,
        unit_price=price,
        discount_percent=percent,
        amount=net,
        **billing_terms(row, what),
    )


#: A deal product's ``billing_frequency`` (client-nodejs v2 get-deals-products-response-data-inner-all-of1.ts)
#: -> the canonical frequency; ``one-time`` (the default) is a one-off line.
BILLING_FREQUENCIES: dict[str, str] = {
    "weekly": "weekly",
    "monthly": "monthly",
    "quarterly": "quarterly",
    "semi-annually": "semi_annual",
    "annually": "annual",
}


def billing_terms(row: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The LineItem recurring fields of a deal product's billing: its frequency, start (``billing_start_date``;
    None lets the sync start it on the close date) and term (``billing_frequency_cycles`` billing periods; null
    is Pipedrive's "renew until cancelled", which leaves the term unset so the sync fails the deal asking for
    one). {} for a one-time row or one without billing. The row's ``sum`` stays its amount: one period's
    (see GUESSES["deal value with recurring products"]). Raises ValidationFailed naming the row for a frequency,
    number of cycles or start date outside what Pipedrive documents."""
    raw = clean(row.get("billing_frequency"))
    if raw in ("", "one-time"):
        return {}
    frequency = BILLING_FREQUENCIES.get(raw)
    if frequency is None:
        raise ValidationFailed(f"Pipedrive {what} has an unknown billing_frequency {raw[:40]!r}", vendor="pipedrive")
    terms: dict[str, Any] = {"recurring_frequency": frequency}
    cycles = row.get("billing_frequency_cycles")
    if cycles is not None:
        if isinstance(cycles, bool) or not isinstance(cycles, int | Decimal | str) or not clean(cycles).isdigit():
            raise ValidationFailed(
                f"Pipedrive {what} billing_frequency_cycles is not a whole number: {str(cycles)[:40]!r}",
                vendor="pipedrive",
            )
        count = int(clean(cycles))
        if count < 1:
            raise ValidationFailed(f"Pipedrive {what} billing_frequency_cycles must be at least 1", vendor="pipedrive")
        terms["recurring_periods"] = count
    start = clean(row.get("billing_start_date"))
    if start:
        try:
            terms["recurring_start"] = date.fromisoformat(start[:10])
        except ValueError as exc:
            raise ValidationFailed(
                f"Pipedrive {what} billing_start_date is not a date: {start[:40]!r}", vendor="pipedrive"
            ) from exc
    return terms


def product_price(prices: Any, currency: str) -> Mapping[str, Any] | None:
    """The entry of a v2 product's ``prices`` (one per currency) that is its unit price: the only one, else the
    one in ``currency`` (case-insensitive); None when there is none, or several and none in ``currency``."""
    entries = [p for p in prices if isinstance(p, dict)] if isinstance(prices, list) else []
    if len(entries) == 1:
        return entries[0]
    wanted = currency.strip().upper()
    return next((p for p in entries if wanted and clean(p.get("currency")).upper() == wanted), None)


def read_product(record: Mapping[str, Any], *, ref: CrmRef, supplier: str, currency: str) -> Product:
    """A v2 product as a catalogue Product: its ``code`` is the SKU; price and cost come from the ``prices``
    entry ``product_price`` picks (exact Decimals). A cost of 0 is Pipedrive's default for "no cost given", so
    it reads as no cost (see GUESSES["product cost zero"]); a deleted product is archived."""
    what = f"product {ref.object_id}"
    price = product_price(record.get("prices"), currency)
    unit_price = unit_cost = None
    if price is not None:
        unit_price = read_number(price.get("price"), f"{what} price")
        unit_cost = read_number(price.get("cost"), f"{what} cost") or None
    return Product(
        ref=ref,
        sku=clean(record.get("code")),
        name=clean(record.get("name")),
        description=clean(record.get("description")),
        unit_price=unit_price,
        unit_cost=unit_cost,
        currency=clean(price.get("currency")).upper() if price is not None else "",
        supplier=supplier,
        archived=record.get("is_deleted") is True,
        updated_at=parse_timestamp(record.get("update_time")),
    )


def clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def primary_value(entries: Any) -> str:
    """The primary value of a v2 ``emails``/``phones`` array (else the first one)."""
    if not isinstance(entries, list):
        return clean(entries) if isinstance(entries, str) else ""
    values = [e for e in entries if isinstance(e, dict) and clean(e.get("value"))]
    chosen = next((e for e in values if e.get("primary") is True), values[0] if values else None)
    return clean(chosen.get("value")) if chosen else ""


def read_address(value: Any) -> Address:
    """A v2 address object (Google-style components) as our Address; a bare string becomes line 1."""
    if isinstance(value, str):
        return Address(line1=value.strip())
    if not isinstance(value, dict):
        return Address()
    street = " ".join(p for p in (clean(value.get("street_number")), clean(value.get("route"))) if p)
    return Address(
        line1=street or (clean(value.get("value")) if not clean(value.get("locality")) else ""),
        line2=clean(value.get("subpremise")),
        city=clean(value.get("locality")) or clean(value.get("sublocality")),
        region=clean(value.get("admin_area_level_1")),
        postal_code=clean(value.get("postal_code")),
        country=clean(value.get("country")),
    )


def entries_with_primary(entries: Any, value: str) -> list[dict[str, Any]]:
    """A v2 ``emails``/``phones`` array whose primary value (as ``_primary`` reads it) is ``value``; "" empties it."""
    if not value:
        return []
    kept = [
        {"value": clean(e.get("value")), "primary": e.get("primary") is True, "label": e.get("label") or "work"}
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and clean(e.get("value"))
    ]
    chosen = next((e for e in kept if e["primary"]), kept[0] if kept else None)
    if chosen is None:
        return [{"value": value, "primary": True, "label": "work"}]
    chosen["value"] = value
    chosen["primary"] = True
    return kept


def address_body(address: Address, current: Any) -> dict[str, Any] | None:
    """A v2 organization address that ``_address`` reads back as ``address``; None clears it.

    Only the sub-fields of the v2 schema (``OrganizationItemAddress``: value, country, admin_area_level_1/2,
    locality, sublocality, route, street_number, subpremise, postal_code; all strings, no
    ``formatted_address``), and empty ones are left out rather than sent as null. A written address replaces
    the stored one (GUESSES["address write replaces the address"]), so the sub-fields we do not model
    (admin_area_level_2, and sublocality while a locality is written) are re-sent from ``current``.
    """
    if address.is_empty():
        return None
    parts = (address.line1, address.line2, address.city, address.region, address.postal_code, address.country)
    # Without a locality ``_address`` reads line 1 from ``value``: keep it to line 1 then.
    value = ", ".join(p for p in parts if p) if address.city else address.line1
    kept = current if isinstance(current, dict) else {}
    body = {
        "value": value,
        "route": address.line1,
        "subpremise": address.line2,
        "sublocality": clean(kept.get("sublocality")) if address.city else "",
        "locality": address.city,
        "admin_area_level_1": address.region,
        "admin_area_level_2": clean(kept.get("admin_area_level_2")),
        "postal_code": address.postal_code,
        "country": address.country,
    }
    return {key: part for key, part in body.items() if part}


def read_field(record: Mapping[str, Any]) -> CustomField | None:
    key, name = clean(record.get("field_code")), clean(record.get("field_name"))
    if not key or not name:
        return None
    options = {
        clean(o.get("label")): int(o["id"])
        for o in record.get("options") or []
        if isinstance(o, dict) and o.get("id") is not None
    }
    return CustomField(key, name, clean(record.get("field_type")), options)


def field_text(definition: CustomField, value: Any) -> str:
    """A custom field's value as the string the port deals in."""
    if isinstance(value, dict):  # monetary {value, currency}, address {value, …}
        value = value.get("value")
    if value is None:
        return ""
    if definition.type == "enum":
        return definition.label(value)
    if definition.type == "set" and isinstance(value, list):
        return ",".join(definition.label(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return number_text(Decimal(value))
    return str(value)


def field_value(definition: CustomField, text: str) -> Any:
    """A string value as Pipedrive wants it for the field's type; "" clears (null)."""
    if text == "":
        return None
    if definition.type in ("double", "monetary"):
        number = read_number(text, f"value for {definition.name}")
        return {"value": number} if definition.type == "monetary" else number
    if definition.type == "enum":
        if text not in definition.options:
            allowed = ", ".join(definition.options)
            raise ValidationFailed(f"{text!r} is not an option of {definition.name} ({allowed})", vendor="pipedrive")
        return definition.options[text]
    return text


def number_text(number: Decimal) -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def read_number(value: Any, what: str) -> Decimal | None:
    """A Pipedrive number (JSON number or string) as an exact Decimal; None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationFailed(f"Pipedrive {what} is not a number: {value!r}", vendor="pipedrive")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValidationFailed(f"Pipedrive {what} is not a number: {str(value)[:40]!r}", vendor="pipedrive")
    return number


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
