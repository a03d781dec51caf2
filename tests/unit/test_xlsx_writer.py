"""The XLSX writer (XlsxWriter plus our guards): openpyxl reads back values, types, styles and layout; the zip's
XML is checked directly."""

from __future__ import annotations

import gc
import io
import re
import tempfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from closeloop.reports.xlsx import BarChart, CellValue, Sheet, Workbook

CREATED = datetime(2024, 5, 1, 6, 30, tzinfo=UTC)
EXCEL_PADDING = 0.7109375
NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "c": "http://schemas.openxmlformats.org/drawingml/2006/chart",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "xdr": "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
    "ct": "http://schemas.openxmlformats.org/package/2006/content-types",
}


def load(data: bytes) -> openpyxl.Workbook:
    """Read the workbook back; any openpyxl warning (a part it had to repair or drop) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return openpyxl.load_workbook(io.BytesIO(data))


def part(data: bytes, name: str) -> ET.Element:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return ET.fromstring(archive.read(name))


def raw(data: bytes, name: str) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name).decode()


def one_sheet(*rows: list[CellValue], name: str = "Sheet1") -> tuple[Workbook, Sheet]:
    workbook = Workbook(created=CREATED)
    sheet = workbook.add_sheet(name)
    for row in rows:
        sheet.append(row)
    return workbook, sheet


def reconciliation() -> tuple[Workbook, Sheet]:
    workbook = Workbook(created=CREATED)
    sheet = workbook.add_sheet("Rec 'Q1' & <Co>")
    sheet.append(["Month", "Invoiced", "Paid", "Closed on", "Synced at", "Open", "Count"], bold=True)
    sheet.append(
        ["Jan", Decimal("1234567.89"), Decimal("1000.10"), date(2024, 1, 31), datetime(2024, 2, 1, 9, 15), True, 3]
    )
    sheet.append(["Feb", Decimal("0.01"), Decimal("-0.01"), date(2024, 2, 29), datetime(2024, 3, 1, 23, 59), False, 0])
    sheet.append(["Mar", Decimal("99.90"), None, None, None, None, 2.5])
    sheet.append(["Total", Decimal("1234667.80"), Decimal("1000.09")], bold=True)
    return workbook, sheet


def test_values_types_and_formats_round_trip_through_openpyxl() -> None:
    # Given a reconciliation sheet with text, money, dates, datetimes, booleans, ints, floats and gaps
    workbook, _ = reconciliation()
    # When it is written and read back by openpyxl
    ws = load(workbook.to_bytes())["Rec 'Q1' & <Co>"]
    # Then every value comes back with its type and number format
    assert [c.value for c in ws[1]] == ["Month", "Invoiced", "Paid", "Closed on", "Synced at", "Open", "Count"]
    jan = ws[2]
    assert jan[0].value == "Jan" and jan[0].data_type == "s"
    assert jan[1].value == pytest.approx(1234567.89) and jan[1].number_format == "#,##0.00"
    assert jan[3].value == datetime(2024, 1, 31) and jan[3].number_format == "yyyy-mm-dd"
    assert jan[4].value == datetime(2024, 2, 1, 9, 15) and jan[4].number_format == "yyyy-mm-dd hh:mm"
    assert jan[5].value is True and jan[5].data_type == "b"
    assert jan[6].value == 3 and isinstance(jan[6].value, int) and jan[6].number_format == "General"
    assert ws["E3"].value == datetime(2024, 3, 1, 23, 59)
    assert ws["D3"].value == datetime(2024, 2, 29)
    assert ws["F3"].value is False
    assert ws["G4"].value == 2.5
    # And None leaves the cell empty
    assert [ws[f"{col}4"].value for col in "CDEF"] == [None, None, None, None]


def test_money_is_written_exactly_from_the_decimal_never_through_float() -> None:
    # Given amounts whose float sum drifts and ones with trailing zeros and exponents
    amounts = [Decimal("0.10"), Decimal("0.20"), Decimal("1234567890123.45"), Decimal("-0.00"), Decimal("1E+3")]
    workbook, _ = one_sheet(list(amounts))
    data = workbook.to_bytes()
    # When the sheet XML is inspected
    values = [v.text for v in part(data, "xl/worksheets/sheet1.xml").iterfind(".//m:c/m:v", NS)]
    # Then each cell holds the Decimal's fixed-point text, never a float repr or an exponent
    assert values == ["0.10", "0.20", "1234567890123.45", "0.00", "1000"]
    # And openpyxl reads back each amount exact to the cent, as money
    ws = load(data).active
    assert ws is not None
    for cell, amount in zip(ws[1], amounts, strict=True):
        assert Decimal(str(cell.value)).quantize(Decimal("0.01")) == amount.quantize(Decimal("0.01"))
        assert cell.number_format == "#,##0.00"


@pytest.mark.parametrize(
    ("value", "serial"),
    [
        (date(2024, 1, 31), "45322"),
        (date(1900, 3, 1), "61"),
        (date(1900, 2, 28), "59"),
        (date(1900, 1, 1), "1"),
        (datetime(2024, 1, 31, 12, 0), "45322.5"),
        (datetime(2024, 1, 31), "45322"),
    ],
)
def test_dates_are_1900_system_serial_numbers(value: date, serial: str) -> None:
    # Given a date or datetime cell
    workbook, _ = one_sheet([value])
    data = workbook.to_bytes()
    # When the workbook is written
    cell = part(data, "xl/worksheets/sheet1.xml").find(".//m:c", NS)
    # Then the value is Excel's serial (with its phantom 29 Feb 1900 skipped) and openpyxl reads the same date
    assert cell is not None and cell.findtext("m:v", namespaces=NS) == serial
    ws = load(data).active
    assert ws is not None
    expected = value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())
    assert ws["A1"].value == expected


def test_bold_rows_widths_frozen_header_and_autofilter() -> None:
    # Given a sheet with bold header and total rows, column widths, a frozen header and an autofilter
    workbook, sheet = reconciliation()
    sheet.set_column_widths([12, 18.5, 18.5])
    sheet.freeze_header = True
    sheet.autofilter = True
    # When it is read back
    ws = load(workbook.to_bytes())["Rec 'Q1' & <Co>"]
    # Then bold applies to whole rows only, money keeps its format in bold rows too
    assert all(cell.font.b for cell in ws[1])
    assert not any(cell.font.b for cell in ws[2])
    assert ws["B5"].font.b and ws["B5"].number_format == "#,##0.00"
    # And the layout is what was asked for; a width of N characters is stored as Excel stores it when N is
    # typed in its column-width dialog: N plus the cell padding (5 px of a 7 px digit)
    assert ws.column_dimensions["A"].width == 12 + EXCEL_PADDING
    # (rounded to whole pixels, as Excel does; B and C share one <col> entry as their widths are equal)
    assert abs(ws.column_dimensions["B"].width - (18.5 + EXCEL_PADDING)) <= 1 / 7
    assert (ws.column_dimensions["B"].min, ws.column_dimensions["B"].max) == (2, 3)
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:G5"


def test_layout_options_are_off_by_default() -> None:
    # Given a sheet with data but no layout options
    workbook, _ = one_sheet(["a", 1])
    # When it is read back
    ws = load(workbook.to_bytes()).active
    # Then nothing is frozen or filtered
    assert ws is not None
    assert ws.freeze_panes is None
    assert ws.auto_filter.ref is None


def test_sheet_names_and_order_survive() -> None:
    # Given several sheets, one with characters XML and formulas must escape
    workbook = Workbook(created=CREATED)
    for name in ["Summary", "Invoices & Payments", "O'Brien <GmbH>", "Ünïcode ✓"]:
        workbook.add_sheet(name).append([name])
    # When it is read back
    book = load(workbook.to_bytes())
    # Then the names and order are intact
    assert book.sheetnames == ["Summary", "Invoices & Payments", "O'Brien <GmbH>", "Ünïcode ✓"]
    assert book["O'Brien <GmbH>"]["A1"].value == "O'Brien <GmbH>"


@pytest.mark.parametrize(
    "text", ["=1+1", "+41 79 000 00 00", "-5", "@SUM(A1:A2)", '=HYPERLINK("http://x.test","y")', "\t=1"]
)
def test_formula_injection_text_stays_a_string(text: str) -> None:
    # Given CRM text that a spreadsheet would read as a formula
    workbook, _ = one_sheet([text])
    data = workbook.to_bytes()
    # When the workbook is written
    sheet_xml = raw(data, "xl/worksheets/sheet1.xml")
    # Then there is no formula element, the cell is an inline string, and it carries Excel's quote prefix
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml
    cell = part(data, "xl/worksheets/sheet1.xml").find(".//m:c", NS)
    assert cell is not None and cell.get("t") == "inlineStr"
    ws = load(data).active
    assert ws is not None
    assert ws["A1"].value == text
    assert ws["A1"].data_type == "s"
    assert ws["A1"].quotePrefix


def test_xml_special_and_forbidden_characters() -> None:
    # Given text with markup characters, control characters XML 1.0 forbids, padding, CR/LF, emoji and a lone surrogate
    workbook, _ = one_sheet(
        ['a & b < c > d "e"', "bell\x07 null\x00 esc\x1b", "  padded  ", "line\r\nbreak\ttab", "💶 €", "x\ud800y"]
    )
    data = workbook.to_bytes()
    # When it is read back
    ws = load(data).active
    # Then markup is escaped, forbidden characters are dropped and everything else is kept as is
    assert ws is not None
    assert [c.value for c in ws[1]] == [
        'a & b < c > d "e"',
        "bell null esc",
        "  padded  ",
        "line_x000D_\nbreak\ttab",  # a CR is kept as Excel's own escape, which openpyxl leaves undecoded
        "💶 €",
        "xy",
    ]
    # And padded text is marked so XML readers keep its spaces
    assert '<t xml:space="preserve">  padded  </t>' in raw(data, "xl/worksheets/sheet1.xml")


def test_literal_excel_escape_sequences_are_protected() -> None:
    # Given text that looks like Excel's _xHHHH_ character escape
    workbook, _ = one_sheet(["ref _x0041_ end"])
    # When it is written
    sheet_xml = raw(workbook.to_bytes(), "xl/worksheets/sheet1.xml")
    # Then its underscore is escaped so Excel shows "_x0041_" rather than decoding it to "A"
    # (openpyxl does not decode these escapes, so only the XML is checked)
    assert "<t>ref _x005F_x0041_ end</t>" in sheet_xml


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 32,
        "a[b",
        "a]b",
        "a:b",
        "a*b",
        "a?b",
        "a/b",
        "a\\b",
        "'quoted",
        "quoted'",
        "History",
        "tab\there",
        "💶" * 16,
    ],
)
def test_invalid_sheet_names_raise(name: str) -> None:
    # Given a workbook
    workbook = Workbook(created=CREATED)
    # When a sheet with a name Excel refuses is added
    # Then it is rejected before anything is written
    with pytest.raises(ValueError, match="sheet name"):
        workbook.add_sheet(name)


def test_sheet_names_at_the_limit_are_accepted_and_duplicates_rejected() -> None:
    # Given a workbook with a 31-character sheet name
    workbook = Workbook(created=CREATED)
    workbook.add_sheet("x" * 31)
    workbook.add_sheet("Recon")
    # When a name differing only in case is added
    # Then it is rejected, as Excel compares sheet names case-insensitively
    with pytest.raises(ValueError, match="already exists"):
        workbook.add_sheet("RECON")
    assert load(workbook.to_bytes()).sheetnames == ["x" * 31, "Recon"]


def test_empty_sheet_is_still_a_valid_workbook() -> None:
    # Given a workbook whose only sheet is empty, with layout options that need data
    workbook = Workbook(created=CREATED)
    sheet = workbook.add_sheet("Nothing yet")
    sheet.freeze_header = True
    sheet.autofilter = True
    # When it is written and read back
    data = workbook.to_bytes()
    ws = load(data)["Nothing yet"]
    # Then the sheet is there and empty, and no filter range points at missing cells
    assert ws.max_row == 1 and ws["A1"].value is None
    assert ws.auto_filter.ref is None
    assert "definedName" not in raw(data, "xl/workbook.xml")


def test_workbook_without_sheets_cannot_be_written() -> None:
    # Given a workbook with no sheet
    # When it is written
    # Then it is refused, as Excel cannot open such a file
    with pytest.raises(ValueError, match="at least one sheet"):
        Workbook(created=CREATED).to_bytes()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (Decimal("NaN"), ValueError),
        (Decimal("1E+400"), ValueError),
        (datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))), ValueError),
        (date(1899, 12, 31), ValueError),
        ("x" * 32_768, ValueError),
        (object(), TypeError),
        (b"bytes", TypeError),
    ],
)
def test_values_excel_cannot_hold_are_rejected_on_append(value: object, error: type[Exception]) -> None:
    # Given a sheet
    _, sheet = one_sheet()
    # When a value Excel cannot store is appended
    # Then the append fails, naming the cell, and the row is not kept
    with pytest.raises(error, match=r"Sheet1!B1"):
        sheet.append(["ok", value])  # type: ignore[list-item]
    assert sheet.row_count == 0


def test_invalid_column_widths_are_rejected() -> None:
    # Given a sheet
    _, sheet = one_sheet()
    # When a width is zero, negative or beyond Excel's maximum
    # Then it is rejected
    for width in (0, -1, 256, float("nan")):
        with pytest.raises(ValueError, match="column width"):
            sheet.set_column_widths([10, width])


def chart_workbook() -> tuple[bytes, BarChart]:
    workbook, sheet = reconciliation()
    chart = BarChart(
        title="Invoiced vs paid",
        categories=(1, 0, 3, 0),
        series=[("Invoiced", (1, 1, 3, 1)), ("Paid", (1, 2, 3, 2))],
        anchor=(1, 8),
        y_axis_title="EUR",
        x_axis_title="Month",
    )
    sheet.add_chart(chart)
    return workbook.to_bytes(), chart


def test_bar_chart_references_the_sheet_cells() -> None:
    # Given a sheet whose name needs quoting, with a clustered column chart over months and two amount columns
    data, _ = chart_workbook()
    # When the chart part is read from the zip
    chart = part(data, "xl/charts/chart1.xml")
    # Then it is a clustered column chart whose series point at the right, quoted, absolute ranges
    bar = chart.find(".//c:barChart", NS)
    assert bar is not None
    assert bar.find("c:barDir", NS).get("val") == "col"  # type: ignore[union-attr]
    assert bar.find("c:grouping", NS).get("val") == "clustered"  # type: ignore[union-attr]
    series = bar.findall("c:ser", NS)
    assert [s.findtext("c:tx/c:v", namespaces=NS) for s in series] == ["Invoiced", "Paid"]
    quoted = "'Rec ''Q1'' & <Co>'"
    assert [s.findtext("c:cat//c:f", namespaces=NS) for s in series] == [f"{quoted}!$A$2:$A$4"] * 2
    assert [s.findtext("c:val//c:f", namespaces=NS) for s in series] == [
        f"{quoted}!$B$2:$B$4",
        f"{quoted}!$C$2:$C$4",
    ]
    # (Rows are streamed out as they are written, so the chart carries no cached values: Excel, LibreOffice
    # and openpyxl read the points from the cells.)
    # And the title, axis titles and legend are present
    texts = ["".join(t.itertext()) for t in chart.iterfind(".//c:title", NS)]
    assert texts == ["Invoiced vs paid", "Month", "EUR"]
    assert chart.find(".//c:catAx/c:title", NS) is not None and chart.find(".//c:valAx/c:title", NS) is not None
    assert chart.find("c:chart/c:legend", NS) is not None


def test_chart_is_wired_into_the_package_and_loads_in_openpyxl() -> None:
    # Given a workbook with a chart anchored at I2
    data, _ = chart_workbook()
    # When the package relationships are followed
    sheet_rels = part(data, "xl/worksheets/_rels/sheet1.xml.rels").findall("rel:Relationship", NS)
    drawing_rels = part(data, "xl/drawings/_rels/drawing1.xml.rels").findall("rel:Relationship", NS)
    # Then sheet -> drawing -> chart resolve, and the content types declare each part
    assert [r.get("Target") for r in sheet_rels] == ["../drawings/drawing1.xml"]
    assert [r.get("Target") for r in drawing_rels] == ["../charts/chart1.xml"]
    assert part(data, "xl/worksheets/sheet1.xml").find("m:drawing", NS) is not None
    overrides = {o.get("PartName") for o in part(data, "[Content_Types].xml").findall("ct:Override", NS)}
    assert {"/xl/drawings/drawing1.xml", "/xl/charts/chart1.xml", "/xl/worksheets/sheet1.xml"} <= overrides
    anchor = part(data, "xl/drawings/drawing1.xml").find(".//xdr:from", NS)
    assert anchor is not None
    assert (anchor.findtext("xdr:row", namespaces=NS), anchor.findtext("xdr:col", namespaces=NS)) == ("1", "8")
    # And openpyxl loads the chart without a warning
    ws = load(data)["Rec 'Q1' & <Co>"]
    assert len(ws._charts) == 1


def test_charts_on_several_sheets_get_their_own_parts() -> None:
    # Given two sheets with one chart each and a second chart on the first sheet without a title
    workbook = Workbook(created=CREATED)
    for name in ("North", "South"):
        sheet = workbook.add_sheet(name)
        sheet.append(["Q1", 1])
        sheet.append(["Q2", 2])
        sheet.add_chart(BarChart(title=f"{name} sales", categories=(0, 0, 1, 0), series=[("Sales", (0, 1, 1, 1))]))
    workbook.sheets[0].add_chart(
        BarChart(title="", categories=(0, 0, 1, 0), series=[("Again", (0, 1, 1, 1))], anchor=(20, 0))
    )
    data = workbook.to_bytes()
    # When the package is inspected
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
    # Then each chart has a part referencing its own sheet, and an untitled chart suppresses Excel's auto title
    assert {"xl/charts/chart1.xml", "xl/charts/chart2.xml", "xl/charts/chart3.xml"} <= names
    assert {"xl/drawings/drawing1.xml", "xl/drawings/drawing2.xml"} <= names
    assert "'North'!$B$1:$B$2" in raw(data, "xl/charts/chart2.xml")
    assert '<c:autoTitleDeleted val="1"/>' in raw(data, "xl/charts/chart2.xml")
    assert "'South'!$B$1:$B$2" in raw(data, "xl/charts/chart3.xml")
    book = load(data)
    assert [len(book[name]._charts) for name in ("North", "South")] == [2, 1]


@pytest.mark.parametrize(
    ("categories", "series", "message"),
    [
        ((1, 0, 3, 0), [], "at least one series"),
        ((1, 0, 3, 1), [("x", (1, 1, 3, 1))], "single row or a single column"),
        ((1, 0, 3, 0), [("x", (1, 1, 4, 1))], "different number of points"),
        ((3, 0, 1, 0), [("x", (1, 1, 3, 1))], "reversed"),
        ((-1, 0, 1, 0), [("x", (1, 1, 3, 1))], "outside"),
    ],
)
def test_invalid_chart_ranges_are_rejected(
    categories: tuple[int, int, int, int], series: list[tuple[str, tuple[int, int, int, int]]], message: str
) -> None:
    # Given a sheet
    _, sheet = reconciliation()
    # When a chart with unusable ranges is added
    # Then it is rejected before anything is written
    with pytest.raises(ValueError, match=message):
        sheet.add_chart(BarChart(title="t", categories=categories, series=series))


def test_output_is_deterministic_for_a_fixed_creation_time() -> None:
    # Given the same content built twice with the same creation time
    first, _ = chart_workbook()
    second, _ = chart_workbook()
    # When both are written
    # Then the bytes are identical and the core properties carry that time
    assert first == second
    core = raw(first, "docProps/core.xml")
    assert core.count("2024-05-01T06:30:00Z") == 2
    # And the zip entries carry a fixed time (XlsxWriter's 1980 stamp), not the time of writing
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert len({info.date_time for info in archive.infolist()}) == 1


def test_write_to_a_path_and_to_a_non_seekable_stream(tmp_path: Path) -> None:
    # Given a small workbook and a stream that can only be written to (like an upload pipe)
    workbook, _ = one_sheet(["Acme", Decimal("10.00")])

    class WriteOnly(io.RawIOBase):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            self.buffer.extend(chunk)
            return len(chunk)

    stream = WriteOnly()
    # When it is written to a file path and to the stream
    target = tmp_path / "recon.xlsx"
    workbook.write(target)
    workbook.write(stream)  # type: ignore[arg-type]
    # Then both hold a workbook openpyxl can read
    assert openpyxl.load_workbook(target).active["A1"].value == "Acme"
    ws = load(bytes(stream.buffer)).active
    assert ws is not None and ws["B1"].value == 10


def test_ten_thousand_rows_load_and_the_sheet_is_streamed_row_by_row() -> None:
    # Given 10,000 rows of 8 columns
    workbook = Workbook(created=CREATED)
    sheet = workbook.add_sheet("Ledger")
    sheet.append(["Invoice", "Customer", "Issued", "Synced", "Amount", "Tax", "Lines", "Paid"], bold=True)
    for i in range(10_000):
        issued = date(2024, 1, 1) + timedelta(days=i % 365)
        synced = datetime(2024, 1, 1, 8, 0) + timedelta(minutes=i)
        sheet.append(
            [f"INV-{i:05d}", f"Cust {i % 97}", issued, synced, Decimal(i) / 100, Decimal("0.19"), i % 7, i % 2 == 0]
        )
    # Then the rows went out as they were appended: XlsxWriter holds only the row being written
    assert len(sheet._worksheet.table) <= 1
    # When it is written
    data = workbook.to_bytes()
    # Then openpyxl loads every row with the last one intact
    ws = load(data)["Ledger"]
    assert ws.max_row == 10_001 and ws.max_column == 8
    last = [c.value for c in ws[10_001]]
    assert last[0] == "INV-09999" and last[4] == pytest.approx(99.99) and last[7] is False


def test_package_has_the_parts_excel_requires() -> None:
    # Given any workbook
    workbook, _ = one_sheet(["x"])
    # When it is written
    with zipfile.ZipFile(io.BytesIO(workbook.to_bytes())) as archive:
        names = archive.namelist()
        # Then the content types come first and every required part is present and well-formed XML
        assert names[0] == "[Content_Types].xml"
        required = {"_rels/.rels", "docProps/core.xml", "docProps/app.xml", "xl/workbook.xml"}
        required |= {"xl/_rels/workbook.xml.rels", "xl/styles.xml", "xl/worksheets/sheet1.xml"}
        assert required <= set(names)
        for name in names:
            ET.fromstring(archive.read(name))
    # And money uses built-in format 4 ("#,##0.00" in every Excel locale), dates and datetimes their own formats
    rec, _ = reconciliation()
    styles = part(rec.to_bytes(), "xl/styles.xml")
    used = {xf.get("numFmtId") for xf in styles.findall("m:cellXfs/m:xf", NS)}
    custom = {f.get("formatCode"): f.get("numFmtId") for f in styles.findall("m:numFmts/m:numFmt", NS)}
    assert {"4", custom["yyyy-mm-dd"], custom["yyyy-mm-dd hh:mm"]} <= used
    assert re.fullmatch(r"\d+", styles.find("m:cellXfs", NS).get("count", ""))  # type: ignore[union-attr]


def test_temporary_row_files_are_removed_when_written_or_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a temporary directory of our own (a warm Lambda keeps /tmp between months)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # When one workbook with an empty sheet is written and another is dropped unwritten (a month that failed)
    written, _ = one_sheet(["a", 1])
    written.add_sheet("Empty")
    written.to_bytes()
    dropped, _ = one_sheet(["b", 2])
    assert list(tmp_path.iterdir())
    del dropped
    gc.collect()
    # Then no row file is left behind
    assert list(tmp_path.iterdir()) == []
