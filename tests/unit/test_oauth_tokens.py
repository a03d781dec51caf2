"""RefreshingTokens: one refresh per expiry across concurrent workers, persisted before use, reconnects."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from closeloop.errors import AuthRevoked, Busy, RateLimited, RefreshAnswerLost, SetupError, TokenNotSaved, Unanswered
from closeloop.http import DEFAULT_TIMEOUT, RetryPolicy, worst_case_seconds
from closeloop.oauth import (
    DEFAULT_REFRESH_SECONDS,
    INVOCATION_LEASE_MARGIN_SECONDS,
    LEASE_MARGIN_SECONDS,
    MAX_REFRESH_CALLS,
    REFRESH_RESERVE_SECONDS,
    RefreshingTokens,
    TokenGrant,
)
from closeloop.store import TokenState
from tests.fakes import KilledHolderStore, MemoryStore, ProcessKilled


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


def test_threads_sharing_one_manager_make_exactly_one_refresh() -> None:
    # Given one manager used by 8 threads at once (the local stack runs every function in one process with the
    # runtime's one adapter), over a store that grants its lease again to the same owner (as DynamoStore does)
    store, vendor = MemoryStore(), Vendor()
    shared = manager(store, vendor)
    # When all ask for a token at once, with none valid
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda _: shared.access_token(), range(8)))
    # Then one refresh happened (two would each kill the other's token) and everyone got its token
    assert vendor.calls == 1
    assert set(tokens) == {"at-1"}
    state = store.get_token("conn")
    assert state is not None
    assert state.access_token == "at-1"


def test_new_token_is_persisted_before_use_and_written_back() -> None:
    store, vendor = MemoryStore(), Vendor()
    written: list[str] = []
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


# -- a refresh token is never lost --------------------------------------------------------------------------


class FailingStore(MemoryStore):
    """A table whose token writes fail the first ``failures`` times (throttling, an outage, a lost grant)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.lease_seconds: list[int] = []

    def put_token(self, connection: str, state: TokenState) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("ProvisionedThroughputExceededException")
        super().put_token(connection, state)

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        self.lease_seconds.append(seconds)
        return super().acquire_lease(name, owner, seconds)


def test_the_token_lease_outlasts_the_slowest_refresh_the_http_policy_allows() -> None:
    # Given the default retry policy and timeouts of the one HTTP client
    slowest_post = worst_case_seconds(RetryPolicy(), DEFAULT_TIMEOUT)
    assert slowest_post == DEFAULT_REFRESH_SECONDS  # the constant oauth.py keeps (it must not import httpx)
    store, vendor = FailingStore(failures=0), Vendor()
    # When a worker refreshes
    manager(store, vendor).access_token()
    # Then its lease covers every token call one refresh may make (was a flat 30 s)
    assert store.lease_seconds == [math.ceil(slowest_post * MAX_REFRESH_CALLS + LEASE_MARGIN_SECONDS)]
    assert store.lease_seconds[0] > slowest_post * MAX_REFRESH_CALLS


def test_a_failed_token_write_is_retried() -> None:
    # Given the table refuses the first two writes
    store, vendor = FailingStore(failures=2), Vendor()
    # When a worker refreshes
    token = manager(store, vendor).access_token()
    # Then the new pair is stored all the same
    state = store.get_token("conn")
    assert state is not None
    assert (state.access_token, state.refresh_token, vendor.calls) == (token, "rt-1", 1)


def test_a_token_the_table_refuses_is_saved_to_the_secret_and_adopted_from_there() -> None:
    # Given the table refuses every write, and the secret takes the rotated token
    store, vendor, secret = FailingStore(failures=99), Vendor(), {"token": "rt-0"}

    def write_back(token: str) -> bool:
        secret["token"] = token
        return True

    m = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: secret["token"],
        refresh=vendor.refresh,
        write_back=write_back,
        sleep=lambda s: None,
    )
    # When a worker refreshes
    assert m.access_token() == "at-1"
    # Then the rotated token is in the secret (rt-0 is dead at the vendor)
    assert secret["token"] == "rt-1"
    # And another worker, once the table works again, refreshes with it instead of the dead one
    store.failures = 0
    other = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: secret["token"],
        refresh=vendor.refresh,
        write_back=write_back,
        sleep=lambda s: None,
    )
    assert other.access_token() == "at-2"


def test_a_token_saved_nowhere_raises_a_setup_error_and_stays_with_the_worker() -> None:
    # Given the table and the secret both refuse the rotated token
    store, vendor = FailingStore(failures=99), Vendor()

    def write_back(token: str) -> bool:
        raise RuntimeError("AccessDeniedException")

    m = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: "rt-0",
        refresh=vendor.refresh,
        write_back=write_back,
        sleep=lambda s: None,
        resend_within=1800,
    )
    # When a worker refreshes, a person is told where the token is, and the token is not in the message
    with pytest.raises(TokenNotSaved, match="holds it in memory") as caught:
        m.access_token()
    assert "rt-1" not in str(caught.value)
    assert "30 min" in str(caught.value)
    assert isinstance(caught.value, SetupError)
    # Then the worker's next refresh uses the token it kept (rt-0 is dead), and saves the result
    store.failures = 0
    assert m.access_token(stale="at-1") == "at-2"
    state = store.get_token("conn")
    assert state is not None
    assert state.refresh_token == "rt-2"


def test_a_lost_refresh_answer_is_resent_only_within_the_vendor_grace_period() -> None:
    # Given a vendor that rotates, then loses the answer (the refresh happened; we never saw it)
    store, vendor = MemoryStore(), Vendor()
    lost = {"times": 1, "grace": True}

    def refresh(token: str) -> TokenGrant:
        grant = vendor.refresh(token)
        if lost["times"]:
            lost["times"] -= 1
            if lost["grace"]:
                vendor.valid.add(token)  # the grace period: the previous token still answers
            raise Unanswered("ReadTimeout after the request was sent", vendor="v")
        return grant

    m = RefreshingTokens(
        "conn", store, seed=lambda fresh: "rt-0", refresh=refresh, write_back=lambda t: None, resend_within=1800
    )
    # When a worker refreshes, it re-sends the same token once and gets a new pair
    assert m.access_token() == "at-2"
    assert vendor.calls == 2
    # Given a vendor with no documented grace period
    store, vendor, lost["times"], lost["grace"] = MemoryStore(), Vendor(), 1, False
    m = RefreshingTokens("conn", store, seed=lambda fresh: "rt-0", refresh=refresh, write_back=lambda t: None)
    # Then the token POST is not sent again, a person is told, and the stored state is untouched
    with pytest.raises(RefreshAnswerLost, match="reconnect"):
        m.access_token()
    assert vendor.calls == 1
    assert store.get_token("conn") is None


# -- the lease ends with the holder's invocation ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_holder_killed_with_10_s_left_blocks_its_connection_for_10_s_and_the_margin_not_15_min() -> None:
    # Given a worker whose invocation ends in 10 s, killed (a Lambda timeout) while it holds the token lease
    clock = FakeClock()
    store, vendor = KilledHolderStore(clock), Vendor()
    invocation_ends = clock.now + 10

    def seed_then_killed(fresh: bool) -> str:
        store.killed = True  # stopped while reading its credentials: its ``finally`` never runs
        raise ProcessKilled

    dying = RefreshingTokens(
        "conn",
        store,
        seed=seed_then_killed,
        refresh=vendor.refresh,
        write_back=lambda token: None,
        clock=clock,
        sleep=clock.sleep,
        invocation_ends_at=lambda: invocation_ends,
    )
    with pytest.raises(ProcessKilled):
        dying.access_token()
    # When another worker (no invocation deadline known) needs a token
    other = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: "rt-0",
        refresh=vendor.refresh,
        write_back=lambda token: None,
        clock=clock,
        sleep=clock.sleep,
        wait_seconds=5,
    )
    # Then the lease still stops it for the rest of the dead worker's invocation and the margin
    with pytest.raises(Busy):
        other.access_token()
    assert vendor.calls == 0
    # And once they are over (was: the slowest refresh, 910 s), it refreshes
    clock.now = invocation_ends + INVOCATION_LEASE_MARGIN_SECONDS
    assert other.access_token() == "at-1"
    assert vendor.calls == 1


@pytest.mark.parametrize(
    ("seconds_left", "lease"),
    [
        (None, math.ceil(DEFAULT_REFRESH_SECONDS * MAX_REFRESH_CALLS + LEASE_MARGIN_SECONDS)),  # the CLI: as before
        (3600.0, math.ceil(DEFAULT_REFRESH_SECONDS * MAX_REFRESH_CALLS + LEASE_MARGIN_SECONDS)),  # a long invocation
        (45.0, math.ceil(45.0 + INVOCATION_LEASE_MARGIN_SECONDS)),  # a queue worker near its 60 s timeout
    ],
)
def test_the_lease_is_the_slowest_refresh_or_the_rest_of_the_invocation_whichever_is_shorter(
    seconds_left: float | None, lease: int
) -> None:
    # Given a worker whose invocation ends in ``seconds_left`` (None: no deadline known)
    clock = FakeClock()
    store, vendor = FailingStore(failures=0), Vendor()
    ends_at = None if seconds_left is None else clock.now + seconds_left
    m = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: "rt-0",
        refresh=vendor.refresh,
        write_back=lambda token: None,
        clock=clock,
        invocation_ends_at=lambda: ends_at,
    )
    # When it refreshes
    assert m.access_token() == "at-1"
    # Then its lease is the shorter of the two
    assert store.lease_seconds == [lease]


def test_the_refresh_reserve_is_one_token_post_attempt_of_the_default_client() -> None:
    # A POST sent with this much left is answered (or times out) before the invocation ends
    assert DEFAULT_TIMEOUT.connect is not None
    assert DEFAULT_TIMEOUT.read is not None
    assert DEFAULT_TIMEOUT.connect + DEFAULT_TIMEOUT.read == REFRESH_RESERVE_SECONDS


def test_no_token_post_is_started_that_the_invocation_would_not_live_to_read() -> None:
    # Given a worker with less than one token POST's time left in its invocation
    clock = FakeClock()
    store, vendor = MemoryStore(clock), Vendor()
    ends_at = clock.now + REFRESH_RESERVE_SECONDS - 1
    m = RefreshingTokens(
        "conn",
        store,
        seed=lambda fresh: "rt-0",
        refresh=vendor.refresh,
        write_back=lambda token: None,
        clock=clock,
        invocation_ends_at=lambda: ends_at,
    )
    # When it needs a token, Then it sends nothing and its work is re-queued for a new invocation
    with pytest.raises(RateLimited) as raised:
        m.access_token()
    assert raised.value.problem == "deadline"
    assert vendor.calls == 0
    assert store.get_token("conn") is None
    assert store.leases == {}  # released: the next worker refreshes at once
    # And with one POST's time left it refreshes
    ends_at = clock.now + REFRESH_RESERVE_SECONDS
    assert m.access_token() == "at-1"


def test_a_lost_answer_is_not_resent_past_the_invocations_reserve_and_the_next_worker_recovers_it() -> None:
    # Given a vendor with a grace period (Xero) that loses the answer to a refresh, and the wait for it
    # ate the invocation down to less than one token POST's time
    clock = FakeClock()
    store, vendor = MemoryStore(clock), Vendor()
    ends_at = clock.now + 40

    def refresh(token: str) -> TokenGrant:
        grant = vendor.refresh(token)
        if vendor.calls == 1:
            vendor.valid.add(token)  # the grace period: the previous token still answers
            clock.now += 25  # a read timeout
            raise Unanswered("ReadTimeout after the request was sent", vendor="v")
        return grant

    def tokens(ends: float | None) -> RefreshingTokens:
        return RefreshingTokens(
            "conn",
            store,
            seed=lambda fresh: "rt-0",
            refresh=refresh,
            write_back=lambda token: None,
            clock=clock,
            resend_within=1800,
            invocation_ends_at=lambda: ends,
        )

    # When the worker would re-send, Then it does not (the work is re-queued) and the stored token is untouched
    with pytest.raises(RateLimited, match="too little of this invocation"):
        tokens(ends_at).access_token()
    assert vendor.calls == 1
    assert store.get_token("conn") is None
    # And the next invocation's refresh re-sends the stored token within the grace period and gets a new pair
    assert tokens(clock.now + 60).access_token() == "at-2"
    state = store.get_token("conn")
    assert state is not None
    assert state.refresh_token == "rt-2"
