"""A token refresh whose answer is lost (the vendor acted, we never saw it), and a new token the table refuses,
against each vendor's sandbox: the refresh token is never lost, and a token POST is re-sent only where the
vendor documents that re-sending is safe."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from closeloop.errors import RefreshAnswerLost
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.store import TokenState
from closeloop.vendors.quickbooks import client as quickbooks
from closeloop.vendors.sugarcrm import client as sugarcrm
from closeloop.vendors.xero import client as xero
from closeloop.vendors.zohobooks import client as zohobooks
from closeloop_local.sandboxes import quickbooks as qbo_sandbox
from closeloop_local.sandboxes import sugarcrm as sugar_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.sandboxes import zohobooks as zoho_sandbox
from tests.fakes import MemoryStore


class LosesAnswers(httpx.BaseTransport):
    """Sends each request for real, then loses the answer of the first ``times`` (a read timeout)."""

    def __init__(self, times: int = 1, on_loss: Callable[[], None] = lambda: None) -> None:
        self._inner = httpx.HTTPTransport()
        self.times = times
        self._on_loss = on_loss

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        if self.times > 0:
            self.times -= 1
            self._on_loss()
            raise httpx.ReadTimeout("the answer never arrived", request=request)
        return response


class Clock:
    def __init__(self) -> None:
        import time  # noqa: PLC0415

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def tokens(
    store: MemoryStore, connection: str, seed: str, refresh: Callable[[str], TokenGrant], **kw: object
) -> RefreshingTokens:
    return RefreshingTokens(
        connection,
        store,
        seed=lambda fresh: seed,
        refresh=refresh,
        write_back=lambda t: None,
        **kw,  # type: ignore[arg-type]
    )


def stored(store: MemoryStore, connection: str) -> TokenState:
    state = store.get_token(connection)
    assert state is not None
    return state


def test_xero_lost_answer_is_resent_within_the_grace_period_and_answers_the_same_token_set() -> None:
    sandbox, server = xero_sandbox.serve()
    try:
        # Given Xero rotates the refresh token but the answer is lost on the way back
        transport = LosesAnswers()
        refresh = xero.refresh_with_identity(
            server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret, transport=transport
        )
        store = MemoryStore()
        m = tokens(
            store,
            "xero",
            str(sandbox.initial_refresh_token),
            refresh,
            resend_within=xero.REFRESH_RESEND_WITHIN_SECONDS,
        )
        # When a worker asks for a token
        access = m.access_token()
        # Then it re-sent the old token once (the grace period) and stored the live rotated one
        assert len(sandbox.state.calls("POST", "/connect/token")) == 2
        assert stored(store, "xero").refresh_token == sandbox.current_refresh_token
        assert stored(store, "xero").access_token == access
        # And that token refreshes again (it is the live one, not a dead branch)
        sandbox.expire_access_tokens()
        assert m.access_token(stale=access) != access
    finally:
        server.stop()


def test_xero_lost_answer_past_the_grace_period_is_not_resent() -> None:
    sandbox, server = xero_sandbox.serve()
    try:
        # Given the answer is lost and the wait for it ate the grace period
        clock = Clock()

        def late() -> None:
            clock.now += xero.REFRESH_RESEND_WITHIN_SECONDS
            sandbox.state.clock.advance(xero.REFRESH_RESEND_WITHIN_SECONDS)

        refresh = xero.refresh_with_identity(
            server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret, transport=LosesAnswers(on_loss=late)
        )
        m = tokens(
            MemoryStore(),
            "xero",
            str(sandbox.initial_refresh_token),
            refresh,
            resend_within=xero.REFRESH_RESEND_WITHIN_SECONDS,
            clock=clock,
        )
        # When a worker asks for a token, Then it says so instead of re-sending a token past its grace
        with pytest.raises(RefreshAnswerLost):
            m.access_token()
        assert len(sandbox.state.calls("POST", "/connect/token")) == 1
    finally:
        server.stop()


def test_quickbooks_lost_answer_is_not_resent_and_says_how_to_tell_a_reconnect_is_due() -> None:
    # Given Intuit issues a new refresh-token value (rotation due) and the answer is lost
    sandbox, server = qbo_sandbox.serve(qbo_sandbox.QuickBooksSandbox(rotate_after=0))
    try:
        refresh = quickbooks.refresh_with_intuit(
            server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret, transport=LosesAnswers()
        )
        store = MemoryStore()
        m = tokens(
            store,
            "quickbooks",
            sandbox.initial_refresh_token,
            refresh,
            resend_within=quickbooks.REFRESH_RESEND_WITHIN_SECONDS,
        )
        # When a worker asks for a token, Then the POST is not re-sent (no documented grace) and a person is told
        with pytest.raises(RefreshAnswerLost, match="invalid_grant"):
            m.access_token()
        assert len(sandbox.state.calls("POST", "/oauth2/v1/tokens/bearer")) == 1
        assert store.get_token("quickbooks") is None  # nothing half-written
    finally:
        server.stop()


def test_zoho_lost_answer_is_resent_because_its_refresh_tokens_do_not_rotate() -> None:
    sandbox, server = zoho_sandbox.serve()
    try:
        refresh = zohobooks.refresh_with_zoho(
            server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret, transport=LosesAnswers()
        )
        store = MemoryStore()
        m = tokens(
            store,
            "zohobooks",
            sandbox.initial_refresh_token,
            refresh,
            resend_within=zohobooks.REFRESH_RESEND_WITHIN_SECONDS,
        )
        access = m.access_token()
        assert len(sandbox.state.calls("POST", "/oauth/v2/token")) == 2
        assert stored(store, "zohobooks").access_token == access
        assert stored(store, "zohobooks").refresh_token == sandbox.initial_refresh_token
    finally:
        server.stop()


def test_sugar_lost_refresh_answer_is_resent_and_falls_back_to_a_password_login() -> None:
    sandbox, server = sugar_sandbox.serve()
    try:
        transport = LosesAnswers(times=0)
        refresh = sugarcrm.password_grant(
            server.url,
            username=lambda: sandbox.username,
            password=lambda: sandbox.password,
            platform="closeloop",
            transport=transport,
        )
        store = MemoryStore()
        m = tokens(store, "sugarcrm", "", refresh, resend_within=sugarcrm.REFRESH_RESEND_WITHIN_SECONDS)
        first = m.access_token()
        # Given Sugar rotates the session on a refresh whose answer is lost
        sandbox.expire_access_tokens()
        transport.times = 1
        # When the worker needs a new token
        second = m.access_token(stale=first)
        # Then it re-sent: the dead refresh token is refused, a password login gets a working session
        posts = sandbox.state.calls("POST", "*/oauth2/token")
        assert len(posts) == 4  # login, refresh (lost), refresh (refused), login
        session = sandbox.session("closeloop")
        assert session is not None
        assert second == session.access_token == stored(store, "sugarcrm").access_token
    finally:
        server.stop()


class RefusingStore(MemoryStore):
    def put_token(self, connection: str, state: TokenState) -> None:
        raise RuntimeError("AccessDeniedException")


def test_xero_token_the_table_refuses_is_kept_in_the_secret_and_still_refreshes() -> None:
    sandbox, server = xero_sandbox.serve()
    try:
        # Given the table refuses token writes and the secret takes them
        secret = {"XERO_REFRESH_TOKEN": str(sandbox.initial_refresh_token)}

        def write_back(token: str) -> bool:
            secret["XERO_REFRESH_TOKEN"] = token
            return True

        refresh = xero.refresh_with_identity(server.url, lambda: sandbox.client_id, lambda: sandbox.client_secret)
        m = RefreshingTokens(
            "xero",
            RefusingStore(),
            seed=lambda fresh: secret["XERO_REFRESH_TOKEN"],
            refresh=refresh,
            write_back=write_back,
            sleep=lambda s: None,
            resend_within=xero.REFRESH_RESEND_WITHIN_SECONDS,
        )
        m.access_token()
        # Then the live (rotated) token is in the secret, and a fresh worker refreshes with it
        assert secret["XERO_REFRESH_TOKEN"] == sandbox.current_refresh_token
        sandbox.state.clock.advance(xero.REFRESH_RESEND_WITHIN_SECONDS + 1)  # the old token's grace is over
        other = RefreshingTokens(
            "xero",
            MemoryStore(),
            seed=lambda fresh: secret["XERO_REFRESH_TOKEN"],
            refresh=refresh,
            write_back=write_back,
        )
        assert other.access_token()
    finally:
        server.stop()
