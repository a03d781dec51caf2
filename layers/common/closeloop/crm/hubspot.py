"""HubSpot adapter: webhook signatures (v3, v2, v1), batched webhook payloads, CRM v3 fetch-back.

Vendor facts this module encodes (see docs/vendors or HubSpot's "Validating requests" and webhooks docs):
- v3 signature: base64(HMAC-SHA256(client_secret, METHOD + URI + raw body + timestamp)), timestamp in
  milliseconds in ``X-HubSpot-Request-Timestamp``; requests older than 5 minutes are rejected (and so are
  ones from more than 5 minutes in the future). Some %-escapes in the URI are decoded before hashing.
- v1 (what legacy app CRM subscriptions send): hex(sha256(client_secret + raw body)); v2 adds method + URI.
- A webhook body is a JSON array of at most 100 events carrying ids only; each event is fetched back.

httpx is imported lazily: the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from closeloop.errors import NotFound, WebhookRejected
from closeloop.models import Address, CrmRef, Customer, Person, SyncEvent
from closeloop.ports import WebhookRequest

if TYPE_CHECKING:
    import httpx

    from closeloop.http import VendorHttp

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

    def __init__(
        self,
        *,
        client_secret: str | Callable[[], str],
        access_token: str | Callable[[], str] = "",
        base_url: str = "https://api.hubapi.com",
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._client_secret = client_secret
        self._access_token = access_token
        self._base_url = base_url
        self._clock = clock
        self._transport = transport
        self._sleep = sleep
        self._http: VendorHttp | None = None

    # -- webhooks ----------------------------------------------------------------------------------

    def _secret(self) -> str:
        return self._client_secret() if callable(self._client_secret) else self._client_secret

    def verify_webhook(self, request: WebhookRequest) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "x-hubspot-signature-v3" in headers:
            self._verify_v3(request, headers)
            return
        signature = headers.get("x-hubspot-signature")
        if not signature:
            raise WebhookRejected(401, "missing HubSpot signature header")
        version = headers.get("x-hubspot-signature-version", "v1").lower()
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
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise WebhookRejected(400, "body is not UTF-8") from exc
        except json.JSONDecodeError as exc:
            raise WebhookRejected(400, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
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
        object_type = self.OBJECTS.get(object_name)
        if object_type is None:
            return None  # conversations, tickets, …: not ours
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
            from closeloop.http import VendorHttp  # noqa: PLC0415 - keep httpx off the webhook path

            token = self._access_token() if callable(self._access_token) else self._access_token
            kwargs: dict[str, Any] = {"transport": self._transport}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            self._http = VendorHttp(
                self.name,
                self._base_url,
                headers={"Authorization": f"Bearer {token}"},
                request_id_header="x-hubspot-correlation-id",
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
                json={"properties": list(properties), "inputs": [{"id": i} for i in ids[start : start + 100]]},
                ok=(200, 207),
            )
            results.extend(response.json().get("results", []))
        return results

    @staticmethod
    def _associated(obj: Any, to: str, primary_type: str) -> list[str]:
        """Associated ids, primary-labelled ones first, then ascending id (deterministic)."""
        results = ((obj.get("associations") or {}).get(to) or {}).get("results") or []
        primary = {str(r["id"]) for r in results if r.get("type") == primary_type}
        ids = {str(r["id"]) for r in results}
        return sorted(ids, key=lambda i: (i not in primary, int(i) if i.isdigit() else i))

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        if ref.object_type == "company":
            return self._company_customer(ref.object_id)
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        contact = self._get_object("contact", ref.object_id, self.CONTACT_PROPERTIES, "companies")
        if contact is None:
            return None
        companies = self._associated(contact, "companies", "contact_to_company")
        if companies:
            return self._company_customer(companies[0])
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

    def _company_customer(self, company_id: str) -> Customer | None:
        company = self._get_object(
            "company", company_id, (*self.COMPANY_PROPERTIES, self.tax_number_property), "contacts"
        )
        if company is None:
            return None
        props = company.get("properties") or {}
        contact_ids = self._associated(company, "contacts", "company_to_contact")
        by_id = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        people = tuple(self._person(by_id[i]) for i in contact_ids if i in by_id)
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


def _clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
