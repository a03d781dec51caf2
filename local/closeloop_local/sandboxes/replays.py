"""Idempotency caches: a write's first answer, replayed to a retry carrying the same key.

Vendors differ in the key (Xero's ``Idempotency-Key`` header, QuickBooks' ``requestid`` parameter), its
length limit, how long it lives and whether a different request under the same key is refused; those stay
in each sandbox. The cache only remembers and replays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from werkzeug.wrappers import Response


@dataclass(frozen=True)
class Replay:
    """The first answer given under a key, with what identified its request (``fingerprint``)."""

    fingerprint: str
    expires_at: float
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def response(self) -> Response:
        return Response(self.body, status=self.status, headers=list(self.headers))


class IdempotencyCache:
    """Answers by key for ``ttl`` seconds of the sandbox clock (forever when ``ttl`` is None)."""

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self._replays: dict[str, Replay] = {}

    def get(self, key: str, now: float) -> Replay | None:
        replay = self._replays.get(key)
        return replay if replay is not None and replay.expires_at > now else None

    def remember(self, key: str, response: Response, now: float, fingerprint: str = "") -> None:
        expires_at = math.inf if self.ttl is None else now + self.ttl
        headers = tuple(response.headers.items())
        self._replays[key] = Replay(fingerprint, expires_at, response.status_code, response.get_data(), headers)

    def clear(self) -> None:
        self._replays.clear()
