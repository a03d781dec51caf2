"""How the sandboxes send webhooks: one HTTP attempt to a subscriber, timed, never raising.

Each vendor keeps what it sends (payload, batching, headers, signature scheme) and what it does after a
failure (retry schedule, ban, loss); ``send`` only makes the attempt and says how it went.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: the subscriber's status (None when it never answered) and how long it took."""

    status: int | None
    content: bytes
    error: str  # the exception's class name when the request failed ("" when answered)
    detail: str  # ``"<class>: <message>"`` of that exception ("" when answered)
    elapsed: float
    timeout: float

    @property
    def in_time(self) -> bool:
        return self.elapsed <= self.timeout

    @property
    def ok(self) -> bool:
        """Answered with a 2xx within the timeout (what every vendor counts as delivered)."""
        return self.status is not None and 200 <= self.status < 300 and self.in_time


def send(  # noqa: PLR0913 - one HTTP attempt's settings
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    *,
    method: str = "POST",
    connect_timeout: float | None = None,
    follow_redirects: bool = False,
    max_redirects: int = 20,
) -> Attempt:
    started = time.monotonic()
    limits = httpx.Timeout(timeout, connect=timeout if connect_timeout is None else connect_timeout)
    try:
        with httpx.Client(timeout=limits, follow_redirects=follow_redirects, max_redirects=max_redirects) as client:
            response = client.request(method, url, content=body, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        name = type(exc).__name__
        return Attempt(None, b"", name, f"{name}: {exc}", time.monotonic() - started, timeout)
    return Attempt(response.status_code, response.content, "", "", time.monotonic() - started, timeout)


def hmac_sha256_base64(key: str, message: bytes) -> str:
    """base64(HMAC-SHA256(key, message)): the webhook signature of Xero, Intuit and HubSpot (v3)."""
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()
