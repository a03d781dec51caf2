"""Pipedrive adapter: Basic-auth webhooks (v2 payloads), API v2 reads and writes, v1 recents and fields by hash.

Vendor facts this module encodes (see /work/shared/vendors/crm.md, section 2, and Pipedrive's API docs):
- Auth: the company API token in the ``x-api-token`` header. It does not expire or refresh: a 401 means the
  token was revoked or replaced, so it is a setup error (``AuthRevoked``), not a retry.
- API v2 for organizations, persons, deals, deal products, products and custom-field definitions (cursor
  pagination: ``cursor`` in, ``additional_data.next_cursor`` out, at most 500 per page); v1 where v2 has no
  endpoint: ``/v1/recents`` (start/limit pagination) and ``/v1/users/me`` (the company domain for links).
- Custom fields are keyed by a 40-character hash (``field_code``), not by name. Closeloop names its fields
  with the canonical names (``closeloop_invoice_number``) and maps names <-> hashes through the field
  definitions, cached and re-read when a name or hash is unknown. Field names are not unique in Pipedrive:
  the first definition listed wins. ``enum`` values travel as option ids, mapped to and from labels here.
- Rate limits: a daily token budget per company (each endpoint costs tokens) plus a rolling 2-second burst
  window per token. A 429 carries ``x-ratelimit-*`` headers and ``Retry-After``; an exhausted daily budget
  (``x-daily-ratelimit-token-remaining: 0``) is not worth waiting for.
- Webhooks v2: one event per POST, ``{"meta", "data", "previous"}``; ``previous`` holds only the changed
  fields. There is no signature: a webhook carries HTTP Basic credentials chosen when it was registered,
  and Closeloop's URLs end in a random path secret; both are checked in constant time before parsing.
- Money (deal value, prices, quantities, number fields) is read with ``parse_float=Decimal`` and written as
  exact JSON literals, never through float.

httpx is imported lazily: the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from closeloop.dates import parse_timestamp
from closeloop.errors import (
    AuthRevoked,
    FatalError,
    NotFound,
    ValidationFailed,
    WebhookRejected,
)
from closeloop.models import (
    CUSTOMER_FIELDS,
    DEAL_SYNC_FIELDS,
    Address,
    CrmRef,
    Customer,
    Deal,
    LineItem,
    Person,
    SyncEvent,
)
from closeloop.paging import Page, next_cursor, paginate
from closeloop.ports import PropertyDefinition, WebhookRequest
from closeloop.wire import dumps_exact, path_secret, read_decimal_object, webhook_json

if TYPE_CHECKING:
    import httpx

    from closeloop.http import Fault, RateLimitVerdict, VendorHttp

Secret = str | Callable[[], str]


def pipedrive_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Pipedrive's 429: wait out a burst window (Retry-After, else x-ratelimit-reset); a spent daily budget fails."""
    from closeloop.http import RateLimitVerdict, retry_after_header  # noqa: PLC0415

    # The daily budget is spent when it says so, or when the burst window still had room: either way only
    # tomorrow helps, and waiting inside a Lambda would not.
    burst_room = response.headers.get("x-ratelimit-remaining", "").strip()
    daily_left = response.headers.get("x-daily-ratelimit-token-remaining", "").strip()
    if daily_left == "0" or (burst_room.isdigit() and int(burst_room) > 0):
        return RateLimitVerdict(retry=False, retry_after=None, problem="daily")
    verdict = retry_after_header(response)
    seconds = verdict.retry_after
    if seconds is None:
        try:
            seconds = float(response.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            seconds = None
    return RateLimitVerdict(retry=True, retry_after=seconds, problem="burst")


def pipedrive_fault(response: httpx.Response) -> Fault | None:
    """Pipedrive's error body, ``{"success": false, "error": …, "errorCode": …}`` (GUESSES["error body"]).

    A 401 is a revoked or replaced API token (it never expires or refreshes): a setup error, not a retry.
    """
    from closeloop.http import Fault  # noqa: PLC0415

    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = _clean(body.get("error"))
    code = _clean(body.get("errorCode") if body.get("errorCode") is not None else body.get("code"))
    if response.status_code == 401:
        said = f"; Pipedrive says: {message[:80]}" if message else ""
        return Fault(
            f"Pipedrive refused the API token (revoked or replaced): set a valid PIPEDRIVE_API_TOKEN{said}",
            code,
            AuthRevoked,
        )
    return Fault(message, code) if message or code else None


@dataclass(frozen=True)
class _Field:
    """One custom-field definition: its hash key, name, type and (enum/set) option ids by label."""

    key: str
    name: str
    type: str
    options: dict[str, int] = field(default_factory=dict)

    def label(self, option_id: Any) -> str:
        return next((label for label, oid in self.options.items() if str(oid) == str(option_id)), str(option_id))


@dataclass
class _FieldTable:
    by_name: dict[str, _Field]
    by_key: dict[str, _Field]
    read_at: float


class PipedriveCrm:
    """CrmPort for Pipedrive (company API token; webhooks authenticated by Basic credentials + a path secret)."""

    name = "pipedrive"
    PAGE_SIZE: ClassVar[int] = 500
    #: v2 list endpoints take at most 100 ids per ``ids=`` filter.
    IDS_PER_CALL: ClassVar[int] = 100
    #: Pipedrive webhook entity -> canonical object type (other entities are not Closeloop's business).
    OBJECTS: ClassVar[dict[str, str]] = {"organization": "company", "person": "contact", "deal": "deal"}
    #: Webhook actions, v2 names first (v1's added/updated/deleted/merged still accepted).
    KINDS: ClassVar[dict[str, str]] = {
        "create": "created",
        "change": "changed",
        "delete": "deleted",
        "added": "created",
        "updated": "changed",
        "deleted": "deleted",
        "merged": "merged",
    }
    #: canonical object type -> API v2 collection.
    PATHS: ClassVar[dict[str, str]] = {"company": "organizations", "contact": "persons", "deal": "deals"}
    #: canonical object type -> custom-field definitions collection (v2).
    FIELD_PATHS: ClassVar[dict[str, str]] = {
        "company": "organizationFields",
        "contact": "personFields",
        "deal": "dealFields",
    }
    #: PropertyDefinition.type -> Pipedrive field_type (a datetime is kept as text: Pipedrive dates have no time).
    FIELD_TYPES: ClassVar[dict[str, str]] = {
        "string": "varchar",
        "number": "double",
        "date": "date",
        "datetime": "varchar",
        "enumeration": "enum",
    }
    #: ``/v1/recents`` item names -> canonical object type.
    RECENT_ITEMS: ClassVar[dict[str, str]] = {"organization": "company", "person": "contact", "deal": "deal"}
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
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``company_domain`` (``acme`` of acme.pipedrive.com) builds deal links; None reads it once from the API."""
        self._api_token = api_token
        self._webhook_user = webhook_user
        self._webhook_password = webhook_password
        self._webhook_path_secret = webhook_path_secret
        self._base_url = base_url
        self._domain = company_domain or ""
        self._domain_known = company_domain is not None
        self._tax_number_field = tax_number_field
        self._clock = clock
        self._transport = transport
        self._sleep = sleep
        self._http: VendorHttp | None = None
        self._fields: dict[str, _FieldTable] = {}

    # -- webhooks ----------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check the Basic credentials and the URL's last path segment (both compared in constant time).

        Raises WebhookRejected(401) when either is missing or wrong; nothing of the body is read.
        """
        headers = {k.lower(): v for k, v in request.headers.items()}
        scheme, _, encoded = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise WebhookRejected(401, "missing HTTP Basic credentials on the Pipedrive webhook")
        try:
            user, colon, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookRejected(401, "malformed HTTP Basic credentials on the Pipedrive webhook") from None
        expected = path_secret("PIPEDRIVE_WEBHOOK_PATH_SECRET", _value(self._webhook_path_secret))
        segment = urlsplit(request.uri).path.rstrip("/").rpartition("/")[2]
        # Every comparison runs whatever the others found: the answer's timing says nothing about which failed.
        checks = (
            hmac.compare_digest(segment.encode(), expected.encode()),
            hmac.compare_digest(user.encode(), _value(self._webhook_user).encode()),
            hmac.compare_digest(password.encode(), _value(self._webhook_password).encode()),
        )
        if not (colon and all(checks)):
            raise WebhookRejected(401, "invalid Pipedrive webhook credentials or URL secret")

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        """One v2 webhook event (``meta``/``data``/``previous``) as SyncEvents; other entities give ``[]``.

        Raises WebhookRejected(400) naming what is malformed.
        """
        payload = webhook_json(body, parse_float=Decimal)
        if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
            raise WebhookRejected(400, "expected a Pipedrive v2 webhook object with a 'meta' object")
        meta: dict[str, Any] = payload["meta"]
        for key in ("id", "action", "entity", "entity_id", "timestamp"):
            if meta.get(key) in (None, ""):
                raise WebhookRejected(400, f"meta.{key}: Field required")
        data = payload.get("data")
        previous = payload.get("previous")
        if data is not None and not isinstance(data, dict):
            raise WebhookRejected(400, "data: expected an object or null")
        if previous is not None and not isinstance(previous, dict):
            raise WebhookRejected(400, "previous: expected an object or null")
        object_type = self.OBJECTS.get(str(meta["entity"]))
        if object_type is None:
            return []  # activities, notes, products, …: not ours
        occurred_at = parse_timestamp(meta["timestamp"])
        if occurred_at is None:
            raise WebhookRejected(400, f"meta.timestamp: not a timestamp: {str(meta['timestamp'])[:40]!r}")
        action = str(meta["action"])
        # A status transition (won, lost, reopened) is the deal change invoicing cares about: name it.
        transition = isinstance(previous, dict) and "status" in previous
        user = meta.get("user_id")
        return [
            SyncEvent(
                ref=self._ref(object_type, str(meta["entity_id"])),
                event_id=str(meta["id"]),
                kind=self.KINDS.get(action, "other"),
                occurred_at=occurred_at,
                source_type=f"{meta['entity']}.{action}",
                property_name="status" if transition else None,
                change_source=_clean(meta.get("change_source")) or None,
                actor=f"userId:{user}" if user not in (None, "") else None,
                # meta.id is the event's uuid: the same on every redelivery (meta.attempt counts them).
                dedupe_key=f"{self.name}:{meta['id']}",
            )
        ]

    # -- HTTP ----------------------------------------------------------------------------------------

    @property
    def http(self) -> VendorHttp:
        if self._http is None:
            from closeloop.http import VendorHttp  # noqa: PLC0415 - keep httpx off the webhook path

            kwargs: dict[str, Any] = {"transport": self._transport}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            self._http = VendorHttp(
                self.name,
                self._base_url,
                headers={"x-api-token": _value(self._api_token)},
                rate_limit=pipedrive_rate_limit,
                read_fault=pipedrive_fault,
                request_id_header="x-correlation-id",
                **kwargs,
            )
        return self._http

    def _call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        """One API call; the JSON answer with exact Decimals. A refused token is a setup error (``pipedrive_fault``)."""
        content = dumps_exact(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        response = self.http.request(method, path, params=params, content=content, headers=headers)
        return read_decimal_object(response.text or "{}", who=f"{method} {path}: Pipedrive", vendor=self.name)

    def _get_one(self, collection: str, object_id: str) -> dict[str, Any] | None:
        """A v2 record, or None when it does not exist or was deleted."""
        if not object_id.isdigit():
            return None  # Pipedrive ids are integers: anything else cannot exist
        try:
            data = self._call("GET", f"/api/v2/{collection}/{object_id}").get("data")
        except NotFound:
            return None
        if not isinstance(data, dict) or data.get("is_deleted"):
            return None
        return data

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every record of a v2 list, following ``additional_data.next_cursor`` (a repeated cursor: PagingLoop)."""
        query: dict[str, Any] = {**params, "limit": self.PAGE_SIZE}

        def fetch(cursor: str) -> Page[Any, str]:
            page = self._call("GET", path, params={**query, "cursor": cursor} if cursor else query)
            following = (page.get("additional_data") or {}).get("next_cursor")
            return Page(page.get("data") or [], next_cursor(following or None))

        for record in paginate(fetch, "", vendor=self.name, what=f"GET {path}"):
            if isinstance(record, dict):
                yield record

    def _by_ids(self, collection: str, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Live records of ``collection`` by id, ``IDS_PER_CALL`` ids per list call (missing ids are absent)."""
        wanted = sorted({i for i in ids if i.isdigit()}, key=int)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), self.IDS_PER_CALL):
            chunk = ",".join(wanted[start : start + self.IDS_PER_CALL])
            for record in self._pages(f"/api/v2/{collection}", {"ids": chunk}):
                if not record.get("is_deleted"):
                    found[str(record["id"])] = record
        return found

    # -- customers -----------------------------------------------------------------------------------

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        """The organization (with its persons) behind ``ref``; a person without one is its own customer.

        One GET per record (a single read costs fewer tokens than a list), then the organization's persons
        (paged). Returns None when the object does not exist or was deleted. Raises ValueError for a deal
        ref, IntegrationError subclasses on API failures.
        """
        if ref.object_type == "company":
            org = self._get_one("organizations", ref.object_id)
            return self._org_customer(org) if org is not None else None
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        person = self._get_one("persons", ref.object_id)
        if person is None:
            return None
        org = self._get_one("organizations", str(person["org_id"])) if person.get("org_id") else None
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
        persons = self._by_ids("persons", [r.object_id for r in refs if r.object_type == "contact"])
        org_ids = {r.object_id for r in refs if r.object_type == "company"}
        org_ids |= {str(p["org_id"]) for p in persons.values() if p.get("org_id")}
        orgs = self._by_ids("organizations", org_ids)
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
            (p for p in self._pages("/api/v2/persons", {"org_id": org_id}) if not p.get("is_deleted")),
            key=lambda p: int(p["id"]),
        )
        people = tuple(self._person(p) for p in members)
        primary = people[0] if people else None  # Pipedrive has no primary contact: the oldest person is
        return Customer(
            ref=self._ref("company", org_id),
            name=_clean(org.get("name")),
            email=primary.email if primary else "",
            phone=primary.phone if primary else "",
            tax_number=self._tax_number(org),
            first_name=primary.first_name if primary else "",
            last_name=primary.last_name if primary else "",
            address=_address(org.get("address")),
            people=people[1:],
            updated_at=parse_timestamp(org.get("update_time")),
        )

    def _person_customer(self, person: Mapping[str, Any]) -> Customer:
        me = self._person(person)
        name = " ".join(p for p in (me.first_name, me.last_name) if p) or _clean(person.get("name"))
        return Customer(
            ref=self._ref("contact", me.crm_id),
            name=name,
            email=me.email,
            phone=me.phone,
            first_name=me.first_name,
            last_name=me.last_name,
            updated_at=parse_timestamp(person.get("update_time")),
        )

    @staticmethod
    def _person(obj: Mapping[str, Any]) -> Person:
        first, last = _clean(obj.get("first_name")), _clean(obj.get("last_name"))
        if not (first or last):
            first = _clean(obj.get("name"))
        return Person(
            crm_id=str(obj["id"]),
            first_name=first,
            last_name=last,
            email=_primary(obj.get("emails")).lower(),
            phone=_primary(obj.get("phones")),
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
                return _field_text(definition, value)
        return ""

    # -- deals ---------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The deal with its products as line items; won = Pipedrive status ``won``. None if gone.

        Reads the deal (v2), its deal products (paged) and the products' codes (the SKU, 100 ids per call).
        Raises IntegrationError subclasses, ValidationFailed when a number Pipedrive sent is not one.
        """
        deal = self._get_one("deals", deal_id)
        if deal is None:
            return None
        return self._deal(deal, line_items=self._line_items(str(deal["id"])))

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Won deals whose ``won_time`` is in [closed_from, closed_before), without line items (reconcile).

        v2 cannot filter by won time; a deal's update time is never before its won time, so the list is
        narrowed with ``updated_since=closed_from`` and the won time checked here. Naive datetimes are UTC.
        """
        start, end = _utc(closed_from), _utc(closed_before)
        params = {"status": "won", "updated_since": _rfc3339(start), "sort_by": "id", "sort_direction": "asc"}
        for record in self._pages("/api/v2/deals", params):
            won = parse_timestamp(record.get("won_time"))
            if won is not None and start <= won < end and not record.get("is_deleted"):
                yield self._deal(record)

    def _deal(self, obj: Mapping[str, Any], *, line_items: tuple[LineItem, ...] = ()) -> Deal:
        deal_id = str(obj["id"])
        status = _clean(obj.get("status"))
        won = parse_timestamp(obj.get("won_time"))
        org_id, person_id = obj.get("org_id"), obj.get("person_id")
        return Deal(
            ref=self._ref("deal", deal_id),
            name=_clean(obj.get("title")),
            amount=_decimal(obj.get("value"), f"deal {deal_id} value"),
            currency=_clean(obj.get("currency")).upper(),
            stage=_clean(obj.get("stage_id")),
            pipeline=_clean(obj.get("pipeline_id")),
            is_won=status == "won",
            close_date=won.date() if won is not None and status == "won" else None,
            owner_id=_clean(obj.get("owner_id")),
            company=self._ref("company", str(org_id)) if org_id else None,
            contact=self._ref("contact", str(person_id)) if person_id else None,
            line_items=line_items,
            url=self._deal_url(deal_id),
            updated_at=parse_timestamp(obj.get("update_time")),
            synced=self._synced(obj.get("custom_fields") or {}),
        )

    def _synced(self, custom: Mapping[str, Any]) -> dict[str, str]:
        if not custom:
            return {}
        table = self._field_table("deal", unknown_keys=set(custom))
        synced: dict[str, str] = {}
        for key, value in custom.items():
            definition = table.by_key.get(key)
            if definition is not None and definition.name in DEAL_SYNC_FIELDS and value is not None:
                synced[definition.name] = _field_text(definition, value)
        return synced

    def _line_items(self, deal_id: str) -> tuple[LineItem, ...]:
        rows = sorted(self._pages(f"/api/v2/deals/{deal_id}/products", {}), key=lambda r: int(r["id"]))
        rows = [r for r in rows if r.get("is_enabled", True) is not False]
        products = self._by_ids("products", {str(r["product_id"]) for r in rows if r.get("product_id")})
        return tuple(self._line_item(r, products.get(str(r.get("product_id")))) for r in rows)

    @staticmethod
    def _line_item(row: Mapping[str, Any], product: Mapping[str, Any] | None) -> LineItem:
        item_id = str(row["id"])
        what = f"deal product {item_id}"
        quantity = _decimal(row.get("quantity"), f"{what} quantity")
        quantity = quantity if quantity is not None else Decimal(1)
        price = _decimal(row.get("item_price"), f"{what} item_price") or Decimal(0)
        discount = _decimal(row.get("discount"), f"{what} discount") or Decimal(0)
        percent: Decimal | None = None
        if discount and _clean(row.get("discount_type")) == "amount":
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
            name=_clean(row.get("name")) or _clean((product or {}).get("name")),
            sku=_clean((product or {}).get("code")),
            quantity=quantity,
            unit_price=price,
            discount_percent=percent,
            amount=net,
        )

    def _deal_url(self, deal_id: str) -> str:
        if not self._domain_known:
            self._domain_known = True
            try:
                me = self._call("GET", "/v1/users/me").get("data") or {}
            except FatalError:  # not allowed or not served: links stay empty, and we stop asking
                me = {}
            self._domain = _clean(me.get("company_domain")) if isinstance(me, dict) else ""
        return self.DEAL_URL.format(domain=self._domain, deal_id=deal_id) if self._domain else ""

    # -- changes since -------------------------------------------------------------------------------

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Organizations, persons and deals changed at or after ``since``, from ``/v1/recents`` (paged).

        One event per (object, update time): the dedupe key is stable for one modification. Deleted
        objects come as ``deleted`` events.
        """
        moment = _utc(since)
        since_timestamp, items = moment.strftime("%Y-%m-%d %H:%M:%S"), ",".join(self.RECENT_ITEMS)

        def fetch(start: int) -> Page[Any, int]:
            params = {"since_timestamp": since_timestamp, "items": items, "start": start, "limit": self.PAGE_SIZE}
            page = self._call("GET", "/v1/recents", params=params)
            pagination = (page.get("additional_data") or {}).get("pagination") or {}
            more, next_start = pagination.get("more_items_in_collection"), pagination.get("next_start")
            following = int(next_start) if more and next_start is not None else None
            # A next_start that does not advance would re-read pages: it is this page again, which paginate
            # refuses (GUESSES["recents paging"]).
            return Page(page.get("data") or [], start if following is not None and following <= start else following)

        for entry in paginate(fetch, 0, vendor=self.name, what="GET /v1/recents"):
            event = self._recent_event(entry, moment) if isinstance(entry, dict) else None
            if event is not None:
                yield event

    def _recent_event(self, entry: Mapping[str, Any], since: datetime) -> SyncEvent | None:
        object_type = self.RECENT_ITEMS.get(str(entry.get("item")))
        data = entry.get("data")
        object_id = entry.get("id") or (data.get("id") if isinstance(data, dict) else None)
        if object_type is None or object_id is None:
            return None
        record = data if isinstance(data, dict) else {}
        changed = parse_timestamp(record.get("update_time")) or parse_timestamp(record.get("add_time")) or since
        gone = not record or record.get("deleted") is True or record.get("active_flag") is False
        stamp = changed.strftime("%Y-%m-%dT%H:%M:%SZ")
        return SyncEvent(
            ref=self._ref(object_type, str(object_id)),
            event_id=f"recents:{entry.get('item')}:{object_id}:{stamp}",
            kind="deleted" if gone else "changed",
            occurred_at=changed,
            source_type=f"{entry.get('item')}.recents",
            dedupe_key=f"{self.name}:recents:{entry.get('item')}:{object_id}:{stamp}",
        )

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
                custom = {table.by_name[n].key: _field_value(table.by_name[n], v) for n, v in values.items()}
                self._call("PATCH", f"/api/v2/{self.PATHS[object_type]}/{object_id}", body={"custom_fields": custom})
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
        record = self._get_one(collection, ref.object_id)
        if record is None:
            raise NotFound(f"Pipedrive has no {ref.object_type} {ref.object_id}", vendor=self.name, status=404)
        org, person = (record, None) if ref.object_type == "company" else (None, record)
        if person is not None and person.get("org_id"):
            org = self._get_one("organizations", str(person["org_id"]))
        unwritable: list[str] = []
        person_values = {n: v for n, v in values.items() if n in self.PERSON_FIELDS}
        if org is not None:
            members = self._pages("/api/v2/persons", {"org_id": str(org["id"])})
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
            self._call("PATCH", f"/api/v2/organizations/{org['id']}", body=org_body)
        if person is not None and person_body:
            self._call("PATCH", f"/api/v2/persons/{person['id']}", body=person_body)
        return [n for n in values if n in unwritable]

    def _org_body(self, org: Mapping[str, Any], values: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        body: dict[str, Any] = {}
        unwritable: list[str] = []
        address = _address(org.get("address")).model_dump()
        address_changed = False
        for name, value in values.items():
            if name == "name":
                body["name"] = value
            elif name.startswith("address."):
                address[name.removeprefix("address.")] = value
                address_changed = True
            elif name == "tax_number" and (tax_field := self._tax_field(org)) is not None:
                body["custom_fields"] = {tax_field.key: _field_value(tax_field, value)}
            else:
                unwritable.append(name)
        if address_changed:
            body["address"] = _address_body(Address(**address), org.get("address"))
        return body, unwritable

    def _tax_field(self, org: Mapping[str, Any]) -> _Field | None:
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
                body[key] = _entries_with_primary(person.get(key), values[name])
        named = [n for n in ("first_name", "last_name", "name") if n in values]
        if not named:
            return body, []
        current = self._person(person)
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
        """Create the custom fields of ``object_type`` (deal, company, contact) whose names do not exist yet.

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
            data = self._call(
                "POST", f"/api/v2/{self.FIELD_PATHS[object_type]}", body=self._field_body(definition)
            ).get("data")
            made = _field(data) if isinstance(data, dict) else None
            if made is not None:
                table.by_name.setdefault(made.name, made)
                table.by_key[made.key] = made
            created.append(definition.name)
        return created

    def _field_body(self, definition: PropertyDefinition) -> dict[str, Any]:
        try:
            field_type = self.FIELD_TYPES[definition.type]
        except KeyError:
            raise ValueError(f"unsupported property type {definition.type!r}") from None
        body: dict[str, Any] = {"field_name": definition.name, "field_type": field_type}
        if definition.description:
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
    ) -> _FieldTable:
        """The cached field definitions; re-read when stale, forced, or asked about a key/name not in them."""
        table = self._fields.get(object_type)
        now = self._clock()
        stale = table is None or now - table.read_at >= self.FIELD_CACHE_SECONDS
        unknown = table is not None and (
            any(k not in table.by_key for k in unknown_keys) or any(n not in table.by_name for n in unknown_names)
        )
        if table is not None and not (force or stale or unknown):
            return table
        by_name: dict[str, _Field] = {}
        by_key: dict[str, _Field] = {}
        for record in self._pages(f"/api/v2/{self.FIELD_PATHS[object_type]}", {}):
            definition = _field(record)
            if definition is not None:
                by_key[definition.key] = definition
                by_name.setdefault(definition.name, definition)  # names are not unique: the first one wins
        table = _FieldTable(by_name, by_key, now)
        self._fields[object_type] = table
        return table

    def _ref(self, object_type: str, object_id: str) -> CrmRef:
        return CrmRef.model_validate({"crm": self.name, "object_type": object_type, "object_id": object_id})


# -- helpers -------------------------------------------------------------------------------------------


def _value(secret: Secret) -> str:
    return secret() if callable(secret) else secret


def _clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _primary(entries: Any) -> str:
    """The primary value of a v2 ``emails``/``phones`` array (else the first one)."""
    if not isinstance(entries, list):
        return _clean(entries) if isinstance(entries, str) else ""
    values = [e for e in entries if isinstance(e, dict) and _clean(e.get("value"))]
    chosen = next((e for e in values if e.get("primary") is True), values[0] if values else None)
    return _clean(chosen.get("value")) if chosen else ""


def _address(value: Any) -> Address:
    """A v2 address object (Google-style components) as our Address; a bare string becomes line 1."""
    if isinstance(value, str):
        return Address(line1=value.strip())
    if not isinstance(value, dict):
        return Address()
    street = " ".join(p for p in (_clean(value.get("street_number")), _clean(value.get("route"))) if p)
    return Address(
        line1=street or (_clean(value.get("value")) if not _clean(value.get("locality")) else ""),
        line2=_clean(value.get("subpremise")),
        city=_clean(value.get("locality")) or _clean(value.get("sublocality")),
        region=_clean(value.get("admin_area_level_1")),
        postal_code=_clean(value.get("postal_code")),
        country=_clean(value.get("country")),
    )


def _entries_with_primary(entries: Any, value: str) -> list[dict[str, Any]]:
    """A v2 ``emails``/``phones`` array whose primary value (as ``_primary`` reads it) is ``value``; "" empties it."""
    if not value:
        return []
    kept = [
        {"value": _clean(e.get("value")), "primary": e.get("primary") is True, "label": e.get("label") or "work"}
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and _clean(e.get("value"))
    ]
    chosen = next((e for e in kept if e["primary"]), kept[0] if kept else None)
    if chosen is None:
        return [{"value": value, "primary": True, "label": "work"}]
    chosen["value"] = value
    chosen["primary"] = True
    return kept


def _address_body(address: Address, current: Any) -> dict[str, Any] | None:
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
        "sublocality": _clean(kept.get("sublocality")) if address.city else "",
        "locality": address.city,
        "admin_area_level_1": address.region,
        "admin_area_level_2": _clean(kept.get("admin_area_level_2")),
        "postal_code": address.postal_code,
        "country": address.country,
    }
    return {key: part for key, part in body.items() if part}


def _field(record: Mapping[str, Any]) -> _Field | None:
    key, name = _clean(record.get("field_code")), _clean(record.get("field_name"))
    if not key or not name:
        return None
    options = {
        _clean(o.get("label")): int(o["id"])
        for o in record.get("options") or []
        if isinstance(o, dict) and o.get("id") is not None
    }
    return _Field(key, name, _clean(record.get("field_type")), options)


def _field_text(definition: _Field, value: Any) -> str:
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
        return _number_text(Decimal(value))
    return str(value)


def _field_value(definition: _Field, text: str) -> Any:
    """A string value as Pipedrive wants it for the field's type; "" clears (null)."""
    if text == "":
        return None
    if definition.type in ("double", "monetary"):
        number = _decimal(text, f"value for {definition.name}")
        return {"value": number} if definition.type == "monetary" else number
    if definition.type == "enum":
        if text not in definition.options:
            allowed = ", ".join(definition.options)
            raise ValidationFailed(f"{text!r} is not an option of {definition.name} ({allowed})", vendor="pipedrive")
        return definition.options[text]
    return text


def _number_text(number: Decimal) -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _decimal(value: Any, what: str) -> Decimal | None:
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


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
