"""QuickBooks Online adapter: Intuit OAuth2, the Accounting API v3 (query language, batch, CDC), QBO's limits.

Vendor facts encoded here (developer.intuit.com Accounting API reference, Intuit's blog posts on voiding
invoices and on ``requestid``; see /work/shared/vendors/accounting.md):
- every path is ``/v3/company/{realmId}/…`` with ``minorversion`` (versions 1–74 are retired);
  ``Authorization: Bearer`` with a 1-hour access token; the token endpoint takes Basic client auth and its
  refresh token changes about once a day (the old value is still honoured for a while, so a lost answer is
  survivable); ``invalid_grant`` means a person must reconnect (100 days unused, 5-year hard limit, revoked);
- reads of many records go through the SQL-like query language (``GET /query?query=select …``): only
  ``AND`` (no ``OR``), ``=``/``<``/``>``/``IN``/``LIKE``, string literals in single quotes with ``\\'``,
  ``STARTPOSITION``/``MAXRESULTS`` (≤1000), and name-list entities answer only active records unless
  ``Active`` is in the filter; only documented "filterable" fields may be filtered on;
- writes are ``POST /{entity}``; an update is ``"sparse": true`` with the current ``SyncToken`` (a stale one is
  error 5010); ``?requestid=`` (≤50 chars, ≤36 on /batch) makes a write idempotent: a repeat answers the
  original response, so it carries a digest of our idempotency key;
- ``POST /batch`` runs up to 30 operations or queries (40 batch calls a minute per realm);
- faults are ``{"Fault":{"Error":[{"Message","Detail","code"}],"type"}}`` (the 401 gateway answers in
  lower case: ``{"fault":{"error":[…]}}``); 6240 = a DisplayName already used by a Customer, Vendor or
  Employee, 6140 = a duplicate DocNumber, 5010 = stale SyncToken, 610 = object not found;
- 429 ``ThrottleExceeded`` (500 requests/min per realm, 10 concurrent) sends no Retry-After: Intuit says to
  wait 60 s, which is longer than a worker should sleep, so the queue retries;
- invoices have no draft state (posted when created); a voided invoice keeps its record with every amount
  zeroed and "Voided" put in front of its PrivateNote; money is a JSON number (read with Decimal, written
  with the exact literal);
- webhooks (developer.intuit.com, managing webhooks notifications): ``intuit-signature`` is
  base64(HMAC-SHA256(the app's Verifier Token, raw body)); the legacy body is ``{"eventNotifications":
  [{"realmId", "dataChangeEvent": {"entities": [{"name", "id", "operation", "lastUpdated"}]}}]}``, one
  notification per company, entities aggregated over a window; operations Create, Update, Delete, Merge,
  Void, Emailed. Intuit now sends CloudEvents instead (same signature header): a JSON array of
  ``{"specversion": "1.0", "id", "source", "type": "qbo.<entity>.<action>.v1", "time", "intuitentityid",
  "intuitaccountid", "data"}``, one event per change; both shapes are accepted (see ``parse_webhook``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx

from closeloop.dates import parse_day, parse_utc
from closeloop.errors import (
    ConfigurationError,
    Conflict,
    FatalError,
    IntegrationError,
    NotFound,
    ValidationFailed,
    WebhookRejected,
)
from closeloop.http import (
    Fault,
    Pacer,
    RateLimit,
    RateLimitVerdict,
    TokenAuth,
    VendorHttp,
    retry_after_header,
    typed_error,
)
from closeloop.models import (
    AccountingCustomer,
    AccountingEvent,
    AccountingResource,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    customer_fields,
)
from closeloop.oauth import RefreshingTokens, TokenEndpoint, TokenGrant
from closeloop.paging import Page, PagingLoop, next_offset, paginate
from closeloop.ports import WebhookRequest
from closeloop.wire import dumps_exact, hmac_base64_matches, read_decimal_object, to_decimal, webhook_json

VENDOR = "quickbooks"
#: One minor version for every call (1–74 were retired on 1 Aug 2025).
MINOR_VERSION = "75"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REQUEST_ID_HEADER = "intuit_tid"
CENT = Decimal("0.01")


#: QBO error codes the adapter acts on.
DUPLICATE_NAME = "6240"
DUPLICATE_DOC_NUMBER = "6140"
STALE_OBJECT = "5010"
OBJECT_NOT_FOUND = "610"

#: Canonical line_amount_types -> Invoice.GlobalTaxCalculation.
GLOBAL_TAX_CALCULATION: dict[str, str] = {
    "Exclusive": "TaxExcluded",
    "Inclusive": "TaxInclusive",
    "NoTax": "NotApplicable",
}


@dataclass(frozen=True)
class _QueryPosition:
    """Where a query page starts (STARTPOSITION, 1-based) and the ids of the page read before it: QBO answering
    those same rows again means it ignored STARTPOSITION."""

    start: int
    previous_ids: tuple[str, ...] = ()


def quickbooks_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """QBO's 429 (ThrottleExceeded): no Retry-After is documented; Intuit says wait 60 s (the minute window)."""
    verdict = retry_after_header(response)
    return RateLimitVerdict(retry=True, retry_after=verdict.retry_after or 60.0, problem="minute")


#: Re-sending a refresh token whose answer was lost: never, by itself. Intuit's sources disagree. Its help article
#: "Validity of Refresh Token" (help.developer.intuit.com/s/article/Validity-of-Refresh-Token, quoted by Intuit staff
#: in github.com/intuit/QuickBooks-V3-PHP-SDK/issues/324) says that once a new value is returned "Refresh Token A
#: expires … will throw an invalid_grant error"; the older oauth-jsclient README (quoted in
#: github.com/intuit/oauth-jsclient/issues/74 and IntuitDeveloper/oauth2-nodejs/issues/2) says "previous refresh tokens
#: expire 24 hours after you receive a new one". No grace period is documented for certain, so a lost answer is
#: reported (RefreshAnswerLost) instead of re-sent; the next scheduled attempt relies on
#: GUESSES["refresh_token_resend_window"].
REFRESH_RESEND_WITHIN_SECONDS = 0.0


#: Intuit's token endpoint: HTTP Basic client authentication; the answer's refresh token may be the one sent (it
#: changes about daily), and RefreshingTokens stores whichever comes back.
TOKEN_ENDPOINT = TokenEndpoint(
    vendor=VENDOR,
    label="Intuit",
    client="intuit-oauth",
    path=TOKEN_PATH,
    reconnect="reconnect QuickBooks",
    misconfigured=frozenset({"invalid_client"}),
)


def refresh_with_intuit(
    oauth_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Intuit's token endpoint.

    ``POST {oauth_url}/oauth2/v1/tokens/bearer``, never re-sent once it may have reached Intuit (see
    REFRESH_RESEND_WITHIN_SECONDS). Raises AuthRevoked on ``invalid_grant``, ConfigurationError on
    ``invalid_client``, FatalError otherwise.
    """
    return TOKEN_ENDPOINT.refresher(oauth_url, client_id, client_secret, transport=transport)


def qbo_literal(value: str) -> str:
    """A string literal for QBO's query language: single quotes, with ``\\`` and ``'`` backslash-escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def request_id(idempotency_key: str) -> str:
    """QBO's ``requestid`` for one of our idempotency keys: a 32-hex digest (≤36 chars, valid on /batch too)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def doc_number(reference: str, limit: int = 21) -> str:
    """The DocNumber that carries a deal's reference: its first word (``hubspot-deal-3000001``, ≤21 chars).

    A longer key keeps its head and gets a digest tail, so it stays unique and derivable from the reference.
    """
    key = (reference.split() or [""])[0]
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{key[: limit - len(digest) - 1]}-{digest}"


class StaleSyncToken(ValidationFailed):
    """QBO's 5010: the update's SyncToken is not the record's current one (it changed since it was read)."""


class DuplicateDocNumber(ValidationFailed):
    """QBO's 6140: another invoice already holds this DocNumber."""


#: QBO error codes -> the error they mean; when a Fault holds several, the first in this order decides.
FAULT_ERRORS: Mapping[str, type[IntegrationError]] = {
    DUPLICATE_NAME: Conflict,
    OBJECT_NOT_FOUND: NotFound,
    STALE_OBJECT: StaleSyncToken,
    DUPLICATE_DOC_NUMBER: DuplicateDocNumber,
}


def fault_of(payload: Any, *, otherwise: type[IntegrationError] | None = None) -> Fault | None:
    """The ``Fault`` (or the gateway's lower-case ``fault``) of a QBO answer or batch item as one Fault: its
    Errors' codes and messages joined, and the error their code means (FAULT_ERRORS, else ``otherwise``).
    None when the payload holds no fault."""
    if not isinstance(payload, Mapping):
        return None
    fault = payload.get("Fault") or payload.get("fault")
    if not isinstance(fault, Mapping):
        return None
    errors = fault.get("Error") or fault.get("error") or []
    entries = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    codes = [str(e.get("code") or "") for e in entries]
    messages: list[str] = []
    for entry in entries:
        message = str(entry.get("Message") or entry.get("message") or "")
        detail = str(entry.get("Detail") or entry.get("detail") or "")
        messages.append(f"{message}: {detail}" if message and detail else message or detail)
    error = next((kind for code, kind in FAULT_ERRORS.items() if code in codes), otherwise)
    return Fault(message="; ".join(m for m in messages if m), code=",".join(c for c in codes if c), error=error)


def read_fault(response: httpx.Response) -> Fault | None:
    """QBO's error body (VendorHttp's ``read_fault``). A 5xx keeps its status's meaning (retriable) whatever
    codes it carries; a 4xx's codes decide the error (6240 Conflict, 610 NotFound, 5010 StaleSyncToken, 6140
    DuplicateDocNumber), else its status does."""
    fault = fault_of(response.json())
    if fault is not None and response.status_code >= 500:
        return replace(fault, error=None)
    return fault


class QuickBooksAccounting:
    """AccountingPort for QuickBooks Online.

    Where our values live (each one chosen because QBO's query language can filter on it):
    - the customer number stamp (``hubspot-company-123``) is the Customer's ``MiddleName``: of the fields the
      Customer reference marks filterable (Id, DisplayName, GivenName, MiddleName, FamilyName, CompanyName,
      PrimaryEmailAddr, PrintOnCheckName, Active, Balance, MetaData) it is the only free text that no sales
      form prints. CompanyName is printed on invoices and PrintOnCheckName on refund cheques; ResaleNum (16
      chars), Notes and AlternatePhone cannot be queried at all;
    - the tax number is written to ``PrimaryTaxIdentifier``, which QBO masks on read (``XXXXXX56789``) and
      cannot filter on, so ``find_customers(tax_number=…)`` finds nothing and a masked value is never
      reported as a comparable field (it would look like drift);
    - QBO customers have no contact persons, so ``people`` is neither written nor compared;
    - an invoice's reference: its first word (``hubspot-deal-3000001``) is the ``DocNumber`` (filterable, ≤21
      chars; a company with custom transaction numbers off still stores a DocNumber sent by the API), the
      whole reference and the deal link are the ``PrivateNote`` (not filterable, and overwritten by a void).
      So ``find_invoice`` finds an invoice created just before a crash, and a duplicate DocNumber (6140)
      refuses a second invoice for the deal;
    - items: our item code is the Item's ``Name`` (unique among items, filterable); ``Sku`` is optional in
      QBO and not documented as filterable. Map differing SKUs with SKU_ITEM_CODES.
    """

    name = VENDOR
    MAX_RESULTS: ClassVar[int] = 1000
    BATCH_SIZE: ClassVar[int] = 30
    #: Values per ``IN (…)`` list, so a GET query URL stays well under proxies' limits.
    IN_CHUNK: ClassVar[int] = 50
    #: CDC looks back at most 30 days; older watermarks (and full CDC answers) use a query instead.
    CDC_LOOKBACK: ClassVar[timedelta] = timedelta(days=29)
    CDC_MAX_OBJECTS: ClassVar[int] = 1000
    WEB_URL: ClassVar[str] = "https://app.qbo.intuit.com"
    INVOICE_WEB_PATH: ClassVar[str] = "/app/invoice?txnId={id}"
    SALES_ITEM_LINE: ClassVar[str] = "SalesItemLineDetail"
    #: Webhook entity name -> the resource it is about; other entities are not followed.
    WEBHOOK_RESOURCES: ClassVar[Mapping[str, AccountingResource]] = {
        "Customer": "customer",
        "Invoice": "invoice",
        "Payment": "payment",
    }
    WEBHOOK_KINDS: ClassVar[Mapping[str, Literal["created", "changed", "deleted", "other"]]] = {
        "Create": "created",
        "Update": "changed",
        "Void": "changed",
        "Delete": "deleted",
    }
    SIGNATURE_HEADER: ClassVar[str] = "intuit-signature"
    #: CloudEvents ``type`` = ``qbo.<entity>.<action>.v<n>``: the entity and action, lower case.
    CLOUD_EVENT_TYPE: ClassVar[re.Pattern[str]] = re.compile(r"^qbo\.(?P<entity>[a-z]+)\.(?P<action>[a-z]+)\.v\d+$")
    #: A CloudEvents action -> the legacy operation it stands for (so both shapes make the same events).
    CLOUD_EVENT_OPERATIONS: ClassVar[Mapping[str, str]] = {
        "created": "Create",
        "updated": "Update",
        "deleted": "Delete",
        "merged": "Merge",
        "voided": "Void",
        "emailed": "Emailed",
    }
    #: Per realm: 500 calls a minute, more than 10 concurrent is a 429
    #: (developer.intuit.com …/learn/limits-and-throttles).
    RATE_LIMIT: ClassVar[RateLimit] = RateLimit(per_minute=500, concurrent=10)

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        realm_id: Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        webhook_verifier_token: Callable[[], str] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``webhook_verifier_token``: the app's webhook Verifier Token (QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN);
        ``pacer``: the realm's shared call budget (``RATE_LIMIT``; see closeloop.pacing)."""
        kwargs: dict[str, Any] = {"transport": transport}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self._realm_id = realm_id
        self._clock = clock
        self._verifier_token = webhook_verifier_token
        self.http = VendorHttp(
            self.name,
            base_url,
            auth=TokenAuth(tokens),
            rate_limit=quickbooks_rate_limit,
            request_id_header=REQUEST_ID_HEADER,
            read_fault=read_fault,
            pacer=pacer,
            **kwargs,
        )

    # -- transport ---------------------------------------------------------------------------------

    def _path(self, tail: str) -> str:
        realm = self._realm_id().strip()
        if not realm:
            raise ConfigurationError("QUICKBOOKS_REALM_ID is not set", vendor=self.name)
        return f"/v3/company/{quote(realm, safe='')}/{tail}"

    def _call(
        self,
        method: str,
        tail: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry_sent: bool = True,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, Any]]:
        """One API call: its status (one of ``ok``) and JSON body. Other answers raise the error their Fault
        or status means (``read_fault``).

        ``retry_sent=False``: never repeated once sent (see VendorHttp.request)."""
        content = dumps_exact(body) if body is not None else None
        headers = {"Content-Type": content_type} if method != "GET" else None
        response = self.http.request(
            method,
            self._path(tail),
            params={**(params or {}), "minorversion": MINOR_VERSION},
            content=content,
            headers=headers,
            ok=ok,
            retry_sent=retry_sent,
        )
        return response.status_code, _read_json(response)

    def _query_page(self, statement: str) -> dict[str, Any]:
        _, payload = self._call("GET", "query", params={"query": statement})
        result = payload.get("QueryResponse")
        return result if isinstance(result, dict) else {}

    def _query_pages(self, entity: str, where: str = "", order: str = "Id") -> Iterator[list[dict[str, Any]]]:
        """The pages of ``select * from {entity} [where …] ORDERBY {order}``, MAX_RESULTS rows per call.

        A page shorter than MAX_RESULTS is the last. QBO answering the rows of the page before again (a
        STARTPOSITION it ignored) raises PagingLoop (a FatalError) instead of reading them forever.
        """
        base = f"select * from {entity}" + (f" where {where}" if where else "") + f" ORDERBY {order}"

        def fetch(position: _QueryPosition) -> Page[list[dict[str, Any]], _QueryPosition]:
            page = self._query_page(f"{base} STARTPOSITION {position.start} MAXRESULTS {self.MAX_RESULTS}")
            rows: list[dict[str, Any]] = page.get(entity) or []
            ids = tuple(str(r.get("Id", "")) for r in rows)
            if ids and ids == position.previous_ids:
                raise PagingLoop(
                    f"QuickBooks returned the same {entity} rows at position {position.start}", vendor=self.name
                )
            more = next_offset(position.start, len(rows), more=len(rows) >= self.MAX_RESULTS)
            return Page([rows] if rows else [], None if more is None else _QueryPosition(more, ids))

        yield from paginate(fetch, _QueryPosition(1), vendor=self.name, what=f"{entity} query")

    def _query_all(self, entity: str, where: str = "", order: str = "Id") -> Iterator[dict[str, Any]]:
        """Every row of ``select * from {entity} [where …] ORDERBY {order}`` (see ``_query_pages``)."""
        for rows in self._query_pages(entity, where, order):
            yield from rows

    def _batch(self, items: Sequence[dict[str, Any]], idempotency_key: str | None) -> dict[str, dict[str, Any]]:
        """POST /batch (≤ BATCH_SIZE items); the BatchItemResponses by bId."""
        params = {"requestid": request_id(idempotency_key)} if idempotency_key else None
        _, payload = self._call("POST", "batch", params=params, body={"BatchItemRequest": list(items)})
        return {str(r.get("bId")): r for r in payload.get("BatchItemResponse") or [] if isinstance(r, dict)}

    # -- change notifications ----------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """``intuit-signature`` must be base64(HMAC-SHA256(verifier token, raw body)), in constant time.

        Raises WebhookRejected(401) when it is missing or wrong, ConfigurationError when
        QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN is not set. Nothing of the body is parsed.
        """
        token = self._verifier_token() if self._verifier_token is not None else ""
        if not token:
            raise ConfigurationError("QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN is not set", vendor=self.name)
        sent = next((v for k, v in request.headers.items() if k.lower() == self.SIGNATURE_HEADER), "").strip()
        if not hmac_base64_matches(token, request.body, sent):
            raise WebhookRejected(401, "missing or wrong intuit-signature for this verifier token")

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """The Customer, Invoice and Payment entities of our realm (other realms and entities are dropped).

        Two shapes, the same events: a JSON array is CloudEvents (``_cloud_events``), an object is the
        legacy ``eventNotifications``. The dedupe key is the entity, id, operation and ``lastUpdated`` (the
        CloudEvent's ``time``): the same for every redelivery of one change. Raises WebhookRejected(400)
        naming what is malformed.
        """
        payload = webhook_json(body)
        if isinstance(payload, list):
            return self._cloud_events(payload)
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "expected a JSON array of CloudEvents or an object with 'eventNotifications'")
        notifications = payload.get("eventNotifications")
        if not isinstance(notifications, list):
            raise WebhookRejected(400, "eventNotifications: expected a list (a QuickBooks webhook payload)")
        realm = self._realm_id().strip()
        found: list[AccountingEvent] = []
        for n, notification in enumerate(notifications):
            where = f"eventNotifications[{n}]"
            if not isinstance(notification, dict) or not isinstance(notification.get("realmId"), str | int):
                raise WebhookRejected(400, f"{where}.realmId: Field required")
            change = notification.get("dataChangeEvent")
            entities = change.get("entities") if isinstance(change, dict) else None
            if not isinstance(entities, list):
                raise WebhookRejected(400, f"{where}.dataChangeEvent.entities: expected a list")
            if str(notification["realmId"]).strip() != realm:
                continue
            for e, entity in enumerate(entities):
                event = self._webhook_event(entity, f"{where}.dataChangeEvent.entities[{e}]")
                if event is not None:
                    found.append(event)
        return found

    def _cloud_events(self, events: list[Any]) -> list[AccountingEvent]:
        """Intuit's CloudEvents webhook body: our realm's Customer, Invoice and Payment events.

        What this relies on (Intuit's migration post blogs.intuit.com/2025/11/12/upcoming-change-to-webhooks-
        payload-structure/, via the SDK releases that parse it: intuit/QuickBooks-V3-DotNET-SDK V14.7.0.4 and
        intuit/QuickBooks-V3-PHP-SDK v6.2.2, whose test payload is ``[{"specversion": "1.0", "id": "d1a3…",
        "source": "intuit.dsnB…", "type": "qbo.class.created.v1", "time": "2025-10-07T19:59:07.034359333Z",
        "intuitentityid": "1234", "intuitaccountid": "310687"}]``): the body is an array, one event per
        change; ``intuitaccountid`` is the realm id and ``intuitentityid`` the record id; ``type`` is
        ``qbo.<entity>.<action>.v<n>`` with the entity in lower case. The action words are
        GUESSES["cloudevents_action_words"] (an unknown one is kind "other"); ``time`` is
        GUESSES["cloudevents_time"] (an event without one is timed now; events are de-duplicated on ``id``).
        An event of another realm, or of a type we do not follow, is dropped; a malformed one is a 400.
        """
        realm = self._realm_id().strip()
        found: list[AccountingEvent] = []
        for n, event in enumerate(events):
            where = f"[{n}]"
            if not isinstance(event, dict):
                raise WebhookRejected(400, f"{where}: expected an object (a CloudEvent)")
            kind = event.get("type")
            if not isinstance(kind, str) or not kind.strip():
                raise WebhookRejected(400, f"{where}.type: Field required")
            matched = self.CLOUD_EVENT_TYPE.match(kind.strip().lower())
            if matched is None:
                continue  # not a QuickBooks Online entity event
            resource = next(
                (r for name, r in self.WEBHOOK_RESOURCES.items() if name.lower() == matched["entity"]), None
            )
            if resource is None:
                continue
            for key in ("intuitaccountid", "intuitentityid"):
                if not isinstance(event.get(key), str | int) or not str(event[key]).strip():
                    raise WebhookRejected(400, f"{where}.{key}: Field required")
            if str(event["intuitaccountid"]).strip() != realm:
                continue
            found.append(self._cloud_event(event, resource, matched["action"], where))
        return found

    def _cloud_event(
        self, event: Mapping[str, Any], resource: AccountingResource, action: str, where: str
    ) -> AccountingEvent:
        resource_id = str(event["intuitentityid"]).strip()
        operation = self.CLOUD_EVENT_OPERATIONS.get(action, action)
        stamp = event.get("time")
        ident = event.get("id")
        if not isinstance(ident, str | int) or not str(ident).strip():
            raise WebhookRejected(400, f"{where}: an event needs its 'id'")
        if stamp is None:
            occurred = self._clock()
        else:
            parsed = parse_utc(stamp)
            if parsed is None:
                raise WebhookRejected(400, f"{where}.time: not a date-time")
            occurred = parsed
        # A CloudEvent's id is unique per event (CloudEvents 1.0: source + id identify it): two changes of one
        # record within one timestamp are two events, and a redelivery of one is the same event.
        dedupe = f"{self.name}:{resource}:{resource_id}:{operation.lower()}:event:{str(ident).strip()}"
        return AccountingEvent(
            system=self.name,
            resource=resource,
            resource_id=resource_id,
            kind=self.WEBHOOK_KINDS.get(operation, "other"),
            occurred_at=occurred,
            dedupe_key=dedupe,
        )

    def _webhook_event(self, entity: Any, where: str) -> AccountingEvent | None:
        if not isinstance(entity, dict):
            raise WebhookRejected(400, f"{where}: expected an object")
        for key in ("name", "id", "operation", "lastUpdated"):
            if not isinstance(entity.get(key), str | int) or not str(entity[key]).strip():
                raise WebhookRejected(400, f"{where}.{key}: Field required")
        occurred = parse_utc(str(entity["lastUpdated"]))
        if occurred is None:
            raise WebhookRejected(400, f"{where}.lastUpdated: not a date-time")
        resource = self.WEBHOOK_RESOURCES.get(str(entity["name"]))
        if resource is None:
            return None
        resource_id = str(entity["id"]).strip()
        operation = str(entity["operation"])
        return AccountingEvent(
            system=self.name,
            resource=resource,
            resource_id=resource_id,
            kind=self.WEBHOOK_KINDS.get(operation, "other"),
            occurred_at=occurred,
            dedupe_key=f"{self.name}:{resource}:{resource_id}:{operation.lower()}:{occurred.isoformat()}",
        )

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Customers (inactive too) changed at or after ``since``'s second.

        Within CDC's look-back: ``GET /cdc?entities=Customer&changedSince=…`` (one call). Older watermarks,
        or a CDC answer at its 1,000-object cap, page through ``Active IN (true, false) AND
        MetaData.LastUpdatedTime >= …`` instead (name lists answer active records only otherwise). QBO's
        times have whole seconds, so every row of ``since``'s second is kept. Raises IntegrationError
        subclasses.
        """
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since.replace(microsecond=0)
        stamp = floor.isoformat()
        rows: Iterable[dict[str, Any]] | None = None
        if since >= self._clock() - self.CDC_LOOKBACK:
            blocks = self._cdc_rows(("Customer",), stamp)
            rows = blocks["Customer"] if blocks is not None else None
        if rows is None:
            rows = self._query_all(
                "Customer", f"Active IN (true, false) AND MetaData.LastUpdatedTime >= {qbo_literal(stamp)}"
            )
        for row in rows:
            updated = parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime"))
            if updated is None or updated >= floor:
                yield to_customer(row)

    def _cdc_rows(self, entities: Sequence[str], changed_since: str) -> dict[str, list[dict[str, Any]]] | None:
        """``GET /cdc`` rows per entity, or None when the answer cannot be trusted complete (an entity at
        the 1,000-object cap, or refused, e.g. ``changedSince`` beyond the look-back)."""
        status, payload = self._call(
            "GET", "cdc", params={"entities": ",".join(entities), "changedSince": changed_since}, ok=(200, 400)
        )
        if status == 400:
            return None
        rows: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for block in payload.get("CDCResponse") or []:
            for result in block.get("QueryResponse") or []:
                for entity in entities:
                    rows[entity].extend(result.get(entity) or [])
        if any(len(found) >= self.CDC_MAX_OBJECTS for found in rows.values()):
            return None
        return rows

    # -- customers ---------------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        """``GET /customer/{id}``; None when QBO does not know it (610/404) or it is inactive (deleted)."""
        row = self._read("customer", customer_id)
        if row is None or row.get("Active") is False:
            return None
        return to_customer(row)

    def _read(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        if not entity_id.strip():
            return None
        try:
            _, payload = self._call("GET", f"{entity}/{quote(entity_id, safe='')}")
        except NotFound:  # a 404, or QBO's 610 (read_fault)
            return None
        row = payload.get(entity.capitalize())
        return row if isinstance(row, dict) else None

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        """Active customers by MiddleName (our stamp), PrimaryEmailAddr, or a DisplayName word (LIKE).

        A tax number cannot be looked up (QBO masks it and cannot filter on it): [] without a call.
        """
        if number:
            where = f"MiddleName = {qbo_literal(number)}"
        elif tax_number:
            return []
        elif email:
            where = f"PrimaryEmailAddr = {qbo_literal(email)}"
        elif name:
            where = f"DisplayName LIKE {qbo_literal('%' + _search_word(name) + '%')}"
        else:
            return []
        rows = list(self._query_all("Customer", where))
        found = [to_customer(r) for r in rows]
        if email:
            found = [c for c in found if c.email == email.lower()]
        return found

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        """Active customers matching any value, by the cheaper of two ways (tax numbers cannot be queried).

        Either one paged read of every active customer (``select count(*)`` says how many pages), or queries
        run 30 to a ``POST /batch``: ``MiddleName IN (…)`` and ``PrimaryEmailAddr IN (…)`` IN_CHUNK values at a
        time and one ``DisplayName LIKE '%word%'`` per name. A query that fills MAXRESULTS falls back to
        the paged read, so the answer is always a superset.
        """
        queries: list[str] = []
        for field_name, values in (("MiddleName", numbers), ("PrimaryEmailAddr", emails)):
            wanted = sorted({v for v in values if v.strip()})
            for start in range(0, len(wanted), self.IN_CHUNK):
                chunk = ", ".join(qbo_literal(v) for v in wanted[start : start + self.IN_CHUNK])
                queries.append(f"{field_name} IN ({chunk})")
        words = sorted({_search_word(n) for n in names if n.strip()})
        queries.extend(f"DisplayName LIKE {qbo_literal('%' + word + '%')}" for word in words)
        if not queries:
            return []
        count_page = self._query_page("select count(*) from Customer")
        total = int(count_page.get("totalCount") or 0)
        if math.ceil(max(total, 1) / self.MAX_RESULTS) <= math.ceil(len(queries) / self.BATCH_SIZE):
            return [to_customer(r) for r in self._query_all("Customer")]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(queries), self.BATCH_SIZE):
            group = queries[start : start + self.BATCH_SIZE]
            items = [
                {"bId": str(i), "Query": f"select * from Customer where {q} MAXRESULTS {self.MAX_RESULTS}"}
                for i, q in enumerate(group)
            ]
            answers = self._batch(items, None)
            for i in range(len(group)):
                answer = answers.get(str(i)) or {}
                if "QueryResponse" not in answer:
                    raise self._batch_item_error(answer, "a customer query")
                rows: list[dict[str, Any]] = (answer.get("QueryResponse") or {}).get("Customer") or []
                if len(rows) >= self.MAX_RESULTS:
                    return [to_customer(r) for r in self._query_all("Customer")]
                found.update({str(r.get("Id")): r for r in rows})
        return [to_customer(r) for r in found.values()]

    def _batch_item_error(self, answer: Mapping[str, Any], what: str) -> FatalError:
        """A refused batch item (inside a 200 answer): the error its Fault means, ValidationFailed by default."""
        fault = fault_of(answer, otherwise=ValidationFailed) or Fault("no answer", error=ValidationFailed)
        error = typed_error(200, fault, f"QuickBooks refused {what}", vendor=self.name)
        if not isinstance(error, FatalError):  # every error FAULT_ERRORS names is fatal; anything else is raised
            raise error
        return error

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        """``POST /customer?requestid=…``. Raises Conflict on 6240 (name taken by a customer, vendor or employee)."""
        body = to_qbo_customer(customer, customer_fields(customer).keys(), number)
        _, payload = self._call("POST", "customer", params={"requestid": request_id(idempotency_key)}, body=body)
        return to_customer(payload.get("Customer") or {})

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        """Batched creates, BATCH_SIZE per ``POST /batch?requestid=…`` (the key and the chunk's position)."""
        results: list[AccountingCustomer | FatalError] = []
        for start in range(0, len(customers), self.BATCH_SIZE):
            chunk = customers[start : start + self.BATCH_SIZE]
            items = [
                {
                    "bId": str(i),
                    "operation": "create",
                    "Customer": to_qbo_customer(customer, customer_fields(customer).keys(), number),
                }
                for i, (customer, number) in enumerate(chunk)
            ]
            answers = self._batch(items, f"{idempotency_key}#{start}")
            for i in range(len(chunk)):
                answer = answers.get(str(i)) or {}
                row = answer.get("Customer")
                results.append(
                    to_customer(row) if isinstance(row, dict) else self._batch_item_error(answer, "the customer")
                )
        return results

    def update_customer(
        self,
        customer_id: str,
        customer: Customer,
        fields: Collection[str],
        *,
        number: str | None,
        idempotency_key: str,
    ) -> AccountingCustomer:
        """A sparse update with the current SyncToken; a stale token (5010) re-reads and retries once.

        Raises NotFound when the customer is gone, Conflict on a taken name, ValidationFailed otherwise.
        """
        body = to_qbo_customer(customer, fields, number)
        for attempt in (1, 2):
            current = self._read("customer", customer_id)
            if current is None:
                raise NotFound(f"QuickBooks has no customer {customer_id}", vendor=self.name, status=400)
            sent = {"Id": customer_id, "SyncToken": str(current.get("SyncToken", "0")), "sparse": True, **body}
            key = idempotency_key if attempt == 1 else f"{idempotency_key}#stale"
            try:
                _, payload = self._call("POST", "customer", params={"requestid": request_id(key)}, body=sent)
            except StaleSyncToken:
                if attempt == 1:
                    continue
                raise
            return to_customer(payload.get("Customer") or {})
        raise AssertionError("unreachable")  # pragma: no cover

    # -- items -------------------------------------------------------------------------------------

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """Active items whose Name is one of ``codes`` (QBO compares names case-insensitively), keyed by code.

        ``select * from Item where Name IN (…)``, IN_CHUNK codes per query. Raises IntegrationError subclasses.
        """
        return {code: to_item(row) for code, row in self._item_rows_by_code(codes).items()}

    def _item_rows_by_code(self, codes: Collection[str]) -> dict[str, dict[str, Any]]:
        asked: dict[str, list[str]] = {}
        for code in sorted({c for c in codes if c.strip()}):
            asked.setdefault(code.casefold(), []).append(code)
        wanted = [code for group in asked.values() for code in group]
        found: dict[str, dict[str, Any]] = {}
        for row in self._item_rows(wanted):
            for code in asked.get(str(row.get("Name") or "").casefold(), []):
                found[code] = row
        return found

    def _item_rows(self, names: Sequence[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(names), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(n) for n in names[start : start + self.IN_CHUNK])
            yield from self._query_all("Item", f"Name IN ({chunk})")

    # -- invoices ----------------------------------------------------------------------------------

    def find_invoice(self, reference: str) -> Invoice | None:
        """The live (not voided) invoice whose DocNumber carries ``reference``'s first word, if any.

        ``select * from Invoice where DocNumber = '…'``; a voided one is skipped (a deal may get a new one).
        """
        doc = doc_number(reference)
        if not doc:
            return None
        rows = list(self._query_all("Invoice", f"DocNumber = {qbo_literal(doc)}"))
        live = [r for r in rows if not _is_voided(r)]
        if not live:
            return None
        return self._to_invoices(live[:1])[0]

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """``GET /invoice/{id}`` whatever its state; None when QBO does not know it."""
        row = self._read("invoice", invoice_id)
        return self._to_invoices([row])[0] if row else None

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        """``POST /invoice?requestid=…``: posted at once (QBO has no draft state), DocNumber from the reference.

        Items are looked up by Name first (an unknown code is a ValidationFailed naming it, never a guessed
        line). A duplicate DocNumber (6140) means the deal already has an invoice: a live one is returned as
        is; when only voided ones hold the number it is created again with ``include=allowduplicatedocnum``.
        Raises ValidationFailed with QBO's reasons.
        """
        codes = [line.item_code for line in draft.lines]
        rows = self._item_rows_by_code(codes)
        missing = sorted({c for c in codes if c not in rows})
        if missing:
            raise ValidationFailed(f"QuickBooks has no item named {', '.join(missing)}", vendor=self.name)
        body = to_qbo_invoice(draft, {code: str(row.get("Id")) for code, row in rows.items()})
        params = {"requestid": request_id(idempotency_key)}
        try:
            _, payload = self._call("POST", "invoice", params=params, body=body)
        except DuplicateDocNumber:
            existing = self.find_invoice(draft.reference)
            if existing is not None:
                return existing
            params = {"requestid": request_id(f"{idempotency_key}#dup"), "include": "allowduplicatedocnum"}
            _, payload = self._call("POST", "invoice", params=params, body=body)
        row = payload.get("Invoice")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the invoice but returned none", vendor=self.name, status=200)
        return self._to_invoices([row])[0]

    def send_invoice(self, invoice_id: str) -> None:
        """``POST /invoice/{id}/send``: QBO emails it to its BillEmail.

        QBO takes no ``requestid`` on send, so the call is never repeated once sent (a second email is worse
        than none): only a connect error or a 429 is retried. Raises ValidationFailed when refused,
        Unanswered when the request was sent and no answer says whether QBO emailed it.
        """
        self._call(
            "POST",
            f"invoice/{quote(invoice_id, safe='')}/send",
            content_type="application/octet-stream",
            retry_sent=False,
        )

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        """Invoices changed at or after ``since`` (every one when None).

        Within CDC's look-back: ``GET /cdc?entities=Invoice,Payment&changedSince=…`` (one call), plus the
        invoices that a changed payment points at (``Id IN (…)``); deleted ones come back with status
        DELETED. Older watermarks, or a CDC answer at its 1,000-object cap, page through
        ``MetaData.LastUpdatedTime >= …`` instead. Raises IntegrationError subclasses.
        """
        if since is None:
            yield from self._invoice_pages("")
            return
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since.replace(microsecond=0)
        stamp = floor.isoformat()
        if since >= self._clock() - self.CDC_LOOKBACK:
            changed = self._cdc(stamp)
            if changed is not None:
                for invoice in changed:
                    if invoice.updated_at is None or invoice.updated_at >= since:
                        yield invoice
                return
        for invoice in self._invoice_pages(f"MetaData.LastUpdatedTime >= {qbo_literal(stamp)}"):
            if invoice.updated_at is None or invoice.updated_at >= since:
                yield invoice

    def _cdc(self, changed_since: str) -> list[Invoice] | None:
        """The CDC answer as invoices, or None when it cannot be trusted complete (cap reached, refused)."""
        blocks = self._cdc_rows(("Invoice", "Payment"), changed_since)
        if blocks is None:
            return None  # e.g. changedSince beyond the look-back: the query path answers instead
        invoices, payments = blocks["Invoice"], blocks["Payment"]
        deleted = [r for r in invoices if str(r.get("status", "")).lower() == "deleted"]
        live = [r for r in invoices if str(r.get("status", "")).lower() != "deleted"]
        seen = {str(r.get("Id")) for r in invoices}
        linked = sorted(
            {
                str(txn.get("TxnId"))
                for payment in payments
                for line in payment.get("Line") or []
                for txn in line.get("LinkedTxn") or []
                if txn.get("TxnType") == "Invoice" and str(txn.get("TxnId")) not in seen
            }
        )
        for start in range(0, len(linked), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(i) for i in linked[start : start + self.IN_CHUNK])
            live.extend(self._query_all("Invoice", f"Id IN ({chunk})"))
        out = self._to_invoices(live)
        for row in deleted:
            updated = parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime"))
            out.append(Invoice(id=str(row.get("Id", "")), status="DELETED", updated_at=updated))
        return out

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        """Invoices with TxnDate in [issued_from, issued_before), any state, paged by STARTPOSITION."""
        where = (
            f"TxnDate >= {qbo_literal(issued_from.isoformat())} AND TxnDate < {qbo_literal(issued_before.isoformat())}"
        )
        yield from self._invoice_pages(where)

    def _invoice_pages(self, where: str) -> Iterator[Invoice]:
        """The invoices of a query, converted a page at a time (each page's payments read before the next)."""
        for rows in self._query_pages("Invoice", where):
            yield from self._to_invoices(rows)

    def _to_invoices(self, rows: Sequence[Mapping[str, Any]]) -> list[Invoice]:
        """Canonical invoices; the dates of linked payments are read in one query per IN_CHUNK payments."""
        payment_ids = sorted({pid for row in rows for pid in _linked_ids(row, "Payment")})
        paid_on: dict[str, date] = {}
        for start in range(0, len(payment_ids), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(p) for p in payment_ids[start : start + self.IN_CHUNK])
            for payment in self._query_all("Payment", f"Id IN ({chunk})"):
                day = parse_day(payment.get("TxnDate"))
                if day:
                    paid_on[str(payment.get("Id"))] = day
        return [self._to_invoice(row, paid_on) for row in rows]

    def _to_invoice(self, row: Mapping[str, Any], paid_on: Mapping[str, date]) -> Invoice:
        invoice_id = str(row.get("Id") or "")
        total = _decimal(row.get("TotalAmt"))
        balance = _decimal(row.get("Balance"))
        tax = _decimal((row.get("TxnTaxDetail") or {}).get("TotalTax"))
        voided = _is_voided(row)
        status = "VOIDED" if voided else ("PAID" if balance == 0 and total > 0 else "AUTHORISED")
        days = [paid_on[p] for p in _linked_ids(row, "Payment") if p in paid_on]
        return Invoice(
            id=invoice_id,
            number=str(row.get("DocNumber") or ""),
            reference=_reference(row),
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
            url=self.WEB_URL + self.INVOICE_WEB_PATH.format(id=quote(invoice_id, safe="")) if invoice_id else "",
            updated_at=parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime")),
        )


# -- JSON and values ---------------------------------------------------------------------------------


def _linked_ids(row: Mapping[str, Any], txn_type: str) -> list[str]:
    return [str(t.get("TxnId")) for t in row.get("LinkedTxn") or [] if t.get("TxnType") == txn_type]


def _is_voided(row: Mapping[str, Any]) -> bool:
    """Voiding zeroes every amount and puts "Voided" in front of the PrivateNote (there is no status field)."""
    note = str(row.get("PrivateNote") or "")
    return note.startswith("Voided") and _decimal(row.get("TotalAmt")) == 0


def _reference(row: Mapping[str, Any]) -> str:
    """Our reference: the PrivateNote's first line, else (a void overwrote it) the DocNumber."""
    note = str(row.get("PrivateNote") or "")
    if note.startswith("Voided"):
        note = note[len("Voided") :].lstrip(" -:\n")
    first = note.splitlines()[0].strip() if note.strip() else ""
    doc = str(row.get("DocNumber") or "")
    return first if first and doc and doc_number(first) == doc else doc or first


_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def _search_word(name: str) -> str:
    """The longest significant word of a name, for ``DisplayName LIKE '%word%'``."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in _LEGAL_WORDS]
    return max(words, key=len) if words else name.strip()


# -- mapping -----------------------------------------------------------------------------------------


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


def to_item(row: Mapping[str, Any]) -> Item:
    """A QBO Item addressed by its Name (our item code)."""
    price = row.get("UnitPrice")
    return Item(
        code=str(row.get("Name") or ""),
        name=str(row.get("Description") or row.get("Name") or ""),
        unit_price=None if price is None else _decimal(price),
        account_code=str((row.get("IncomeAccountRef") or {}).get("value") or ""),
        tax_type=str((row.get("SalesTaxCodeRef") or {}).get("value") or ""),
    )


def _line_amount(line: InvoiceLine) -> Decimal:
    return (line.quantity * line.unit_amount).quantize(CENT, rounding=ROUND_HALF_UP)


def to_qbo_invoice(draft: InvoiceDraft, item_ids: Mapping[str, str]) -> dict[str, Any]:
    """A QBO Invoice body for ``draft`` (Decimals kept for ``dumps_exact``).

    A discount rate shared by every discounted line becomes one percent-based DiscountLineDetail; differing
    rates are folded into each line's UnitPrice (QBO has no per-line discount), with the line's Amount
    rounded to the cent as QBO requires ``Amount == UnitPrice × Qty``.
    """
    rates = {line.discount_rate for line in draft.lines if line.discount_rate}
    shared = rates.pop() if len(rates) == 1 and all(line.discount_rate for line in draft.lines) else None
    lines: list[dict[str, Any]] = []
    for line in draft.lines:
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
        lines.append(
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": (line.quantity * unit).quantize(CENT, rounding=ROUND_HALF_UP),
                "Description": description,
                "SalesItemLineDetail": detail,
            }
        )
    if shared is not None:
        lines.append(
            {
                "DetailType": "DiscountLineDetail",
                "Amount": (sum((_line_amount(x) for x in draft.lines), Decimal(0)) * shared / 100).quantize(CENT),
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": shared},
            }
        )
    note = draft.reference + (f"\n{draft.url}" if draft.url else "")
    return {
        "CustomerRef": {"value": draft.customer_id},
        "Line": lines,
        "GlobalTaxCalculation": GLOBAL_TAX_CALCULATION[draft.line_amount_types],
        "CurrencyRef": {"value": draft.currency},
        "TxnDate": draft.issue_date.isoformat(),
        "DueDate": draft.due_date.isoformat(),
        "DocNumber": doc_number(draft.reference),
        "PrivateNote": note[:4000],
    }


def _read_json(response: httpx.Response) -> dict[str, Any]:
    """A QBO answer with its numbers as Decimal (an empty body, e.g. a 204, is an empty object)."""
    if not response.content:
        return {}
    return read_decimal_object(response.text, who="QuickBooks", vendor=VENDOR, status=response.status_code)


def _decimal(value: Any) -> Decimal:
    return to_decimal(value, who="QuickBooks", vendor=VENDOR)
