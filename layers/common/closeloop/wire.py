"""JSON on the wire: request bodies with exact money (Decimals as their literal, never through float), and
webhook bodies read strictly (a clear 400 for bytes that are not UTF-8 JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from closeloop.errors import WebhookRejected


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
