"""OAuth2 refresh-token handling that never locks a connection out.

Vendors such as Xero rotate refresh tokens on every refresh and make them single-use, so two Lambdas
refreshing at once would leave one of them holding a dead token (``invalid_grant``). Here refresh is
serialised per connection through a DynamoDB lease, the new token pair is persisted (conditional write)
before anyone uses it, and the rotated refresh token is written back to the credentials secret.
Workers that lose the race wait for the winner's token instead of refreshing themselves.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from closeloop.errors import AuthRevoked, Busy
from closeloop.store import TokenState

KNOWN_TOKENS_KEPT = 10
EXPIRY_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class TokenGrant:
    """What a token endpoint returned."""

    access_token: str
    expires_in: float
    refresh_token: str


class TokenStore(Protocol):
    def get_token(self, connection: str) -> TokenState | None: ...

    def put_token(self, connection: str, state: TokenState) -> None: ...

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool: ...

    def release_lease(self, name: str, owner: str) -> None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class RefreshingTokens:
    """Hands out a valid access token for one connection, refreshing under a lease when needed.

    ``seed`` returns the refresh token from the credentials (env or secret; ``fresh=True`` bypasses the
    cache). A seed we have never held means the app was reconnected, so it replaces the stored one.
    ``refresh`` calls the vendor's token endpoint (raises AuthRevoked on ``invalid_grant``).
    ``write_back`` stores a rotated refresh token in the credentials secret.
    """

    def __init__(
        self,
        connection: str,
        store: TokenStore,
        *,
        seed: Callable[[bool], str],
        refresh: Callable[[str], TokenGrant],
        write_back: Callable[[str], object],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        wait_seconds: float = 20.0,
    ) -> None:
        self.connection = connection
        self._store = store
        self._seed = seed
        self._refresh = refresh
        self._write_back = write_back
        self._clock = clock
        self._sleep = sleep
        self._wait_seconds = wait_seconds
        self._owner = uuid.uuid4().hex
        self._cached: TokenState | None = None
        self.refreshes = 0

    def _usable(self, state: TokenState | None, stale: str | None) -> bool:
        return bool(
            state
            and state.access_token
            and state.access_token != stale
            and state.access_expires_at > self._clock() + EXPIRY_MARGIN_SECONDS
        )

    def access_token(self, stale: str | None = None) -> str:
        """A valid access token; ``stale`` is one the vendor just refused (forces a newer one)."""
        if self._usable(self._cached, stale):
            assert self._cached is not None
            return self._cached.access_token
        deadline = self._clock() + self._wait_seconds
        while True:
            state = self._store.get_token(self.connection)
            if self._usable(state, stale):
                assert state is not None
                self._cached = state
                return state.access_token
            lease = f"token#{self.connection}"
            if self._store.acquire_lease(lease, self._owner, 30):
                try:
                    return self._refresh_under_lease(stale)
                finally:
                    self._store.release_lease(lease, self._owner)
            if self._clock() > deadline:
                raise Busy(f"token refresh for {self.connection} is held by another worker")
            self._sleep(0.25)

    def _refresh_under_lease(self, stale: str | None) -> str:
        state = self._store.get_token(self.connection)  # re-read: the previous holder may have refreshed
        if self._usable(state, stale):
            assert state is not None
            self._cached = state
            return state.access_token
        seed = self._seed(False)
        refresh_token = self._choose(state, seed)
        try:
            grant = self._refresh(refresh_token)
        except AuthRevoked:
            fresh_seed = self._seed(True)  # a reconnect may have replaced the secret after our cache
            if fresh_seed == refresh_token or (state and token_hash(fresh_seed) in state.known_refresh_hashes):
                raise
            refresh_token = fresh_seed
            grant = self._refresh(refresh_token)
        self.refreshes += 1
        known = (token_hash(grant.refresh_token), token_hash(refresh_token), token_hash(seed))
        previous = state.known_refresh_hashes if state else ()
        new_state = TokenState(
            access_token=grant.access_token,
            access_expires_at=self._clock() + grant.expires_in,
            refresh_token=grant.refresh_token,
            version=(state.version if state else 0) + 1,
            known_refresh_hashes=tuple(dict.fromkeys(known + previous))[:KNOWN_TOKENS_KEPT],
            refreshed_at=self._clock(),
        )
        self._store.put_token(self.connection, new_state)  # persisted before anyone uses it
        self._cached = new_state
        self._write_back(grant.refresh_token)
        return new_state.access_token

    @staticmethod
    def _choose(state: TokenState | None, seed: str) -> str:
        if state is None:
            return seed
        if seed and seed != state.refresh_token and token_hash(seed) not in state.known_refresh_hashes:
            return seed  # reconnected since: the credentials hold a token we never had
        return state.refresh_token


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value (OAuth client authentication at a token endpoint)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
