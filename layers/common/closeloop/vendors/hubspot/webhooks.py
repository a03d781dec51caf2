"""HubSpot webhooks: the signature checks (v3, v2, v1), the delivery body's pydantic models and its parsing into
SyncEvents. No HTTP client here: the webhook route only verifies and parses, and must start fast.

- v3 signature: base64(HMAC-SHA256(client_secret, METHOD + URI + raw body + timestamp)), timestamp in
  milliseconds in ``X-HubSpot-Request-Timestamp``; requests older than 5 minutes are rejected (and so are
  ones from more than 5 minutes in the future). Some %-escapes in the URI are decoded before hashing.
- v1 (what legacy app CRM subscriptions send): hex(sha256(client_secret + raw body)); v2 adds method + URI.
  The weakest version accepted is a setting (``HUBSPOT_SIGNATURE_MIN_VERSION``, v3 by default): v1 and v2
  carry no timestamp, so a captured delivery can be replayed forever.
- A webhook body is a JSON array of at most 100 events carrying ids only; each event is fetched back.
- Apps on the current developer platform subscribe with generic ``object.*`` types ("object.propertyChange")
  naming the object by ``objectTypeId`` ("0-1" contacts, "0-2" companies, "0-3" deals, "0-7" products); see
  HubSpot's changelog "Public Beta: Generic Webhook Subscriptions" (2024-08). Typed ``product.*`` subscriptions
  (creation, propertyChange, deletion, ...) are in the webhooks v3 spec's event type enum.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from closeloop.errors import WebhookRejected
from closeloop.models import CrmRef, SyncEvent
from closeloop.ports import WebhookRequest
from closeloop.wire import webhook_json

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


class HubSpotWebhookEvent(BaseModel):
    """One event of a HubSpot webhook delivery, as HubSpot's webhooks docs describe it (fields HubSpot may add
    are allowed and ignored)."""

    model_config = ConfigDict(extra="allow", strict=False)

    eventId: int
    subscriptionId: int
    portalId: int
    occurredAt: int = Field(description="milliseconds since the epoch")
    subscriptionType: str = Field(examples=["company.creation", "deal.propertyChange", "object.propertyChange"])
    objectId: int | None = None
    #: associationChange events name their two ends (this one is the subscribed type), not objectId.
    fromObjectId: int | None = None
    objectTypeId: str | None = Field(
        None, description="generic object.* events name the object's type: 0-1 contact, 0-2 company, 0-3 deal"
    )
    #: A generic associationChange's subscribed end: see GUESSES["association_change_type_id"].
    fromObjectTypeId: str | None = None
    attemptNumber: int = 0
    appId: int | None = None
    propertyName: str | None = None
    propertyValue: str | None = None
    changeSource: str | None = None
    changeFlag: str | None = None
    sourceId: str | None = None


#: Events in one delivery, at most (HubSpot's webhooks docs: "batches" of up to 100).
MAX_EVENTS = 100


class HubSpotWebhookBatch(RootModel[list[HubSpotWebhookEvent]]):
    """A HubSpot webhook delivery: a JSON array of 1 to 100 events (the webhook API's request body schema is
    generated from this model: ``WebhookRoute.body``)."""

    root: list[HubSpotWebhookEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class HubSpotWebhooks:
    """The webhook half of the HubSpot port: ``verify_webhook`` and ``parse_webhook`` (mixed into HubSpotCrm)."""

    name: str = "hubspot"
    _client_secret: str | Callable[[], str]
    _min_version: int
    _clock: Callable[[], float]

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
    KINDS: ClassVar[dict[str, str]] = {
        "creation": "created",
        "propertyChange": "changed",
        "deletion": "deleted",
        "privacyDeletion": "deleted",
        "merge": "merged",
        "restore": "restored",
        "associationChange": "associated",
    }

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
        """The delivery's events about objects we follow, read with ``HubSpotWebhookBatch``; other objects'
        events are skipped. Raises WebhookRejected(400) naming what is wrong (first problem only)."""
        payload = webhook_json(body)
        try:
            batch = HubSpotWebhookBatch.model_validate(payload)
        except ValidationError as exc:
            raise WebhookRejected(400, _refusal(exc, payload)) from exc
        return [parsed for event in batch.root if (parsed := self._to_sync_event(event)) is not None]

    def _to_sync_event(self, event: HubSpotWebhookEvent) -> SyncEvent | None:
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


def _refusal(error: ValidationError, payload: object) -> str:
    """Why HubSpotWebhookBatch refused a delivery, in one line: the first problem, and which event has it."""
    first = error.errors()[0]
    where = first["loc"]
    if not where:
        if first["type"] == "list_type":
            return "expected a JSON array of HubSpot events"
        if first["type"] == "too_short":
            return "the event array is empty"
        if first["type"] == "too_long" and isinstance(payload, list):
            return f"a HubSpot batch holds at most {MAX_EVENTS} events, got {len(payload)}"
        return f"body: {first['msg']}"
    index, *field = where
    return f"event {index}: {'.'.join(str(p) for p in field) or 'event'}: {first['msg']}"
