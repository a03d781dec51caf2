"""Xero's webhooks: the signature check and the reading of a delivery into AccountingEvents.

Vendor facts encoded here (xero-webhooks.yaml "XW", developer.xero.com webhooks guide): ``x-xero-signature``
is base64(HMAC-SHA256(webhook key, raw body)); a body is ``{events[], firstEventSequence, lastEventSequence,
entropy}``, each event ``resourceId``, ``eventCategory`` (CONTACT, INVOICE, CREDITNOTE, SUBSCRIPTION),
``eventType`` CREATE|UPDATE (archiving is an UPDATE), ``eventDateUtc`` (UTC without an offset) and
``tenantId``: events carry ids only. The "intent to receive" check is a delivery with no events, signed right
or wrong, that must get 200 or 401 with an empty body. There are no payment webhooks: a payment shows as an
INVOICE UPDATE (GUESSES["payment_updates_invoice"]), and the If-Modified-Since polls catch the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from closeloop.errors import WebhookRejected
from closeloop.models import AccountingEvent, AccountingResource
from closeloop.ports import WebhookRequest
from closeloop.vendors.xero.mapping import parse_xero_datetime
from closeloop.wire import hmac_base64_matches, webhook_json

SIGNATURE_HEADER = "x-xero-signature"
#: Webhook eventCategory -> the resource it is about; other categories are not followed.
WEBHOOK_RESOURCES: Mapping[str, AccountingResource] = {"CONTACT": "customer", "INVOICE": "invoice"}
WEBHOOK_KINDS: Mapping[str, Literal["created", "changed"]] = {"CREATE": "created", "UPDATE": "changed"}
#: XW's bound on a sequence number (a 32-bit signed integer).
MAX_SEQUENCE = 2147483647


def verify_xero_signature(key: str, request: WebhookRequest) -> None:
    """``x-xero-signature`` must be base64(HMAC-SHA256(``key``, raw body)), compared in constant time.

    Raises WebhookRejected(401) when it is missing or wrong (the intent-to-receive check expects exactly that).
    Nothing of the body is parsed.
    """
    sent = next((v for k, v in request.headers.items() if k.lower() == SIGNATURE_HEADER), "").strip()
    if not hmac_base64_matches(key, request.body, sent):
        raise WebhookRejected(401, "missing or wrong x-xero-signature for this webhook key")


#: A string with something in it (``\S`` is searched for, in pydantic and in JSON Schema alike).
XeroText = Annotated[str, StringConstraints(pattern=r"\S")]


def _a_time(value: str) -> str:
    if parse_xero_datetime(value) is None:
        raise ValueError("not a date-time")
    return value


class XeroWebhookEvent(BaseModel):
    """One event of a delivery (XW ``WebhookEvent.events[]``): the record that changed, by id.

    The fields the parser reads are required; ``resourceUrl`` and ``tenantType`` (required in XW, never read)
    are typed but optional (GUESSES["webhook_body_leniency"]); fields Xero adds (``data`` on a credit note)
    are kept.
    """

    model_config = ConfigDict(extra="allow")

    resourceId: XeroText
    eventCategory: XeroText
    eventType: XeroText
    #: UTC without an offset (``2024-06-21T01:15:39.902``); a .NET ``/Date(…)/`` is read too.
    eventDateUtc: Annotated[XeroText, AfterValidator(_a_time)]
    tenantId: XeroText
    resourceUrl: str | None = None
    tenantType: str | None = None


class XeroWebhookPayload(BaseModel):
    """A Xero webhook delivery (XW ``WebhookEvent``): a batch of events; none for intent-to-receive.

    The sequence numbers and ``entropy`` are typed but optional, and a sequence may be 0 as in the
    intent-to-receive check (XW: required, at least 1; GUESSES["webhook_body_leniency"]).
    """

    model_config = ConfigDict(extra="allow")

    events: list[XeroWebhookEvent]
    firstEventSequence: Annotated[int, Field(ge=0, le=MAX_SEQUENCE)] | None = None
    lastEventSequence: Annotated[int, Field(ge=0, le=MAX_SEQUENCE)] | None = None
    entropy: str | None = None


def parse_xero_webhook(body: bytes, *, tenant_id: str, system: str = "xero") -> list[AccountingEvent]:
    """The CONTACT and INVOICE events of tenant ``tenant_id`` (others are dropped); ``[]`` for intent-to-receive.

    The body is read with ``XeroWebhookPayload``. The dedupe key is built from the event's own fields
    (category, resource, type, time), so a redelivered batch gives the same keys
    (GUESSES["webhook_event_identity"]). Raises WebhookRejected(400) naming what is malformed.
    """
    payload = read_xero_payload(body)
    tenant = tenant_id.strip().lower()
    found: list[AccountingEvent] = []
    for event in payload.events:
        resource = WEBHOOK_RESOURCES.get(event.eventCategory.upper())
        if resource is None or event.tenantId.strip().lower() != tenant:
            continue
        resource_id = event.resourceId.strip().lower()
        event_type = event.eventType.upper()
        occurred = cast(datetime, parse_xero_datetime(event.eventDateUtc)).astimezone(UTC)  # validated: a time
        found.append(
            AccountingEvent(
                system=system,
                resource=resource,
                resource_id=resource_id,
                kind=WEBHOOK_KINDS.get(event_type, "other"),
                occurred_at=occurred,
                dedupe_key=f"{system}:{resource}:{resource_id}:{event_type.lower()}:{occurred.isoformat()}",
            )
        )
    return found


def read_xero_payload(body: bytes) -> XeroWebhookPayload:
    """A delivery's body as ``XeroWebhookPayload``, or WebhookRejected(400) saying where it is not one
    (``events[0].resourceId: …``; the values themselves are never echoed)."""
    payload = webhook_json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "expected a JSON object with an 'events' list")
    try:
        return XeroWebhookPayload.model_validate(payload)
    except ValidationError as exc:
        problems = [f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors()[:3]]
        raise WebhookRejected(400, "; ".join(problems)) from None


def _location(loc: tuple[int | str, ...]) -> str:
    """Pydantic's error location as a path: ``("events", 0, "resourceId")`` -> ``events[0].resourceId``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"
