"""SugarCRM records <-> Closeloop's canonical models: pure conversions, no HTTP.

Sugar sends values as strings (money as "1200.000000", parsed to Decimal), date-times in ISO 8601 with an offset,
emails as a list with a primary flag, and street lines in one text field. Writes are gathered per record
(``RecordWrites``) remembering which canonical field each Sugar field carries, so that fields the saved record
lacks (Sugar ignores unknown fields) can be named.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.errors import ValidationFailed
from closeloop.models import FREQUENCY_PERIODS, Address, CrmRef, Customer, LineItem, Person, Product, SyncEvent

#: canonical object type -> Sugar module. Products are the Product Catalog's templates (``ProductTemplates``),
#: which revenue line items name by ``product_template_id``.
MODULES: Mapping[str, str] = {
    "company": "Accounts",
    "contact": "Contacts",
    "deal": "Opportunities",
    "product": "ProductTemplates",
    "quote": "Quotes",
}
#: Modules whose records are lines of another object: a change to one is a change to that object (module ->
#: (its object type, the line's field holding its id)). A quote line edit need not save its quote
#: (GUESSES["a line edit saves its quote"]), so quoted lines are watched themselves.
LINE_MODULES: Mapping[str, tuple[str, str]] = {
    "Products": ("quote", "quote_id"),
    # A revenue line item's service term or billing frequency changes without saving its opportunity (only
    # its amount rolls up), and a contract ending early is a change of its opportunity's recurring lines.
    "RevenueLineItems": ("deal", "opportunity_id"),
    "Contracts": ("deal", "opportunity_id"),  # see GUESSES["contract opportunity_id"]
}
#: The Studio field on ProductTemplates holding the supplier's name (``closeloop_supplier``; see
#: GUESSES["closeloop_supplier_c on ProductTemplates"]).
SUPPLIER_FIELD = "closeloop_supplier_c"
#: ``active_status`` values of a template still on sale (see GUESSES["product archived is active_status"]).
ACTIVE_STATUSES = frozenset({"", "active"})


def crm_ref(object_type: str, object_id: str) -> CrmRef:
    return CrmRef.model_validate({"crm": "sugarcrm", "object_type": object_type, "object_id": object_id})


def sync_event(
    object_type: str,
    record_id: str,
    modified: datetime,
    *,
    kind: str,
    source_type: str,
    change_source: str,
    actor: str,
    property_name: str | None = None,
    suffix: str = "",
) -> SyncEvent:
    # A creation has the same key whether a hook or the catch-up poll reports it. Sugar keeps date_modified
    # to the second, so a hook's update adds the fingerprint of its dataChanges (two saves within one second
    # are two changes); the poll, which has no dataChanges, keys the update without it, and the worker,
    # reading the record as it is, finds that one unchanged.
    key = f"{MODULES[object_type]}:{record_id}:{stamp(modified)}{suffix}"
    return SyncEvent.model_validate(
        {
            "ref": crm_ref(object_type, record_id),
            "event_id": key,
            "kind": kind,
            "occurred_at": modified,
            "source_type": source_type,
            "property_name": property_name,
            "change_source": change_source,
            "actor": f"userId:{actor}" if actor else None,
            "dedupe_key": key,
        }
    )


def company_customer(
    account: Mapping[str, Any], contacts: Sequence[Mapping[str, Any]], tax_number_field: str
) -> Customer:
    people = [person_of(c) for c in contacts]
    primary = people[0] if people else None
    return Customer(
        ref=crm_ref("company", str(account["id"])),
        name=clean(account.get("name")),
        email=primary.email if primary and primary.email else primary_email(account),
        phone=primary.phone if primary and primary.phone else clean(account.get("phone_office")),
        tax_number=clean(account.get(tax_number_field)) if tax_number_field else "",
        first_name=primary.first_name if primary else "",
        last_name=primary.last_name if primary else "",
        address=address_of(account, "billing_address"),
        people=tuple(people[1:]),
        updated_at=parse_time(account.get("date_modified")),
    )


def contact_customer(contact: Mapping[str, Any]) -> Customer:
    person = person_of(contact)
    return Customer(
        ref=crm_ref("contact", person.crm_id),
        name=" ".join(p for p in (person.first_name, person.last_name) if p),
        email=person.email,
        phone=person.phone,
        first_name=person.first_name,
        last_name=person.last_name,
        address=address_of(contact, "primary_address"),
        updated_at=parse_time(contact.get("date_modified")),
    )


def person_of(contact: Mapping[str, Any]) -> Person:
    return Person(
        crm_id=str(contact["id"]),
        first_name=clean(contact.get("first_name")),
        last_name=clean(contact.get("last_name")),
        email=primary_email(contact),
        phone=clean(contact.get("phone_work")) or clean(contact.get("phone_mobile")),
    )


def product_sku(template: Mapping[str, Any]) -> str:
    """A product template's SKU: its manufacturer part number (``mft_part_num``), for products and lines alike."""
    return clean(template.get("mft_part_num"))


def product_of(template: Mapping[str, Any], currency: str) -> Product:
    """A ``ProductTemplates`` record as a catalogue Product.

    ``discount_price`` is the unit price ("Unit Price" on a quote), ``cost_price`` the unit cost, both in the
    template's currency (``currency``: its ISO code). A template whose ``active_status`` is set to anything
    but Active (Inactive, Retired) is archived.
    """
    template_id = str(template["id"])
    what = f"product template {template_id}"
    return Product(
        ref=crm_ref("product", template_id),
        sku=product_sku(template),
        name=clean(template.get("name")),
        description=clean(template.get("description")),
        unit_price=sugar_number(template.get("discount_price"), f"{what} unit price"),
        unit_cost=sugar_number(template.get("cost_price"), f"{what} cost price"),
        currency=currency,
        supplier=clean(template.get(SUPPLIER_FIELD)),
        archived=clean(template.get("active_status")).lower() not in ACTIVE_STATUSES,
        updated_at=parse_time(template.get("date_modified")),
    )


def line_item(
    line: Mapping[str, Any],
    products: Mapping[str, Mapping[str, Any]],
    *,
    kind: str = "revenue line item",
    total_field: str = "likely_case",
) -> LineItem:
    """A revenue line item (a deal's line) or a quoted line item (``Products``, ``kind`` "quoted line item",
    its total in ``total_amount``) as a LineItem. The SKU is the line's own ``mft_part_num`` (quoted lines
    carry one), else its product template's; ``products`` holds the templates by id."""
    item_id = str(line["id"])
    what = f"{kind} {item_id}"
    template_id = clean(line.get("product_template_id"))
    product = products.get(template_id) or {}
    quantity = sugar_number(line.get("quantity"), f"{what} quantity")
    quantity = quantity if quantity is not None else Decimal(1)
    price = sugar_number(line.get("discount_price"), f"{what} unit price") or Decimal(0)
    discount = sugar_number(line.get("discount_amount"), f"{what} discount") or Decimal(0)
    percent: Decimal | None = None
    if discount and truthy(line.get("discount_select")):
        percent = discount
    elif discount:
        # A discount in money is for the whole line; LineItem has no such field, so it is folded into the
        # unit price when that is exact, and refused (never rounded into a wrong invoice) otherwise.
        per_unit = discount / quantity if quantity else None
        if per_unit is None or per_unit.quantize(Decimal("0.0001")) != per_unit:
            raise ValidationFailed(
                f"{what}: a discount of {discount} over a quantity of {quantity} is not an exact unit price",
                vendor="sugarcrm",
            )
        price -= per_unit
    return LineItem(
        **(service_terms(line, what) if kind == "revenue line item" else {}),
        crm_id=item_id,
        name=clean(line.get("name")) or clean(product.get("name")),
        sku=product_sku(line) or product_sku(product),
        product_id=template_id,
        quantity=quantity,
        unit_price=price,
        discount_percent=percent,
        amount=sugar_number(line.get(total_field), f"{what} {total_field.replace('_', ' ')}"),
    )


# -- recurring lines: service revenue line items billed on a schedule (issue 12 part 4) ------------------------

#: The Studio dropdown on RevenueLineItems saying how often a service line bills; its values are the canonical
#: frequencies (``closeloop.models.Frequency``). Sugar has no billing frequency of its own: see
#: GUESSES["closeloop_billing_frequency_c on RevenueLineItems"].
FREQUENCY_FIELD = "closeloop_billing_frequency_c"
#: The revenue line item fields a service's term is read from (Sugar 10.2+: ``service`` ticked, a start date,
#: and a duration as a value and a unit of ``service_duration_unit_dom``: year, month, day).
SERVICE_FIELDS: tuple[str, ...] = ("service", "service_start_date", "service_duration_value", "service_duration_unit")
#: service_duration_unit -> (months, days) per unit: a term in years or months counts months, in days days.
_DURATION_UNITS: Mapping[str, tuple[int, int]] = {"year": (12, 0), "month": (1, 0), "day": (0, 1)}


def service_terms(line: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The LineItem recurring fields of a revenue line item: {} without a billing frequency (a one-off line);
    else the frequency, the service's start and its term as a number of billing periods. A line with a
    frequency but no service term (``service`` not ticked, or no duration) gets no term, which the recurring
    flow refuses naming the line. Raises ValidationFailed naming the line for an unknown frequency, an
    unreadable start or duration, or a term that is not a whole number of billing periods."""
    raw = clean(line.get(FREQUENCY_FIELD))
    if not raw:
        return {}
    frequency = raw.lower()
    if frequency not in FREQUENCY_PERIODS:
        raise ValidationFailed(
            f"SugarCRM {what} has an unknown billing frequency {raw[:40]!r} ({FREQUENCY_FIELD}: one of "
            f"{', '.join(FREQUENCY_PERIODS)})",
            vendor="sugarcrm",
        )
    terms: dict[str, Any] = {"recurring_frequency": frequency}
    if not truthy(line.get("service")):
        return terms
    start = clean(line.get("service_start_date"))
    if start:
        try:
            terms["recurring_start"] = date.fromisoformat(start[:10])
        except ValueError as exc:
            raise ValidationFailed(
                f"SugarCRM {what} service_start_date is not a date: {start[:40]!r}", vendor="sugarcrm"
            ) from exc
    value, unit = line.get("service_duration_value"), clean(line.get("service_duration_unit")).lower()
    if value in (None, "") and not unit:
        return terms
    count = sugar_number(value, f"{what} service duration")
    per_unit = _DURATION_UNITS.get(unit.removesuffix("s"))
    if count is None or count < 1 or count != count.to_integral_value() or per_unit is None:
        raise ValidationFailed(
            f"SugarCRM {what} service duration {str(value)[:20]!r} {unit[:20]!r} is not a whole number of years, "
            "months or days",
            vendor="sugarcrm",
        )
    months, days = int(count) * per_unit[0], int(count) * per_unit[1]
    period_unit, period_count = FREQUENCY_PERIODS[frequency]
    length = months if period_unit == "month" else days
    step = period_count if period_unit == "month" else 7 * period_count
    if length == 0 or length % step:
        raise ValidationFailed(
            f"SugarCRM {what} service duration {int(count)} {unit} is not a whole number of {frequency} billing "
            "periods",
            vendor="sugarcrm",
        )
    terms["recurring_periods"] = length // step
    return terms


def period_start(start: date, frequency: str, periods: int) -> date:
    """``start`` moved on by ``periods`` billing periods (month ends clamp, as repeating invoices do)."""
    unit, count = FREQUENCY_PERIODS[frequency]
    if unit == "week":
        return start + timedelta(weeks=count * periods)
    months = start.month - 1 + count * periods
    year, month = start.year + months // 12, months % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def contract_end(contracts: Sequence[Mapping[str, Any]], deal_id: str) -> date | None:
    """The latest ``end_date`` of an opportunity's contracts (None when none has one): the date its service
    lines are billed until. Contract statuses (notstarted, inprogress, signed) are all live: Sugar's
    ``contract_status_dom`` has no cancelled state, so a contract ends early by its end date moving earlier."""
    ends = []
    for contract in contracts:
        text = clean(contract.get("end_date"))
        if not text:
            continue
        try:
            ends.append(date.fromisoformat(text[:10]))
        except ValueError as exc:
            raise ValidationFailed(
                f"SugarCRM contract {contract.get('id')} of opportunity {deal_id} end_date is not a date: "
                f"{text[:40]!r}",
                vendor="sugarcrm",
            ) from exc
    return max(ends, default=None)


def ended_by_contract(line: LineItem, ends: date, close: date | None) -> LineItem:
    """``line`` billed no later than its opportunity's contract runs: a recurring line whose term's last
    billing date is after the last period start on or before ``ends`` gets that date as its ``recurring_end``
    (before its start when the contract ends before the service starts, which the recurring flow refuses
    naming the line). Lines within the contract, one-off lines and lines without a term are returned as they
    are: a contract never lengthens a term (a renewal is a longer service duration)."""
    frequency, periods = line.recurring_frequency, line.recurring_periods
    start = line.recurring_start or close
    if frequency is None or periods is None or start is None:
        return line
    if ends < start:
        return line.model_copy(update={"recurring_end": ends})
    covered = 0
    while covered < periods and period_start(start, frequency, covered) <= ends:
        covered += 1
    if covered >= periods:
        return line
    return line.model_copy(update={"recurring_end": period_start(start, frequency, covered - 1)})


#: Canonical address field -> the suffix of the Sugar address field group (street lines handled apart).
ADDRESS_SUFFIXES: Mapping[str, str] = {
    "address.city": "city",
    "address.region": "state",
    "address.postal_code": "postalcode",
    "address.country": "country",
}


class RecordWrites:
    """The fields to ``PUT`` on one record, remembering which canonical field each one carries."""

    def __init__(
        self,
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
        module: str,
        record_id: str,
    ) -> None:
        self.body = writes.setdefault((module, record_id), {})
        self._origin = origin
        self._key = (module, record_id)

    def put(self, canonical: str, field: str, value: Any) -> None:
        self.body[field] = value
        self._origin.setdefault((*self._key, field), canonical)


def put_shared_detail(
    name: str,
    value: str,
    account: Mapping[str, Any],
    main: Mapping[str, Any] | None,
    company: RecordWrites,
    person: RecordWrites | None,
) -> None:
    """An account's email or phone: read from its main contact when that has one, else from the account.

    Written where it is read from; "" clears both, so that neither is read.
    """
    on_person = main is not None and person is not None and bool(getattr(person_of(main), name))
    if on_person and main is not None and person is not None:
        if name == "email":
            person.put(name, "email", email_list(main, value))
        else:
            put_phone(person, main, value)
    if not on_person or not value:
        if name == "email":
            company.put(name, "email", email_list(account, value))
        else:
            company.put(name, "phone_office", value)


def put_phone(target: RecordWrites, contact: Mapping[str, Any], value: str) -> None:
    """A contact's phone is ``phone_work``, else ``phone_mobile``: clearing it clears both."""
    target.put("phone", "phone_work", value)
    if not value and clean(contact.get("phone_mobile")):
        target.put("phone", "phone_mobile", "")


def email_list(record: Mapping[str, Any], value: str) -> list[dict[str, Any]]:
    """Sugar's ``email`` list with the address ``primary_email`` reads replaced by ``value``; "" empties it."""
    if not value:
        return []
    entries = [dict(e) for e in record.get("email") or [] if isinstance(e, dict) and clean(e.get("email_address"))]
    valid = [e for e in entries if not truthy(e.get("invalid_email"))]
    chosen = next((e for e in valid if truthy(e.get("primary_address"))), valid[0] if valid else None)
    if chosen is None:
        chosen = {"email_address": value}
        entries.insert(0, chosen)
    for entry in entries:
        entry["primary_address"] = entry is chosen
    chosen["email_address"] = value
    return entries


def put_address(target: RecordWrites, record: Mapping[str, Any], prefix: str, values: Mapping[str, str]) -> list[str]:
    """Put the address fields of ``values`` on ``target``; return those it cannot hold.

    Both street lines live in one field, one per row: a second line without a first cannot be held.
    """
    for name, suffix in ADDRESS_SUFFIXES.items():
        if name in values:
            target.put(name, f"{prefix}_{suffix}", values[name])
    streets = [n for n in ("address.line1", "address.line2") if n in values]
    if not streets:
        return []
    current = address_of(record, prefix)
    line1 = values.get("address.line1", current.line1).strip()
    line2 = values.get("address.line2", current.line2).strip()
    if line2 and not line1:
        return streets
    target.put(streets[0], f"{prefix}_street", "\n".join(p for p in (line1, line2) if p))
    return []


def custom_field(name: str) -> str:
    return name if name.endswith("_c") else f"{name}_c"


def clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def primary_email(record: Mapping[str, Any]) -> str:
    """The primary, valid address of Sugar's ``email`` list, else ``email1``; lower-cased."""
    addresses = [e for e in record.get("email") or [] if isinstance(e, dict) and not truthy(e.get("invalid_email"))]
    primary = [e for e in addresses if truthy(e.get("primary_address"))]
    for entry in (*primary, *addresses):
        if clean(entry.get("email_address")):
            return clean(entry.get("email_address")).lower()
    return clean(record.get("email1")).lower()


def address_of(record: Mapping[str, Any], prefix: str) -> Address:
    """Sugar keeps street lines in one text field, one line per row: the first is line1, the rest line2."""
    lines = [line.strip() for line in clean(record.get(f"{prefix}_street")).splitlines() if line.strip()]
    return Address(
        line1=lines[0] if lines else "",
        line2=", ".join(lines[1:]),
        city=clean(record.get(f"{prefix}_city")),
        region=clean(record.get(f"{prefix}_state")),
        postal_code=clean(record.get(f"{prefix}_postalcode")),
        country=clean(record.get(f"{prefix}_country")),
    )


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(value: Any) -> datetime | None:
    """Sugar's ISO 8601 date-times (``2024-05-01T10:23:28-04:00``) as aware UTC datetimes."""
    text = clean(value)
    if not text:
        return None
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def stamp(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def sugar_time(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def first_day_at_or_after(moment: datetime) -> date:
    moment = utc(moment)
    day = moment.date()
    return day if moment == datetime(day.year, day.month, day.day, tzinfo=UTC) else day + timedelta(days=1)


def close_date(value: Any, deal_id: str) -> date | None:
    text = clean(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValidationFailed(
            f"SugarCRM opportunity {deal_id} date_closed is not a date: {text[:40]!r}", vendor="sugarcrm"
        ) from exc


def sugar_number(value: Any, what: str) -> Decimal | None:
    """A Sugar number (sent as a string such as "1200.000000") as an exact Decimal; None when empty."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValidationFailed(f"SugarCRM {what} is not a number: {str(value)[:40]!r}", vendor="sugarcrm")
    return number
