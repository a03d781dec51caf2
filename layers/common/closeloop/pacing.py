"""Pacing: every worker's calls to one organisation share the vendor's budget through one schedule.

The schedule is one item in the store holding the time its next free call slot starts (a virtual
scheduling form of the token bucket, GCRA). A worker books a few slots at once in one conditional update
(``take``: the store is written once per few calls, not once per call), holds them locally and sends
each call no earlier than its slot. Slots are ``spacing`` seconds apart across all workers, so in any
rolling minute at most ``60 / spacing`` slots start. A slot not used within ``hold`` seconds of its
time is dropped, never saved up: held slots cannot make a burst.

Why the numbers hold against a rolling window: a call goes in [slot, slot + hold] and reaches the vendor
within the network delay d, so the calls the vendor counts in any minute took slots in a span of
60 + hold + d seconds; with ``spacing = 60 / (per_minute × headroom)`` that is at most per_minute calls
while hold + d < 60 × (1 / headroom − 1) (3.2 s at 95 %).

A worker never waits longer than ``max_wait`` (nor past its invocation's ``deadline``) for a slot: it
raises RateLimited instead, and the queue worker re-queues the work that is left with that delay,
without spending a receive count (see ``closeloop.sync.worker``).

The clock is injectable and can run faster than real time (``Clock(scale=20)``: a vendor minute lasts
3 s): benchmarks and local tests keep the ratios of a real minute without waiting for one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from closeloop.errors import RateLimited

if TYPE_CHECKING:
    from closeloop.http import RateLimit


@dataclass(frozen=True)
class Clock:
    """Seconds as the vendor counts them; ``scale`` > 1 runs them faster than real time (local tests only)."""

    scale: float = 1.0

    def now(self) -> float:
        return time.time() * self.scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.scale)

    def real_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of this clock last in real time (an SQS delay, a visibility timeout)."""
        return seconds / self.scale


REAL_TIME = Clock()


@dataclass(frozen=True)
class Booking:
    """The answer of a schedule: ``booked`` slots starting ``at``, or (not booked) when it is next free."""

    booked: bool
    at: float


class Schedules(Protocol):
    """The shared schedules, kept by the repository (``closeloop.store.DynamoStore``)."""

    def book_call_slots(self, budget: str, count: int, spacing: float, now: float, latest: float) -> Booking:
        """Book ``count`` slots ``spacing`` apart from the schedule's next free slot (``now`` if that passed)
        in one atomic update, unless that slot starts after ``latest``."""
        ...

    def hold_call_slots(self, budget: str, until: float) -> None:
        """Book nothing before ``until`` (the vendor said 429)."""
        ...


class SharedPacer:
    """A ``Pacer`` (see ``closeloop.http``) over a shared schedule of one organisation's call slots."""

    #: Slots booked per store write (each write books this many calls).
    TAKE = 3
    #: Seconds after its start a held slot may still be used (see the module docstring for the bound).
    HOLD = 1.5
    #: The share of the published limit we plan to use; the rest absorbs hold, network delay and skew.
    HEADROOM = 0.95
    #: The longest a call waits for its slot inside an invocation; longer waits re-queue the work.
    MAX_WAIT = 20.0

    def __init__(
        self,
        schedules: Schedules,
        budget: Callable[[], str],
        limit: RateLimit,
        *,
        vendor: str = "",
        clock: Clock = REAL_TIME,
        deadline: Callable[[], float | None] = lambda: None,
    ) -> None:
        """``budget``: the schedule's name (vendor and organisation id); ``deadline``: the clock time by
        which this invocation must stop sending (``None``: no deadline)."""
        self._schedules = schedules
        self._budget = budget
        self.limit = limit
        self.vendor = vendor
        self.clock = clock
        self._deadline = deadline
        self.spacing = 60.0 / (limit.per_minute * self.HEADROOM)
        self._held: deque[float] = deque()
        self._lock = threading.Lock()
        self.bookings = 0  # store writes made to book slots (the pacer's cost)

    def acquire(self) -> None:
        with self._lock:
            now = self.clock.now()
            while self._held and self._held[0] + self.HOLD < now:
                self._held.popleft()
            latest = now + self.MAX_WAIT
            deadline = self._deadline()
            if deadline is not None:
                latest = min(latest, deadline)
            if not self._held:
                # Near the deadline book one slot at a time: slots past it would go unused by anyone.
                take = self.TAKE if deadline is None or now + self.TAKE * self.spacing <= deadline else 1
                booking = self._schedules.book_call_slots(self._budget(), take, self.spacing, now, latest)
                self.bookings += 1
                if not booking.booked:
                    raise self._limited(booking.at - now)
                self._held.extend(booking.at + n * self.spacing for n in range(take))
            slot = self._held[0]
            if slot > latest:
                raise self._limited(slot - now)
            self._held.popleft()
        self.clock.sleep(slot - now)

    def back_off(self, seconds: float) -> None:
        with self._lock:
            self._held.clear()
            self._schedules.hold_call_slots(self._budget(), self.clock.now() + seconds)

    def _limited(self, wait: float) -> RateLimited:
        return RateLimited(
            f"the {self.limit.per_minute}/min budget is booked for the next {wait:.0f} s",
            retry_after=float(max(1, math.ceil(wait))),
            problem="paced",
            vendor=self.vendor,
        )
