"""Reconcile a month of 100,000 won deals and invoices, then render its CSV, XLSX and HTML.

The real ``closeloop.sync.reconcile.reconcile`` and ``closeloop.reports.monthly.render_all`` run over the
synthetic month of ``bench.month`` (deals and invoices built as they are read, the deal mappings listed as
one list, as the Lambda does). Time is one untraced run; memory is the tracemalloc peak of a second run.

The floor is the least any reconciliation of the month does: read every deal and every invoice once and
pair them, keeping the month's invoices in a dict by the deal their reference names. Same data, same
generators, timed and traced the same way.
"""

from __future__ import annotations

import gc
import re
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

from bench.month import COMPANIES, CRM, MONTH, TODAY, MonthBooks, MonthCrm, MonthStore, failed_syncs
from bench.report import Row
from closeloop.models import Invoice
from closeloop.reports.monthly import render_all
from closeloop.sync.reconcile import month_bounds, reconcile

TARGET_SECONDS = 10.0
TARGET_MB = 512.0
_REFERENCE = re.compile(rf"{CRM}-deal-(\S+)")


def reconcile_and_render(count: int) -> dict[str, bytes]:
    """What the reconcile function computes for the month (without the S3 upload): the three files."""
    store = MonthStore(count)
    result = reconcile(
        MONTH,
        crm=MonthCrm(count),  # type: ignore[arg-type]
        accounting=MonthBooks(count),  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        failed_syncs=failed_syncs(),
        dead_letters={"ContactDLQ": 0, "DealDLQ": 3},
        today=TODAY,
        generated_at=datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
        deal_mappings=store.iter_mappings(CRM, "deal"),
    )
    expected = count // 100  # orphans planted (see bench.month)
    if result.counts_by_type()["invoice_without_deal"] != expected or result.won_deals != count:
        raise RuntimeError(f"reconcile found {result.counts_by_type()} for {result.won_deals} deals")
    if result.customers_checked != min(COMPANIES, count):
        raise RuntimeError(f"{result.customers_checked} customers checked")
    return render_all(result)


def pair_only(count: int) -> int:
    """The floor: every deal and invoice read once, invoices kept by the deal id their reference names."""
    start, end = month_bounds(MONTH)
    by_deal: dict[str, Invoice] = {}
    for invoice in MonthBooks(count).iter_invoices(start, end):
        match = _REFERENCE.match(invoice.reference)
        by_deal[match[1] if match else invoice.id] = invoice
    crm = MonthCrm(count)
    paired = 0
    for deal in crm.iter_won_deals(datetime(start.year, start.month, 1, tzinfo=UTC), datetime.now(UTC)):
        paired += deal.ref.object_id in by_deal
    return paired


def _seconds(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _peak_mb(work: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def measure(count: int = 100_000) -> list[Row]:
    """Seconds and tracemalloc peak (MB) of reconcile + render_all, beside the read-and-pair floor."""
    floor_s = _seconds(lambda: pair_only(count))
    value_s = _seconds(lambda: reconcile_and_render(count))
    floor_mb = _peak_mb(lambda: pair_only(count))
    value_mb = _peak_mb(lambda: reconcile_and_render(count))
    label = f"{count:,} deals + invoices"
    return [
        Row(f"reconcile + render_all time, {label}", value_s, floor_s, "s", TARGET_SECONDS, "value", digits=2),
        Row(f"reconcile + render_all peak memory, {label}", value_mb, floor_mb, "MB", TARGET_MB, "value", digits=0),
    ]
