"""A burst of won deals against Xero's real rate limits: all invoiced, none dead-lettered, the budget used.

The Xero sandbox enforces Xero's per-tenant limits (60 calls in any rolling minute, 5 in flight) on a clock
``TIME_SCALE`` times faster than real time: a Xero minute lasts 60 / TIME_SCALE real seconds, and the
sandbox's window and Retry-After, the pacer's clock and sleeps, the queue's delays and visibility timeout
and the Lambda timeout all run on that clock, so every ratio is the one a real minute gives.

The deal queue is played in memory as SQS and Lambda would: deliveries of up to 100 events (HubSpot's
webhook batch) as one message each, ``WORKERS`` concurrent invocations (the template's WorkerMaxConcurrency)
of up to 10 messages, each with a 60 s timeout, a failed message back after the 360 s visibility timeout,
and the DLQ after maxReceiveCount 5 (template.yaml). Each invocation has its own Xero adapter and
``SharedPacer``; they share one store, so one schedule, as Lambdas share the DynamoDB table.

Measured: calls made / (elapsed Xero minutes × 60), the share of calls answered 429, dead-lettered
messages, invoices created, and the pacer's store writes per call.
"""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.memory import MemoryStore
from bench.report import Row
from bench.sandboxes import HubSpot, running_hubspot
from bench.sync_calls import ITEMS, creation_event, seed_companies, seed_won_deals
from closeloop.errors import Busy
from closeloop.models import CrmRef, WorkMessage
from closeloop.oauth import RefreshingTokens
from closeloop.pacing import Clock, SharedPacer
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.worker import Worker
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.client import refresh_with_identity
from closeloop_local.sandboxes import xero

#: Xero seconds per real second: a Xero minute lasts 3 s.
TIME_SCALE = 20
#: template.yaml: WorkerMaxConcurrency (default 5), the deal queue's maxReceiveCount and visibility, the timeout.
WORKERS = 5
MAX_RECEIVE_COUNT = 5
VISIBILITY_SECONDS = 360
LAMBDA_TIMEOUT_SECONDS = 60
EVENTS_PER_DELIVERY = 100
MESSAGES_PER_BATCH = 10
TARGET_USED = 0.90
TARGET_429 = 0.01


@dataclass(order=True)
class _Message:
    visible_at: float
    message_id: str = field(compare=False)
    body: str = field(compare=False)
    receives: int = field(default=0, compare=False)


class MemoryQueue:
    """An SQS queue on a clock: DelaySeconds, visibility timeout, receive counts and a redrive to a DLQ."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._ready: list[_Message] = []
        self.in_flight = 0
        self.dead: list[str] = []

    def send(self, body: str, delay: float = 0) -> None:
        with self._lock:
            heapq.heappush(self._ready, _Message(self.clock.now() + delay, uuid.uuid4().hex, body))

    def receive(self, count: int) -> list[_Message]:
        with self._lock:
            now = self.clock.now()
            taken: list[_Message] = []
            while self._ready and self._ready[0].visible_at <= now and len(taken) < count:
                message = heapq.heappop(self._ready)
                message.receives += 1
                if message.receives > MAX_RECEIVE_COUNT:
                    self.dead.append(message.body)
                    continue
                taken.append(message)
            self.in_flight += len(taken)
            return taken

    def settle(self, message: _Message, *, failed: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            if failed:
                message.visible_at = self.clock.now() + VISIBILITY_SECONDS
                heapq.heappush(self._ready, message)

    def empty(self) -> bool:
        with self._lock:
            return not self._ready and not self.in_flight


class MemoryOnce:
    """Powertools idempotency in memory: a finished key returns its result, one in progress is Busy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, dict[str, Any]] = {}
        self._running: set[str] = set()

    def __call__(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        name = repr(sorted(key.items()))
        with self._lock:
            if name in self._done:
                return self._done[name]
            if name in self._running:
                raise Busy(f"{key['ref']} is being processed")
            self._running.add(name)
        try:
            result = work()
        finally:
            with self._lock:
                self._running.discard(name)
        with self._lock:
            self._done[name] = result
        return result


class _NoAlerts:
    def alert(self, subject: str, message: str) -> None:
        raise RuntimeError(f"unexpected alert: {subject}")


def _invoke(
    batch: Sequence[_Message], queue: MemoryQueue, worker: Worker, deadline: list[float | None], clock: Clock
) -> None:
    """One Lambda invocation: a deadline for the pacer, each message handled, failures back to the queue."""
    deadline[0] = clock.now() + LAMBDA_TIMEOUT_SECONDS - 20  # runtime.DEADLINE_RESERVE_SECONDS
    for message in batch:
        try:
            worker.handle_message(message.body)
        except Exception:  # noqa: BLE001 - as Lambda: the message comes back after the visibility timeout
            queue.settle(message, failed=True)
        else:
            queue.settle(message, failed=False)


def _run_workers(queue: MemoryQueue, make_worker: Callable[[list[float | None]], Worker], clock: Clock) -> None:
    """WORKERS pollers, as the event source mapping at its maximum concurrency, until the queue is empty."""
    stop = threading.Event()

    def poll() -> None:
        deadline: list[float | None] = [None]
        worker = make_worker(deadline)
        while not stop.is_set():
            batch = queue.receive(MESSAGES_PER_BATCH)
            if batch:
                _invoke(batch, queue, worker, deadline, clock)
            else:
                time.sleep(0.005)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    while not queue.empty():
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()


def measure(deals: int = 200) -> list[Row]:  # noqa: PLR0914 - one scenario, read top to bottom
    """Invoice a burst of ``deals`` won deals through the paced, re-queueing deal worker."""
    clock = Clock(TIME_SCALE)
    store = MemoryStore()
    policy = InvoicePolicy()
    sandbox, server = xero.serve(xero.XeroSandbox(minute_limit=60, concurrent_limit=5, time_scale=TIME_SCALE))
    pacers: list[SharedPacer] = []
    try:
        with running_hubspot() as hub:
            companies = seed_companies(hub, deals)
            for code, name, price in ITEMS:
                sandbox.seed_item(
                    Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
                )
            deadline_free: list[float | None] = [None]
            # The customers exist already (synced when they were created): this measures the deals alone.
            setup = _worker(hub, sandbox, server.url, store, policy, clock, deadline_free, pacers, MemoryOnce())
            contacts: Any = setup.pipeline.contacts  # type: ignore[attr-defined]
            contacts.sync_many({ref: [creation_event(ref, n)] for n, ref in enumerate(companies)})
            deal_refs = seed_won_deals(hub, companies, deals)

            queue = MemoryQueue(clock)
            once = MemoryOnce()
            bookings_before = sum(p.bookings for p in pacers)
            before = len(sandbox.state.calls())
            started = clock.now()
            for start in range(0, deals, EVENTS_PER_DELIVERY):
                chunk = deal_refs[start : start + EVENTS_PER_DELIVERY]
                events = [creation_event(ref, start + n) for n, ref in enumerate(chunk)]
                queue.send(WorkMessage(pipeline="deals", events=events).model_dump_json())
            _run_workers(
                queue,
                lambda deadline: _worker(hub, sandbox, server.url, store, policy, clock, deadline, pacers, once, queue),
                clock,
            )
            elapsed = clock.now() - started
            calls = [c for c in sandbox.state.calls()[before:] if c.path != "/connect/token"]
            bookings = sum(p.bookings for p in pacers) - bookings_before
    finally:
        server.stop()
    invoiced = _invoiced(sandbox, deal_refs)
    if invoiced != deals or queue.dead:
        raise RuntimeError(f"{invoiced} of {deals} deals invoiced, {len(queue.dead)} messages dead-lettered")
    limited = sum(1 for c in calls if c.status == 429)
    minutes = elapsed / 60
    scale = f"Xero's clock ran {TIME_SCALE}x faster (a Xero minute = {60 / TIME_SCALE:g} real s)"
    return [
        Row(
            f"Xero budget used, {deals} won deals in one burst",
            len(calls) / (minutes * 60),
            1.0,
            "of 60/min",
            target=TARGET_USED,
            bound="none",
            digits=3,
            note=(
                f"{len(calls)} calls in {minutes:.1f} Xero minutes ({elapsed / TIME_SCALE:.0f} real s; {scale}); "
                f"target >= {TARGET_USED:.0%}: {'ok' if len(calls) / (minutes * 60) >= TARGET_USED else 'MISS'}; "
                f"{invoiced}/{deals} invoiced, {len(queue.dead)} dead-lettered, {WORKERS} workers; "
                f"pacer store writes per call {bookings / max(1, len(calls)):.2f}"
            ),
        ),
        Row(
            f"Xero calls answered 429, {deals} won deals in one burst",
            limited / max(1, len(calls)),
            0.0,
            "of calls",
            target=TARGET_429,
            bound="value",
            digits=4,
            note=f"{limited} of {len(calls)} calls answered 429 (Xero sandbox at 60/min and 5 concurrent; {scale})",
        ),
    ]


def _worker(  # noqa: PLR0913 - the pieces one Lambda container builds
    hub: HubSpot,
    sandbox: xero.XeroSandbox,
    url: str,
    store: MemoryStore,
    policy: InvoicePolicy,
    clock: Clock,
    deadline: list[float | None],
    pacers: list[SharedPacer],
    once: MemoryOnce,
    queue: MemoryQueue | None = None,
) -> Worker:
    """A deal worker as one Lambda container has it: its own Xero adapter and pacer on the shared store."""
    pacer = SharedPacer(
        store,
        lambda: f"xero#{sandbox.tenant_id}",
        XeroAccounting.RATE_LIMIT,
        vendor="xero",
        clock=clock,
        deadline=lambda: deadline[0],
    )
    pacers.append(pacer)
    tokens = RefreshingTokens(
        "xero",
        store,
        seed=lambda fresh: sandbox.initial_refresh_token,
        refresh=refresh_with_identity(url, lambda: sandbox.client_id, lambda: sandbox.client_secret),
        write_back=lambda token: None,
    )
    books = XeroAccounting(
        base_url=url, tokens=tokens, tenant_id=lambda: sandbox.tenant_id, sleep=clock.sleep, pacer=pacer
    )
    owner = uuid.uuid4().hex
    contacts = ContactSync(hub.crm, books, store, owner=owner)
    deals = DealSync(hub.crm, books, store, contacts, policy, owner=owner)

    def park(pipeline: str, body: str, delay: int) -> None:
        if queue is None:
            raise RuntimeError("nothing is parked while the customers are set up")
        queue.send(body, delay)

    return Worker(deals, _NoAlerts(), once, park=park, now=clock.now)


def _invoiced(sandbox: xero.XeroSandbox, refs: Sequence[CrmRef]) -> int:
    """How many deals have exactly one invoice (found by the deal reference Closeloop writes)."""
    references = [str(i.get("Reference", "")) for i in sandbox.invoices()]
    return sum(1 for ref in refs if sum(r.startswith(f"hubspot-deal-{ref.object_id} ") for r in references) == 1)
