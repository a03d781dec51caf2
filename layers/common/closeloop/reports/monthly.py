"""The monthly reconciliation rendered for finance: a CSV of discrepancies, an XLSX workbook, an HTML summary.

The workbook goes through ``closeloop.reports.xlsx`` (XlsxWriter, imported only when a workbook is written);
the rest is the standard library. Every renderer returns bytes and writes only what the `Reconciliation`
holds, which carries no contact details. CSV text cells are guarded against formula injection; the workbook
writes text as strings (never formulas), with Excel's quote prefix on a leading ``= + - @``; HTML is escaped.
Text longer than a cell may hold (Excel's 32,767 characters; the same bound for CSV, which is opened in
Excel, and HTML) is cut with a marker saying so (``cut_text``), so one overlong deal name or failure reason
never fails the month.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from closeloop.reports.xlsx import MAX_CELL_TEXT, BarChart, CellValue, Sheet, Workbook
from closeloop.sync.reconcile import (
    FORECAST_DEFINITION,
    PRICE_DRIFT_DEFINITION,
    QUOTES_DEFINITION,
    TOTALS_DEFINITION,
    Discrepancy,
    Reconciliation,
)

__all__ = [
    "CSV_HEADER",
    "CSV_NAME",
    "HTML_NAME",
    "PRICE_DRIFT_HEADER",
    "QUOTES_HEADER",
    "XLSX_NAME",
    "cut_text",
    "guard_csv_text",
    "render_all",
    "render_csv",
    "render_html",
    "render_xlsx",
]

CSV_NAME: Final = "discrepancies.csv"
XLSX_NAME: Final = "reconciliation.xlsx"
HTML_NAME: Final = "summary.html"

CSV_HEADER: Final = (
    "type",
    "crm_ref",
    "deal_name",
    "invoice_number",
    "invoice_id",
    "crm_amount",
    "accounting_amount",
    "currency",
    "detail",
    "suggested_action",
)

# Leading characters a spreadsheet may read as the start of a formula (OWASP's CSV injection list).
_FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
_NO_CURRENCY: Final = "(none)"
_NO_OWNER: Final = "(unassigned)"

_SUMMARY_HEADER: Final = (
    "Currency",
    "Won amount",
    "Invoiced",
    "Paid",
    "Outstanding",
    "Overdue",
    "Draft",
    "Won deals",
    "Invoices",
)
# Columns of _SUMMARY_HEADER the chart plots (contiguous: a chart range is one row or one column).
_CHART_COLUMNS: Final = (1, 3)


def _utf16_length(text: str) -> int:
    """Length as Excel counts it (UTF-16 code units: a character outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def cut_text(text: str, limit: int = MAX_CELL_TEXT) -> str:
    """``text`` if it fits ``limit`` UTF-16 code units, else its start and ``… [cut, N chars]`` (N characters
    cut), the whole within ``limit``."""
    if len(text) <= limit // 2 or _utf16_length(text) <= limit:
        return text
    budget = limit - len(f"… [cut, {len(text)} chars]")  # the count is at most len(text): room enough
    kept = text[:budget]
    while (excess := _utf16_length(kept) - budget) > 0:
        kept = kept[: len(kept) - max(1, (excess + 1) // 2)]
    return f"{kept}… [cut, {len(text) - len(kept)} chars]"


def _fit(row: Sequence[CellValue]) -> tuple[CellValue, ...]:
    return tuple(cut_text(value) if isinstance(value, str) else value for value in row)


def guard_csv_text(value: str) -> str:
    """``value`` made inert in a spreadsheet (a leading ``= + - @`` tab or CR gets a ``'`` in front), and cut
    to what a spreadsheet cell holds."""
    return cut_text("'" + value if value.startswith(_FORMULA_TRIGGERS) else value)


def _money(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _currency(code: str) -> str:
    return code or _NO_CURRENCY


def _csv_row(d: Discrepancy) -> list[str]:
    text = guard_csv_text
    return [
        text(d.type),
        text(d.crm_ref),
        text(d.deal_name),
        text(d.invoice_number),
        text(d.invoice_id),
        _money(d.crm_amount),  # our own Decimal text, never CRM input
        _money(d.accounting_amount),
        text(d.currency),
        text(d.detail),
        text(d.suggested_action),
    ]


def render_csv(reconciliation: Reconciliation) -> bytes:
    """The discrepancies as UTF-8 CSV (header ``CSV_HEADER``, CRLF rows); text cells formula-guarded."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(_csv_row(d) for d in reconciliation.discrepancies)
    return buffer.getvalue().encode()


# -- XLSX ------------------------------------------------------------------------------------------


def _utc_naive(moment: datetime) -> datetime:
    """Excel has no time zones: the UTC wall time (a naive ``moment`` is taken as UTC already)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _table(sheet: Sheet, header: Sequence[str], rows: Sequence[Sequence[CellValue]], widths: Sequence[float]) -> None:
    sheet.append(header, bold=True)
    for row in rows:
        sheet.append(_fit(row))
    sheet.set_column_widths(widths)
    sheet.freeze_header = True
    sheet.autofilter = True


def _summary_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Summary")
    sheet.append(_SUMMARY_HEADER, bold=True)
    for t in rec.totals:
        sheet.append(
            _fit(
                (
                    _currency(t.currency),
                    t.won_amount,
                    t.invoiced,
                    t.paid,
                    t.outstanding,
                    t.overdue,
                    t.draft,
                    t.won_deals,
                    t.invoices,
                )
            )
        )
    first, last = _CHART_COLUMNS
    for index, _ in enumerate(rec.totals):
        row = index + 1
        sheet.add_chart(
            BarChart(
                title=f"Won vs invoiced vs paid ({_currency(rec.totals[index].currency)})",
                categories=(0, first, 0, last),
                series=[(_currency(rec.totals[index].currency), (row, first, row, last))],
                anchor=(index * 16, len(_SUMMARY_HEADER) + 1),
                y_axis_title="Amount",
            )
        )
    sheet.append(())
    sheet.append(("Reconciliation", rec.month), bold=True)
    sheet.append(("Period (UTC)", rec.period_start, "to (excluded)", rec.period_end))
    sheet.append(("Generated at (UTC)", _utc_naive(rec.generated_at)))
    sheet.append(("Overdue as of", rec.today))
    sheet.append(("Systems", f"{rec.crm} -> {rec.accounting}"))
    sheet.append(("Won deals", rec.won_deals))
    sheet.append(("Won deals with a live invoice", rec.invoiced_deals))
    sheet.append(("Invoices of the month", rec.invoices))
    sheet.append(("Customers checked for drift", rec.customers_checked))
    if rec.products_checked is not None:
        sheet.append(("Linked products checked for price drift", rec.products_checked))
    if rec.quotes_checked is not None:
        sheet.append(("Accounting quotes checked", rec.quotes_checked))
    sheet.append(("Discrepancies", len(rec.discrepancies)))
    sheet.append(())
    sheet.append(("Discrepancy type", "Count"), bold=True)
    for kind, count in rec.counts_by_type().items():
        sheet.append((kind, count))
    sheet.append(())
    sheet.append(("Definitions",), bold=True)
    sheet.append((TOTALS_DEFINITION,))
    sheet.append((FORECAST_DEFINITION,))
    for note in rec.notes:
        sheet.append(_fit((note,)))
    sheet.set_column_widths((28, 20, 14, 14, 14, 14, 14, 11, 11))


def _discrepancy_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Discrepancies")
    rows = [
        (
            d.type,
            d.crm_ref,
            d.deal_name,
            d.invoice_number,
            d.invoice_id,
            d.crm_amount,
            d.accounting_amount,
            d.currency,
            d.detail,
            d.suggested_action,
        )
        for d in rec.discrepancies
    ]
    _table(sheet, CSV_HEADER, rows, (24, 26, 30, 14, 38, 14, 16, 10, 60, 60))


def _rep_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Collection by rep")
    header = ("Owner id", "Currency", "Won deals", "Won amount", "Invoiced", "Paid", "Outstanding", "Collection rate %")
    rows = [
        (
            r.owner_id or _NO_OWNER,
            _currency(r.currency),
            r.won_deals,
            r.won_amount,
            r.invoiced,
            r.paid,
            r.outstanding,
            r.collection_rate,
        )
        for r in rec.collection_by_rep
    ]
    _table(sheet, header, rows, (16, 10, 11, 14, 14, 14, 14, 18))


def _forecast_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Forecast vs actual")
    header = (
        "Currency",
        "Won deals",
        "Deals without amount",
        "Forecast (won amount)",
        "Deals invoiced",
        "Invoiced",
        "Paid",
        "Invoiced - forecast",
        "Invoiced % of forecast",
        "Paid % of invoiced",
    )
    rows = [
        (
            _currency(f.currency),
            f.won_deals,
            f.deals_without_amount,
            f.forecast,
            f.deals_invoiced,
            f.invoiced,
            f.paid,
            f.variance,
            f.invoiced_percent,
            f.paid_percent,
        )
        for f in rec.forecast
    ]
    _table(sheet, header, rows, (10, 11, 20, 20, 14, 14, 14, 18, 20, 18))
    sheet.append(())
    sheet.append(("Definition", FORECAST_DEFINITION))


PRICE_DRIFT_HEADER: Final = ("Product", "SKU", "Item code", "CRM price", "Accounting price", "Difference", "Currency")


def _price_drift_rows(rec: Reconciliation) -> list[tuple[CellValue, ...]]:
    return [
        (d.product, d.sku, d.item_code, d.crm_price, d.accounting_price, d.difference, _currency(d.currency))
        for d in rec.price_drift
    ]


def _price_drift_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Item price drift")
    _table(
        sheet,
        (*PRICE_DRIFT_HEADER, "CRM ref"),
        [(*r, d.crm_ref) for r, d in zip(_price_drift_rows(rec), rec.price_drift, strict=True)],
        (30, 20, 20, 12, 16, 12, 10, 26),
    )
    sheet.append(())
    sheet.append((PRICE_DRIFT_DEFINITION,))


QUOTES_HEADER: Final = (
    "Finding",
    "Quote",
    "Quote status",
    "Deal",
    "Quote before tax",
    "Invoice",
    "Invoice before tax",
    "Currency",
    "Detail",
)

_QUOTE_FINDINGS: Final = {
    "quote_accepted_not_invoiced": "Accepted, not invoiced",
    "invoice_differs_from_quote": "Invoice differs from quote",
}


def _quote_rows(rec: Reconciliation) -> list[tuple[CellValue, ...]]:
    return [
        (
            _QUOTE_FINDINGS.get(f.type, f.type),
            f.quote_number or f.quote_ref,
            f.quote_status,
            f.deal_name or f.deal_ref,
            f.quote_amount,
            f.invoice_number,
            f.invoice_amount,
            _currency(f.currency),
            f.detail,
        )
        for f in rec.quote_findings
    ]


def _quotes_sheet(book: Workbook, rec: Reconciliation) -> None:
    sheet = book.add_sheet("Quotes")
    _table(
        sheet,
        (*QUOTES_HEADER, "CRM quote", "CRM deal"),
        [(*r, f.quote_ref, f.deal_ref) for r, f in zip(_quote_rows(rec), rec.quote_findings, strict=True)],
        (26, 18, 12, 26, 16, 16, 18, 10, 60, 24, 24),
    )
    sheet.append(())
    sheet.append((f"{rec.quotes_checked} accounting quote(s) checked.",))
    sheet.append((QUOTES_DEFINITION,))


def render_xlsx(reconciliation: Reconciliation) -> bytes:
    """The workbook: sheets Summary (totals, counts, one chart per currency), Discrepancies, Collection by rep
    and Forecast vs actual; Item price drift when the catalogue was checked (catalogue sync on) and Quotes when
    the quotes were (quotes on). Money
    cells are exact Decimals. The same reconciliation gives the same bytes."""
    book = Workbook(created=reconciliation.generated_at)
    _summary_sheet(book, reconciliation)
    _discrepancy_sheet(book, reconciliation)
    _rep_sheet(book, reconciliation)
    _forecast_sheet(book, reconciliation)
    if reconciliation.products_checked is not None:
        _price_drift_sheet(book, reconciliation)
    if reconciliation.quotes_checked is not None:
        _quotes_sheet(book, reconciliation)
    return book.to_bytes()


# -- HTML ------------------------------------------------------------------------------------------

_CSS: Final = (
    "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2933;margin:24px;}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}p{margin:4px 0}"
    "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #cbd2d9;padding:4px 8px}"
    "th{background:#f0f4f8;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".muted{color:#616e7c;font-size:12px}.ok{color:#1f7a1f}.bad{color:#b42318}"
)


def _cells(values: Sequence[object], tag: str = "td") -> str:
    parts = []
    for value in values:
        numeric = isinstance(value, int | Decimal) and not isinstance(value, bool)
        text = _money(value) if isinstance(value, Decimal) else cut_text(str(value))
        klass = ' class="n"' if numeric and tag == "td" else ""
        parts.append(f"<{tag}{klass}>{html.escape(text)}</{tag}>")
    return "<tr>" + "".join(parts) + "</tr>"


def render_html(reconciliation: Reconciliation) -> bytes:
    """A short, self-contained HTML summary (inline CSS, no scripts, no external links): the month, when it
    was generated, discrepancy counts by type, totals per currency, forecast vs actual. Everything escaped."""
    rec = reconciliation
    esc = html.escape
    counts = rec.counts_by_type()
    total = sum(counts.values())
    status = (
        '<p class="ok">No discrepancies.</p>'
        if not total
        else f'<p class="bad">{total} discrepanc{"y" if total == 1 else "ies"} to review.</p>'
    )
    totals = "".join(
        _cells(
            (_currency(t.currency), t.won_deals, t.won_amount, t.invoices, t.invoiced, t.paid, t.outstanding, t.overdue)
        )
        for t in rec.totals
    )
    forecast = "".join(
        _cells(
            (
                _currency(f.currency),
                f.forecast,
                f.invoiced,
                f.paid,
                f.variance,
                "" if f.invoiced_percent is None else f"{f.invoiced_percent}%",
            )
        )
        for f in rec.forecast
    )
    body = [
        f"<h1>Closeloop reconciliation {esc(rec.month)}</h1>",
        f'<p class="muted">{esc(rec.crm)} &rarr; {esc(rec.accounting)}; period {rec.period_start.isoformat()} to '
        f"{rec.period_end.isoformat()} (excluded), UTC. Generated at "
        f"{_utc_naive(rec.generated_at):%Y-%m-%d %H:%M} UTC.</p>",
        status,
        "<h2>Discrepancies by type</h2><table>",
        _cells(("Type", "Count"), "th"),
        "".join(_cells((kind, count)) for kind, count in counts.items()),
        "</table>",
        "<h2>Totals</h2><table>",
        _cells(("Currency", "Won deals", "Won", "Invoices", "Invoiced", "Paid", "Outstanding", "Overdue"), "th"),
        totals or '<tr><td colspan="8">No deals or invoices this month.</td></tr>',
        "</table>",
        "<h2>Forecast vs actual</h2><table>",
        _cells(("Currency", "Forecast", "Invoiced", "Paid", "Invoiced - forecast", "Invoiced % of forecast"), "th"),
        forecast or '<tr><td colspan="6">No won deals this month.</td></tr>',
        "</table>",
        *_price_drift_html(rec),
        *_quotes_html(rec),
        f'<p class="muted">{esc(FORECAST_DEFINITION)}</p>',
        f'<p class="muted">{esc(TOTALS_DEFINITION)}</p>',
        *(f'<p class="muted">{esc(note)}</p>' for note in rec.notes),
        '<p class="muted">Details: the workbook (reconciliation.xlsx) and discrepancies.csv.</p>',
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Closeloop reconciliation {esc(rec.month)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    return page.encode()


#: The HTML summary lists at most this many drifted items (the workbook and the CSV list them all).
HTML_PRICE_DRIFT_ROWS: Final = 50


def _price_drift_html(rec: Reconciliation) -> list[str]:
    """The Item price drift section: absent when the catalogue was not checked."""
    if rec.products_checked is None:
        return []
    rows = _price_drift_rows(rec)
    shown = "".join(
        _cells(tuple("(none)" if value is None else value for value in row)) for row in rows[:HTML_PRICE_DRIFT_ROWS]
    )
    more = len(rows) - HTML_PRICE_DRIFT_ROWS
    return [
        "<h2>Item price drift</h2>",
        f'<p class="muted">{rec.products_checked} linked product(s) compared. '
        f"{html.escape(PRICE_DRIFT_DEFINITION)}</p>",
        "<table>",
        _cells(PRICE_DRIFT_HEADER, "th"),
        shown
        or f'<tr><td colspan="{len(PRICE_DRIFT_HEADER)}">No drift: every compared item has its CRM price.</td></tr>',
        "</table>",
        *(
            [f'<p class="muted">{more} more in the workbook (sheet Item price drift) and the CSV.</p>']
            if more > 0
            else []
        ),
    ]


def _quotes_html(rec: Reconciliation) -> list[str]:
    """The Quotes section: absent when the quotes were not checked (quotes off)."""
    if rec.quotes_checked is None:
        return []
    rows = [tuple("" if cell is None else cell for cell in row) for row in _quote_rows(rec)]
    shown = "".join(_cells(row) for row in rows[:HTML_PRICE_DRIFT_ROWS])
    more = len(rows) - HTML_PRICE_DRIFT_ROWS
    return [
        "<h2>Quotes</h2>",
        f'<p class="muted">{rec.quotes_checked} accounting quote(s) checked. {html.escape(QUOTES_DEFINITION)}</p>',
        "<table>",
        _cells(QUOTES_HEADER, "th"),
        shown
        or f'<tr><td colspan="{len(QUOTES_HEADER)}">No finding: every accepted quote is invoiced as quoted.</td></tr>',
        "</table>",
        *([f'<p class="muted">{more} more in the workbook (sheet Quotes) and the CSV.</p>'] if more > 0 else []),
    ]


def render_all(reconciliation: Reconciliation) -> dict[str, bytes]:
    """All three files keyed by the names ``publish_report`` stores them under."""
    return {
        CSV_NAME: render_csv(reconciliation),
        XLSX_NAME: render_xlsx(reconciliation),
        HTML_NAME: render_html(reconciliation),
    }
