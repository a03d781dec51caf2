"""One benchmark result per row, and the aligned table ``make bench`` prints."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

#: What a target bounds: the value itself, or the value divided by its floor.
Bound = Literal["value", "ratio", "none"]


@dataclass(frozen=True)
class Row:
    """A measured figure beside its floor (what the same work costs at the least, measured in the same run).

    ``target`` bounds ``value`` or ``value / floor`` from above (``bound``); ``bound="none"`` is information only.
    """

    measure: str
    value: float
    floor: float
    unit: str
    target: float = 0.0
    bound: Bound = "none"
    digits: int = 1
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.floor if self.floor else float("inf")

    @property
    def met(self) -> bool | None:
        if self.bound == "none":
            return None
        bounded = self.ratio if self.bound == "ratio" else self.value
        return bounded <= self.target

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "MISS", None: "info"}[self.met]

    def cells(self) -> tuple[str, str, str, str, str]:
        ratio = f"{self.ratio:,.2f}x" if self.ratio < 100 else f"{self.ratio:,.0f}x"
        if self.bound == "ratio":
            goal = f"{ratio} / <= {self.target:g}x"
        elif self.bound == "value":
            goal = f"{ratio} / <= {self.target:g} {self.unit}"
        else:
            goal = f"{ratio} / -"
        return (
            self.measure,
            f"{self.value:,.{self.digits}f} {self.unit}",
            f"{self.floor:,.{self.digits}f} {self.unit}",
            goal,
            self.verdict,
        )


HEADER = ("measure", "value", "floor", "ratio/target", "verdict")
RIGHT_ALIGNED = {1, 2}


def render_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table (value and floor right-aligned)."""
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in RIGHT_ALIGNED else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(HEADER), rule, *(fmt(cells) for cells in lines[1:])])


def render_notes(rows: Sequence[Row]) -> str:
    """The rows' notes, numbered, for under the table."""
    return "\n".join(f"- {row.measure}: {row.note}" for row in rows if row.note)


def machine() -> str:
    """Where the figures come from: platform, CPU count, Python version."""
    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {platform.platform()} ({cpu}), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()} ({sys.implementation.name})"
    )


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)
