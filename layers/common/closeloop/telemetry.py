"""What Closeloop counts and traces about itself, as a port the logic and the HTTP client call.

The sync logic (closeloop.sync) and ``VendorHttp`` report what happened through ``Telemetry``; the Powertools
implementation (CloudWatch embedded metrics and X-Ray, ``closeloop.observability``) is installed by the
runtime, so logic imports no Powertools utility and tests need none. Without it (unit tests, the CLI)
nothing is counted. Only bounded labels (object type, action, vendor) and ids ever go in: never a name, an
email or an amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

#: The CloudWatch namespace of every Closeloop metric (template.yaml's alarms and Globals name it too).
METRICS_NAMESPACE = "Closeloop"
#: A CRM record the worker synced, by ``ObjectType`` and ``Action`` (created, matched, updated, unchanged, skipped).
RECORDS_SYNCED = "RecordsSynced"
#: An invoice created in the accounting system (not one found again by its reference).
INVOICES_CREATED = "InvoicesCreated"
#: A record kept as a failed sync (it needs a person: the deal or contact says why).
FAILED_SYNCS = "FailedSyncs"
#: A vendor answered 429, by ``Vendor``.
VENDOR_RATE_LIMITED = "VendorRateLimited"
#: A vendor call sent again after a 429, a 5xx or a transport failure, by ``Vendor``.
VENDOR_RETRIES = "VendorRetries"
#: How long the oldest message of a worker's batch waited in its queue, in seconds.
QUEUE_LAG_SECONDS = "QueueLagSeconds"
#: The messages a worker's invocation received (every batch counts it, so no flush is ever empty).
MESSAGES_RECEIVED = "MessagesReceived"


class Telemetry(Protocol):
    """Counts and spans. Implementations never raise: telemetry must not fail a sync."""

    def record_synced(self, object_type: str, action: str) -> None: ...

    def sync_failed(self) -> None: ...

    def invoice_created(self) -> None: ...

    def vendor_rate_limited(self, vendor: str) -> None: ...

    def vendor_retried(self, vendor: str) -> None: ...

    def queue_lag(self, seconds: float) -> None: ...

    def messages_received(self, count: int) -> None: ...

    def span(self, name: str, annotations: Mapping[str, str | int]) -> AbstractContextManager[None]:
        """A traced span around the work inside it, searchable by ``annotations`` (ids and labels only)."""
        ...


class NoTelemetry:
    """Counts nothing and traces nothing."""

    def record_synced(self, object_type: str, action: str) -> None:
        return None

    def sync_failed(self) -> None:
        return None

    def invoice_created(self) -> None:
        return None

    def vendor_rate_limited(self, vendor: str) -> None:
        return None

    def vendor_retried(self, vendor: str) -> None:
        return None

    def queue_lag(self, seconds: float) -> None:
        return None

    def messages_received(self, count: int) -> None:
        return None

    @contextmanager
    def span(self, name: str, annotations: Mapping[str, str | int]) -> Iterator[None]:
        yield


NO_TELEMETRY: Telemetry = NoTelemetry()

#: The process's telemetry for code that is not handed one (``VendorHttp``: every adapter builds its own).
_installed: list[Telemetry] = [NO_TELEMETRY]


def install(telemetry: Telemetry) -> None:
    """Make ``telemetry`` the process's (the runtime installs the Powertools one; ``NO_TELEMETRY`` undoes it)."""
    _installed[0] = telemetry


def current() -> Telemetry:
    """The process's telemetry (``NO_TELEMETRY`` until one is installed)."""
    return _installed[0]


def oldest_message_age(records: Iterable[Mapping[str, Any]], now_ms: float) -> float | None:
    """Seconds since the oldest of ``records`` (SQS records as Lambda delivers them) was sent; None when no
    record says when (``attributes.SentTimestamp``, epoch milliseconds).

    The age at processing, as ``ApproximateAgeOfOldestMessage`` measures it: time in the queue, the batching
    window and earlier failed receives all count; so does the delay of a message deliberately re-queued for
    later (a rate limit's Retry-After, a parked message).
    """
    sent = []
    for record in records:
        value = (record.get("attributes") or {}).get("SentTimestamp")
        try:
            sent.append(float(str(value)))
        except ValueError:  # absent ("None") or not a number
            continue
    if not sent:
        return None
    return max(0.0, (now_ms - min(sent)) / 1000)
