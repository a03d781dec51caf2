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
from datetime import UTC
from typing import Any, Literal

from closeloop.errors import WebhookRejected
from closeloop.models import AccountingEvent, AccountingResource
from closeloop.ports import WebhookRequest
from closeloop.vendors.xero.mapping import parse_xero_datetime
from closeloop.wire import hmac_base64_matches, webhook_json

SIGNATURE_HEADER = "x-xero-signature"
#: Webhook eventCategory -> the resource it is about; other categories are not followed.
WEBHOOK_RESOURCES: Mapping[str, AccountingResource] = {"CONTACT": "customer", "INVOICE": "invoice"}
WEBHOOK_KINDS: Mapping[str, Literal["created", "changed"]] = {"CREATE": "created", "UPDATE": "changed"}


def verify_xero_signature(key: str, request: WebhookRequest) -> None:
    """``x-xero-signature`` must be base64(HMAC-SHA256(``key``, raw body)), compared in constant time.

    Raises WebhookRejected(401) when it is missing or wrong (the intent-to-receive check expects exactly that).
    Nothing of the body is parsed.
    """
    sent = next((v for k, v in request.headers.items() if k.lower() == SIGNATURE_HEADER), "").strip()
    if not hmac_base64_matches(key, request.body, sent):
        raise WebhookRejected(401, "missing or wrong x-xero-signature for this webhook key")


def parse_xero_webhook(body: bytes, *, tenant_id: str, system: str = "xero") -> list[AccountingEvent]:
    """The CONTACT and INVOICE events of tenant ``tenant_id`` (others are dropped); ``[]`` for intent-to-receive.

    The dedupe key is built from the event's own fields (category, resource, type, time), so a redelivered
    batch gives the same keys (GUESSES["webhook_event_identity"]). Raises WebhookRejected(400) naming what is
    malformed.
    """
    payload = _webhook_object(body)
    events = payload.get("events")
    if not isinstance(events, list):
        raise WebhookRejected(400, "events: expected a list (a Xero webhook payload)")
    tenant = tenant_id.strip().lower()
    found: list[AccountingEvent] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise WebhookRejected(400, f"events[{index}]: expected an object")
        for key in ("resourceId", "eventCategory", "eventType", "eventDateUtc", "tenantId"):
            if not isinstance(event.get(key), str) or not event[key].strip():
                raise WebhookRejected(400, f"events[{index}].{key}: Field required")
        occurred = parse_xero_datetime(event["eventDateUtc"])
        if occurred is None:
            raise WebhookRejected(400, f"events[{index}].eventDateUtc: not a date-time")
        resource = WEBHOOK_RESOURCES.get(event["eventCategory"].upper())
        if resource is None or event["tenantId"].strip().lower() != tenant:
            continue
        resource_id = event["resourceId"].strip().lower()
        event_type = event["eventType"].upper()
        occurred = occurred.astimezone(UTC)
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


def _webhook_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object, or WebhookRejected(400) saying why it is not one."""
    payload = webhook_json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "expected a JSON object with an 'events' list")
    return payload
