"""Pipedrive's webhooks v2: the delivery body's models, the sender check and the parse into SyncEvents.

One event per POST, ``{"meta", "data", "previous"}`` (https://pipedrive.readme.io/docs/guide-for-webhooks-v2;
/work/shared/vendors/crm.md section 2; tests/contracts/pipedrive/operations.json ``webhooks.event``).
``data`` is the record after the change (null on a delete) and ``previous`` only the fields the change
touched. There is no signature: a webhook carries the HTTP Basic credentials chosen when it was registered,
and Closeloop's URLs end in a random path secret; both are checked in constant time before the body is read.

The models declare what the parser reads and allow the rest (``extra="allow"``): Pipedrive adds meta fields
and entities, and a delivery refused for a field Closeloop never reads would count towards the webhook's ban
(10 refused first attempts ban it for 30 minutes, and its events meanwhile are lost).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from closeloop.dates import parse_timestamp
from closeloop.errors import WebhookRejected
from closeloop.models import CrmRef, SyncEvent
from closeloop.ports import WebhookRequest
from closeloop.vendors.pipedrive.client import Secret, secret_value
from closeloop.vendors.pipedrive.quotes import quoted
from closeloop.wire import path_secret, webhook_json

#: Pipedrive webhook entity -> canonical object type (other entities are not Closeloop's business).
OBJECTS: dict[str, str] = {"organization": "company", "person": "contact", "deal": "deal", "product": "product"}
#: Webhook actions, v2 names first (v1's added/updated/deleted/merged still accepted).
KINDS: dict[str, str] = {
    "create": "created",
    "change": "changed",
    "delete": "deleted",
    "added": "created",
    "updated": "changed",
    "deleted": "deleted",
    "merged": "merged",
}

_Text = Annotated[str, StringConstraints(min_length=1)]


class PipedriveWebhookMeta(BaseModel):
    """A v2 delivery's ``meta``: which event, on which record, when. Pipedrive also sends ``version`` ("2.0"),
    ``company_id``, ``correlation_id``, ``webhook_id``, ``webhook_owner_id``, ``type``, ``is_bulk_edit``,
    ``attempt`` (1-4 over the retries), ``host`` and ``permitted_user_ids``; they are kept, not read."""

    model_config = ConfigDict(extra="allow")

    id: _Text = Field(description="The event's uuid: the same on every redelivery (the dedupe key).")
    action: _Text = Field(description="create, change or delete (v2); another action is kept as 'other'.")
    entity: _Text = Field(description="deal, person, organization, product, …; only these four are synced.")
    # A string in the v2 guide, an integer in v1 deliveries: both are read (see GUESSES["webhook ids"]).
    entity_id: _Text | int = Field(description="The id of the record the event is about.")
    timestamp: _Text = Field(description="When the event happened (ISO 8601, UTC).")
    user_id: str | int | None = Field(None, description="The user whose action it was.")
    change_source: str | None = Field(None, description="app, api, …: where the change was made.")


class PipedriveWebhookPayload(BaseModel):
    """One Pipedrive v2 webhook delivery. ``data`` and ``previous`` are the record's fields as Pipedrive
    names them (custom fields under ``custom_fields`` by hash); only ``previous.status`` is read (a status
    transition: won, lost, reopened)."""

    model_config = ConfigDict(extra="allow")

    meta: PipedriveWebhookMeta
    data: dict[str, Any] | None = Field(None, description="The record after the event; null on a delete.")
    previous: dict[str, Any] | None = Field(None, description="Only the fields the event changed, as they were.")


def check_sender(request: WebhookRequest, *, user: Secret, password: Secret, secret: Secret) -> None:
    """Check the Basic credentials and the URL's last path segment (both compared in constant time).

    The configured values are read only once the request carries credentials. Raises WebhookRejected(401)
    when either is missing or wrong, ConfigurationError when the path secret is unset or short; nothing of
    the body is read.
    """
    headers = {k.lower(): v for k, v in request.headers.items()}
    scheme, _, encoded = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebhookRejected(401, "missing HTTP Basic credentials on the Pipedrive webhook")
    try:
        sent_user, colon, sent_password = (
            base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        raise WebhookRejected(401, "malformed HTTP Basic credentials on the Pipedrive webhook") from None
    expected = path_secret("PIPEDRIVE_WEBHOOK_PATH_SECRET", secret_value(secret))
    segment = urlsplit(request.uri).path.rstrip("/").rpartition("/")[2]
    # Every comparison runs whatever the others found: the answer's timing says nothing about which failed.
    checks = (
        hmac.compare_digest(segment.encode(), expected.encode()),
        hmac.compare_digest(sent_user.encode(), secret_value(user).encode()),
        hmac.compare_digest(sent_password.encode(), secret_value(password).encode()),
    )
    if not (colon and all(checks)):
        raise WebhookRejected(401, "invalid Pipedrive webhook credentials or URL secret")


def read_delivery(body: bytes) -> PipedriveWebhookPayload:
    """The delivery's body through ``PipedriveWebhookPayload`` (numbers as exact Decimals).

    Raises WebhookRejected(400) naming the first thing the model refuses.
    """
    payload = webhook_json(body, parse_float=Decimal)
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "expected a Pipedrive v2 webhook object with a 'meta' object")
    try:
        return PipedriveWebhookPayload.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise WebhookRejected(400, f"{where}: {first['msg']}") from exc


def delivery_events(
    body: bytes, ref: Callable[[str, str], CrmRef], vendor: str, quote_stages: Collection[str] = ()
) -> list[SyncEvent]:
    """One v2 webhook delivery as SyncEvents (``ref(object_type, object_id)`` builds refs); other entities
    give ``[]``. A deal open in one of ``quote_stages`` (stage ids) after the event also gives a ``quote``
    event for the same id (the deal stands in for its quote: ``quotes``), with its own dedupe key.
    Raises WebhookRejected(400) naming what is malformed."""
    delivery = read_delivery(body)
    meta = delivery.meta
    object_type = OBJECTS.get(meta.entity)
    if object_type is None:
        return []  # activities, notes, stages, …: not ours
    occurred_at = parse_timestamp(meta.timestamp)
    if occurred_at is None:
        raise WebhookRejected(400, f"meta.timestamp: not a timestamp: {meta.timestamp[:40]!r}")
    # A status transition (won, lost, reopened) is the deal change invoicing cares about: name it.
    transition = delivery.previous is not None and "status" in delivery.previous
    user = meta.user_id
    types = [object_type]
    if object_type == "deal" and quoted(delivery.data, quote_stages):
        types.append("quote")
    return [
        SyncEvent(
            ref=ref(kind, str(meta.entity_id)),
            event_id=meta.id,
            kind=KINDS.get(meta.action, "other"),
            occurred_at=occurred_at,
            source_type=f"{meta.entity}.{meta.action}",
            property_name="status" if transition else None,
            change_source=(meta.change_source or "").strip() or None,
            actor=f"userId:{user}" if user not in (None, "") else None,
            # meta.id is the event's uuid: the same on every redelivery (meta.attempt counts them).
            dedupe_key=f"{vendor}:{meta.id}" + ("" if kind == object_type else f":{kind}"),
        )
        for kind in types
    ]
