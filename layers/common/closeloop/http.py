"""The one HTTP client factory and retry policy every vendor adapter uses.

httpx with explicit timeouts; one retry policy for 429, 5xx, timeouts and connection errors (capped
exponential backoff with full jitter, honouring Retry-After); typed errors carrying vendor, status,
request id and a redacted body. httpx's own ``retries=`` only retries connects, so the loop lives here.
Vendor quirks (how a 429 says when to come back, which header holds the request id) are passed in as data.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from closeloop import telemetry
from closeloop.errors import (
    AuthExpired,
    Conflict,
    FatalError,
    IntegrationError,
    NotFound,
    RateLimited,
    Unanswered,
    Unavailable,
    ValidationFailed,
)
from closeloop.redaction import redact

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

# httpx logs every request URL at INFO; lookups put emails and tax numbers in query strings, which must
# never reach the logs. Our own logging says what was called, with ids only.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_sleep_total`` keeps a Lambda inside its timeout: past it, the queue retries."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_sleep_total: float = 20.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))  # noqa: S311


@dataclass(frozen=True)
class RateLimitVerdict:
    """What a 429 means: wait ``retry_after`` seconds, or give up now (``retry=False``, e.g. a daily cap)."""

    retry: bool
    retry_after: float | None
    problem: str = ""


def retry_after_header(response: httpx.Response) -> RateLimitVerdict:
    """The default 429 reading: a numeric Retry-After header, if any."""
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        seconds = None
    return RateLimitVerdict(retry=True, retry_after=seconds)


@dataclass(frozen=True)
class Fault:
    """What a vendor's error body says, read by the vendor's ``read_fault``: its ``message`` and ``code``, and
    the error it means when the status alone does not say (``error``: a duplicate name answered 400 is a
    Conflict, Zoho's "contact does not exist" is a NotFound). The message is redacted before it is kept."""

    message: str = ""
    code: str = ""
    error: type[IntegrationError] | None = None


def no_fault(response: httpx.Response) -> Fault | None:
    """The default ``read_fault``: the status alone decides."""
    return None


#: The error a status means when the vendor's fault names none.
STATUS_ERRORS: Mapping[int, type[IntegrationError]] = {
    400: ValidationFailed,
    401: AuthExpired,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
}


def typed_error(status: int | None, fault: Fault | None, what: str, **context: Any) -> IntegrationError:
    """The one mapping from a vendor's answer to our error tree, for a failed HTTP answer (``VendorHttp``) and
    for a fault inside a successful one (a batch item, a 200 carrying an error code) alike.

    The fault's own error wins; else the status decides (5xx: Unavailable; no status or another 4xx:
    FatalError). ``what`` says which call failed; the fault's code and redacted message are appended.
    """
    error_type = (fault.error if fault else None) or STATUS_ERRORS.get(status or 0)
    if error_type is None:
        error_type = Unavailable if status is not None and status >= 500 else FatalError
    message = what
    if fault and (fault.code or fault.message):
        detail = " ".join(part for part in (fault.code and f"[{fault.code}]", redact(fault.message, 200)) if part)
        message = f"{what}: {detail}"
    return error_type(message, status=status, **context)


RETRIABLE_STATUSES = frozenset({500, 502, 503, 504})

#: Transport failures that happen before a request leaves this machine: resending is always safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def worst_case_seconds(policy: RetryPolicy | None = None, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> float:
    """The longest one ``VendorHttp.request`` can take: every attempt timing out at each phase, plus the
    backoff sleeps the policy allows. Leases held across a request must outlast this."""
    policy = policy or RetryPolicy()
    phases = (timeout.connect, timeout.write, timeout.read, timeout.pool)
    per_attempt = sum(p for p in phases if p is not None)
    return policy.max_attempts * per_attempt + policy.max_sleep_total


@dataclass(frozen=True)
class RateLimit:
    """A vendor's published request budget for one organisation (Xero tenant, QuickBooks realm, Zoho org).

    Vendor data, declared on the adapter: ``per_minute`` calls in any rolling minute and at most
    ``concurrent`` requests in flight (0: none published).
    """

    per_minute: int
    concurrent: int = 0


class Pacer(Protocol):
    """Paces calls to one organisation's budget, shared by every worker (see ``closeloop.pacing``)."""

    def acquire(self) -> None:
        """Wait until one more call may be sent. Raises RateLimited (with ``retry_after``) when the wait
        would be too long for this invocation: the caller's work is then re-queued, not retried here."""
        ...

    def back_off(self, seconds: float) -> None:
        """The vendor answered 429: send nothing to this organisation for ``seconds`` (every worker)."""
        ...


class Unpaced:
    """No pacing: every call goes at once (CRM clients, token endpoints, tests)."""

    def acquire(self) -> None:
        return None

    def back_off(self, seconds: float) -> None:
        return None


class AccessTokens(Protocol):
    def access_token(self, stale: str | None = None) -> str:
        """A valid access token; ``stale``: the one the vendor just refused (forces a refresh)."""
        ...


class TokenAuth(httpx.Auth):
    """An access token on every request, and one forced refresh when the vendor answers 401.

    ``header`` and ``prefix`` say where the token goes (``Authorization: Bearer …``, Zoho's
    ``Zoho-oauthtoken …``, Sugar's ``OAuth-Token``); ``prepare`` adds what every request also carries (Xero's
    tenant header, Zoho's organisation parameter).
    """

    def __init__(
        self,
        tokens: AccessTokens,
        *,
        header: str = "Authorization",
        prefix: str = "Bearer ",
        prepare: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._header = header
        self._prefix = prefix
        self._prepare = prepare

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._prepare is not None:
            self._prepare(request)
        token = self._tokens.access_token()
        request.headers[self._header] = f"{self._prefix}{token}"
        response = yield request
        if response.status_code == 401:
            request.headers[self._header] = f"{self._prefix}{self._tokens.access_token(stale=token)}"
            yield request


class VendorHttp:
    """An httpx client bound to one vendor's base URL, with the retry policy and error mapping.

    Every 429 and every retry is counted (``VendorRateLimited``, ``VendorRetries`` by vendor) through the
    process's telemetry (``closeloop.telemetry.current()``).
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        policy: RetryPolicy | None = None,
        rate_limit: Callable[[httpx.Response], RateLimitVerdict] = retry_after_header,
        read_fault: Callable[[httpx.Response], Fault | None] = no_fault,
        request_id_header: str = "x-request-id",
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``pacer`` is asked before every attempt (a retry is a call too) and told about every 429;
        ``read_fault`` reads the vendor's error body (``typed_error`` maps it with the status); ``sleep``
        (default ``time.sleep``) waits between attempts."""
        self.vendor = vendor
        self.pacer: Pacer = pacer or Unpaced()
        self.policy = policy or RetryPolicy()
        self._rate_limit = rate_limit
        self._read_fault = read_fault
        self._request_id_header = request_id_header
        self._sleep = sleep or time.sleep
        self.calls = 0
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": "closeloop/0.1", **(headers or {})},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 204),
        retry_sent: bool = True,
    ) -> httpx.Response:
        """Send with retries; return the response when its status is in ``ok``, else raise a typed error.

        ``content`` is a body already encoded by the caller (e.g. JSON with exact decimals, which ``json=``
        cannot write); the caller sets its Content-Type.

        ``retry_sent=False`` is for requests that must not be sent twice: a rotating refresh token, or an
        email send without an idempotency key. Once the request may have reached the vendor (a read timeout,
        a dropped connection, a 5xx) it raises ``Unanswered`` instead of resending; failures before sending
        (``NOT_SENT``) and 429s (refused, not acted on) are still retried.
        """
        slept = 0.0
        attempt = 0
        while True:
            attempt += 1
            self.pacer.acquire()
            self.calls += 1
            try:
                response = self._client.request(
                    method, path, params=params, json=json, data=data, content=content, headers=headers
                )
            except httpx.TransportError as exc:  # timeouts, connection refused/reset
                if not retry_sent and not isinstance(exc, NOT_SENT):
                    raise Unanswered(
                        f"{method} {path}: {type(exc).__name__} after the request was sent", vendor=self.vendor
                    ) from exc
                delay = self.policy.backoff(attempt)
                if attempt >= self.policy.max_attempts or slept + delay > self.policy.max_sleep_total:
                    raise Unavailable(f"{method} {path}: {type(exc).__name__}", vendor=self.vendor) from exc
                slept += self._wait(delay)
                continue

            if response.status_code in ok:
                return response
            if response.status_code == 429:
                telemetry.current().vendor_rate_limited(self.vendor)
                verdict = self._rate_limit(response)
                delay = max(verdict.retry_after or 0.0, self.policy.backoff(attempt))
                self.pacer.back_off(delay)
                if (
                    not verdict.retry
                    or attempt >= self.policy.max_attempts
                    or slept + delay > self.policy.max_sleep_total
                ):
                    raise self._error(response, method, path, verdict)
                slept += self._wait(delay)
                continue
            if response.status_code in RETRIABLE_STATUSES:
                if not retry_sent:
                    error = self._error(response, method, path)
                    raise Unanswered(
                        f"{method} {path}: {response.status_code}; the vendor may have acted on it",
                        vendor=self.vendor,
                        status=response.status_code,
                        request_id=error.request_id,
                        body=error.body,
                    ) from error
                delay = self.policy.backoff(attempt)
                if attempt >= self.policy.max_attempts or slept + delay > self.policy.max_sleep_total:
                    raise self._error(response, method, path)
                slept += self._wait(delay)
                continue
            raise self._error(response, method, path)

    def _wait(self, delay: float) -> float:
        """Sleep ``delay`` before a retry, and count the retry; returns ``delay``."""
        telemetry.current().vendor_retried(self.vendor)
        self._sleep(delay)
        return delay

    def _error(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        verdict: RateLimitVerdict | None = None,
    ) -> IntegrationError:
        status = response.status_code
        context: dict[str, Any] = {
            "vendor": self.vendor,
            "request_id": response.headers.get(self._request_id_header),
            "body": redact(response.text),
        }
        message = f"{method} {path} failed"
        if status == 429:
            verdict = verdict or self._rate_limit(response)
            return RateLimited(
                f"{message}: rate limited ({verdict.problem or 'limit'})",
                retry_after=verdict.retry_after,
                problem=verdict.problem,
                status=status,
                **context,
            )
        return typed_error(status, self.fault(response), message, **context)

    def fault(self, response: httpx.Response) -> Fault | None:
        """The vendor's reading of an error body; None when it has none or the body cannot be read."""
        try:
            return self._read_fault(response)
        except (ValueError, TypeError, KeyError, AttributeError):  # a body that is not what the vendor documents
            return None
