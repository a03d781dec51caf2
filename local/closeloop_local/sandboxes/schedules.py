"""The date arithmetic of a recurring billing schedule, shared by the accounting sandboxes that run them
(QuickBooks Online RecurringTransaction, Zoho Books recurring invoices).

A ``Recurrence`` is an anchor day and an interval (every ``every`` days, weeks, months or years), optionally
pinned to a day of the month, a weekday (of a week of the month) or a month of the year, and bounded by an
end day. Its occurrences are the days a schedule makes a document on; each vendor module decides how many it
makes (a maximum count) and from which day on it counts.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Unit = Literal["day", "week", "month", "year"]
#: A schedule reaches at most this many occurrences in one walk (a guard, far past any contract term).
MAX_WALK = 100_000


def add_months(day: date, months: int, on_day: int | None = None) -> date:
    """``day`` moved by ``months`` whole months, on ``on_day`` (default ``day``'s own), clamped to the month's
    last day (31 January + 1 month is 28 or 29 February)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(on_day or day.day, last))


def _weekday_of_month(year: int, month: int, weekday: int, week: int) -> date:
    """The ``week``-th (1-4; 5 or more: the last) ``weekday`` (0 Monday) of the month."""
    first = date(year, month, 1)
    day = first + timedelta(days=(weekday - first.weekday()) % 7)
    last = calendar.monthrange(year, month)[1]
    for _ in range(1, week):
        if day.day + 7 > last:
            break
        day += timedelta(days=7)
    return day


@dataclass(frozen=True)
class Recurrence:
    unit: Unit
    every: int
    start: date
    end: date | None = None
    day_of_month: int | None = None  # month, year
    weekday: int | None = None  # week; month with week_of_month (0 Monday)
    week_of_month: int | None = None  # month: 1-4, 5 the last
    month: int | None = None  # year: 1-12

    def _nth(self, n: int) -> date:  # noqa: PLR0911 - one return per unit
        """The ``n``-th candidate day (n from 0); the first may fall before ``start`` (``dates`` skips it)."""
        if self.unit == "day":
            return self.start + timedelta(days=n * self.every)
        if self.unit == "week":
            first = self.start
            if self.weekday is not None:
                first += timedelta(days=(self.weekday - self.start.weekday()) % 7)
            return first + timedelta(weeks=n * self.every)
        if self.unit == "month":
            anchor = add_months(self.start.replace(day=1), n * self.every)
            if self.weekday is not None and self.week_of_month is not None:
                return _weekday_of_month(anchor.year, anchor.month, self.weekday, self.week_of_month)
            return add_months(anchor, 0, self.day_of_month or self.start.day)
        anchor = date(self.start.year + n * self.every, self.month or self.start.month, 1)
        return add_months(anchor, 0, self.day_of_month or self.start.day)

    def dates(self) -> Iterator[date]:
        """Every occurrence on or after ``start`` and not after ``end``, in order."""
        for n in range(MAX_WALK):
            day = self._nth(n)
            if self.end is not None and day > self.end:
                return
            if day >= self.start:
                yield day

    def first_on_or_after(self, day: date) -> date | None:
        """The first occurrence on or after ``day``; None when the schedule ends before it."""
        return next((d for d in self.dates() if d >= day), None)
