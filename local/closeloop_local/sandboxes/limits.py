"""Rate-limit building blocks the sandboxes combine into their vendor's limits (windows, budgets, in-flight).

Each vendor keeps its own limit values, what it counts (per token, tenant, realm, app) and how it says no
(status, body, ``Retry-After`` or not); these classes only count. Times are seconds (or milliseconds, if the
caller is consistent) on the sandbox's clock, so tests move the clock instead of sleeping.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, date, datetime


class RollingWindow:
    """The moments of the calls counted within the last ``span`` (a vendor's rolling rate window)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._moments: deque[float] = deque()

    def count(self, now: float) -> int:
        """Calls still inside the window at ``now`` (older ones leave it)."""
        while self._moments and self._moments[0] <= now - self.span:
            self._moments.popleft()
        return len(self._moments)

    def add(self, now: float) -> None:
        self._moments.append(now)

    def oldest(self) -> float | None:
        """When the oldest counted call was made (it leaves the window at ``oldest() + span``)."""
        return self._moments[0] if self._moments else None

    def clear(self) -> None:
        self._moments.clear()


class DailyBudget:
    """Units spent on the current UTC calendar day of the clock; a new day starts at zero."""

    def __init__(self) -> None:
        self._day: date | None = None
        self._spent = 0

    def spent(self, now: float) -> int:
        today = datetime.fromtimestamp(now, UTC).date()
        if today != self._day:
            self._day, self._spent = today, 0
        return self._spent

    def spend(self, now: float, units: int = 1) -> None:
        self._spent = self.spent(now) + units

    def clear(self) -> None:
        self._day, self._spent = None, 0


class InFlight:
    """Calls being answered right now, per key (a vendor's concurrency limit)."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}

    def count(self, key: str = "") -> int:
        return self._running.get(key, 0)

    def enter(self, key: str = "") -> None:
        self._running[key] = self._running.get(key, 0) + 1

    def leave(self, key: str = "") -> None:
        self._running[key] = max(0, self._running.get(key, 0) - 1)

    def clear(self) -> None:
        self._running.clear()


class WindowAndDay:
    """A rolling window of calls and a budget of units per UTC day, the day checked first: a call is refused
    as "day" when its cost would overspend today, else as "window" when the window is full, else counted.

    HubSpot (10 s + daily calls), Pipedrive (2 s + daily tokens) and Zoho Books (minute + day) limit this
    way. ``now`` is in ``1 / per_second`` seconds of the sandbox clock (HubSpot counts milliseconds).
    """

    def __init__(self, window_limit: int, span: float, daily_limit: int, per_second: float = 1.0) -> None:
        self.window_limit = window_limit
        self.daily_limit = daily_limit
        self.window = RollingWindow(span)
        self._day = DailyBudget()
        self._per_second = per_second

    def take(self, now: float, cost: int = 1) -> str | None:
        """Count one call of ``cost`` units, or say which limit refuses it ("day" or "window")."""
        if self._day.spent(now / self._per_second) + cost > self.daily_limit:
            return "day"
        if self.window.count(now) >= self.window_limit:
            return "window"
        self.window.add(now)
        self._day.spend(now / self._per_second, cost)
        return None

    def window_remaining(self, now: float) -> int:
        return max(0, self.window_limit - self.window.count(now))

    def day_remaining(self, now: float) -> int:
        return max(0, self.daily_limit - self._day.spent(now / self._per_second))

    def reset(self) -> None:
        self.window.clear()
        self._day.clear()
