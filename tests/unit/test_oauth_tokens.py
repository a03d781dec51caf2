"""RefreshingTokens: one refresh per expiry across concurrent workers, persisted before use, reconnects."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from closeloop.errors import AuthRevoked
from closeloop.oauth import RefreshingTokens, TokenGrant
from tests.fakes import MemoryStore


class Vendor:
    """A token endpoint with single-use rotating refresh tokens."""

    def __init__(self, first: str = "rt-0") -> None:
        self.valid = {first}
        self.calls = 0
        self.lock = threading.Lock()

    def refresh(self, token: str) -> TokenGrant:
        time.sleep(0.01)  # widen the race window
        with self.lock:
            self.calls += 1
            if token not in self.valid:
                raise AuthRevoked("invalid_grant", vendor="v", status=400)
            self.valid.discard(token)
            new = f"rt-{self.calls}"
            self.valid.add(new)
            return TokenGrant(access_token=f"at-{self.calls}", expires_in=1800, refresh_token=new)


def manager(
    store: MemoryStore, vendor: Vendor, seed: str = "rt-0", written: list[str] | None = None
) -> RefreshingTokens:
    return RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: seed,
        refresh=vendor.refresh,
        write_back=(written if written is not None else []).append,
        sleep=lambda s: time.sleep(0.005),
    )


def test_fifty_concurrent_workers_at_expiry_make_exactly_one_refresh() -> None:
    # Given 50 workers (each its own manager, as separate Lambdas) and no valid access token
    store, vendor = MemoryStore(), Vendor()
    managers = [manager(store, vendor) for _ in range(50)]
    # When all ask for a token at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(lambda m: m.access_token(), managers))
    # Then one refresh happened and everyone got its token
    assert vendor.calls == 1
    assert set(tokens) == {"at-1"}


def test_new_token_is_persisted_before_use_and_written_back() -> None:
    store, vendor, written = MemoryStore(), Vendor(), []
    token = manager(store, vendor, written=written).access_token()
    state = store.get_token("conn")
    assert state is not None
    assert (state.access_token, state.refresh_token) == (token, "rt-1")
    assert written == ["rt-1"]


def test_tokens_rotate_across_refreshes_without_reusing_the_seed() -> None:
    store, vendor = MemoryStore(), Vendor()
    m = manager(store, vendor)
    first = m.access_token()
    second = m.access_token(stale=first)  # the vendor refused it: force a new one
    assert (first, second) == ("at-1", "at-2")
    assert vendor.calls == 2


def test_reconnect_with_a_new_refresh_token_is_adopted() -> None:
    store, vendor = MemoryStore(), Vendor()
    manager(store, vendor).access_token()
    # Given a person reconnected: the credentials now hold a token we never had
    vendor.valid.add("rt-reconnected")
    m = manager(store, vendor, seed="rt-reconnected")
    assert m.access_token(stale="at-1") == "at-2"


def test_revoked_refresh_token_raises_auth_revoked() -> None:
    store, vendor = MemoryStore(), Vendor(first="something-else")
    with pytest.raises(AuthRevoked):
        manager(store, vendor).access_token()
