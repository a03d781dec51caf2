"""HubSpot adapter: webhook signatures (v3, v2, v1), batched webhook payloads, CRM v3 reads and writes.

Vendor facts this module encodes (see docs/vendors or HubSpot's "Validating requests" and webhooks docs):
- v3 signature: base64(HMAC-SHA256(client_secret, METHOD + URI + raw body + timestamp)), timestamp in
  milliseconds in ``X-HubSpot-Request-Timestamp``; requests older than 5 minutes are rejected (and so are
  ones from more than 5 minutes in the future). Some %-escapes in the URI are decoded before hashing.
- v1 (what legacy app CRM subscriptions send): hex(sha256(client_secret + raw body)); v2 adds method + URI.
  The weakest version accepted is a setting (``HUBSPOT_SIGNATURE_MIN_VERSION``, v3 by default): v1 and v2
  carry no timestamp, so a captured delivery can be replayed forever.
- Apps on the current developer platform subscribe with generic ``object.*`` types ("object.propertyChange")
  naming the object by ``objectTypeId`` ("0-1" contacts, "0-2" companies, "0-3" deals); see HubSpot's
  changelog "Public Beta: Generic Webhook Subscriptions" (2024-08).
- v3 object reads embed at most 100 associations per type (the rest only behind that list's
  ``paging.next.after``: changelog "Announcing a change to how v3 CRM APIs return association data", 2020-10);
  a list that may be cut short is read again in full through the v4 batch read below.
- v4 association batch reads page per input object (``results[i].paging.next.after``); the next page is
  asked for with ``inputs: [{id, after}]`` (HubSpot's "Batch read associations" reference).
- Auth: a private-app access token, or an OAuth app whose access tokens expire after 30 minutes and are
  refreshed at ``POST /oauth/v1/token`` (form-encoded ``grant_type=refresh_token``). HubSpot's refresh
  tokens are long-lived and are not replaced on refresh ("This change will have no effect on refresh
  tokens", changelog on the 30-minute expiry); a refresh token in the answer is kept all the same.
- A webhook body is a JSON array of at most 100 events carrying ids only; each event is fetched back.
- Deal stages are ids (``closedwon`` in the default pipeline, numbers in custom ones); a stage is won when
  its pipeline metadata says ``probability`` 1.0 and ``isClosed`` true (``GET /crm/v3/pipelines/deals``).
- CRM search: at most 10,000 results per query and 5 requests/second per account.
- Every property value is a string on the wire; money and quantities are parsed to Decimal, never float.

httpx is imported lazily: the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from closeloop.errors import (
    ConfigurationError,
    Conflict,
    FatalError,
    IntegrationError,
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
from closeloop.wire import webhook_json

if TYPE_CHECKING:
    import httpx

    from closeloop.http import AccessTokens, Fault, VendorHttp
    from closeloop.oauth import TokenGrant


# %-escapes HubSpot decodes in the URI before computing a v3 signature (from its request-validation docs).
_V3_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def _v3_uri(uri: str) -> str:
    for escaped, char in _V3_URI_DECODE.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 request signature (base64 HMAC-SHA256); ``timestamp`` is the header's string, in ms."""
    message = method.encode() + _v3_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signature_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def signature_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


#: Webhook signature versions, weakest first (``HUBSPOT_SIGNATURE_MIN_VERSION`` names one of them).
SIGNATURE_VERSIONS = ("v1", "v2", "v3")


#: HubSpot's refresh tokens do not rotate (its changelog: the 30-minute access-token expiry has "no effect on
#: refresh tokens"), so re-sending a refresh whose answer was lost is always safe.
REFRESH_RESEND_WITHIN_SECONDS = math.inf


#: HubSpot's 429 body names the policy that refused the call (developers.hubspot.com, "API usage guidelines and
#: limits": burst limits per ten seconds, and a daily limit that resets at midnight in the account's time zone).
#: SECONDLY (the per-second search limit) is waited out for one second: see GUESSES["secondly_wait"].
_RATE_LIMIT_WAITS = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}


def hubspot_rate_limit(response: Any) -> Any:
    """What a HubSpot 429 means: wait out the ten-second window, or stop for the day (``retry=False``)."""
    from closeloop.http import RateLimitVerdict, retry_after_header  # noqa: PLC0415

    verdict = retry_after_header(response)
    try:
        policy = str(response.json().get("policyName") or "")
    except (ValueError, AttributeError):
        policy = ""
    if policy == "DAILY":
        return RateLimitVerdict(retry=False, retry_after=verdict.retry_after, problem="daily limit")
    if verdict.retry_after is None and policy in _RATE_LIMIT_WAITS:
        return RateLimitVerdict(retry=True, retry_after=_RATE_LIMIT_WAITS[policy], problem=policy.lower())
    return verdict


#: HubSpot error categories that name the error whatever the 4xx status (HubSpot's "API error responses": every
#: error body may carry ``category``, e.g. VALIDATION_ERROR; batch answers report OBJECT_NOT_FOUND per item).
_CATEGORY_ERRORS: Mapping[str, type[IntegrationError]] = {
    "VALIDATION_ERROR": ValidationFailed,
    "OBJECT_NOT_FOUND": NotFound,
}


def hubspot_fault(error: Mapping[str, Any], *, default: type[IntegrationError] | None = None) -> Fault:
    """One HubSpot error object (a failed answer's body, or an item of a batch answer's ``errors``): its
    ``message``, its ``category`` as the code and the error the category names (else ``default``).
    HubSpot's docs treat every field as optional."""
    from closeloop.http import Fault  # noqa: PLC0415 - keep httpx off the webhook path

    category = str(error.get("category") or "")
    return Fault(message=str(error.get("message") or ""), code=category, error=_CATEGORY_ERRORS.get(category, default))


def read_hubspot_fault(response: httpx.Response) -> Fault | None:
    """What a failed HubSpot answer says (``VendorHttp``'s ``read_fault``). Its category decides the error
    only for a 4xx that is not about access (401, 403): a 5xx stays Unavailable, a 401 AuthExpired."""
    body = response.json()
    if not isinstance(body, dict):
        return None
    fault = hubspot_fault(body)
    if response.status_code >= 500 or response.status_code in (401, 403):
        return replace(fault, error=None)
    return fault


def refresh_with_hubspot(
    api_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls HubSpot's ``POST /oauth/v1/token``.

    The client id and secret are form fields (before the refresh token, as HubSpot's example sends them).
    Never re-sent by itself once it may have reached HubSpot (Unanswered: RefreshingTokens re-sends, safe as
    the tokens do not rotate). Raises AuthRevoked when HubSpot refuses the refresh token
    (``BAD_REFRESH_TOKEN``, ``invalid_grant``: the app was uninstalled or the token revoked), FatalError on any
    other refusal (e.g. a wrong client id).
    """
    from closeloop.oauth import TokenEndpoint  # noqa: PLC0415 - keep the token machinery off the webhook path

    endpoint = TokenEndpoint(
        vendor="hubspot",
        label="HubSpot",
        client="hubspot-oauth",
        path="/oauth/v1/token",
        reconnect="reinstall the app and update HUBSPOT_REFRESH_TOKEN",
        client_auth="body",
        credentials_first=True,
        revoked=frozenset({"BAD_REFRESH_TOKEN", "invalid_grant"}),
        error_keys=("status", "error", "category"),
        default_expires_in=1800.0,
    )
    return endpoint.refresher(api_url, client_id, client_secret, transport=transport)


#: The v4 association batch read's paging position: the inputs still to send, (object id, "after" cursor or "").
_InputQueue = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Keyset:
    """The change scan's paging position: keyset on the modification time (``start_ms``), and within one query
    (the ``query``-th of the scan) HubSpot's ``after`` cursor. A query stops at the search's result cap; the
    next one starts at the last modification time seen."""

    query: int
    start_ms: int
    after: str | None = None


@dataclass
class _QueryTally:
    """One search query's results so far: how many, how many not seen before, the latest time among them."""

    last_ms: int
    count: int = 0
    fresh: int = 0


def _next_after(answer: Mapping[str, Any]) -> str | None:
    """The ``paging.next.after`` cursor of a HubSpot answer (a list page, or one input's batch result)."""
    return next_cursor(((answer.get("paging") or {}).get("next") or {}).get("after") or None)


class _HubSpotEvent(BaseModel):
    """One element of a HubSpot webhook batch, as HubSpot sends it."""

    model_config = ConfigDict(extra="allow", strict=False)

    eventId: int
    subscriptionId: int
    portalId: int
    occurredAt: int
    subscriptionType: str
    objectId: int | None = None
    fromObjectId: int | None = None
    #: Generic ``object.*`` events name the object's type here ("0-1"); typed ones ("contact.*") do not.
    objectTypeId: str | None = None
    #: A generic associationChange's subscribed end: see GUESSES["association_change_type_id"].
    fromObjectTypeId: str | None = None
    attemptNumber: int = 0
    appId: int | None = None
    propertyName: str | None = None
    propertyValue: str | None = None
    changeSource: str | None = None
    changeFlag: str | None = None
    sourceId: str | None = None


class HubSpotCrm:
    """CrmPort for HubSpot (private-app access token or an OAuth access token)."""

    name = "hubspot"
    MAX_BATCH: ClassVar[int] = 100
    TOLERANCE_MS: ClassVar[int] = 5 * 60 * 1000
    #: HubSpot subscription object -> canonical object type.
    OBJECTS: ClassVar[dict[str, str]] = {
        "contact": "contact",
        "company": "company",
        "deal": "deal",
        "line_item": "line_item",
        "product": "product",
    }
    #: ``objectTypeId`` of a generic ``object.*`` event -> canonical object type; others are ignored.
    OBJECT_TYPE_IDS: ClassVar[dict[str, str]] = {
        "0-1": "contact",
        "0-2": "company",
        "0-3": "deal",
        "0-7": "product",
        "0-8": "line_item",
    }
    #: canonical object type -> CRM v3 path segment.
    PATHS: ClassVar[dict[str, str]] = {
        "contact": "contacts",
        "company": "companies",
        "deal": "deals",
        "line_item": "line_items",
        "product": "products",
    }
    KINDS: ClassVar[dict[str, str]] = {
        "creation": "created",
        "propertyChange": "changed",
        "deletion": "deleted",
        "privacyDeletion": "deleted",
        "merge": "merged",
        "restore": "restored",
        "associationChange": "associated",
    }
    CONTACT_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "firstname",
        "lastname",
        "email",
        "phone",
        "mobilephone",
        "address",
        "city",
        "state",
        "zip",
        "country",
        "lastmodifieddate",
    )
    COMPANY_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "name",
        "phone",
        "address",
        "address2",
        "city",
        "state",
        "zip",
        "country",
        "hs_lastmodifieddate",
    )
    #: HubSpot has no default tax-id property; this custom company property holds it (settable per deployment).
    tax_number_property = "vat_number"

    DEAL_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "dealname",
        "amount",
        "deal_currency_code",
        "dealstage",
        "pipeline",
        "closedate",
        "hubspot_owner_id",
        "hs_lastmodifieddate",
        *DEAL_SYNC_FIELDS,
    )
    LINE_ITEM_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "name",
        "quantity",
        "price",
        "amount",
        "hs_sku",
        "hs_product_id",
        "hs_discount_percentage",
        "discount",
    )
    #: v3 association "type" of a deal's primary company (the unlabeled one is ``deal_to_company_unlabeled``).
    DEAL_PRIMARY_COMPANY_TYPE: ClassVar[str] = "deal_to_company"
    #: HubSpot defines no primary label from deals to contacts: the lowest contact id is taken.
    DEAL_PRIMARY_CONTACT_TYPE: ClassVar[str | None] = None
    #: Stage metadata is re-read after this long, or at once when a deal names a stage we do not know.
    PIPELINE_CACHE_SECONDS: ClassVar[float] = 600.0
    #: v4 association pages hold at most 500 results.
    ASSOCIATION_PAGE_SIZE: ClassVar[int] = 500
    SEARCH_PAGE_SIZE: ClassVar[int] = 100
    #: A search query pages to at most this many results (HubSpot answers 400 beyond); wider ranges are split.
    SEARCH_RESULT_CAP: ClassVar[int] = 10_000
    #: CRM search allows 5 requests/second per account: keep this far apart within one process.
    SEARCH_MIN_INTERVAL: ClassVar[float] = 0.2
    #: Where the portal id (and the app's UI domain) come from when not configured.
    ACCOUNT_INFO_PATH: ClassVar[str] = "/account-info/v3/details"
    UI_DOMAIN: ClassVar[str] = "app.hubspot.com"
    DEAL_URL: ClassVar[str] = "https://{domain}/contacts/{portal_id}/record/0-3/{deal_id}"
    #: canonical object type -> the default property group custom properties go into.
    PROPERTY_GROUPS: ClassVar[dict[str, str]] = {
        "deal": "dealinformation",
        "company": "companyinformation",
        "contact": "contactinformation",
    }
    #: PropertyDefinition.type -> HubSpot (type, fieldType); datetime values display as a date picker.
    FIELD_TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "string": ("string", "text"),
        "number": ("number", "number"),
        "date": ("date", "date"),
        "datetime": ("datetime", "date"),
        "enumeration": ("enumeration", "select"),
    }

    def __init__(
        self,
        *,
        client_secret: str | Callable[[], str],
        access_token: str | Callable[[], str] = "",
        oauth_tokens: Callable[[], AccessTokens] | None = None,
        base_url: str = "https://api.hubapi.com",
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        portal_id: str | int | None = None,
        signature_min_version: str = "v3",
    ) -> None:
        """``access_token`` is a private app's token; when it is empty, ``oauth_tokens()`` builds the OAuth
        app's refreshing tokens (called once, at the first API call). ``portal_id`` builds deal links; when
        None it is read once from the account-info API. ``signature_min_version``: the weakest webhook
        signature accepted (v1, v2 or v3); raises ValueError for another value.
        """
        if signature_min_version not in SIGNATURE_VERSIONS:
            raise ValueError(f"signature_min_version must be one of {', '.join(SIGNATURE_VERSIONS)}")
        self._client_secret = client_secret
        self._access_token = access_token
        self._oauth_tokens = oauth_tokens
        self._min_version = SIGNATURE_VERSIONS.index(signature_min_version)
        self._base_url = base_url
        self._clock = clock
        self._transport = transport
        self._sleep = sleep
        self._http: VendorHttp | None = None
        self._portal_id = str(portal_id) if portal_id is not None else ""
        self._ui_domain = self.UI_DOMAIN
        self._account_known = portal_id is not None
        self._stages: dict[str, dict[str, bool]] = {}  # pipeline id -> stage id -> won
        self._stages_at: float | None = None
        self._last_search: float | None = None

    # -- webhooks ----------------------------------------------------------------------------------

    def _secret(self) -> str:
        return self._client_secret() if callable(self._client_secret) else self._client_secret

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check the strongest signature the request carries; 401 when it is wrong, stale or too weak.

        A v3 signature is checked whenever present (HubSpot sends v1 alongside it; the v1 one is then
        ignored). Raises WebhookRejected(401).
        """
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "x-hubspot-signature-v3" in headers:
            self._verify_v3(request, headers)
            return
        signature = headers.get("x-hubspot-signature")
        if not signature:
            raise WebhookRejected(401, "missing HubSpot signature header")
        version = headers.get("x-hubspot-signature-version", "v1").strip().lower()
        if version in SIGNATURE_VERSIONS and SIGNATURE_VERSIONS.index(version) < self._min_version:
            raise WebhookRejected(
                401,
                f"HubSpot signature {version} is below the configured minimum {SIGNATURE_VERSIONS[self._min_version]}",
            )
        if version == "v1":
            expected = signature_v1(self._secret(), request.body)
        elif version == "v2":
            expected = signature_v2(self._secret(), request.method, request.uri, request.body)
        else:
            raise WebhookRejected(401, f"unsupported HubSpot signature version {version!r}")
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise WebhookRejected(401, "invalid HubSpot signature")

    def _verify_v3(self, request: WebhookRequest, headers: Mapping[str, str]) -> None:
        timestamp = headers.get("x-hubspot-request-timestamp", "").strip()
        if not timestamp.isdigit():
            raise WebhookRejected(401, "missing or malformed X-HubSpot-Request-Timestamp")
        skew = abs(int(self._clock() * 1000) - int(timestamp))
        if skew > self.TOLERANCE_MS:
            raise WebhookRejected(401, "HubSpot signature timestamp outside the 5-minute window")
        expected = signature_v3(self._secret(), request.method, request.uri, request.body, timestamp)
        if not hmac.compare_digest(expected.encode(), headers["x-hubspot-signature-v3"].strip().encode()):
            raise WebhookRejected(401, "invalid HubSpot signature")

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        payload = webhook_json(body)
        if not isinstance(payload, list):
            raise WebhookRejected(400, "expected a JSON array of HubSpot events")
        if not payload:
            raise WebhookRejected(400, "the event array is empty")
        if len(payload) > self.MAX_BATCH:
            raise WebhookRejected(400, f"a HubSpot batch holds at most {self.MAX_BATCH} events, got {len(payload)}")
        events: list[SyncEvent] = []
        for index, raw in enumerate(payload):
            try:
                event = _HubSpotEvent.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "event"
                raise WebhookRejected(400, f"event {index}: {where}: {first['msg']}") from exc
            parsed = self._to_sync_event(event)
            if parsed is not None:
                events.append(parsed)
        return events

    def _to_sync_event(self, event: _HubSpotEvent) -> SyncEvent | None:
        object_name, _, action = event.subscriptionType.partition(".")
        if object_name == "object":  # generic subscription: the type is an id ("0-1"), "2-…" for custom objects
            type_id = event.objectTypeId or event.fromObjectTypeId or ""
            object_type = self.OBJECT_TYPE_IDS.get(type_id.strip())
        else:
            object_type = self.OBJECTS.get(object_name)
        if object_type is None:
            return None  # conversations, tickets, custom objects, …: not ours
        # associationChange events name the two ends (fromObjectId is the subscribed type), not objectId.
        object_id = event.objectId if event.objectId is not None else event.fromObjectId
        if object_id is None:
            raise WebhookRejected(400, f"event {event.eventId}: objectId: Field required")
        return SyncEvent(
            ref=CrmRef(crm=self.name, object_type=object_type, object_id=str(object_id)),
            event_id=str(event.eventId),
            kind=self.KINDS.get(action, "other"),
            occurred_at=datetime.fromtimestamp(event.occurredAt / 1000, UTC),
            source_type=event.subscriptionType,
            property_name=event.propertyName,
            change_source=event.changeSource,
            actor=event.sourceId,
            dedupe_key=f"{event.subscriptionId}:{event.eventId}:{object_id}:{event.occurredAt}",
        )

    # -- CRM v3 reads ------------------------------------------------------------------------------

    @property
    def http(self) -> VendorHttp:
        if self._http is None:
            from closeloop.http import TokenAuth, VendorHttp  # noqa: PLC0415 - keep httpx off the webhook path

            token = self._access_token() if callable(self._access_token) else self._access_token
            kwargs: dict[str, Any] = {"transport": self._transport}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            if token:  # a private app's token wins when both are configured
                kwargs["headers"] = {"Authorization": f"Bearer {token}"}
            elif self._oauth_tokens is not None:
                kwargs["auth"] = TokenAuth(self._oauth_tokens())
            else:
                raise ConfigurationError(
                    "HubSpot needs HUBSPOT_ACCESS_TOKEN (private app) or HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET "
                    "and HUBSPOT_REFRESH_TOKEN (OAuth app)"
                )
            self._http = VendorHttp(
                self.name,
                self._base_url,
                request_id_header="x-hubspot-correlation-id",
                rate_limit=hubspot_rate_limit,
                read_fault=read_hubspot_fault,
                **kwargs,
            )
        return self._http

    def _get_object(self, object_type: str, object_id: str, properties: Sequence[str], associations: str) -> Any:
        try:
            response = self.http.request(
                "GET",
                f"/crm/v3/objects/{self.PATHS[object_type]}/{object_id}",
                params={"properties": ",".join(properties), "associations": associations, "archived": "false"},
            )
        except NotFound:
            return None
        return response.json()

    def _batch_read(self, object_type: str, ids: Sequence[str], properties: Sequence[str]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(ids), self.MAX_BATCH):
            response = self.http.request(
                "POST",
                f"/crm/v3/objects/{self.PATHS[object_type]}/batch/read",
                json={
                    "properties": list(properties),
                    "inputs": [{"id": i} for i in ids[start : start + self.MAX_BATCH]],
                },
                ok=(200, 207),
            )
            results.extend(response.json().get("results", []))
        return results

    #: v3 object reads embed at most this many associations per type (HubSpot's changelog, 2020-10).
    #: Counted in entries, the cautious reading: see GUESSES["embedded_association_count"].
    EMBEDDED_ASSOCIATION_CAP: ClassVar[int] = 100

    def _associated(self, obj: Any, from_type: str, to_type: str, primary_type: str | None) -> list[str]:
        """Ids of the ``to_type`` objects associated with ``obj`` (a ``from_type`` read with its
        associations), primary-labelled ones first, then ascending id.

        Taken from the associations embedded in the v3 read when that list is complete; when it may have
        been cut short (a ``paging.next`` cursor, or as many entries as HubSpot embeds), every page is read
        through the v4 batch read instead: one or more extra calls, for crowded objects only.
        """
        embedded = (obj.get("associations") or {}).get(self.PATHS[to_type]) or {}
        results = embedded.get("results") or []
        if ((embedded.get("paging") or {}).get("next")) or len(results) >= self.EMBEDDED_ASSOCIATION_CAP:
            return self._associations(from_type, to_type, [str(obj["id"])]).get(str(obj["id"]), [])
        primary = {str(r["id"]) for r in results if r.get("type") == primary_type}
        ids = {str(r["id"]) for r in results}
        return sorted(ids, key=lambda i: (i not in primary, _id_order(i)))

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        if ref.object_type == "company":
            return self._company_customer(ref.object_id)
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        contact = self._get_object("contact", ref.object_id, self.CONTACT_PROPERTIES, "companies")
        if contact is None:
            return None
        companies = self._associated(contact, "contact", "company", "contact_to_company")
        if companies:
            return self._company_customer(companies[0])
        return self._contact_customer(ref, contact)

    def _contact_customer(self, ref: CrmRef, contact: Any) -> Customer:
        person = self._person(contact)
        props = contact.get("properties") or {}
        return Customer(
            ref=ref,
            name=" ".join(p for p in (person.first_name, person.last_name) if p),
            email=person.email,
            phone=person.phone,
            first_name=person.first_name,
            last_name=person.last_name,
            address=self._address(props, line2_key=None),
            updated_at=_parse_time(contact.get("updatedAt")),
        )

    #: v4 typeIds of the primary company associations (contact -> its primary company, and back; a deal's
    #: primary company), as the v3 "types" contact_to_company, company_to_contact and deal_to_company.
    PRIMARY_ASSOCIATION_IDS: ClassVar[frozenset[int]] = frozenset({1, 2, 5})
    #: v4 batch association reads take up to 1,000 inputs.
    MAX_ASSOCIATION_BATCH: ClassVar[int] = 1000

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """``resolve_customer`` for many refs in batch calls: contacts and their company links, then the
        companies, their people links and those people (about 5 calls per 100 objects, not 2 per object)."""
        unique = list(dict.fromkeys(refs))
        contact_ids = [r.object_id for r in unique if r.object_type == "contact"]
        company_ids = [r.object_id for r in unique if r.object_type == "company"]
        if len(unique) != len(contact_ids) + len(company_ids):
            raise ValueError("only contacts and companies resolve to customers")
        contacts = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        company_of = {k: v[0] for k, v in self._associations("contact", "company", list(contacts)).items() if v}
        wanted = list(dict.fromkeys([*company_ids, *company_of.values()]))
        companies = self._companies(wanted)
        result: dict[CrmRef, Customer | None] = {}
        for ref in unique:
            if ref.object_type == "company":
                result[ref] = companies.get(ref.object_id)
            elif ref.object_id in company_of:
                result[ref] = companies.get(company_of[ref.object_id])
            elif ref.object_id in contacts:
                result[ref] = self._contact_customer(ref, contacts[ref.object_id])
            else:
                result[ref] = None
        return result

    def _companies(self, company_ids: Sequence[str]) -> dict[str, Customer]:
        properties = (*self.COMPANY_PROPERTIES, self.tax_number_property)
        companies = self._batch_read("company", company_ids, properties)
        people_of = self._associations("company", "contact", [str(c["id"]) for c in companies])
        person_ids = list(dict.fromkeys(i for ids in people_of.values() for i in ids))
        people = {str(c["id"]): c for c in self._batch_read("contact", person_ids, self.CONTACT_PROPERTIES)}
        return {
            str(c["id"]): self._company_from(c, [people[i] for i in people_of.get(str(c["id"]), []) if i in people])
            for c in companies
        }

    def _associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """Associated ids per object (v4 batch read, every page), primary ones first, then ascending id.

        An object with more associations than fit one page comes back with ``paging.next.after``; its next
        page is asked for with ``{"id", "after"}`` among the inputs of a later call. The paging position is
        the queue of inputs still to send (``_InputQueue``): raises PagingLoop (a FatalError) when HubSpot
        hands back cursors it already gave (the queue repeats), as it would loop forever.
        """
        path = f"/crm/v4/associations/{self.PATHS[from_type]}/{self.PATHS[to_type]}/batch/read"
        queue: _InputQueue = tuple((i, "") for i in dict.fromkeys(ids))
        if not queue:
            return {}

        def fetch(queue: _InputQueue) -> Page[tuple[str, list[Any]], _InputQueue]:
            batch, rest = queue[: self.MAX_ASSOCIATION_BATCH], queue[self.MAX_ASSOCIATION_BATCH :]
            inputs = [{"id": i, "after": after} if after else {"id": i} for i, after in batch]
            # 207: some objects have no associations, which is not an error here
            response = self.http.request("POST", path, json={"inputs": inputs}, ok=(200, 207))
            to: dict[str, list[Any]] = {i: [] for i, _ in batch}
            cursors: list[tuple[str, str]] = []
            for result in response.json().get("results") or []:
                from_id = str((result.get("from") or {}).get("id"))
                to.setdefault(from_id, []).extend(result.get("to") or [])
                after = _next_after(result)
                if after:
                    cursors.append((from_id, after))
            # One item per object asked about (even with no associations): a batch of such objects is not
            # the end of the list while inputs remain.
            return Page(list(to.items()), (*rest, *cursors) or None)

        targets: dict[str, list[Any]] = {}
        for from_id, to in paginate(fetch, queue, vendor=self.name, what=f"{from_type} to {to_type} associations"):
            targets.setdefault(from_id, []).extend(to)
        found: dict[str, list[str]] = {}
        for from_id, to in targets.items():
            primary = {
                str(t["toObjectId"])
                for t in to
                if any(a.get("typeId") in self.PRIMARY_ASSOCIATION_IDS for a in t.get("associationTypes") or [])
            }
            found[from_id] = sorted({str(t["toObjectId"]) for t in to}, key=lambda i: (i not in primary, _id_order(i)))
        return found

    #: The "last modified" property of each object type, as HubSpot's search filters and sorts on it.
    MODIFIED_PROPERTY: ClassVar[dict[str, str]] = {
        "company": "hs_lastmodifieddate",
        "contact": "lastmodifieddate",
        "deal": "hs_lastmodifieddate",
    }

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Companies, contacts and deals modified at or after ``since``, oldest first, per type.

        Keyset paging on the modification time: past the search's 10,000-result cap the next query starts
        at the last time seen, so any number of changes is reachable.
        """
        for object_type in self.MODIFIED_PROPERTY:
            events = paginate(
                self._changes_fetch(object_type, since),
                _Keyset(query=0, start_ms=_epoch_ms(since)),
                vendor=self.name,
                what=f"{object_type} changes",
            )
            yield from (event for event in events if event is not None)

    def _changes_fetch(self, object_type: str, since: datetime) -> Callable[[_Keyset], Page[SyncEvent | None, _Keyset]]:
        """The page reader of one object type's change scan: each page's results as change events, None
        for a result an earlier query of the scan already gave (same id, same modification time)."""
        prop = self.MODIFIED_PROPERTY[object_type]
        seen: set[tuple[str, str]] = set()
        tally = _QueryTally(last_ms=0)

        def fetch(position: _Keyset) -> Page[SyncEvent | None, _Keyset]:
            nonlocal tally
            if position.after is None:  # a new query: its own count of results and of fresh ones
                tally = _QueryTally(last_ms=position.start_ms)
            body: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(position.start_ms)}]}
                ],
                "properties": [prop],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "limit": self.SEARCH_PAGE_SIZE,
            }
            if position.after is not None:
                body["after"] = position.after
            page = self._search(object_type, body)
            events: list[SyncEvent | None] = []
            for result in page.get("results") or []:
                tally.count += 1
                modified = _parse_time((result.get("properties") or {}).get(prop)) or _parse_time(
                    result.get("updatedAt")
                )
                modified_ms = _epoch_ms(modified) if modified else position.start_ms
                key = (str(result["id"]), str(modified_ms))
                tally.last_ms = max(tally.last_ms, modified_ms)
                if key in seen:
                    events.append(None)
                    continue
                seen.add(key)
                tally.fresh += 1
                events.append(self._change_event(object_type, key[0], modified or since))
            after = _next_after(page)
            if after and tally.count < self.SEARCH_RESULT_CAP:
                return Page(events, replace(position, after=after))
            if tally.count >= self.SEARCH_RESULT_CAP and tally.fresh:  # past the cap: from the last time seen
                return Page(events, _Keyset(query=position.query + 1, start_ms=tally.last_ms))
            return Page(events, None)

        return fetch

    def _change_event(self, object_type: str, object_id: str, modified: datetime) -> SyncEvent:
        ref = CrmRef(crm=self.name, object_type=object_type, object_id=object_id)
        return SyncEvent(
            ref=ref,
            event_id=f"poll:{ref}:{_epoch_ms(modified)}",
            kind="changed",
            occurred_at=modified,
            source_type=f"{object_type}.poll",
            dedupe_key=f"poll:{ref}:{_epoch_ms(modified)}",
        )

    def _company_customer(self, company_id: str) -> Customer | None:
        company = self._get_object(
            "company", company_id, (*self.COMPANY_PROPERTIES, self.tax_number_property), "contacts"
        )
        if company is None:
            return None
        contact_ids = self._associated(company, "company", "contact", "company_to_contact")
        by_id = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        return self._company_from(company, [by_id[i] for i in contact_ids if i in by_id])

    def _company_from(self, company: Any, contacts: Sequence[Any]) -> Customer:
        """A company's customer record; ``contacts`` in order, the primary contact first."""
        props = company.get("properties") or {}
        people = tuple(self._person(c) for c in contacts)
        primary = people[0] if people else None
        return Customer(
            ref=CrmRef(crm=self.name, object_type="company", object_id=str(company["id"])),
            name=_clean(props.get("name")),
            email=primary.email if primary else "",
            phone=(primary.phone if primary and primary.phone else _clean(props.get("phone"))),
            tax_number=_clean(props.get(self.tax_number_property)),
            first_name=primary.first_name if primary else "",
            last_name=primary.last_name if primary else "",
            address=self._address(props, line2_key="address2"),
            people=people[1:],
            updated_at=_parse_time(company.get("updatedAt")),
        )

    @staticmethod
    def _person(obj: Any) -> Person:
        props = obj.get("properties") or {}
        return Person(
            crm_id=str(obj["id"]),
            first_name=_clean(props.get("firstname")),
            last_name=_clean(props.get("lastname")),
            email=_clean(props.get("email")).lower(),
            phone=_clean(props.get("phone")) or _clean(props.get("mobilephone")),
        )

    @staticmethod
    def _address(props: Mapping[str, Any], line2_key: str | None) -> Address:
        return Address(
            line1=_clean(props.get("address")),
            line2=_clean(props.get(line2_key)) if line2_key else "",
            city=_clean(props.get("city")),
            region=_clean(props.get("state")),
            postal_code=_clean(props.get("zip")),
            country=_clean(props.get("country")),
        )

    # -- deals ---------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The deal with its line items, primary company, first contact and ``is_won`` resolved.

        Reads the deal (with its company/contact associations), its line-item associations (v4, paged) and
        the line items (batch read, 100 at a time). Pipelines are cached for ``PIPELINE_CACHE_SECONDS``.
        Returns None when the deal does not exist or is archived. Raises IntegrationError subclasses, and
        ValidationFailed when a number or date HubSpot sent cannot be parsed.
        """
        deal = self._get_object("deal", deal_id, self.DEAL_PROPERTIES, "companies,contacts")
        if deal is None:
            return None
        companies = self._associated(deal, "deal", "company", self.DEAL_PRIMARY_COMPANY_TYPE)
        contacts = self._associated(deal, "deal", "contact", self.DEAL_PRIMARY_CONTACT_TYPE)
        return self._deal(
            deal,
            company=self._ref("company", companies[0]) if companies else None,
            contact=self._ref("contact", contacts[0]) if contacts else None,
            line_items=self._line_items(str(deal["id"])),
        )

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Won deals (any pipeline) whose close date is in [closed_from, closed_before), by CRM search.

        Naive datetimes are taken as UTC. Without line items, company or contact: search results carry
        no associations, and reconcile compares deal amounts only. A range holding more than
        ``SEARCH_RESULT_CAP`` matches is split in halves until each part fits. Search calls are kept
        ``SEARCH_MIN_INTERVAL`` apart. Raises IntegrationError subclasses; FatalError when more than the cap
        share one millisecond of close date (no split can separate them).
        """
        won_stages = sorted({s for stages in self._stage_table()[0].values() for s, won in stages.items() if won})
        if not won_stages:
            return
        yield from self._won_in(_epoch_ms(closed_from), _epoch_ms(closed_before), won_stages, frozenset())

    def _won_in(self, start_ms: int, end_ms: int, stages: list[str], skip: frozenset[str]) -> Iterator[Deal]:
        """One search query over [start_ms, end_ms); ``skip`` = ids already yielded by an enclosing range."""
        if start_ms >= end_ms:
            return
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "closedate", "operator": "GTE", "value": str(start_ms)},
                        {"propertyName": "closedate", "operator": "LT", "value": str(end_ms)},
                        {"propertyName": "dealstage", "operator": "IN", "values": stages},
                    ]
                }
            ],
            "properties": list(self.DEAL_PROPERTIES),
            # A unique, immutable sort key keeps offset paging stable while deals change.
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": self.SEARCH_PAGE_SIZE,
        }
        yielded: set[str] = set()
        seen = 0
        split: frozenset[str] | None = None  # the range must be split: skip these ids there (more added below)

        def fetch(after: str | None) -> Page[Any, str | None]:
            nonlocal seen, split
            page = self._search("deal", {**body, "after": after} if after is not None else body)
            if after is None and int(page.get("total") or 0) > self.SEARCH_RESULT_CAP:
                split = skip
                return Page((), None)
            results = page.get("results") or []
            seen += len(results)
            following = _next_after(page)
            if following and seen >= self.SEARCH_RESULT_CAP:
                # ``total`` was absent or grew while paging: split what is left, skipping what we gave out.
                split = skip | yielded  # with this page's ids, once they are given out below
                return Page(results, None)
            return Page(results, following)

        for result in paginate(fetch, None, vendor=self.name, what="won deals search"):
            object_id = str(result["id"])
            if object_id not in skip and object_id not in yielded:
                yielded.add(object_id)
                yield self._deal(result)
        if split is not None:
            yield from self._split(start_ms, end_ms, stages, split | yielded)

    def _split(self, start_ms: int, end_ms: int, stages: list[str], skip: frozenset[str]) -> Iterator[Deal]:
        if end_ms - start_ms < 2:
            raise FatalError(
                f"more than {self.SEARCH_RESULT_CAP} won deals closed at {start_ms} ms: the search cannot page them",
                vendor=self.name,
            )
        middle = start_ms + (end_ms - start_ms) // 2
        yield from self._won_in(start_ms, middle, stages, skip)
        yield from self._won_in(middle, end_ms, stages, skip)

    def _search(self, object_type: str, body: Mapping[str, Any]) -> Any:
        if self._last_search is not None:
            wait = self.SEARCH_MIN_INTERVAL - (self._clock() - self._last_search)
            if wait > 0:
                (self._sleep or time.sleep)(min(wait, self.SEARCH_MIN_INTERVAL))
        try:
            response = self.http.request("POST", f"/crm/v3/objects/{self.PATHS[object_type]}/search", json=body)
        finally:
            self._last_search = self._clock()
        return response.json()

    def _deal(
        self,
        obj: Any,
        *,
        company: CrmRef | None = None,
        contact: CrmRef | None = None,
        line_items: tuple[LineItem, ...] = (),
    ) -> Deal:
        props = obj.get("properties") or {}
        deal_id = str(obj["id"])
        pipeline, stage = _clean(props.get("pipeline")), _clean(props.get("dealstage"))
        return Deal(
            ref=self._ref("deal", deal_id),
            name=_clean(props.get("dealname")),
            amount=_decimal(props.get("amount"), f"deal {deal_id} amount"),
            currency=_clean(props.get("deal_currency_code")).upper(),
            stage=stage,
            pipeline=pipeline,
            is_won=self._is_won(pipeline, stage),
            close_date=_close_date(props.get("closedate"), deal_id),
            owner_id=_clean(props.get("hubspot_owner_id")),
            company=company,
            contact=contact,
            line_items=line_items,
            url=self._deal_url(deal_id),
            updated_at=_parse_time(props.get("hs_lastmodifieddate") or obj.get("updatedAt")),
            synced={name: _clean(props.get(name)) for name in DEAL_SYNC_FIELDS if props.get(name) is not None},
        )

    def _ref(self, object_type: str, object_id: str) -> CrmRef:
        return CrmRef.model_validate({"crm": self.name, "object_type": object_type, "object_id": object_id})

    def _line_items(self, deal_id: str) -> tuple[LineItem, ...]:
        path = f"/crm/v4/objects/{self.PATHS['deal']}/{deal_id}/associations/line_items"

        def fetch(after: str | None) -> Page[str, str | None]:
            params: dict[str, Any] = {"limit": self.ASSOCIATION_PAGE_SIZE}
            if after is not None:
                params["after"] = after
            page = self.http.request("GET", path, params=params).json()
            return Page([str(r["toObjectId"]) for r in page.get("results") or []], _next_after(page))

        ids = list(paginate(fetch, None, vendor=self.name, what=f"line items of deal {deal_id}"))
        unique = sorted(set(ids), key=_id_order)
        if not unique:
            return ()
        # A line item deleted between the two reads is simply absent from the batch answer (207).
        read = self._batch_read("line_item", unique, self.LINE_ITEM_PROPERTIES)
        return tuple(self._line_item(r) for r in sorted(read, key=lambda r: _id_order(str(r["id"]))))

    @staticmethod
    def _line_item(obj: Any) -> LineItem:
        props = obj.get("properties") or {}
        item_id = str(obj["id"])
        what = f"line item {item_id}"
        quantity = _decimal(props.get("quantity"), f"{what} quantity")
        price = _decimal(props.get("price"), f"{what} price") or Decimal(0)
        # HubSpot's net price is quantity x (price - unit discount) less the percentage; LineItem has no unit
        # discount, so it is folded into the unit price (exact, unlike converting it to a percentage).
        unit_discount = _decimal(props.get("discount"), f"{what} discount")
        return LineItem(
            crm_id=item_id,
            name=_clean(props.get("name")),
            sku=_clean(props.get("hs_sku")),
            quantity=quantity if quantity is not None else Decimal(1),
            unit_price=price - unit_discount if unit_discount else price,
            discount_percent=_decimal(props.get("hs_discount_percentage"), f"{what} discount percentage"),
            amount=_decimal(props.get("amount"), f"{what} amount"),
        )

    # -- pipelines and links ---------------------------------------------------------------------------

    def _stage_table(self, *, force: bool = False) -> tuple[dict[str, dict[str, bool]], bool]:
        """pipeline id -> stage id -> won, and whether it was (re)read just now."""
        now = self._clock()
        if not force and self._stages_at is not None and now - self._stages_at < self.PIPELINE_CACHE_SECONDS:
            return self._stages, False
        pipelines = self.http.request("GET", f"/crm/v3/pipelines/{self.PATHS['deal']}").json().get("results") or []
        self._stages = {
            str(p["id"]): {str(s["id"]): _stage_is_won(s.get("metadata") or {}) for s in p.get("stages") or []}
            for p in pipelines
        }
        self._stages_at = now
        return self._stages, True

    def _is_won(self, pipeline: str, stage: str) -> bool:
        if not stage:
            return False
        table, fresh = self._stage_table()
        won = _stage_lookup(table, pipeline, stage)
        if won is None and not fresh:  # a stage or pipeline created since we cached them
            won = _stage_lookup(self._stage_table(force=True)[0], pipeline, stage)
        return bool(won)

    def _deal_url(self, deal_id: str) -> str:
        if not self._account_known:
            try:
                info = self.http.request("GET", self.ACCOUNT_INFO_PATH).json()
            except FatalError:  # not served (404) or not allowed (403): links stay empty, and we stop asking
                info = {}
            self._account_known = True
            if isinstance(info, dict) and info.get("portalId"):
                self._portal_id = str(info["portalId"])
                self._ui_domain = _clean(info.get("uiDomain")) or self._ui_domain
        if not self._portal_id:
            return ""
        return self.DEAL_URL.format(domain=self._ui_domain, portal_id=self._portal_id, deal_id=deal_id)

    # -- writes ----------------------------------------------------------------------------------------

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """Write properties on deals by id, ``MAX_BATCH`` per batch update; "" clears a value.

        HubSpot validates a batch as a whole (400: nothing in it is written) but reports unknown ids per
        batch (207: the others are written). Every batch is sent even when an earlier one failed; then the
        first failure is raised: ValidationFailed (a rejected value or property), NotFound (naming the ids
        HubSpot could not find). Retriable errors (429, 5xx, 401) are raised at once; a retry is harmless.
        """
        self._raise_first(self._batch_update("deal", updates))

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """Write properties on companies and contacts (one batch update per type and ``MAX_BATCH``).

        Raises ValueError for other object types, otherwise as ``update_deals``.
        """
        by_type: dict[str, dict[str, Mapping[str, str]]] = {}
        for ref, properties in updates.items():
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"{ref} is not a customer (company or contact)")
            by_type.setdefault(ref.object_type, {})[ref.object_id] = properties
        self._raise_first([e for object_type, chunk in by_type.items() for e in self._batch_update(object_type, chunk)])

    @staticmethod
    def _raise_first(errors: Sequence[IntegrationError]) -> None:
        if errors:
            raise errors[0]

    def _batch_update(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> list[IntegrationError]:
        """Send every batch; return the fatal failures (a 400 batch, ids reported missing, other 207 errors)."""
        from closeloop.http import Fault, typed_error  # noqa: PLC0415 - keep httpx off the webhook path

        items = list(updates.items())
        errors: list[IntegrationError] = []
        missing: list[str] = []
        for start in range(0, len(items), self.MAX_BATCH):
            inputs = [{"id": i, "properties": dict(p)} for i, p in items[start : start + self.MAX_BATCH]]
            try:
                response = self.http.request(
                    "POST",
                    f"/crm/v3/objects/{self.PATHS[object_type]}/batch/update",
                    json={"inputs": inputs},
                    ok=(200, 207),
                )
            except FatalError as exc:
                errors.append(exc)
                continue
            if response.status_code != 207:
                continue
            for error in response.json().get("errors") or []:
                fault = hubspot_fault(error, default=ValidationFailed)
                if fault.error is NotFound:
                    missing.extend(str(i) for i in ((error.get("context") or {}).get("ids") or []))
                else:
                    what = f"HubSpot rejected part of a {object_type} batch update"
                    errors.append(typed_error(207, fault, what, vendor=self.name))
        if missing:
            what = f"HubSpot has no {object_type} with id(s) {', '.join(missing)}"
            errors.append(typed_error(207, Fault(code="OBJECT_NOT_FOUND", error=NotFound), what, vendor=self.name))
        return errors

    #: Canonical customer field -> the company property resolve_customer reads it from (tax: see below).
    COMPANY_FIELD_PROPERTIES: ClassVar[dict[str, str]] = {
        "name": "name",
        "address.line1": "address",
        "address.line2": "address2",
        "address.city": "city",
        "address.region": "state",
        "address.postal_code": "zip",
        "address.country": "country",
    }
    #: Canonical customer field -> the contact property it is read from (a company's primary person, or a
    #: contact billed on its own; phone is handled apart: ``phone`` wins over ``mobilephone``).
    CONTACT_FIELD_PROPERTIES: ClassVar[dict[str, str]] = {
        "first_name": "firstname",
        "last_name": "lastname",
        "email": "email",
    }
    #: A contact's own address as resolve_customer reads it (a contact has no second address line).
    CONTACT_ADDRESS_PROPERTIES: ClassVar[dict[str, str]] = {
        "address.line1": "address",
        "address.city": "city",
        "address.region": "state",
        "address.postal_code": "zip",
        "address.country": "country",
    }

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer fields where ``resolve_customer`` reads them; return those it cannot hold.

        A contact that belongs to a company is written as that company (the billable customer). On a
        company: name, address and tax number go on the company; email, first and last name on its
        primary person (returned when it has none); the phone where it is read from (the person's when it
        has one, else the company's; "" clears both). On a contact billed alone: its own properties; its
        name is first + last name (returned unless it already equals that), and it holds no tax number and
        no second address line. "people" is always returned. One PATCH per object written (at most two).
        Raises NotFound when the record is gone, ValueError for an unknown field name or a deal ref,
        IntegrationError subclasses as the API answers.
        """
        unknown = sorted(set(values) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(f"not customer fields: {', '.join(unknown)}")
        if ref.object_type not in ("company", "contact"):
            raise ValueError(f"no customer for a {ref.object_type}")
        company_id = ref.object_id if ref.object_type == "company" else None
        contact: Any = None
        if company_id is None:
            contact = self._get_object("contact", ref.object_id, self.CONTACT_PROPERTIES, "companies")
            if contact is None:
                raise NotFound(f"HubSpot has no contact {ref.object_id}", vendor=self.name, status=404)
            companies = self._associated(contact, "contact", "company", "contact_to_company")
            company_id = companies[0] if companies else None
        writes: dict[tuple[str, str], dict[str, str]] = {}
        if company_id is not None:
            unwritable = self._company_field_writes(company_id, values, writes)
        else:
            unwritable = self._contact_field_writes(contact, values, writes)
        for (object_type, object_id), properties in writes.items():
            self.http.request(
                "PATCH", f"/crm/v3/objects/{self.PATHS[object_type]}/{object_id}", json={"properties": properties}
            )
        return unwritable

    def _company_field_writes(
        self, company_id: str, values: Mapping[str, str], writes: dict[tuple[str, str], dict[str, str]]
    ) -> list[str]:
        properties = (*self.COMPANY_PROPERTIES, self.tax_number_property)
        company = self._get_object("company", company_id, properties, "contacts")
        if company is None:
            raise NotFound(f"HubSpot has no company {company_id}", vendor=self.name, status=404)
        contact_ids = self._associated(company, "company", "contact", "company_to_contact")
        people = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        primary = next((people[i] for i in contact_ids if i in people), None)
        company_props = writes.setdefault(("company", company_id), {})
        person_props = writes.setdefault(("contact", str(primary["id"])), {}) if primary is not None else {}
        field_properties = {**self.COMPANY_FIELD_PROPERTIES, "tax_number": self.tax_number_property}
        unwritable: list[str] = []
        for name, value in values.items():
            if name in field_properties:
                company_props[field_properties[name]] = value
            elif name in self.CONTACT_FIELD_PROPERTIES and primary is not None:
                person_props[self.CONTACT_FIELD_PROPERTIES[name]] = value
            elif name == "phone":
                person_phone = self._person(primary).phone if primary is not None else ""
                if person_phone:
                    self._phone_writes(primary, value, person_props)
                if not person_phone or not value:  # the company's phone is read when the person has none
                    company_props["phone"] = value
            else:
                unwritable.append(name)
        self._drop_empty(writes)
        return unwritable

    def _contact_field_writes(
        self, contact: Any, values: Mapping[str, str], writes: dict[tuple[str, str], dict[str, str]]
    ) -> list[str]:
        props = writes.setdefault(("contact", str(contact["id"])), {})
        person = self._person(contact)
        first, last = values.get("first_name", person.first_name), values.get("last_name", person.last_name)
        unwritable: list[str] = []
        for name, value in values.items():
            if name in self.CONTACT_FIELD_PROPERTIES:
                props[self.CONTACT_FIELD_PROPERTIES[name]] = value
            elif name in self.CONTACT_ADDRESS_PROPERTIES:
                props[self.CONTACT_ADDRESS_PROPERTIES[name]] = value
            elif name == "phone":
                self._phone_writes(contact, value, props)
            elif not (name == "name" and value == " ".join(p.strip() for p in (first, last) if p.strip())):
                unwritable.append(name)
        self._drop_empty(writes)
        return unwritable

    @staticmethod
    def _phone_writes(contact: Any, value: str, props: dict[str, str]) -> None:
        """A person's phone is ``phone``, else ``mobilephone``: clearing it clears both."""
        props["phone"] = value
        if not value and _clean((contact.get("properties") or {}).get("mobilephone")):
            props["mobilephone"] = ""

    @staticmethod
    def _drop_empty(writes: dict[tuple[str, str], dict[str, str]]) -> None:
        for key in [k for k, v in writes.items() if not v]:
            del writes[key]

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the custom properties of ``object_type`` (deal, company, contact) that do not exist yet.

        Lists the type's properties once, then creates each missing definition in the type's default group.
        A 409 (created meanwhile by someone else) counts as existing. Returns the names created here.
        An existing property is left as it is, even if its type differs. Raises ValueError for an unknown
        object or property type, ValidationFailed when HubSpot rejects a definition.
        """
        group = self.PROPERTY_GROUPS.get(object_type)
        if group is None:
            raise ValueError(f"no custom properties for a {object_type}")
        path = f"/crm/v3/properties/{self.PATHS[object_type]}"
        existing = {str(p["name"]) for p in self.http.request("GET", path).json().get("results") or []}
        created: list[str] = []
        for definition in definitions:
            if definition.name in existing:
                continue
            try:
                self.http.request("POST", path, json=self._property_body(definition, group))
            except Conflict:
                pass
            else:
                created.append(definition.name)
            existing.add(definition.name)
        return created

    def _property_body(self, definition: PropertyDefinition, group: str) -> dict[str, Any]:
        try:
            hubspot_type, field_type = self.FIELD_TYPES[definition.type]
        except KeyError:
            raise ValueError(f"unsupported property type {definition.type!r}") from None
        body: dict[str, Any] = {
            "name": definition.name,
            "label": definition.label,
            "type": hubspot_type,
            "fieldType": field_type,
            "groupName": group,
            "description": definition.description,
        }
        if definition.type == "enumeration":
            # HubSpot's OptionInput requires label, value and hidden; displayOrder fixes the order shown.
            body["options"] = [
                {"label": option, "value": option, "displayOrder": order, "hidden": False}
                for order, option in enumerate(definition.options)
            ]
        return body


def _clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _decimal(value: Any, what: str) -> Decimal | None:
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


def _close_date(value: Any, deal_id: str) -> date | None:
    """A close date sent as ms since the epoch, an ISO datetime or an ISO date (the UTC day)."""
    text = _clean(value)
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


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _id_order(object_id: str) -> tuple[int, str]:
    return (int(object_id), "") if object_id.isdigit() else (0, object_id)


def _stage_is_won(metadata: Mapping[str, Any]) -> bool:
    """Won = closed with probability 1 (HubSpot sends both as strings, "true" and "1.0"; numbers accepted)."""
    closed = metadata.get("isClosed")
    if not (closed is True or str(closed).strip().lower() == "true"):
        return False
    try:
        return Decimal(str(metadata.get("probability")).strip()) == 1
    except InvalidOperation:
        return False


def _stage_lookup(table: Mapping[str, Mapping[str, bool]], pipeline: str, stage: str) -> bool | None:
    """Won or not for ``stage`` in ``pipeline`` (any pipeline when the deal names none); None if unknown."""
    if pipeline:
        return table.get(pipeline, {}).get(stage)
    return next((stages[stage] for stages in table.values() if stage in stages), None)
