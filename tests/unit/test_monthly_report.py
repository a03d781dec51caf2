"""The rendered monthly report: the workbook opens in openpyxl, the CSV is injection-safe, the HTML escaped."""

from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
from dataclasses import replace
from datetime import date
from decimal import Decimal

import openpyxl
import pytest

from closeloop.reports.monthly import (
    CSV_HEADER,
    cut_text,
    guard_csv_text,
    render_all,
    render_csv,
    render_html,
    render_xlsx,
)
from closeloop.sync.reconcile import Discrepancy, Reconciliation, reconcile
from tests.report_fakes import (
    GENERATED_AT,
    MONTH,
    TODAY,
    ReportBooks,
    ReportCrm,
    ReportStore,
    deal,
    planted_scenario,
)


def planted() -> Reconciliation:
    s = planted_scenario()
    return reconcile(
        MONTH,
        crm=s.crm,  # type: ignore[arg-type]
        accounting=s.books,  # type: ignore[arg-type]
        store=s.store,  # type: ignore[arg-type]
        failed_syncs=s.failed,
        dead_letters=s.dead_letters,
        today=TODAY,
        generated_at=GENERATED_AT,
    )


def open_workbook(data: bytes) -> openpyxl.Workbook:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # openpyxl warns about parts it does not understand
        return openpyxl.load_workbook(io.BytesIO(data))


HOSTILE = ['=HYPERLINK("http://evil","x")', "+SUM(1)", "-2+3", "@cmd", "\tTab", "\rCR", "fine = text"]


def hostile() -> Reconciliation:
    """A reconciliation whose CRM-supplied text starts with formula triggers."""
    rec = planted()
    planted_rows = tuple(
        Discrepancy("won_deal_without_invoice", crm_ref=f"hubspot/deal/{n}", deal_name=name, detail=name)
        for n, name in enumerate(HOSTILE)
    )
    return replace(rec, discrepancies=planted_rows)


def test_the_workbook_opens_with_its_sheets_and_values() -> None:
    # Given the planted month
    rec = planted()

    # When rendered as a workbook and read back by openpyxl (warnings are errors)
    book = open_workbook(render_xlsx(rec))

    # Then it has the four sheets, in order, with the totals and discrepancies as values
    assert book.sheetnames == ["Summary", "Discrepancies", "Collection by rep", "Forecast vs actual"]
    summary = book["Summary"]
    assert [c.value for c in summary[1]][:4] == ["Currency", "Won amount", "Invoiced", "Paid"]
    rows = {r[0]: r for r in summary.iter_rows(min_row=2, max_row=1 + len(rec.totals), values_only=True)}
    assert set(rows) == {"EUR", "GBP", "USD"}
    assert Decimal(str(rows["GBP"][1])) == Decimal("3960.50")
    assert Decimal(str(rows["GBP"][2])) == Decimal("4092.51")
    assert summary.cell(2, 2).number_format == "#,##0.00"
    labels = {r[0]: r[1] for r in summary.iter_rows(values_only=True) if r[0]}
    assert labels["Reconciliation"] == MONTH
    assert labels["Won deals"] == 10
    assert labels["contact_drift"] == 2
    assert labels["Generated at (UTC)"].isoformat() == "2026-11-01T02:00:00"

    discrepancies = book["Discrepancies"]
    assert tuple(c.value for c in discrepancies[1]) == CSV_HEADER
    assert discrepancies.max_row == 1 + len(rec.discrepancies)
    assert discrepancies.freeze_panes == "A2"
    assert discrepancies.auto_filter.ref == f"A1:J{1 + len(rec.discrepancies)}"
    amount_row = next(r for r in discrepancies.iter_rows(values_only=True) if r[0] == "amount_mismatch")
    assert (amount_row[1], Decimal(str(amount_row[5])), Decimal(str(amount_row[6]))) == (
        "hubspot/deal/500",
        Decimal("1000.00"),
        Decimal("1000.01"),
    )

    reps = list(book["Collection by rep"].iter_rows(values_only=True))
    assert reps[0][-1] == "Collection rate %"
    assert ("7002", "GBP") in {(r[0], r[1]) for r in reps[1:]}
    assert next(r for r in reps if r[:2] == ("7002", "GBP"))[-1] == 100

    forecast = list(book["Forecast vs actual"].iter_rows(values_only=True))
    assert forecast[0][3] == "Forecast (won amount)"
    assert any(r[0] == "Definition" and "Forecast = the sum" in r[1] for r in forecast if r[0])


def test_the_summary_carries_a_native_bar_chart_per_currency() -> None:
    # Given the planted month in three currencies
    data = render_xlsx(planted())

    # When the package is opened
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        charts = sorted(n for n in archive.namelist() if n.startswith("xl/charts/chart"))
        xml = [archive.read(n).decode() for n in charts]

    # Then one clustered column chart per currency plots won, invoiced and paid from the Summary sheet
    assert len(charts) == 3
    assert all("<c:barChart>" in x and '<c:grouping val="clustered"/>' in x for x in xml)
    assert any("Won vs invoiced vs paid (GBP)" in x for x in xml)
    assert all("'Summary'!$B$1:$D$1" in x for x in xml)


def test_the_workbook_is_deterministic() -> None:
    rec = planted()
    assert render_xlsx(rec) == render_xlsx(rec)


@pytest.mark.parametrize("value", HOSTILE)
def test_guard_prefixes_only_formula_triggers(value: str) -> None:
    guarded = guard_csv_text(value)
    assert guarded == (value if value == "fine = text" else "'" + value)


def test_csv_cells_cannot_start_a_formula() -> None:
    # Given CRM text that starts with = + - @ tab or CR
    rec = hostile()

    # When written as CSV and read back
    rows = list(csv.reader(io.StringIO(render_csv(rec).decode(), newline="")))

    # Then the header is as documented and every such cell starts with an apostrophe
    assert tuple(rows[0]) == CSV_HEADER
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    names = [row[2] for row in rows[1:]]
    assert names == ["'" + v for v in HOSTILE[:-1]] + ["fine = text"]


def test_csv_amounts_are_exact_text() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(planted()).decode(), newline="")))
    mismatch = next(r for r in rows if r["type"] == "amount_mismatch")
    assert (mismatch["crm_amount"], mismatch["accounting_amount"]) == ("1000.00", "1000.01")


def test_workbook_text_that_looks_like_a_formula_stays_text() -> None:
    # Given the same hostile text
    book = open_workbook(render_xlsx(hostile()))

    # Then the workbook holds it as plain strings, never formulas
    cells = [row[2] for row in book["Discrepancies"].iter_rows(min_row=2)]
    assert [c.value for c in cells][0] == HOSTILE[0]
    assert all(c.data_type == "s" for c in cells)


def test_html_is_escaped_and_self_contained() -> None:
    # Given text with markup in every place the summary shows text
    rec = replace(planted(), crm="<script>alert(1)</script>", notes=("a <b>note</b> & more",))

    # When rendered
    page = render_html(rec).decode()

    # Then nothing is interpreted, and the page needs nothing from elsewhere
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt;b&gt;note&lt;/b&gt; &amp; more" in page
    assert "<style>" in page and "http" not in page.replace('"http-equiv', "")
    assert "Closeloop reconciliation 2026-10" in page
    assert "2026-11-01 02:00 UTC" in page
    assert '<td>contact_drift</td><td class="n">2</td>' in page
    assert "12 discrepancies to review." in page


def test_render_all_names_the_three_files() -> None:
    files = render_all(planted())
    assert set(files) == {"discrepancies.csv", "reconciliation.xlsx", "summary.html"}
    assert files["reconciliation.xlsx"].startswith(b"PK")


def test_a_month_of_only_deals_without_currency_renders() -> None:
    # Given a deal without a currency and without an invoice
    crm = ReportCrm()
    crm.add(deal("1", currency="", closed=date(2026, 10, 3)))
    rec = reconcile(
        MONTH,
        crm=crm,  # type: ignore[arg-type]
        accounting=ReportBooks(),  # type: ignore[arg-type]
        store=ReportStore(),  # type: ignore[arg-type]
        failed_syncs=[],
        dead_letters={},
        today=TODAY,
        generated_at=GENERATED_AT,
    )

    # Then the workbook labels the missing currency instead of leaving a blank category
    book = open_workbook(render_xlsx(rec))
    assert book["Summary"]["A2"].value == "(none)"


def test_overlong_text_is_cut_with_a_marker_instead_of_failing_the_month() -> None:
    # Given a failed sync whose reason is 40,000 characters (it reaches the report through the reconcile's
    # redaction) and a discrepancy whose CRM deal name and detail are 40,000 characters each
    s = planted_scenario()
    failed = [replace(s.failed[0], reason="Xero said: " + "r" * 40_000)]
    rec = reconcile(
        MONTH,
        crm=s.crm,  # type: ignore[arg-type]
        accounting=s.books,  # type: ignore[arg-type]
        store=s.store,  # type: ignore[arg-type]
        failed_syncs=failed,
        dead_letters=s.dead_letters,
        today=TODAY,
        generated_at=GENERATED_AT,
    )
    long_row = Discrepancy("failed_sync", crm_ref="hubspot/deal/901", deal_name="D" * 40_000, detail="R" * 40_000)
    rec = replace(rec, discrepancies=(*rec.discrepancies, long_row))
    # When the month is rendered
    files = render_all(rec)
    # Then the workbook opens, every cell within Excel's limit, the long ones cut with a marker
    sheet = open_workbook(files["reconciliation.xlsx"])["Discrepancies"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    by_ref = {row[header.index("crm_ref")]: row for row in rows[1:]}
    long_cells = by_ref["hubspot/deal/901"]
    name, detail = long_cells[header.index("deal_name")], long_cells[header.index("detail")]
    assert isinstance(name, str)
    assert isinstance(detail, str)
    assert len(name) <= 32_767
    assert name.startswith("D" * 1000)
    assert name.endswith(f"… [cut, {40_000 - name.index('…')} chars]")
    assert detail.endswith(" chars]")
    assert "[cut," in detail
    # And the 40,000-character failure reason is in the workbook, shortened (the redaction keeps 300)
    reasons = [row[header.index("detail")] for row in rows[1:] if row[header.index("type")] == "failed_sync"]
    assert any(isinstance(r, str) and "Xero said: rrr" in r and len(r) < 1000 for r in reasons)
    # And the CSV carries the same cut cells
    parsed = list(csv.reader(io.StringIO(files["discrepancies.csv"].decode())))
    (csv_row,) = [row for row in parsed if row[1] == "hubspot/deal/901"]
    assert csv_row[2] == name


def test_cut_text_counts_characters_as_excel_does() -> None:
    # Given text of characters outside the BMP (two UTF-16 units each in Excel's count)
    text = "\N{GRINNING FACE}" * 20_000
    # When cut to Excel's limit
    cut = cut_text(text)
    # Then it fits in UTF-16 units, keeps whole characters and says how many it cut
    assert len(cut.encode("utf-16-le")) // 2 <= 32_767
    kept = cut.index("…")
    assert set(cut[:kept]) == {"\N{GRINNING FACE}"}
    assert cut[kept:] == f"… [cut, {20_000 - kept} chars]"
    # And text that fits is left alone
    assert cut_text("x" * 32_767) == "x" * 32_767


def test_no_text_cell_or_chart_label_becomes_a_formula_even_for_a_dde_payload() -> None:
    # Given a month whose CRM text is a DDE payload (a company name, a deal name, a currency code): the currency
    # also names a chart series and titles its chart, where XlsxWriter reads "x!A0" as a cell reference
    payload = "=cmd|' /C calc'!A0"
    rec = planted()
    rec = replace(
        rec,
        totals=(replace(rec.totals[0], currency=payload), *rec.totals[1:]),
        discrepancies=(
            *rec.discrepancies,
            Discrepancy("contact_drift", crm_ref="hubspot/company/666", deal_name=payload, detail=payload),
        ),
    )

    # When the workbook is rendered and read back
    data = render_xlsx(rec)
    book = open_workbook(data)

    # Then no cell anywhere holds a formula, and the payload is text with Excel's quote prefix
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    planted_cells = [cell for cell in cells if cell.value == payload]
    assert len(planted_cells) == 3
    assert all(cell.data_type == "s" and cell.quotePrefix for cell in planted_cells)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]
        charts = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/charts/chart")]
    assert not any("<f>" in xml or "<f " in xml for xml in sheets)

    # And the Summary keeps its native chart per currency, whose only references are the Summary's own cells:
    # the payload is a literal series name and title (its "!" swapped for a look-alike letter), never a reference
    assert len(book["Summary"]._charts) == len(rec.totals) == 3
    references = [ref for xml in charts for ref in re.findall(r"<c:f>(.*?)</c:f>", xml)]
    assert references and all(re.fullmatch(r"'Summary'!\$[A-Z]+\$\d+:\$[A-Z]+\$\d+", ref) for ref in references)
    assert any("<c:v>=cmd|' /C calc'\u01c3A0</c:v>" in xml for xml in charts)


def with_catalogue() -> Reconciliation:
    s = planted_scenario()
    return reconcile(
        MONTH,
        crm=s.crm,  # type: ignore[arg-type]
        accounting=s.books,  # type: ignore[arg-type]
        store=s.store,  # type: ignore[arg-type]
        failed_syncs=s.failed,
        dead_letters=s.dead_letters,
        today=TODAY,
        generated_at=GENERATED_AT,
        catalogue=s.catalogue,
    )


def test_item_price_drift_appears_in_the_csv_a_workbook_sheet_and_the_html_with_consistent_counts() -> None:
    # Given a month reconciled with the catalogue checked (two items drifted)
    rec = with_catalogue()

    # When it is rendered
    files = render_all(rec)

    # Then the CSV lists both drifts as discrepancies with the two prices
    rows = list(csv.reader(io.StringIO(files["discrepancies.csv"].decode())))
    drift = [r for r in rows if r[0] == "item_price_drift"]
    assert [(r[1], r[2], r[5], r[6]) for r in drift] == [
        ("hubspot/product/801", "Product DRIFT-1", "12.50", "12.00"),
        ("hubspot/product/802", "Product NOPRICE-1", "5.00", ""),
    ]
    # and the workbook has an Item price drift sheet with product, SKU, prices and difference as numbers
    book = open_workbook(files["reconciliation.xlsx"])
    assert book.sheetnames[-1] == "Item price drift"
    sheet = list(book["Item price drift"].iter_rows(values_only=True))
    assert sheet[0][:6] == ("Product", "SKU", "Item code", "CRM price", "Accounting price", "Difference")
    assert sheet[1][:7] == ("Product DRIFT-1", "DRIFT-1", "DRIFT-1", 12.5, 12, 0.5, "GBP")
    assert sheet[2][4] is None and sheet[2][5] == 5
    # and the Summary's count of the type and its total agree with the listed rows
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if r and r[0]}
    assert summary["item_price_drift"] == 2 and summary["Discrepancies"] == len(rows) - 1
    assert summary["Linked products checked for price drift"] == 3
    # and the HTML shows the section with both rows and the total including them
    page = files["summary.html"].decode()
    assert "<h2>Item price drift</h2>" in page and "<td>NOPRICE-1</td>" in page
    assert "<td>(none)</td>" in page and "None" not in page
    assert f"{len(rows) - 1} discrepancies to review" in page


def test_without_the_catalogue_check_the_report_has_no_price_drift_section() -> None:
    files = render_all(planted())
    assert "Item price drift" not in files["summary.html"].decode()
    assert "Item price drift" not in open_workbook(files["reconciliation.xlsx"]).sheetnames
