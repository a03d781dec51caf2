"""JSON on the wire: request bodies with exact money (Decimals as their literal, never through float), vendor
answers read with Decimal numbers, webhook bodies read strictly (a clear 400 for bytes that are not UTF-8
JSON) and their base64 HMAC-SHA256 signatures checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from closeloop.errors import ConfigurationError, FatalError, WebhookRejected

#: A secret carried in a webhook URL's path (Pipedrive, SugarCRM) is the sender's only proof: at least this
#: many characters (``closeloop setup`` makes 43 with ``secrets.token_urlsafe(32)``).
MIN_PATH_SECRET_LENGTH = 32


def dumps_exact(value: Any) -> bytes:
    """JSON with every Decimal written as its exact literal (``33.33``, never ``33.329999…``).

    httpx's ``json=`` goes through the stdlib encoder, which only knows floats; this walks the few JSON
    shapes a request body has instead. Raises ValueError for a NaN or infinite Decimal.
    """
    return _encode(value).encode()


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return format(value, "f")  # positional: Xero's parser need not read exponents
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, date):  # a datetime too: ISO 8601
        return json.dumps(value.isoformat())
    return json.dumps(value, allow_nan=False)  # str, int, bool, None (and a float, as Python would)


def webhook_json(body: bytes, *, parse_float: Any = float) -> Any:
    """A webhook body as JSON, or WebhookRejected(400) saying why it is not (encoding, then syntax)."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=parse_float)
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, "body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise WebhookRejected(400, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from exc


def read_decimal_object(text: str, *, who: str, vendor: str, status: int | None = None) -> dict[str, Any]:
    """A vendor's JSON answer with its numbers as Decimal (money must stay exact); FatalError otherwise.

    ``who`` starts the message (``"Xero"``, ``"GET /contacts: Zoho"``).
    """
    try:
        payload = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise FatalError(f"{who} sent a body that is not JSON", vendor=vendor, status=status) from exc
    if not isinstance(payload, dict):
        raise FatalError(f"{who} sent an unexpected JSON body", vendor=vendor, status=status)
    return payload


def to_decimal(value: Any, *, who: str, vendor: str) -> Decimal:
    """A JSON number (Decimal already, an int, or a numeric string) as Decimal; absent is zero."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation as exc:
        raise FatalError(f"{who} sent {value!r} where a number belongs", vendor=vendor) from exc


def hmac_base64_matches(secret: str, body: bytes, sent: str) -> bool:
    """Whether ``sent`` is base64(HMAC-SHA256(secret, body)), compared in constant time (empty never matches)."""
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return bool(sent) and hmac.compare_digest(sent.encode(), expected)


def path_secret(name: str, value: str) -> str:
    """``value`` if it is long enough to be a URL path secret; ConfigurationError naming ``name`` (never the value).

    An unset or short secret is the deployment's fault, not the sender's: the webhook answers 503 and alarms.
    """
    if not value:
        raise ConfigurationError(f"{name} is not set")
    if len(value) < MIN_PATH_SECRET_LENGTH:
        raise ConfigurationError(
            f"{name} is shorter than {MIN_PATH_SECRET_LENGTH} characters: generate a new one with `closeloop setup`"
        )
    return value
