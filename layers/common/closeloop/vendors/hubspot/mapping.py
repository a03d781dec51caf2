"""HubSpot <-> canonical: pure conversions of HubSpot objects (every property a string on the wire) into
customers, people, addresses, line items and products, and the parsing of HubSpot's numbers, dates and stage metadata.
Money and quantities are exact Decimals, never floats. No I/O here."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.errors import ValidationFailed
from closeloop.models import FREQUENCY_PERIODS, Address, CrmRef, Customer, LineItem, Person, Product

CRM = "hubspot"


def company_customer(company: Any, contacts: Sequence[Any], *, tax_number_property: str) -> Customer:
    """A company's customer record; ``contacts`` in order, the primary contact first; the tax number read
    from ``tax_number_property`` (HubSpot has no default one)."""
    props = company.get("properties") or {}
    people = tuple(person(c) for c in contacts)
    primary = people[0] if people else None
    return Customer(
        ref=CrmRef(crm=CRM, object_type="company", object_id=str(company["id"])),
        name=clean(props.get("name")),
        email=primary.email if primary else "",
        phone=(primary.phone if primary and primary.phone else clean(props.get("phone"))),
        tax_number=clean(props.get(tax_number_property)),
        first_name=primary.first_name if primary else "",
        last_name=primary.last_name if primary else "",
        address=address(props, line2_key="address2"),
        people=people[1:],
        updated_at=parse_time(company.get("updatedAt")),
    )


def contact_customer(ref: CrmRef, contact: Any) -> Customer:
    """A contact billed on its own (no company): its name is first + last name."""
    someone = person(contact)
    props = contact.get("properties") or {}
    return Customer(
        ref=ref,
        name=" ".join(p for p in (someone.first_name, someone.last_name) if p),
        email=someone.email,
        phone=someone.phone,
        first_name=someone.first_name,
        last_name=someone.last_name,
        address=address(props, line2_key=None),
        updated_at=parse_time(contact.get("updatedAt")),
    )


def person(obj: Any) -> Person:
    """A contact as a person (``phone`` wins over ``mobilephone``; the email lower-cased)."""
    props = obj.get("properties") or {}
    return Person(
        crm_id=str(obj["id"]),
        first_name=clean(props.get("firstname")),
        last_name=clean(props.get("lastname")),
        email=clean(props.get("email")).lower(),
        phone=clean(props.get("phone")) or clean(props.get("mobilephone")),
    )


def address(props: Mapping[str, Any], line2_key: str | None) -> Address:
    """The address properties of a company (``line2_key``: address2) or a contact (None)."""
    return Address(
        line1=clean(props.get("address")),
        line2=clean(props.get(line2_key)) if line2_key else "",
        city=clean(props.get("city")),
        region=clean(props.get("state")),
        postal_code=clean(props.get("zip")),
        country=clean(props.get("country")),
    )


def line_item(obj: Any, close: date | None = None) -> LineItem:
    """A line item with exact money (its unit discount folded into the unit price) and its recurring terms
    (``recurring_terms``; ``close``: the deal's close date, from which a billing start delay counts)."""
    props = obj.get("properties") or {}
    item_id = str(obj["id"])
    what = f"line item {item_id}"
    quantity = decimal(props.get("quantity"), f"{what} quantity")
    price = decimal(props.get("price"), f"{what} price") or Decimal(0)
    # HubSpot's net price is quantity x (price - unit discount) less the percentage; LineItem has no unit
    # discount, so it is folded into the unit price (exact, unlike converting it to a percentage).
    unit_discount = decimal(props.get("discount"), f"{what} discount")
    return LineItem(
        crm_id=item_id,
        name=clean(props.get("name")),
        sku=clean(props.get("hs_sku")),
        # HubSpot's products guide: a line item's hs_product_id is the id of the product it was made from.
        product_id=clean(props.get("hs_product_id")),
        quantity=quantity if quantity is not None else Decimal(1),
        unit_price=price - unit_discount if unit_discount else price,
        discount_percent=decimal(props.get("hs_discount_percentage"), f"{what} discount percentage"),
        amount=decimal(props.get("amount"), f"{what} amount"),
        **recurring_terms(props, what, close),
    )


def product(obj: Any, *, supplier_property: str) -> Product:
    """A product of the library: its SKU (``hs_sku``), unit price (``price``, in the account's currency) and
    unit cost (``hs_cost_of_goods_sold``: see GUESSES["product_unit_cost_property"]) exact; the supplier read
    from ``supplier_property``; ``archived`` as the read says (a product deleted in HubSpot is archived,
    restorable for 90 days)."""
    props = obj.get("properties") or {}
    product_id = str(obj["id"])
    what = f"product {product_id}"
    return Product(
        ref=CrmRef(crm=CRM, object_type="product", object_id=product_id),
        sku=clean(props.get("hs_sku")),
        name=clean(props.get("name")),
        description=clean(props.get("description")),
        unit_price=decimal(props.get("price"), f"{what} price"),
        unit_cost=decimal(props.get("hs_cost_of_goods_sold"), f"{what} unit cost"),
        supplier=clean(props.get(supplier_property)),
        archived=obj.get("archived") is True,
        updated_at=parse_time(props.get("hs_lastmodifieddate") or obj.get("updatedAt")),
    )


def clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def decimal(value: Any, what: str) -> Decimal | None:
    """A HubSpot number (sent as a string) as an exact Decimal; None when empty."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValidationFailed(f"HubSpot {what} is not a number: {str(value)[:40]!r}", vendor="hubspot")
    return number


def close_date(value: Any, deal_id: str) -> date | None:
    """A close date sent as ms since the epoch, an ISO datetime or an ISO date (the UTC day)."""
    text = clean(value)
    if not text:
        return None
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC).date()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise ValidationFailed(
            f"HubSpot deal {deal_id} closedate is not a date: {text[:40]!r}", vendor="hubspot"
        ) from exc
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def id_order(object_id: str) -> tuple[int, str]:
    return (int(object_id), "") if object_id.isdigit() else (0, object_id)


def stage_is_won(metadata: Mapping[str, Any]) -> bool:
    """Won = closed with probability 1 (HubSpot sends both as strings, "true" and "1.0"; numbers accepted)."""
    closed = metadata.get("isClosed")
    if not (closed is True or str(closed).strip().lower() == "true"):
        return False
    try:
        return Decimal(str(metadata.get("probability")).strip()) == 1
    except InvalidOperation:
        return False


def stage_lookup(table: Mapping[str, Mapping[str, bool]], pipeline: str, stage: str) -> bool | None:
    """Won or not for ``stage`` in ``pipeline`` (any pipeline when the deal names none); None if unknown."""
    if pipeline:
        return table.get(pipeline, {}).get(stage)
    return next((stages[stage] for stages in table.values() if stage in stages), None)


# -- recurring line items (issue 12 part 4) ---------------------------------------------------------------

#: HubSpot's ``recurringbillingfrequency`` options -> the canonical frequency (the line items guide's
#: "Billing frequency"; the options as the properties API lists them).
BILLING_FREQUENCIES: dict[str, str] = {
    "weekly": "weekly",
    "biweekly": "fortnightly",
    "monthly": "monthly",
    "quarterly": "quarterly",
    "per_six_months": "semi_annual",
    "annually": "annual",
    "per_two_years": "biennial",
    "per_three_years": "triennial",
    "per_four_years": "every_4_years",
    "per_five_years": "every_5_years",
}
#: The recurring line item properties read (the line items guide: "Term" is ISO-8601 ``PnYnMnD`` or ``PnW``).
RECURRING_PROPERTIES: tuple[str, ...] = (
    "recurringbillingfrequency",
    "hs_recurring_billing_period",
    "hs_recurring_billing_start_date",
    "hs_billing_start_delay_days",  # see GUESSES["billing_start_delay"]
    "hs_billing_start_delay_months",
)
_TERM = re.compile(r"^P(?:(?P<y>\d+)Y)?(?:(?P<m>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?$")


def recurring_terms(props: Mapping[str, Any], what: str, close: date | None = None) -> dict[str, Any]:
    """The LineItem recurring fields of a line item's properties: its frequency, start (the billing start
    date, else the deal's close date moved on by a billing start delay, else None: the sync decides) and
    term as a number of billing periods. {} for a one-off line. Raises ValidationFailed naming the line for
    a frequency, term or start date HubSpot's options and formats do not allow, or a term that is not a
    whole number of billing periods."""
    raw = clean(props.get("recurringbillingfrequency"))
    if not raw:
        return {}
    frequency = BILLING_FREQUENCIES.get(raw)
    if frequency is None:
        raise ValidationFailed(f"HubSpot {what} has an unknown billing frequency {raw[:40]!r}", vendor=CRM)
    terms: dict[str, Any] = {"recurring_frequency": frequency, "recurring_start": _start(props, what, close)}
    term = clean(props.get("hs_recurring_billing_period"))
    if term:
        terms["recurring_periods"] = term_periods(term, frequency, what)
    return terms


def term_periods(term: str, frequency: str, what: str) -> int:
    """How many billing periods an ISO-8601 term (``P12M``, ``P1Y``, ``P52W``) holds at ``frequency``."""
    match = _TERM.match(term.upper())
    if match is None or term.upper() == "P":
        raise ValidationFailed(f"HubSpot {what} term {term[:40]!r} is not an ISO-8601 period", vendor=CRM)
    years, months, weeks, days = (int(match[k] or 0) for k in ("y", "m", "w", "d"))
    unit, count = FREQUENCY_PERIODS[frequency]
    if unit == "month" and not (weeks or days):
        length = years * 12 + months
    elif unit == "week" and not (years or months) and days % 7 == 0:
        length = weeks + days // 7
    else:
        length = -1
    if length <= 0 or length % count:
        raise ValidationFailed(
            f"HubSpot {what} term {term!r} is not a whole number of {frequency} billing periods", vendor=CRM
        )
    return length // count


def _start(props: Mapping[str, Any], what: str, close: date | None) -> date | None:
    text = clean(props.get("hs_recurring_billing_start_date"))
    if text:
        try:
            return date.fromisoformat(text[:10])
        except ValueError as exc:
            raise ValidationFailed(
                f"HubSpot {what} billing start date {text[:40]!r} is not a date", vendor=CRM
            ) from exc
    delay_days = decimal(props.get("hs_billing_start_delay_days"), f"{what} billing start delay (days)")
    delay_months = decimal(props.get("hs_billing_start_delay_months"), f"{what} billing start delay (months)")
    if close is None or not (delay_days or delay_months):
        return None
    months = close.month - 1 + int(delay_months or 0)
    year, month = close.year + months // 12, months % 12 + 1
    moved = date(year, month, min(close.day, calendar.monthrange(year, month)[1]))
    return moved + timedelta(days=int(delay_days or 0))
