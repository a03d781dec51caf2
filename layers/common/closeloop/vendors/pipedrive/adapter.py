"""Pipedrive's CrmPort, CatalogueCrm and QuoteCrm (``quotes``: the deal stands in): customers, deals (their
products' billing terms too), products, changes since, write-back and custom fields,
over its API v2 (v1 for ``/v1/recents`` and ``/v1/users/me``, where v2 has no endpoint). See
/work/shared/vendors/crm.md, section 2.

The port class is thin over its neighbours: ``client`` (HTTP, auth, rate limits, error bodies, paging),
``mapping`` (records <-> canonical models, field values, exact numbers) and ``webhooks`` (the delivery's
models, the sender check and the parse). What stays here is what needs the API: the custom-field
definitions, cached and re-read when a name or hash is unknown (field names are not unique in Pipedrive:
the first definition listed wins), and which record holds which canonical field.

httpx is imported lazily (by ``client``): the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from closeloop.dates import parse_timestamp
from closeloop.errors import FatalError, NotFound, ValidationFailed
from closeloop.models import (
    CUSTOMER_FIELDS,
    DEAL_SYNC_FIELDS,
    Address,
    CrmRef,
    Customer,
    Deal,
    LineItem,
    Product,
    SyncEvent,
)
from closeloop.ports import PropertyDefinition, WebhookRequest
from closeloop.vendors.pipedrive.client import PipedriveApi, Secret
from closeloop.vendors.pipedrive.mapping import (
    CustomField,
    FieldTable,
    address_body,
    as_utc,
    clean,
    entries_with_primary,
    field_text,
    field_value,
    read_address,
    read_field,
    read_line_item,
    read_number,
    read_person,
    read_product,
    rfc3339,
)
from closeloop.vendors.pipedrive.quotes import PipedriveQuotes, quoted
from closeloop.vendors.pipedrive.webhooks import check_sender, delivery_events

if TYPE_CHECKING:
    import httpx


class PipedriveCrm(PipedriveQuotes):
    """CrmPort, CatalogueCrm and QuoteCrm for Pipedrive (company API token; webhooks authenticated by Basic
    credentials + a path secret)."""

    name = "pipedrive"
    PAGE_SIZE: ClassVar[int] = 500
    #: v2 list endpoints take at most 100 ids per ``ids=`` filter.
    IDS_PER_CALL: ClassVar[int] = 100
    #: canonical object type -> API v2 collection.
    PATHS: ClassVar[dict[str, str]] = {"company": "organizations", "contact": "persons", "deal": "deals"}
    #: canonical object type -> custom-field definitions collection (v2).
    FIELD_PATHS: ClassVar[dict[str, str]] = {
        "company": "organizationFields",
        "contact": "personFields",
        "deal": "dealFields",
        "product": "productFields",
    }
    #: Object types whose v2 add-field request documents no ``description`` (AddProductFieldRequest).
    UNDESCRIBED_FIELDS: ClassVar[frozenset[str]] = frozenset({"product"})
    #: The product custom field holding the supplier's name (made by ``closeloop setup`` with the others).
    SUPPLIER_FIELD: ClassVar[str] = "closeloop_supplier"
    #: PropertyDefinition.type -> Pipedrive field_type (a datetime is kept as text: Pipedrive dates have no time).
    FIELD_TYPES: ClassVar[dict[str, str]] = {
        "string": "varchar",
        "number": "double",
        "date": "date",
        "datetime": "varchar",
        "enumeration": "enum",
    }
    #: ``/v1/recents`` item names -> canonical object type.
    RECENT_ITEMS: ClassVar[dict[str, str]] = {
        "organization": "company",
        "person": "contact",
        "deal": "deal",
        "product": "product",
    }
    #: Organization custom fields that hold a tax number, by name (case-insensitive), unless one is configured.
    TAX_NUMBER_FIELDS: ClassVar[tuple[str, ...]] = ("vat_number", "vat number", "vat", "tax number", "tax id")
    FIELD_CACHE_SECONDS: ClassVar[float] = 600.0
    DEAL_URL: ClassVar[str] = "https://{domain}.pipedrive.com/deal/{deal_id}"

    def __init__(
        self,
        *,
        api_token: Secret = "",
        webhook_user: Secret = "",
        webhook_password: Secret = "",
        webhook_path_secret: Secret = "",
        base_url: str = "https://api.pipedrive.com",
        company_domain: str | None = None,
        tax_number_field: str | None = None,
        quote_stages: Collection[str] = (),
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``company_domain`` (``acme`` of acme.pipedrive.com) builds deal links; None reads it once from the API.
        ``quote_stages``: the stage ids in which an open deal is quoted (see ``quotes``); none: no deal is."""
        self._api_token = api_token
        self._webhook_user = webhook_user
        self._webhook_password = webhook_password
        self._webhook_path_secret = webhook_path_secret
        self._base_url = base_url
        self._domain = company_domain or ""
        self._domain_known = company_domain is not None
        self._tax_number_field = tax_number_field
        self._quote_stages = frozenset(str(stage).strip() for stage in quote_stages if str(stage).strip())
        self._clock = clock
        self._transport = transport
        self._sleep = sleep
        self._api: PipedriveApi | None = None
        self._fields: dict[str, FieldTable] = {}
        self._me: dict[str, Any] | None = None

    # -- webhooks ----------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check the Basic credentials and the URL's last path segment (both compared in constant time).

        Raises WebhookRejected(401) when either is missing or wrong; nothing of the body is read.
        """
        check_sender(
            request,
            user=self._webhook_user,
            password=self._webhook_password,
            secret=self._webhook_path_secret,
        )

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        """One v2 webhook event (``meta``/``data``/``previous``) as SyncEvents; other entities give ``[]``. A deal
        open in a quote stage gives a ``quote`` event too (the deal stands in for its quote).

        Raises WebhookRejected(400) naming what is malformed.
        """
        return delivery_events(body, self._ref, self.name, self._quote_stages)

    # -- HTTP ----------------------------------------------------------------------------------------

    @property
    def api(self) -> PipedriveApi:
        """The API client, built on first use (with this adapter's ``PAGE_SIZE`` and ``IDS_PER_CALL``)."""
        if self._api is None:
            self._api = PipedriveApi(
                api_token=self._api_token,
                base_url=self._base_url,
                page_size=self.PAGE_SIZE,
                ids_per_call=self.IDS_PER_CALL,
                transport=self._transport,
                sleep=self._sleep,
            )
        return self._api

    # -- customers -----------------------------------------------------------------------------------

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        """The organization (with its persons) behind ``ref``; a person without one is its own customer.

        One GET per record (a single read costs fewer tokens than a list), then the organization's persons
        (paged). Returns None when the object does not exist or was deleted. Raises ValueError for a deal
        ref, IntegrationError subclasses on API failures.
        """
        if ref.object_type == "company":
            org = self.api.get_one("organizations", ref.object_id)
            return self._org_customer(org) if org is not None else None
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        person = self.api.get_one("persons", ref.object_id)
        if person is None:
            return None
        org = self.api.get_one("organizations", str(person["org_id"])) if person.get("org_id") else None
        # No organization (or a deleted one): the person is billed.
        return self._org_customer(org) if org is not None else self._person_customer(person)

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """``resolve_customer`` for many refs: persons and organizations read 100 ids per call.

        Each organization's persons still cost one paged call per organization (v2 filters persons by one
        ``org_id`` at a time).
        """
        for ref in refs:
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"no customer for a {ref.object_type}")
        persons = self.api.by_ids("persons", [r.object_id for r in refs if r.object_type == "contact"])
        org_ids = {r.object_id for r in refs if r.object_type == "company"}
        org_ids |= {str(p["org_id"]) for p in persons.values() if p.get("org_id")}
        orgs = self.api.by_ids("organizations", org_ids)
        customers: dict[str, Customer] = {}
        result: dict[CrmRef, Customer | None] = {}
        for ref in refs:
            if ref.object_type == "company":
                org_id = ref.object_id
            else:
                person = persons.get(ref.object_id)
                if person is None:
                    result[ref] = None
                    continue
                org_id = str(person.get("org_id") or "")
                if org_id not in orgs:  # no organization (or it was deleted): the person is billed
                    result[ref] = self._person_customer(person)
                    continue
            if org_id not in orgs:
                result[ref] = None
                continue
            if org_id not in customers:
                customers[org_id] = self._org_customer(orgs[org_id])
            result[ref] = customers[org_id]
        return result

    def _org_customer(self, org: Mapping[str, Any]) -> Customer:
        org_id = str(org["id"])
        members = sorted(
            (p for p in self.api.pages("/api/v2/persons", {"org_id": org_id}) if not p.get("is_deleted")),
            key=lambda p: int(p["id"]),
        )
        people = tuple(read_person(p) for p in members)
        primary = people[0] if people else None  # Pipedrive has no primary contact: the oldest person is
        return Customer(
            ref=self._ref("company", org_id),
            name=clean(org.get("name")),
            email=primary.email if primary else "",
            phone=primary.phone if primary else "",
            tax_number=self._tax_number(org),
            first_name=primary.first_name if primary else "",
            last_name=primary.last_name if primary else "",
            address=read_address(org.get("address")),
            people=people[1:],
            updated_at=parse_timestamp(org.get("update_time")),
        )

    def _person_customer(self, person: Mapping[str, Any]) -> Customer:
        me = read_person(person)
        name = " ".join(p for p in (me.first_name, me.last_name) if p) or clean(person.get("name"))
        return Customer(
            ref=self._ref("contact", me.crm_id),
            name=name,
            email=me.email,
            phone=me.phone,
            first_name=me.first_name,
            last_name=me.last_name,
            updated_at=parse_timestamp(person.get("update_time")),
        )

    def _tax_number(self, org: Mapping[str, Any]) -> str:
        custom = org.get("custom_fields") or {}
        if not custom:
            return ""
        wanted = (self._tax_number_field,) if self._tax_number_field else self.TAX_NUMBER_FIELDS
        wanted_lower = {w.lower() for w in wanted}
        table = self._field_table("company", unknown_keys=set(custom))
        for key, value in custom.items():
            definition = table.by_key.get(key)
            if definition is not None and definition.name.lower() in wanted_lower:
                return field_text(definition, value)
        return ""

    # -- deals ---------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The deal with its products as line items; won = Pipedrive status ``won``. None if gone.

        Reads the deal (v2), its deal products (paged) and the products' codes (the SKU, 100 ids per call).
        Raises IntegrationError subclasses, ValidationFailed when a number Pipedrive sent is not one.
        """
        deal = self.api.get_one("deals", deal_id)
        if deal is None:
            return None
        return self._deal(deal, line_items=self._line_items(str(deal["id"])))

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Won deals whose ``won_time`` is in [closed_from, closed_before), without line items (reconcile).

        v2 cannot filter by won time; a deal's update time is never before its won time, so the list is
        narrowed with ``updated_since=closed_from`` and the won time checked here. Naive datetimes are UTC.
        """
        start, end = as_utc(closed_from), as_utc(closed_before)
        params = {"status": "won", "updated_since": rfc3339(start), "sort_by": "id", "sort_direction": "asc"}
        for record in self.api.pages("/api/v2/deals", params):
            won = parse_timestamp(record.get("won_time"))
            if won is not None and start <= won < end and not record.get("is_deleted"):
                yield self._deal(record)

    def _deal(self, obj: Mapping[str, Any], *, line_items: tuple[LineItem, ...] = ()) -> Deal:
        deal_id = str(obj["id"])
        status = clean(obj.get("status"))
        won = parse_timestamp(obj.get("won_time"))
        org_id, person_id = obj.get("org_id"), obj.get("person_id")
        return Deal(
            ref=self._ref("deal", deal_id),
            name=clean(obj.get("title")),
            amount=read_number(obj.get("value"), f"deal {deal_id} value"),
            currency=clean(obj.get("currency")).upper(),
            stage=clean(obj.get("stage_id")),
            pipeline=clean(obj.get("pipeline_id")),
            is_won=status == "won",
            close_date=won.date() if won is not None and status == "won" else None,
            owner_id=clean(obj.get("owner_id")),
            company=self._ref("company", str(org_id)) if org_id else None,
            contact=self._ref("contact", str(person_id)) if person_id else None,
            line_items=line_items,
            url=self._deal_url(deal_id),
            updated_at=parse_timestamp(obj.get("update_time")),
            synced=self._synced(obj.get("custom_fields") or {}),
        )

    def _synced(self, custom: Mapping[str, Any], names: Collection[str] = DEAL_SYNC_FIELDS) -> dict[str, str]:
        """The values of Closeloop's deal fields among ``names`` in a deal's ``custom_fields``, by name."""
        if not custom:
            return {}
        table = self._field_table("deal", unknown_keys=set(custom))
        synced: dict[str, str] = {}
        for key, value in custom.items():
            definition = table.by_key.get(key)
            if definition is not None and definition.name in names and value is not None:
                synced[definition.name] = field_text(definition, value)
        return synced

    def _line_items(self, deal_id: str) -> tuple[LineItem, ...]:
        rows = sorted(self.api.pages(f"/api/v2/deals/{deal_id}/products", {}), key=lambda r: int(r["id"]))
        rows = [r for r in rows if r.get("is_enabled", True) is not False]
        products = self.api.by_ids("products", {str(r["product_id"]) for r in rows if r.get("product_id")})
        return tuple(read_line_item(r, products.get(str(r.get("product_id")))) for r in rows)

    def _deal_url(self, deal_id: str) -> str:
        if not self._domain_known:
            self._domain_known = True
            self._domain = clean(self._current_user().get("company_domain"))
        return self.DEAL_URL.format(domain=self._domain, deal_id=deal_id) if self._domain else ""

    def _current_user(self) -> Mapping[str, Any]:
        """The API token's user (``/v1/users/me``), read once: company domain, default currency."""
        if self._me is None:
            try:
                me = self.api.call("GET", "/v1/users/me").get("data") or {}
            except FatalError:  # not allowed or not served: what it would say stays unknown, and we stop asking
                me = {}
            self._me = me if isinstance(me, dict) else {}
        return self._me

    # -- product catalogue ---------------------------------------------------------------------------

    def get_product(self, product_id: str) -> Product | None:
        """The product (``GET /api/v2/products/{id}``); None when it does not exist or was deleted.

        Its ``code`` is the SKU; unit price and cost come from its price in one currency (see
        ``_price_currency``); the supplier from the ``closeloop_supplier`` custom field. Raises IntegrationError
        subclasses, ValidationFailed when a price Pipedrive sent is not a number.
        """
        record = self.api.get_one("products", product_id)
        return self._product(record) if record is not None else None

    def iter_products(self) -> Iterator[Product]:
        """Every product, oldest first, 500 a page (``GET /api/v2/products``, by cursor).

        Deleted products are Pipedrive's archive: the list leaves them out, and one it still carries reads as
        ``archived``.
        """
        for record in self.api.pages("/api/v2/products", {"sort_by": "id", "sort_direction": "asc"}):
            yield self._product(record)

    def _product(self, record: Mapping[str, Any]) -> Product:
        custom = record.get("custom_fields") or {}
        supplier = ""
        if isinstance(custom, dict) and custom:
            table = self._field_table("product", unknown_keys=set(custom))
            definition = table.by_name.get(self.SUPPLIER_FIELD)
            if definition is not None and custom.get(definition.key) is not None:
                supplier = field_text(definition, custom[definition.key])
        return read_product(
            record,
            ref=self._ref("product", str(record["id"])),
            supplier=supplier,
            currency=self._price_currency(record.get("prices")),
        )

    def _price_currency(self, prices: Any) -> str:
        """Which of a product's prices is its unit price: the only one needs no choice; among several, the one in
        the API user's default currency (GUESSES["product price currency"]); "" when that is unknown."""
        if not isinstance(prices, list) or len(prices) <= 1:
            return ""
        return clean(self._current_user().get("default_currency"))

    # -- changes since -------------------------------------------------------------------------------

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Organizations, persons, deals and products changed at or after ``since``, from ``/v1/recents`` (paged).

        One event per (object, update time): the dedupe key is stable for one modification. Deleted
        objects come as ``deleted`` events. A deal open in a quote stage gives a ``quote`` event too.
        """
        moment = as_utc(since)
        for entry in self.api.recents(moment.strftime("%Y-%m-%d %H:%M:%S"), ",".join(self.RECENT_ITEMS)):
            yield from self._recent_events(entry, moment)

    def _recent_events(self, entry: Mapping[str, Any], since: datetime) -> list[SyncEvent]:
        object_type = self.RECENT_ITEMS.get(str(entry.get("item")))
        data = entry.get("data")
        object_id = entry.get("id") or (data.get("id") if isinstance(data, dict) else None)
        if object_type is None or object_id is None:
            return []
        record = data if isinstance(data, dict) else {}
        changed = parse_timestamp(record.get("update_time")) or parse_timestamp(record.get("add_time")) or since
        gone = not record or record.get("deleted") is True or record.get("active_flag") is False
        stamp = changed.strftime("%Y-%m-%dT%H:%M:%SZ")
        types = [object_type]
        if object_type == "deal" and not gone and quoted(record, self._quote_stages):
            types.append("quote")
        return [
            SyncEvent(
                ref=self._ref(kind, str(object_id)),
                event_id=f"recents:{entry.get('item')}:{object_id}:{stamp}",
                kind="deleted" if gone else "changed",
                occurred_at=changed,
                source_type=f"{entry.get('item')}.recents",
                dedupe_key=f"{self.name}:recents:{entry.get('item')}:{object_id}:{stamp}"
                + ("" if kind == object_type else f":{kind}"),
            )
            for kind in types
        ]

    # -- writes --------------------------------------------------------------------------------------

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """Write custom fields on deals by canonical name: one ``PATCH /api/v2/deals/{id}`` per deal.

        v2 has no batch update. Every deal is written even when one fails; then the first failure is
        raised (NotFound for a deal that is gone, ValidationFailed for a rejected value). A name with no
        field (even after re-reading the definitions) raises ValidationFailed before anything is sent, so
        the caller can ``ensure_properties`` and write again. "" clears a field.
        """
        self._write("deal", {str(k): v for k, v in updates.items()})

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """Write custom fields on organizations (company) and persons (contact), one PATCH each.

        Raises ValueError for other object types, otherwise as ``update_deals``.
        """
        by_type: dict[str, dict[str, Mapping[str, str]]] = {}
        for ref, values in updates.items():
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"{ref} is not a customer (company or contact)")
            by_type.setdefault(ref.object_type, {})[ref.object_id] = values
        errors: list[FatalError] = []
        for object_type, chunk in by_type.items():
            try:
                self._write(object_type, chunk)
            except FatalError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _write(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> None:
        if not updates:
            return
        names = {name for values in updates.values() for name in values}
        table = self._field_table(object_type, unknown_names=names)
        missing = sorted(names - set(table.by_name))
        if missing:
            raise ValidationFailed(
                f"Pipedrive has no {object_type} field named {', '.join(missing)}", vendor=self.name, status=400
            )
        errors: list[FatalError] = []
        for object_id, values in updates.items():
            try:
                custom = {table.by_name[n].key: field_value(table.by_name[n], v) for n, v in values.items()}
                self.api.call("PATCH", f"/api/v2/{self.PATHS[object_type]}/{object_id}", body={"custom_fields": custom})
            except FatalError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    #: Canonical person fields: a company's primary person (the oldest one) holds them, or a person billed alone.
    PERSON_FIELDS: ClassVar[tuple[str, ...]] = ("first_name", "last_name", "email", "phone")

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer fields where ``resolve_customer`` reads them; return those it cannot hold.

        A person that belongs to an organization is written as that organization (the billable customer).
        On an organization: name and address (its structured v2 address) on it, the tax number in its tax
        custom field (by hash; returned when the company has none); email, phone, first and last name on its
        oldest person (returned when it has none). On a person billed alone: its own fields; it holds no
        address and no tax number. Pipedrive v2 writes a person's ``name`` and splits it at the first space,
        so first/last names that split differently (a first name with a space) are returned, not written.
        Emails and phones replace the primary entry of their array and keep the others; "" clears them all.
        "people" is always returned. One PATCH per record written (at most two). Raises NotFound when the
        record is gone, ValueError for an unknown field name or a deal ref, IntegrationError subclasses.
        """
        unknown = sorted(set(values) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(f"not customer fields: {', '.join(unknown)}")
        if ref.object_type not in ("company", "contact"):
            raise ValueError(f"no customer for a {ref.object_type}")
        collection = self.PATHS[ref.object_type]
        record = self.api.get_one(collection, ref.object_id)
        if record is None:
            raise NotFound(f"Pipedrive has no {ref.object_type} {ref.object_id}", vendor=self.name, status=404)
        org, person = (record, None) if ref.object_type == "company" else (None, record)
        if person is not None and person.get("org_id"):
            org = self.api.get_one("organizations", str(person["org_id"]))
        unwritable: list[str] = []
        person_values = {n: v for n, v in values.items() if n in self.PERSON_FIELDS}
        if org is not None:
            members = self.api.pages("/api/v2/persons", {"org_id": str(org["id"])})
            person = min((p for p in members if not p.get("is_deleted")), key=lambda p: int(p["id"]), default=None)
            org_body, unwritable = self._org_body(org, {n: v for n, v in values.items() if n not in person_values})
            if person is None:
                unwritable += list(person_values)
        else:
            unwritable = [n for n in values if n not in (*self.PERSON_FIELDS, "name")]
            org_body = {}
            if "name" in values:
                person_values["name"] = values["name"]
        person_body: dict[str, Any] = {}
        if person is not None and person_values:
            person_body, refused = self._person_body(person, person_values)
            unwritable += refused
        if org is not None and org_body:
            self.api.call("PATCH", f"/api/v2/organizations/{org['id']}", body=org_body)
        if person is not None and person_body:
            self.api.call("PATCH", f"/api/v2/persons/{person['id']}", body=person_body)
        return [n for n in values if n in unwritable]

    def _org_body(self, org: Mapping[str, Any], values: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        body: dict[str, Any] = {}
        unwritable: list[str] = []
        address = read_address(org.get("address")).model_dump()
        address_changed = False
        for name, value in values.items():
            if name == "name":
                body["name"] = value
            elif name.startswith("address."):
                address[name.removeprefix("address.")] = value
                address_changed = True
            elif name == "tax_number" and (tax_field := self._tax_field(org)) is not None:
                body["custom_fields"] = {tax_field.key: field_value(tax_field, value)}
            else:
                unwritable.append(name)
        if address_changed:
            body["address"] = address_body(Address(**address), org.get("address"))
        return body, unwritable

    def _tax_field(self, org: Mapping[str, Any]) -> CustomField | None:
        """The custom field ``_tax_number`` reads: the first tax-named one on the record, else by name."""
        wanted = (self._tax_number_field,) if self._tax_number_field else self.TAX_NUMBER_FIELDS
        wanted_lower = [w.lower() for w in wanted]
        custom = org.get("custom_fields") or {}
        table = self._field_table("company", unknown_keys=set(custom))
        for key in custom:
            definition = table.by_key.get(key)
            if definition is not None and definition.name.lower() in wanted_lower:
                return definition
        by_lower = {name.lower(): definition for name, definition in reversed(table.by_name.items())}
        return next((by_lower[w] for w in wanted_lower if w in by_lower), None)

    def _person_body(self, person: Mapping[str, Any], values: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """The PATCH body for a person's email, phone and name; and the names it cannot hold."""
        body: dict[str, Any] = {}
        for name, key in (("email", "emails"), ("phone", "phones")):
            if name in values:
                body[key] = entries_with_primary(person.get(key), values[name])
        named = [n for n in ("first_name", "last_name", "name") if n in values]
        if not named:
            return body, []
        current = read_person(person)
        if "first_name" in values or "last_name" in values:
            first = values.get("first_name", current.first_name).strip()
            last = values.get("last_name", current.last_name).strip()
            target = " ".join(p for p in (first, last) if p)
        else:
            target = values["name"]
        split_first, _, split_last = target.strip().partition(" ")
        split_first, split_last = split_first.strip(), split_last.strip()
        read_back = {
            "first_name": split_first,
            "last_name": split_last,
            "name": " ".join(p for p in (split_first, split_last) if p),
        }
        refused = [n for n in named if read_back[n] != values[n]]
        if not target.strip() or any(n in refused for n in ("first_name", "last_name")) or refused == named:
            return body, named  # Pipedrive requires a name, and splits it at the first space
        body["name"] = target
        return body, refused

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the custom fields of ``object_type`` (deal, company, contact, product) whose names do not exist yet.

        Reads the definitions afresh, then creates each missing one (``POST /api/v2/<type>Fields``) named
        with the canonical name; the hash Pipedrive gives it is cached. Returns the names created here.
        Raises ValueError for an unknown object or property type, ValidationFailed when Pipedrive refuses.
        """
        if object_type not in self.FIELD_PATHS:
            raise ValueError(f"no custom fields for a {object_type}")
        table = self._field_table(object_type, force=True)
        created: list[str] = []
        for definition in definitions:
            if definition.name in table.by_name:
                continue
            data = self.api.call(
                "POST", f"/api/v2/{self.FIELD_PATHS[object_type]}", body=self._field_body(object_type, definition)
            ).get("data")
            made = read_field(data) if isinstance(data, dict) else None
            if made is not None:
                table.by_name.setdefault(made.name, made)
                table.by_key[made.key] = made
            created.append(definition.name)
        return created

    def _field_body(self, object_type: str, definition: PropertyDefinition) -> dict[str, Any]:
        try:
            field_type = self.FIELD_TYPES[definition.type]
        except KeyError:
            raise ValueError(f"unsupported property type {definition.type!r}") from None
        body: dict[str, Any] = {"field_name": definition.name, "field_type": field_type}
        if definition.description and object_type not in self.UNDESCRIBED_FIELDS:
            body["description"] = definition.description
        if field_type == "enum":
            body["options"] = [{"label": option} for option in definition.options]
        return body

    def _field_table(
        self,
        object_type: str,
        *,
        force: bool = False,
        unknown_keys: Collection[str] = (),
        unknown_names: Collection[str] = (),
    ) -> FieldTable:
        """The cached field definitions; re-read when stale, forced, or asked about a key/name not in them."""
        table = self._fields.get(object_type)
        now = self._clock()
        stale = table is None or now - table.read_at >= self.FIELD_CACHE_SECONDS
        unknown = table is not None and (
            any(k not in table.by_key for k in unknown_keys) or any(n not in table.by_name for n in unknown_names)
        )
        if table is not None and not (force or stale or unknown):
            return table
        by_name: dict[str, CustomField] = {}
        by_key: dict[str, CustomField] = {}
        for record in self.api.pages(f"/api/v2/{self.FIELD_PATHS[object_type]}", {}):
            definition = read_field(record)
            if definition is not None:
                by_key[definition.key] = definition
                by_name.setdefault(definition.name, definition)  # names are not unique: the first one wins
        table = FieldTable(by_name, by_key, now)
        self._fields[object_type] = table
        return table

    def _ref(self, object_type: str, object_id: str) -> CrmRef:
        return CrmRef.model_validate({"crm": self.name, "object_type": object_type, "object_id": object_id})
