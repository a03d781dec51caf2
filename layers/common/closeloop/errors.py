"""The error tree. Every vendor or webhook failure is one of these, raised ``from`` its cause.

``IntegrationError`` carries the vendor, HTTP status, request id and a redacted body excerpt so that a
failed sync record or an alert says what happened without leaking PII or secrets.
Queue workers map ``RetriableError`` to a retry (the message comes back, then the DLQ) and ``FatalError``
to a failed-sync record; the webhook routes map ``WebhookRejected`` to a 4xx answer.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Something went wrong talking to a vendor or handling its data."""

    def __init__(
        self,
        message: str,
        *,
        vendor: str = "",
        status: int | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor = vendor
        self.status = status
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        if self.vendor:
            parts.append(f"vendor={self.vendor}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class RetriableError(IntegrationError):
    """Worth trying again later: rate limits, outages, timeouts, a record busy elsewhere."""


class RateLimited(RetriableError):
    """The vendor said 429. ``retry_after`` is in seconds when the vendor told us."""

    def __init__(self, message: str, *, retry_after: float | None = None, problem: str = "", **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.problem = problem


class Unavailable(RetriableError):
    """5xx, connection errors and timeouts that outlived the client's own retries."""


class Unanswered(Unavailable):
    """The request may have reached the vendor but no usable answer came back (read timeout, dropped
    connection, 5xx): the vendor may have acted on it. Raised only where resending is not always safe."""


class Busy(RetriableError):
    """Another worker holds the lease on this record or connection right now."""


class AuthExpired(RetriableError):
    """The access token was refused; a refresh is due."""


class FatalError(IntegrationError):
    """Retrying cannot help: the record or the configuration must change first."""


class SetupError(IntegrationError):
    """The integration itself is disconnected or misconfigured: not one record's fault, and no retry
    heals it. Workers alert a person and keep the messages (they are not recorded as failed syncs)."""


class AuthRevoked(SetupError):
    """The refresh token is no longer valid (``invalid_grant``): a person must reconnect the app."""


class RefreshAnswerLost(Unavailable):
    """A token refresh was sent and its answer lost, and the vendor's rules do not make resending the
    same refresh token safe at once: this call does not re-send it. The work is retried later with the
    stored token (the only one there is); if the vendor had rotated it, that refresh is refused
    (``invalid_grant`` -> AuthRevoked), which parks the work and alerts a person to reconnect."""


class TokenNotSaved(SetupError):
    """A refreshed token could not be saved anywhere durable; the message says where it can still be
    recovered (never the token itself)."""


class ValidationFailed(FatalError):
    """The vendor (or our own mapping) rejected the record's data."""


class NotFound(FatalError):
    """The object does not exist (any more) at the vendor."""


class Conflict(FatalError):
    """The vendor reports a uniqueness conflict (e.g. a duplicate name)."""


class OutcomeUnknown(FatalError):
    """A call that must not be repeated (an email send) reached the vendor, and no answer says whether it
    took effect (a 5xx, a read timeout, a dropped connection). Retrying could do it twice, so it is not
    retried: a person checks in the vendor's app."""


class ConfigurationError(SetupError):
    """A setting or credential is missing or malformed."""


class WebhookRejected(Exception):
    """A webhook request that must be refused with ``status`` (401, 400, 404, 413) and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
