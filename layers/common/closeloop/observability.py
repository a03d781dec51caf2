"""Closeloop's telemetry on Powertools: Metrics as CloudWatch embedded-metric log lines, Tracer as X-Ray.

``metrics`` is the handlers' Powertools ``Metrics``: the counts without a dimension of their own
(InvoicesCreated, FailedSyncs, QueueLagSeconds) are added to it and written once per invocation by
``@metrics.log_metrics``. An embedded-metric document carries one dimension set, so each count with its own
dimensions (RecordsSynced by object type and action, VendorRateLimited and VendorRetries by vendor) is
written on its own line as it happens (Powertools' ``single_metric``, as its docs advise).

``tracer`` is a Powertools ``Tracer`` made on the first traced invocation, not at import: making it loads
the X-Ray SDK and, to patch it, botocore (0.5 s in a fresh process on a development machine; 0.1-0.3 s once
boto3 is loaded), which the webhook functions, sharing their module with a worker, must not pay at their cold
start (they load no boto3 at init). It patches botocore only: X-Ray records an httpx call's full URL,
and vendor lookups put emails and tax numbers in query strings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from numbers import Number
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric

from closeloop import telemetry as names
from closeloop.telemetry import oldest_message_age

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = TypeVar("Handler", bound=Callable[..., Any])

#: X-Ray patches these libraries' calls into subsegments (not httpx: see the module docstring).
TRACED_LIBRARIES = ("botocore",)

metrics = Metrics(namespace=names.METRICS_NAMESPACE)


class LazyTracer:
    """A Powertools ``Tracer`` made on first use; ``capture_lambda_handler`` as Powertools' own."""

    def __init__(self, patch_modules: tuple[str, ...] = TRACED_LIBRARIES) -> None:
        self._patch_modules = patch_modules
        self._tracer: Tracer | None = None

    def tracer(self) -> Tracer:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer  # noqa: PLC0415 - see the module docstring

            self._tracer = Tracer(patch_modules=self._patch_modules)
        return self._tracer

    def active(self) -> Tracer | None:
        """The tracer, if made and tracing (in Lambda with X-Ray on; not in tests, ``sam local`` or the CLI)."""
        return self._tracer if self._tracer is not None and not self._tracer.disabled else None

    @overload
    def capture_lambda_handler(self, handler: Handler) -> Handler: ...

    @overload
    def capture_lambda_handler(
        self, handler: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[Handler], Handler]: ...

    def capture_lambda_handler(
        self,
        handler: Handler | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Handler | Callable[[Handler], Handler]:
        """Trace each invocation of ``handler`` (Powertools' decorator, applied on the first invocation)."""
        if handler is None:
            return functools.partial(
                self.capture_lambda_handler, capture_response=capture_response, capture_error=capture_error
            )
        traced: list[Callable[..., Any]] = []

        @functools.wraps(handler)
        def invoke(event: Any, context: Any) -> Any:
            if not traced:
                traced.append(
                    self.tracer().capture_lambda_handler(
                        handler, capture_response=capture_response, capture_error=capture_error
                    )
                )
            return traced[0](event, context)

        return invoke  # type: ignore[return-value]


tracer = LazyTracer()


class PowertoolsTelemetry:
    """``closeloop.telemetry.Telemetry`` on Powertools Metrics and ``tracer``.

    ``annotations``: what every span carries besides its own (the deployment's accounting vendor).
    """

    def __init__(self, annotations: Mapping[str, str] | None = None) -> None:
        self.annotations = dict(annotations or {})

    def record_synced(self, object_type: str, action: str) -> None:
        self._single(names.RECORDS_SYNCED, MetricUnit.Count, 1, ObjectType=object_type, Action=action)

    def sync_failed(self) -> None:
        metrics.add_metric(name=names.FAILED_SYNCS, unit=MetricUnit.Count, value=1)

    def invoice_created(self) -> None:
        metrics.add_metric(name=names.INVOICES_CREATED, unit=MetricUnit.Count, value=1)

    def vendor_rate_limited(self, vendor: str) -> None:
        self._single(names.VENDOR_RATE_LIMITED, MetricUnit.Count, 1, Vendor=vendor)

    def vendor_retried(self, vendor: str) -> None:
        self._single(names.VENDOR_RETRIES, MetricUnit.Count, 1, Vendor=vendor)

    def queue_lag(self, seconds: float) -> None:
        metrics.add_metric(name=names.QUEUE_LAG_SECONDS, unit=MetricUnit.Seconds, value=round(seconds, 3))

    def messages_received(self, count: int) -> None:
        metrics.add_metric(name=names.MESSAGES_RECEIVED, unit=MetricUnit.Count, value=count)

    @contextmanager
    def span(self, name: str, annotations: Mapping[str, str | int]) -> Iterator[None]:
        active = tracer.active()
        if active is None:
            yield
            return
        with active.provider.in_subsegment(name=f"## {name}") as subsegment:
            for key, value in {**self.annotations, **annotations}.items():
                # X-Ray annotations are strings, numbers or booleans: ids and labels only (no PII).
                subsegment.put_annotation(key=key, value=value if isinstance(value, str) else cast("Number", value))
            yield

    @staticmethod
    def _single(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
        with single_metric(name=name, unit=unit, value=value, namespace=names.METRICS_NAMESPACE) as metric:
            for key, dimension in dimensions.items():
                metric.add_dimension(name=key, value=dimension or "unknown")


def count_batch(event: Mapping[str, Any], telemetry: names.Telemetry) -> None:
    """Count an SQS batch's messages (``MessagesReceived``: an invocation whose messages are all unreadable
    still flushes a metric, instead of Powertools' empty-metrics warning) and the age of its oldest message
    (``QueueLagSeconds``), if its records say."""
    records = event.get("Records") or []
    telemetry.messages_received(len(records))
    age = oldest_message_age(records, time.time() * 1000)
    if age is not None:
        telemetry.queue_lag(age)
