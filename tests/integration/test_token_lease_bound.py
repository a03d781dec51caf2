"""The token refresh lease ends with the invocation of the worker holding it: a worker killed mid-refresh
blocks its connection for the rest of its invocation, not for the slowest refresh, and the next worker
recovers the refresh token the dead one may have rotated (see ``closeloop.oauth``)."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from closeloop import runtime
from closeloop.errors import Busy
from closeloop.oauth import (
    DEFAULT_REFRESH_SECONDS,
    INVOCATION_LEASE_MARGIN_SECONDS,
    LEASE_MARGIN_SECONDS,
    MAX_REFRESH_CALLS,
    RefreshingTokens,
    TokenGrant,
)
from closeloop.vendors.xero import client as xero
from closeloop_local.sandboxes import xero as xero_sandbox
from tests.fakes import KilledHolderStore, MemoryStore, ProcessKilled


class KilledAfterSending(httpx.BaseTransport):
    """Sends the request for real (the vendor acts on it), then the worker is stopped before the answer."""

    def __init__(self, store: KilledHolderStore) -> None:
        self._inner = httpx.HTTPTransport()
        self._store = store

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._inner.handle_request(request).read()
        self._store.killed = True
        raise ProcessKilled


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_xero_refresh_token_rotated_by_a_killed_holder_is_recovered_once_its_invocation_is_over() -> None:
    sandbox, server = xero_sandbox.serve()
    try:
        # Given a worker with 30 s left in its invocation, stopped after Xero rotated the refresh token
        clock = Clock()
        store = KilledHolderStore(clock)
        invocation_ends = clock.now + 30
        seed = str(sandbox.initial_refresh_token)
        dying = RefreshingTokens(
            "xero",
            store,
            seed=lambda fresh: seed,
            refresh=xero.refresh_with_identity(
                server.url,
                lambda: sandbox.client_id,
                lambda: sandbox.client_secret,
                transport=KilledAfterSending(store),
            ),
            write_back=lambda token: None,
            clock=clock,
            resend_within=xero.REFRESH_RESEND_WITHIN_SECONDS,
            invocation_ends_at=lambda: invocation_ends,
        )
        with pytest.raises(ProcessKilled):
            dying.access_token()
        assert sandbox.current_refresh_token != seed  # rotated in the answer nobody read
        other = RefreshingTokens(
            "xero",
            store,
            seed=lambda fresh: seed,
            refresh=xero.refresh_with_identity(server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret),
            write_back=lambda token: None,
            clock=clock,
            sleep=clock.sleep,
            wait_seconds=10,
            resend_within=xero.REFRESH_RESEND_WITHIN_SECONDS,
        )
        # When another worker needs a token while the dead one's invocation could still be running
        with pytest.raises(Busy):
            other.access_token()
        assert len(sandbox.state.calls("POST", "/connect/token")) == 1
        # And once it is over (the margin included; was: 910 s, half of Xero's 30-minute grace period)
        clock.now = invocation_ends + INVOCATION_LEASE_MARGIN_SECONDS
        access = other.access_token()
        # Then the stored token, re-sent within Xero's grace period, answered the rotated token set
        assert len(sandbox.state.calls("POST", "/connect/token")) == 2
        state = store.get_token("xero")
        assert state is not None
        assert state.refresh_token == sandbox.current_refresh_token
        assert state.access_token == access
        # And it is the live token: it refreshes again once the old one's grace is over
        sandbox.state.clock.advance(xero.REFRESH_RESEND_WITHIN_SECONDS + 1)
        sandbox.expire_access_tokens()
        assert other.access_token(stale=access) != access
    finally:
        server.stop()


class LeaseRecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lease_seconds: list[int] = []

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        self.lease_seconds.append(seconds)
        return super().acquire_lease(name, owner, seconds)


def test_the_runtime_bounds_the_token_lease_by_the_invocation_registered_on_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the runtime's token manager of an OAuth app, over a store that records leases
    store = LeaseRecordingStore()
    monkeypatch.setattr(runtime, "store", lambda: store)
    creds: Any = SimpleNamespace(get=lambda key, fresh=False: "rt-0", put=lambda key, value: True)
    refreshes = iter(range(1, 10))

    def refresh_with(url: str, client_id: object, client_secret: object) -> Any:
        def refresh(token: str) -> TokenGrant:
            n = next(refreshes)
            return TokenGrant(access_token=f"at-{n}", expires_in=1800, refresh_token="rt-0")

        return refresh

    tokens = runtime._client_tokens(creds, "conn", "APP", refresh_with, "http://token", resend_within=math.inf)
    context = SimpleNamespace(
        function_name="worker",
        memory_limit_in_mb=128,
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:worker",
        aws_request_id="r",
        get_remaining_time_in_millis=lambda: 30_000,
    )

    def invocation() -> str:
        runtime.register_lambda_context(context)
        return str(tokens.access_token())

    # When a refresh runs in an invocation with 30 s left, and then in a thread that registered none
    # (each in a thread of its own: the registration is per thread)
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(invocation).result() == "at-1"
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(tokens.access_token, "at-1").result() == "at-2"
    # Then the first lease ended with the invocation, the second is the slowest refresh (as for the CLI)
    assert store.lease_seconds == [
        math.ceil(30 + INVOCATION_LEASE_MARGIN_SECONDS),
        math.ceil(DEFAULT_REFRESH_SECONDS * MAX_REFRESH_CALLS + LEASE_MARGIN_SECONDS),
    ]
