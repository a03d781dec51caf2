"""OAuth2 refresh-token handling that never locks a connection out.

Vendors such as Xero rotate refresh tokens on every refresh and make them single-use, so two Lambdas
refreshing at once would leave one of them holding a dead token (``invalid_grant``). Here refresh is
serialised per connection through a DynamoDB lease, the new token pair is persisted (conditional write)
before anyone uses it, and the rotated refresh token is written back to the credentials secret.
Workers that lose the race wait for the winner's token instead of refreshing themselves.

A refresh token is never lost: the lease outlasts the slowest refresh the HTTP policy allows (so no second
worker refreshes while the first still waits for its answer); a refresh whose answer was lost is re-sent
only within the vendor's documented grace period (``resend_within``); a new token that cannot be saved
to the table is saved to the credentials secret instead, and if that fails too this worker keeps it in
memory, uses it for its next refresh and raises ``TokenNotSaved`` so a person is told.

The lease is also bounded by the holder's invocation. A refresh never outlives the Lambda invocation that
runs it (at its timeout Lambda stops the invocation and resets the execution environment), so when the
invocation's end is known (``invocation_ends_at``) the lease lasts until that end plus
``INVOCATION_LEASE_MARGIN_SECONDS`` if that is sooner than the slowest refresh: a worker that dies holding the
lease (a timeout, out of memory) blocks its connection for the rest of its invocation, not for 15 minutes.
Within that bound no token POST is started with less than ``REFRESH_RESERVE_SECONDS`` of the invocation left
(one attempt's connect and read timeouts): the work is re-queued (``RateLimited``, problem ``deadline``,
as the pacer does near the deadline) instead of sending a POST whose answer this worker would not live to read.
Without a known end (the CLI, a thread the handler did not register) the lease is the slowest refresh, as before.

What the next holder does after a holder died with its token POST sent (the vendor may have rotated the
refresh token in an answer nobody read): it finds the stored refresh token unchanged and sends it, which is
what the dead holder's own re-send after a lost answer would have done, only sooner than with a 15-minute
lease. Per vendor: HubSpot and Zoho Books do not rotate refresh tokens, so the stored one still works. Xero
rotates them, and re-sending the previous token within 30 minutes of the refresh answers the same new token
set, so the next holder recovers the rotated token when it sends within 30 minutes of the dead holder's POST
(after that, ``invalid_grant``: a person reconnects; a bounded lease makes that sooner send likelier). Should
the next holder's own answer be lost too, its re-send window counts from its own send, not the dead holder's:
a re-send past Xero's real window is refused (``invalid_grant``), and that token was lost either way.
QuickBooks documents no grace for certain (see its ``REFRESH_RESEND_WITHIN_SECONDS``): if the unread answer
rotated the token, the next refresh may be refused (``invalid_grant`` -> AuthRevoked: a person reconnects), as
after a lost answer (RefreshAnswerLost says the same); a shorter lease changes nothing there. SugarCRM falls
back to a password login. A rotated token the dead holder kept only in memory (``TokenNotSaved``) died with it,
lease or not. The local dev server does not stop a timed-out handler: there the reserve is what keeps the last
token POST (and the save after it) inside the lease.

Every vendor's token endpoint goes through one flow, ``TokenEndpoint``, with the vendor's quirks as data (where
the client credentials go, form or JSON, which error codes mean a reconnect): one POST that is never re-sent
once it may have reached the vendor (``Unanswered``; ``RefreshingTokens._send`` alone decides on a re-send),
and the answer read the same way (expiry, rotation, refusals).
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools import Logger

from closeloop.errors import (
    AuthRevoked,
    Busy,
    ConfigurationError,
    FatalError,
    IntegrationError,
    RateLimited,
    RefreshAnswerLost,
    TokenNotSaved,
    Unanswered,
)
from closeloop.store import TokenState

if TYPE_CHECKING:
    import httpx

    from closeloop.http import VendorHttp

logger = Logger(child=True)

KNOWN_TOKENS_KEPT = 10
EXPIRY_MARGIN_SECONDS = 60
#: ``closeloop.http.worst_case_seconds()`` of the default policy and timeout (4 × 50 s + 20 s of backoff):
#: the longest one token POST can take. Kept here so this module stays free of httpx; a test pins it.
DEFAULT_REFRESH_SECONDS = 220.0
#: Token endpoint calls one refresh may make: the stored token, one re-send after a lost answer, and the
#: same again with a fresh seed after ``invalid_grant``.
MAX_REFRESH_CALLS = 4
LEASE_MARGIN_SECONDS = 30.0
#: How long a lease bounded by the holder's invocation lasts past the invocation's end: clock skew between
#: hosts, and Lambda stopping a timed-out invocation a moment late.
INVOCATION_LEASE_MARGIN_SECONDS = 10.0
#: A token POST starts only with this much of the invocation left: one attempt's connect (5 s) and read (15 s)
#: timeouts of the default HTTP client (a test pins them), so its answer or its timeout comes in time.
REFRESH_RESERVE_SECONDS = 20.0
#: A re-send happens only while this much of the vendor's grace period is still left (clock skew, the
#: time the re-sent request itself takes to arrive).
RESEND_MARGIN_SECONDS = 60.0
PERSIST_ATTEMPTS = 3


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
    ``write_back`` stores a rotated refresh token in the credentials secret (returns True when it did;
    raises or returns False/None when it could not). ``resend_within``: seconds after a refresh was sent
    during which re-sending the same refresh token is safe by the vendor's rules (0: never; ``math.inf``
    for tokens that do not rotate). ``refresh_seconds``: the longest one ``refresh`` call can take.
    ``reissuable``: ``refresh`` can always get a new token from the credentials alone (a password login),
    so a token that cannot be saved is not lost. ``invocation_ends_at``: when the invocation running the
    calling thread ends, on ``clock`` (None: not known); it bounds the lease and the last token POST (see the
    module docstring).
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
        resend_within: float = 0.0,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        reissuable: bool = False,
        invocation_ends_at: Callable[[], float | None] = lambda: None,
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
        #: one thread of this process at a time holds the lease under ``_owner`` (see ``_refresh_if_free``)
        self._refreshing = threading.Lock()
        self._cached: TokenState | None = None
        self._resend_within = resend_within
        self._reissuable = reissuable
        self._invocation_ends_at = invocation_ends_at
        #: the lease outlasts the slowest refresh, so nobody else refreshes while we wait for an answer
        #: (``_lease_seconds``: shorter when this invocation ends sooner)
        self.lease_seconds = math.ceil(refresh_seconds * MAX_REFRESH_CALLS + LEASE_MARGIN_SECONDS)
        #: a new token this worker could save nowhere durable: it is the newest, so the next refresh uses it
        self._unsaved: TokenState | None = None
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
            token = self._refresh_if_free(stale)
            if token is not None:
                return token
            if self._clock() > deadline:
                raise Busy(f"token refresh for {self.connection} is held by another worker")
            self._sleep(0.25)

    def _refresh_if_free(self, stale: str | None) -> str | None:
        """A token from a refresh under the lease; None while another worker, or another thread using this
        manager, holds it.

        The lease's owner is this manager, and the store grants a lease again to its owner, so the lease alone
        does not keep two threads sharing one manager (every function of the local stack runs in one process
        with the runtime's one adapter) from refreshing at once: each would kill the other's new token where a
        login replaces the previous session (Sugar's one session per user and platform) or a refresh token is
        single-use, and the first to finish would release the lease under the other. The thread lock does.
        """
        if not self._refreshing.acquire(blocking=False):
            return None
        try:
            lease = f"token#{self.connection}"
            if not self._store.acquire_lease(lease, self._owner, self._lease_seconds()):
                return None
            try:
                return self._refresh_under_lease(stale)
            finally:
                self._store.release_lease(lease, self._owner)
        finally:
            self._refreshing.release()

    def _lease_seconds(self) -> int:
        """The slowest refresh, or less when this invocation (which no refresh outlives) ends before that."""
        ends_at = self._invocation_ends_at()
        if ends_at is None:
            return self.lease_seconds
        left = ends_at - self._clock()
        return max(1, min(self.lease_seconds, math.ceil(left + INVOCATION_LEASE_MARGIN_SECONDS)))

    def _post(self, refresh_token: str) -> TokenGrant:
        """One call of the token endpoint, if this invocation lives long enough to read its answer.

        Raises RateLimited (problem ``deadline``) instead of sending when it would not: the queue worker
        re-queues the work for a new invocation, and the stored refresh token is untouched.
        """
        ends_at = self._invocation_ends_at()
        if ends_at is not None and ends_at - self._clock() < REFRESH_RESERVE_SECONDS:
            raise RateLimited(
                f"too little of this invocation is left to refresh the token of {self.connection}: the work is "
                "retried in a new invocation",
                retry_after=1.0,
                problem="deadline",
            )
        return self._refresh(refresh_token)

    def _refresh_under_lease(self, stale: str | None) -> str:
        state = self._store.get_token(self.connection)  # re-read: the previous holder may have refreshed
        if self._usable(state, stale) and self._unsaved is None:
            assert state is not None
            self._cached = state
            return state.access_token
        seed = self._seed(False)
        refresh_token = self._unsaved.refresh_token if self._unsaved else self._choose(state, seed)
        try:
            grant = self._send(refresh_token)
        except AuthRevoked:
            fresh_seed = self._seed(True)  # a reconnect may have replaced the secret after our cache
            if fresh_seed == refresh_token or (state and token_hash(fresh_seed) in state.known_refresh_hashes):
                raise
            refresh_token = fresh_seed
            grant = self._send(refresh_token)
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
        self._cached = new_state
        self._save(new_state, rotated=grant.refresh_token != refresh_token)
        return new_state.access_token

    def _send(self, refresh_token: str) -> TokenGrant:
        """One refresh; after a lost answer, one re-send of the same token if the vendor's grace allows."""
        sent_at = self._clock()
        try:
            return self._post(refresh_token)
        except Unanswered as exc:
            elapsed = self._clock() - sent_at
            if elapsed + RESEND_MARGIN_SECONDS > self._resend_within:
                raise RefreshAnswerLost(
                    f"the token endpoint of {self.connection} did not answer a refresh it may have acted on, and "
                    "the vendor does not document that re-sending the same refresh token is safe: the stored "
                    "token is kept; if the next refresh is refused (invalid_grant), reconnect the app",
                    vendor=exc.vendor,
                    status=exc.status,
                ) from exc
            # Within the vendor's grace period the previous refresh token still answers (with the same new
            # token set, at Xero): re-sending it is safe and recovers the answer we lost.
            return self._post(refresh_token)

    def _save(self, new_state: TokenState, *, rotated: bool) -> None:
        """Persist before anyone uses it; if the table refuses, the secret; if that fails too, keep it here."""
        failure: Exception | None = None
        state = new_state
        for attempt in range(PERSIST_ATTEMPTS):
            try:
                self._store.put_token(self.connection, state)
            except Exception as exc:  # noqa: BLE001 - any failure: try again, then another durable place
                failure = exc
                self._sleep(0.2 * 2**attempt)
                state = self._next_version(state)
                continue
            self._unsaved = None
            self._cached = state
            if rotated:
                self._copy_to_secret(state.refresh_token, required=False)
            return
        assert failure is not None
        kind = type(failure).__name__
        if not rotated or self._reissuable:
            # The stored refresh token still works (it did not change), or the credentials can get a new one:
            # only this access token goes unsaved.
            logger.warning(
                "could not save a refreshed access token", extra={"connection": self.connection, "error": kind}
            )
            return
        if self._copy_to_secret(state.refresh_token, required=True):
            logger.warning(
                "saved a rotated refresh token to the credentials secret only (the table refused it)",
                extra={"connection": self.connection, "error": kind},
            )
            return
        self._unsaved = state
        grace = (
            "the previous refresh token stays valid"
            if math.isinf(self._resend_within)
            else f"the previous refresh token can be re-sent for {self._resend_within / 60:.0f} min after the refresh"
            if self._resend_within > 0
            else "the previous refresh token may already be dead"
        )
        raise TokenNotSaved(
            f"the rotated refresh token of {self.connection} could not be saved to the sync table ({kind}) nor to "
            "the credentials secret: this worker holds it in memory and uses and saves it on its next refresh; "
            f"{grace}; fix the table or secret access, else reconnect the app"
        ) from failure

    def _next_version(self, state: TokenState) -> TokenState:
        """``state`` re-based on what the table holds now (a conditional put refused a stale version)."""
        try:
            current = self._store.get_token(self.connection)
        except Exception:  # noqa: BLE001 - the table is failing: keep the version we have
            return state
        if current is None:
            return state
        known = tuple(dict.fromkeys(state.known_refresh_hashes + current.known_refresh_hashes))[:KNOWN_TOKENS_KEPT]
        return replace(state, version=current.version + 1, known_refresh_hashes=known)

    def _copy_to_secret(self, refresh_token: str, *, required: bool) -> bool:
        try:
            saved = self._write_back(refresh_token) is True
        except Exception as exc:  # noqa: BLE001 - reported below; the token is never logged
            logger.warning(
                "could not write a rotated refresh token to the secret",
                extra={"connection": self.connection, "error": type(exc).__name__},
            )
            return False
        if not saved and required:
            logger.warning(
                "the credentials secret took no copy of the rotated refresh token",
                extra={"connection": self.connection},
            )
        return saved

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


#: How a token POST is sent: ``VendorHttp.request``'s signature, with the client first (SugarCRM sends through
#: its REST version, ``ApiVersion.request``).
TokenSend = Callable[..., "httpx.Response"]


def _send(http: VendorHttp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return http.request(method, path, **kwargs)


@dataclass(frozen=True)
class TokenEndpoint:
    """One vendor's OAuth 2.0 token endpoint (RFC 6749 section 6 refresh, 5.1/5.2 answers), its quirks as data.

    ``vendor`` is named by the errors, ``label`` by their messages, ``client`` is the HTTP client's name for the
    endpoint's host, ``reconnect`` tells a person what to do about a refused token. ``client_auth``: ``"basic"``
    sends the client id and secret as HTTP Basic (RFC 6749 2.3.1), ``"body"`` as fields after the grant's own
    (``credentials_first``: right after ``grant_type``), then ``extra`` (Sugar's ``platform``); ``encoding``:
    a form or a JSON body. The error codes in ``revoked`` mean a person must reconnect (AuthRevoked), those in
    ``misconfigured`` a wrong client id or secret (ConfigurationError), those in ``throttled`` a refresh rate
    limit (RateLimited for ``throttle_seconds``); ``error_keys``: where the answer names its error, first found
    wins. ``rotates``: a successful answer always carries a new refresh token (else it keeps the one sent
    unless it brings another).
    """

    vendor: str
    label: str
    client: str
    path: str
    reconnect: str
    client_auth: Literal["basic", "body"] = "basic"
    credentials_first: bool = False
    encoding: Literal["form", "json"] = "form"
    extra: tuple[tuple[str, str], ...] = ()
    revoked: frozenset[str] = frozenset({"invalid_grant"})
    misconfigured: frozenset[str] = frozenset()
    throttled: frozenset[str] = frozenset()
    throttle_seconds: float = 60.0
    error_keys: tuple[str, ...] = ("error",)
    default_expires_in: float = 3600.0
    rotates: bool = False
    ok: tuple[int, ...] = (200, 400, 401)

    def refresher(
        self,
        base_url: str,
        client_id: Callable[[], str],
        client_secret: Callable[[], str],
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> Callable[[str], TokenGrant]:
        """A ``refresh`` callable for RefreshingTokens: one refresh-token grant (RFC 6749 section 6).

        Raises Unanswered when the POST may have reached the vendor and no answer came back (RefreshingTokens
        re-sends within the vendor's grace period), else what ``answer`` raises.
        """

        def refresh(refresh_token: str) -> TokenGrant:
            grant = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            status, body = self.post(base_url, grant, client_id, client_secret, transport=transport)
            return self.answer(status, body, refresh_token)

        return refresh

    def post(
        self,
        base_url: str,
        grant: Mapping[str, str],
        client_id: Callable[[], str],
        client_secret: Callable[[], str],
        *,
        transport: httpx.BaseTransport | None = None,
        send: TokenSend = _send,
    ) -> tuple[int, dict[str, Any]]:
        """POST ``grant`` once: the status and the answer's JSON object ({} when there is none).

        Never re-sent once it may have reached the vendor (a rotating refresh token is single-use): that raises
        Unanswered. Failures before sending and 429s are retried by the HTTP policy.
        """
        from closeloop.http import VendorHttp  # noqa: PLC0415 - this module stays free of httpx

        fields, headers = self.request_fields(grant, client_id(), client_secret())
        body: dict[str, Any] = {"json": fields} if self.encoding == "json" else {"data": fields}
        if headers:
            body["headers"] = headers
        http = VendorHttp(self.client, base_url, transport=transport)
        try:
            response = send(http, "POST", self.path, ok=self.ok, retry_sent=False, **body)
        finally:
            http.close()
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}

    def request_fields(
        self, grant: Mapping[str, str], client_id: str, client_secret: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The body's fields and the headers for ``grant``, with the client credentials where the vendor wants
        them (their order is the vendor's documented one)."""
        if self.client_auth == "basic":
            return {**grant, **dict(self.extra)}, {"Authorization": basic_auth(client_id, client_secret)}
        credentials = {"client_id": client_id, "client_secret": client_secret}
        if self.credentials_first:
            fields = {"grant_type": grant["grant_type"], **credentials, **grant}
        else:
            fields = {**grant, **credentials}
        return {**fields, **dict(self.extra)}, {}

    def answer(self, status: int, body: Mapping[str, Any], sent: str) -> TokenGrant:
        """The grant in a token answer (``sent``: the refresh token the request carried), or the refusal it
        means: AuthRevoked, ConfigurationError, RateLimited or FatalError (see the class docstring)."""
        error = next((str(body[key]) for key in self.error_keys if body.get(key)), "")
        access_token = body.get("access_token")
        if status == 200 and not error and access_token:
            refresh_token = body.get("refresh_token")
            if self.rotates and not refresh_token:
                raise FatalError(f"{self.label}'s token answer has no refresh token", vendor=self.vendor, status=status)
            return TokenGrant(
                access_token=str(access_token),
                expires_in=self._expires_in(body.get("expires_in"), status),
                refresh_token=str(refresh_token or sent),
            )
        raise self.refusal(status, error or ("no token" if status == 200 else "unknown_error"))

    def refusal(self, status: int, error: str) -> IntegrationError:
        """The error a refused token request (error code ``error``) raises."""
        if error in self.revoked:
            return AuthRevoked(
                f"{self.label} refused the refresh token ({error}): {self.reconnect}", vendor=self.vendor, status=status
            )
        if error in self.misconfigured:
            return ConfigurationError(
                f"{self.label} refused the client id or secret ({error})", vendor=self.vendor, status=status
            )
        if error in self.throttled:
            return RateLimited(
                f"{self.label} is throttling token refreshes ({error})",
                vendor=self.vendor,
                status=status,
                retry_after=self.throttle_seconds,
                problem="token",
            )
        return FatalError(f"{self.label} token endpoint said {error}", vendor=self.vendor, status=status)

    def _expires_in(self, value: Any, status: int) -> float:
        if value is None or value == "":
            return self.default_expires_in
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise FatalError(
                f"{self.label}'s token answer has an unreadable expires_in", vendor=self.vendor, status=status
            ) from exc
