"""Request bodies with exact money: JSON whose Decimals are written as their literal, never through float."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any


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
