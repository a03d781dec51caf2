"""Sample events for every trigger: the files in ``events/`` and the one helper that loads them.

``python -m closeloop_local.events`` (re)writes the files deterministically. Tests load them with
``load()``; a v3-signed webhook event is re-signed for "now" with ``resign()`` because HubSpot's v3
signature expires after 5 minutes (the v1-signed sample stays valid for ``sam local invoke -e``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SAMPLE_SECRET = "sandbox-webhook-secret"
SAMPLE_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
SAMPLE_TIME_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def hubspot_event(
    subscription_type: str, object_id: int, *, event_id: int, property_name: str = "", value: str = ""
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": 2000 + event_id % 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": SAMPLE_TIME_MS - 1000 + event_id,
        "subscriptionType": subscription_type,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
        "sourceId": "userId:45678",
    }
    if subscription_type.endswith(".creation"):
        event["changeFlag"] = "CREATED"
    if property_name:
        event["propertyName"] = property_name
        event["propertyValue"] = value
    return event


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    message = method.encode() + uri.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def http_api_event(path: str, body: bytes, headers: dict[str, str], *, host: str = SAMPLE_HOST) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as API Gateway builds it."""
    segments = path.strip("/").split("/")
    return {
        "version": "2.0",
        "routeKey": f"POST /webhooks/{{crm}}/{segments[-1]}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": host,
            "user-agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "54.174.62.1",
            **{k.lower(): v for k, v in headers.items()},
        },
        "pathParameters": {"crm": segments[-2]},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": host.split(".", maxsplit=1)[0],
            "domainName": host,
            "domainPrefix": host.split(".", maxsplit=1)[0],
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "54.174.62.1",
                "userAgent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)",
            },
            "requestId": "sample-request-id",
            "routeKey": f"POST /webhooks/{{crm}}/{segments[-1]}",
            "stage": "$default",
            "time": "24/Nov/2025:16:00:00 +0000",
            "timeEpoch": SAMPLE_TIME_MS,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def public_uri(event: dict[str, Any]) -> str:
    query = event.get("rawQueryString") or ""
    scheme = event["headers"].get("x-forwarded-proto", "https")
    return f"{scheme}://{event['requestContext']['domainName']}{event['rawPath']}" + (f"?{query}" if query else "")


def resign(
    event: dict[str, Any], secret: str = SAMPLE_SECRET, now_ms: int | None = None, *, body: bytes | None = None
) -> dict[str, Any]:
    """A copy of a webhook event with a fresh v3 signature (and optionally another body)."""
    signed = copy.deepcopy(event)
    if body is not None:
        signed["body"] = body.decode("utf-8", errors="surrogateescape")
    raw = body if body is not None else signed["body"].encode()
    timestamp = now_ms if now_ms is not None else int(time.time() * 1000)
    signed["headers"]["x-hubspot-signature-v3"] = sign_v3(secret, "POST", public_uri(signed), raw, timestamp)
    signed["headers"]["x-hubspot-request-timestamp"] = str(timestamp)
    signed["requestContext"]["requestId"] = uuid.uuid4().hex
    return signed


def _webhook(path: str, batch: list[dict[str, Any]], version: str) -> dict[str, Any]:
    body = json.dumps(batch, separators=(",", ":")).encode()
    event = http_api_event(path, body, {})
    if version == "v1":
        signature = hashlib.sha256(SAMPLE_SECRET.encode() + body).hexdigest()
        event["headers"].update({"x-hubspot-signature": signature, "x-hubspot-signature-version": "v1"})
        return event
    signed = resign(event, now_ms=SAMPLE_TIME_MS)
    signed["requestContext"]["requestId"] = "sample-request-id"  # deterministic files
    return signed


def _sqs(body: dict[str, Any], queue: str) -> dict[str, Any]:
    text = json.dumps(body, separators=(",", ":"))
    return {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(SAMPLE_TIME_MS),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(SAMPLE_TIME_MS + 5),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
        ]
    }


def samples() -> dict[str, dict[str, Any]]:
    """Every sample event by file name."""
    contacts_batch = [
        hubspot_event("company.creation", 1000001, event_id=101),
        hubspot_event("contact.creation", 51, event_id=102),
        hubspot_event("contact.propertyChange", 51, event_id=103, property_name="email", value="ann@acme.test"),
    ]
    deals_batch = [
        hubspot_event("deal.propertyChange", 3000001, event_id=201, property_name="dealstage", value="closedwon"),
        hubspot_event("company.propertyChange", 1000001, event_id=202, property_name="name", value="Acme Ltd"),
    ]
    work = {
        "kind": "crm_events",
        "pipeline": "contacts",
        "received_at": "2025-11-24T16:00:00Z",
        "events": [
            {
                "ref": {"crm": "hubspot", "object_type": "company", "object_id": "1000001"},
                "event_id": "101",
                "kind": "created",
                "occurred_at": "2025-11-24T15:59:59.101Z",
                "source_type": "company.creation",
                "change_source": "CRM_UI",
                "actor": "userId:45678",
                "dedupe_key": "2003:101:1000001:1763999999101",
            }
        ],
    }
    deal_work = {
        "kind": "crm_events",
        "pipeline": "deals",
        "received_at": "2025-11-24T16:00:00Z",
        "events": [
            {
                "ref": {"crm": "hubspot", "object_type": "deal", "object_id": "3000001"},
                "event_id": "201",
                "kind": "changed",
                "occurred_at": "2025-11-24T15:59:59.201Z",
                "source_type": "deal.propertyChange",
                "property_name": "dealstage",
                "change_source": "CRM_UI",
                "actor": "userId:45678",
                "dedupe_key": "2005:201:3000001:1763999999201",
            }
        ],
    }
    return {
        "webhook_contacts_v3.json": _webhook("/webhooks/hubspot/contacts", contacts_batch, "v3"),
        "webhook_contacts_v1.json": _webhook("/webhooks/hubspot/contacts", contacts_batch, "v1"),
        "webhook_deals_v3.json": _webhook("/webhooks/hubspot/deals", deals_batch, "v3"),
        "sqs_contact_work.json": _sqs(work, "closeloop-ContactQueue"),
        "sqs_deal_work.json": _sqs(deal_work, "closeloop-DealQueue"),
        "schedule_payment_poller.json": {"job": "payment_poller"},
        "schedule_reconcile.json": {"job": "reconcile"},
    }


def load(name: str) -> dict[str, Any]:
    """One sample event from ``events/`` (a fresh copy)."""
    data: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return data


def write(directory: Path = EVENTS_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, event in samples().items():
        path = directory / name
        path.write_text(json.dumps(event, indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else EVENTS_DIR):
        print(path)
