"""The finance workbook's XLSX writer: XlsxWriter underneath, the guards finance needs on top.

XlsxWriter writes the package (cells, styles, frozen panes, autofilters, native charts) in constant-memory
mode: each row goes to a temporary file as soon as the next one starts, so a large sheet is never held in
memory. It is imported when the first `Workbook` is made, so a cold start that writes no workbook does not pay
for it. This module keeps the small API the reports use and the rules XlsxWriter leaves to its caller:

* text is always written as text, never as a formula, URL or number (XlsxWriter's ``strings_to_*`` options are
  off and only typed ``write_*`` calls are made); text starting with ``= + - @`` tab or CR also carries
  Excel's quote prefix, so editing the cell cannot turn it into a formula;
* chart titles and series names that XlsxWriter would read as a cell reference stay literal text;
* characters XML cannot carry are dropped; values Excel cannot hold are refused on `Sheet.append`;
* money is an exact Decimal, written as its fixed-point digits with a 2-decimal number format.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

if TYPE_CHECKING:
    from xlsxwriter.format import Format
    from xlsxwriter.worksheet import Worksheet

__all__ = ["BarChart", "CellValue", "Sheet", "Workbook"]

CellValue = str | int | float | Decimal | date | datetime | bool | None

MAX_ROWS: Final = 1_048_576
MAX_COLUMNS: Final = 16_384
MAX_CELL_TEXT: Final = 32_767
MAX_SHEET_NAME: Final = 31
MAX_COLUMN_WIDTH: Final = 255.0

_FORBIDDEN_SHEET_NAME_CHARS: Final = frozenset("[]:*?/\\")
# Excel keeps this name for its change-tracking history sheet and refuses a user sheet with it.
_RESERVED_SHEET_NAMES: Final = frozenset({"history"})
# Leading characters that spreadsheet apps (or a later CSV export) may read as the start of a formula.
_FORMULA_TRIGGERS: Final = frozenset("=+-@\t\r")
# Characters XML 1.0 does not allow at all (C0 controls except tab/LF/CR, lone surrogates, U+FFFE/U+FFFF).
_XML_ILLEGAL: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# XlsxWriter takes a chart title or series name that matches this as a formula (``Sheet!A1``, ``=cmd|x!A0``).
_CHART_NAME_AS_REFERENCE: Final = re.compile(r"^=?[^!]+!\$?[A-Z]+\$?\d+")
# U+01C3 looks like "!" but is a letter, so such a name stays text.
_LITERAL_EXCLAMATION: Final = "\u01c3"

_FIRST_EXCEL_DATE: Final = date(1900, 1, 1)

MONEY_FORMAT: Final = "#,##0.00"
DATE_FORMAT: Final = "yyyy-mm-dd"
DATETIME_FORMAT: Final = "yyyy-mm-dd hh:mm"
# Excel's built-in number format 4 is exactly MONEY_FORMAT; by its id, no custom format is stored for it.
_BUILTIN_MONEY_FORMAT: Final = 4

# A chart covers 8 default columns (64 px) by 15 default rows (20 px).
_CHART_SIZE: Final = {"width": 8 * 64, "height": 15 * 20}
# XlsxWriter's object_position 2: the chart moves with its cells but keeps its size (Excel's "oneCell").
_MOVE_DONT_SIZE: Final = 2

_OPTIONS: Final = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}

CellRange = tuple[int, int, int, int]

#: Fill colours of a chart's series, in order (Office's default palette).
SERIES_COLOURS = ("4472C4", "ED7D31", "A5A5A5", "FFC000", "5B9BD5", "70AD47")


@dataclass
class BarChart:
    """A native clustered column chart over cells of the sheet it is added to.

    Ranges are ``(first_row, first_col, last_row, last_col)``, 0-based and inclusive; each must be one row or
    one column, and every series must have as many points as there are categories. `Sheet.add_chart`
    raises ValueError when they do not.
    """

    title: str
    categories: CellRange
    series: list[tuple[str, CellRange]]
    anchor: tuple[int, int] = (0, 6)
    y_axis_title: str = ""
    x_axis_title: str = ""


@dataclass(frozen=True)
class _Formats:
    """The cell formats of one workbook; each pair is (regular, bold). Regular text and numbers need none."""

    text: tuple[Format | None, Format]
    money: tuple[Format, Format]
    date: tuple[Format, Format]
    datetime: tuple[Format, Format]
    quoted_text: tuple[Format, Format]


class Sheet:
    """One worksheet: rows of typed cells plus layout (column widths, frozen header, autofilter, charts).

    Create sheets with `Workbook.add_sheet`; rows are streamed out as they are appended.
    """

    def __init__(self, name: str, worksheet: Worksheet, formats: _Formats) -> None:
        self._name = name
        self._worksheet = worksheet
        self._formats = formats
        self._rows = 0
        self._max_columns = 0
        self._widths: tuple[float, ...] = ()
        self._charts: list[BarChart] = []
        self._written = False
        self.freeze_header = False
        self.autofilter = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def row_count(self) -> int:
        return self._rows

    def append(self, row: Sequence[CellValue], *, bold: bool = False) -> None:
        """Add a row below the last one; ``bold`` sets the whole row in a bold font. None and "" leave a cell empty.

        Raises TypeError for a value that is not a CellValue, and ValueError for values Excel cannot hold: NaN,
        infinite or beyond-double numbers, timezone-aware datetimes (convert to the report's local time first),
        dates before 1900-01-01, text over 32,767 characters, more than 16,384 columns or 1,048,576 rows, or
        when the workbook was already written.
        """
        self._check_open()
        if self._rows >= MAX_ROWS:
            raise ValueError(f"sheet {self._name!r} is full: Excel allows {MAX_ROWS} rows")
        values = tuple(row)
        if len(values) > MAX_COLUMNS:
            raise ValueError(f"row has {len(values)} cells: Excel allows {MAX_COLUMNS} columns")
        for column, value in enumerate(values):
            try:
                _check_cell(value)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{self._name}!{_column_letter(column)}{self._rows + 1}: {error}") from None
        for column, value in enumerate(values):
            self._write(self._rows, column, value, int(bold))
        self._rows += 1
        self._max_columns = max(self._max_columns, len(values))

    def set_column_widths(self, widths: Sequence[float]) -> None:
        """Set the widths of the first ``len(widths)`` columns, in Excel character units.

        Raises ValueError for a width that is not a finite number in (0, 255] or more widths than columns.
        """
        if len(widths) > MAX_COLUMNS:
            raise ValueError(f"{len(widths)} widths: Excel allows {MAX_COLUMNS} columns")
        for width in widths:
            if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= MAX_COLUMN_WIDTH:
                raise ValueError(f"column width {width!r} is not in (0, {MAX_COLUMN_WIDTH:g}]")
        self._widths = tuple(float(width) for width in widths)

    def add_chart(self, chart: BarChart) -> None:
        """Place a clustered column chart whose categories and series are ranges of this sheet.

        Raises ValueError when the chart has no series, a range is not a single row or column, lies outside
        Excel's grid, or a series has a different number of points than the categories.
        """
        if not chart.series:
            raise ValueError("a chart needs at least one series")
        categories = _check_range(chart.categories, "categories")
        for name, values in chart.series:
            if _check_range(values, f"series {name!r}") != categories:
                raise ValueError(f"series {name!r} has a different number of points than the categories")
        anchor_row, anchor_col = chart.anchor
        if not (0 <= anchor_row < MAX_ROWS and 0 <= anchor_col < MAX_COLUMNS):
            raise ValueError(f"chart anchor {chart.anchor!r} is outside the sheet")
        self._charts.append(chart)

    def _check_open(self) -> None:
        if self._written:
            raise ValueError(f"sheet {self._name!r} belongs to a workbook that was already written")

    def _write(self, row: int, column: int, value: CellValue, bold: int) -> None:
        ws, formats = self._worksheet, self._formats
        if value is None or value == "":
            return
        if isinstance(value, str):
            quoted = value[0] in _FORMULA_TRIGGERS
            ws.write_string(row, column, _xml_text(value), (formats.quoted_text if quoted else formats.text)[bold])
        elif isinstance(value, bool):
            ws.write_boolean(row, column, value, formats.text[bold])
        elif isinstance(value, Decimal):
            # XlsxWriter writes a Decimal with format(value, ".16G"): fixed-point digits first, so no exponent
            # and no float ever stands between the amount and the cell.
            ws.write_number(row, column, Decimal(format(value if value else abs(value), "f")), formats.money[bold])
        elif isinstance(value, int | float):
            ws.write_number(row, column, value, formats.text[bold])
        elif isinstance(value, datetime):
            ws.write_datetime(row, column, value, formats.datetime[bold])
        else:
            ws.write_datetime(row, column, value, formats.date[bold])

    def _finish(self, book: Any) -> None:
        """Apply the layout and charts; XlsxWriter writes them when the workbook closes."""
        ws = self._worksheet
        for column, width in enumerate(self._widths):
            ws.set_column(column, column, width)
        if self.freeze_header:
            ws.freeze_panes(1, 0)
        if self.autofilter and self._rows and self._max_columns:
            ws.autofilter(0, 0, self._rows - 1, self._max_columns - 1)
        for chart in self._charts:
            ws.insert_chart(*chart.anchor, _column_chart(book, self._name, chart), {"object_position": _MOVE_DONT_SIZE})
        self._written = True


class Workbook:
    """An XLSX workbook written by XlsxWriter in constant-memory mode.

    ``created`` fixes the document timestamps (core properties) so the same content gives the same bytes; it
    defaults to now. A naive ``created`` is taken as UTC. `add_sheet` raises ValueError for an invalid or
    duplicate sheet name; `write` raises ValueError when the workbook has no sheet.
    """

    def __init__(self, *, created: datetime | None = None, creator: str = "Closeloop") -> None:
        import xlsxwriter  # noqa: PLC0415 - only the reconcile function writes workbooks: keep it off cold starts

        moment = created or datetime.now(UTC)
        self._created = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        self._buffer = io.BytesIO()
        # Constant-memory mode keeps each sheet's rows in a temporary file until the workbook is closed, and
        # XlsxWriter leaves an empty sheet's file behind: each workbook gets its own directory, removed when it
        # is written or dropped unwritten (a month that failed half-way), so a warm Lambda's /tmp stays clean.
        tmpdir = tempfile.mkdtemp(prefix="closeloop-xlsx-")
        self._book = xlsxwriter.Workbook(self._buffer, {**_OPTIONS, "tmpdir": tmpdir})
        self._discard = weakref.finalize(self, _discard, self._book, tmpdir)
        self._book.set_properties({"author": creator, "created": self._created})
        book = self._book
        bold = book.add_format({"bold": True})

        def pair(**properties: object) -> tuple[Format, Format]:
            return book.add_format(properties), book.add_format({**properties, "bold": True})

        self._formats = _Formats(
            text=(None, bold),
            money=pair(num_format=_BUILTIN_MONEY_FORMAT),
            date=pair(num_format=DATE_FORMAT),
            datetime=pair(num_format=DATETIME_FORMAT),
            quoted_text=pair(quote_prefix=True),
        )
        self._sheets: list[Sheet] = []
        self._bytes: bytes | None = None

    @property
    def sheets(self) -> list[Sheet]:
        return list(self._sheets)

    def add_sheet(self, name: str) -> Sheet:
        """Append a new empty sheet; raises ValueError for an invalid name or one already used (any case)."""
        if self._bytes is not None:
            raise ValueError("the workbook was already written")
        _check_sheet_name(name)
        if any(sheet.name.casefold() == name.casefold() for sheet in self._sheets):
            raise ValueError(f"a sheet named {name!r} already exists")
        sheet = Sheet(name, self._book.add_worksheet(name), self._formats)
        self._sheets.append(sheet)
        return sheet

    def write(self, target: BinaryIO | str | os.PathLike[str]) -> None:
        """Write the .xlsx package to a path or a binary file object (left open; it need not be seekable).

        The first write closes the workbook (no more rows or sheets); later writes give the same bytes.
        Raises ValueError when the workbook has no sheet (Excel refuses such a file).
        """
        data = self.to_bytes()
        if isinstance(target, str | os.PathLike):
            Path(target).write_bytes(data)
        else:
            target.write(data)

    def to_bytes(self) -> bytes:
        """The .xlsx package as bytes; raises ValueError when the workbook has no sheet."""
        if self._bytes is None:
            if not self._sheets:
                raise ValueError("a workbook needs at least one sheet")
            try:
                for sheet in self._sheets:
                    sheet._finish(self._book)
                self._book.close()
                self._bytes = self._buffer.getvalue()
            finally:
                self._discard()
        return self._bytes


def _discard(book: Any, tmpdir: str) -> None:
    """Close the XlsxWriter workbook (a no-op once written) and delete its temporary files."""
    if not book.fileclosed:
        with contextlib.suppress(Exception):
            book.close()
    shutil.rmtree(tmpdir, ignore_errors=True)


def _column_chart(book: Any, sheet_name: str, spec: BarChart) -> Any:
    chart = book.add_chart({"type": "column"})
    for index, (name, values) in enumerate(spec.series):
        chart.add_series(
            {
                "name": _chart_text(name),
                "categories": "=" + _sheet_ref(sheet_name, spec.categories),
                "values": "=" + _sheet_ref(sheet_name, values),
                # An explicit fill, so every reader draws the bars in the same colours.
                "fill": {"color": "#" + SERIES_COLOURS[index % len(SERIES_COLOURS)]},
            }
        )
    if spec.title:
        chart.set_title({"name": _chart_text(spec.title)})
    else:
        chart.set_title({"none": True})
    if spec.x_axis_title:
        chart.set_x_axis({"name": _chart_text(spec.x_axis_title)})
    if spec.y_axis_title:
        chart.set_y_axis({"name": _chart_text(spec.y_axis_title)})
    chart.set_legend({"position": "right"})
    chart.set_size(_CHART_SIZE)
    return chart


def _chart_text(text: str) -> str:
    """A chart title or series name XlsxWriter keeps as text (it reads ``x!A1`` as a cell reference)."""
    text = _xml_text(text)
    return text.replace("!", _LITERAL_EXCLAMATION) if _CHART_NAME_AS_REFERENCE.match(text) else text


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (XlsxWriter escapes the C0 controls it allows)."""
    return _XML_ILLEGAL.sub("", text)


def _check_cell(value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_CELL_TEXT // 2 and len(value.encode("utf-16-le", "surrogatepass")) // 2 > MAX_CELL_TEXT:
            raise ValueError(f"text longer than Excel's {MAX_CELL_TEXT} characters")
    elif isinstance(value, int):
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be stored in a cell")
    elif isinstance(value, Decimal):
        if not value.is_finite() or not math.isfinite(float(value)):
            raise ValueError(f"{value!r} cannot be stored in a cell")
    elif isinstance(value, date):
        if isinstance(value, datetime) and value.utcoffset() is not None:
            raise ValueError(f"Excel has no time zones; convert {value.isoformat()} to a naive local time")
        if value.year < _FIRST_EXCEL_DATE.year:
            raise ValueError(f"Excel cannot store dates before {_FIRST_EXCEL_DATE.isoformat()}")
    else:
        raise TypeError(f"cannot write {type(value).__name__} to a cell")


def _column_letter(column: int) -> str:
    """0-based column index to Excel letters: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    column += 1
    while column:
        column, remainder = divmod(column - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _sheet_ref(sheet_name: str, cells: CellRange) -> str:
    """``'Sheet Name'!$A$1:$B$2``; the name is always quoted and its apostrophes doubled."""
    first_row, first_col, last_row, last_col = cells
    quoted = "'" + sheet_name.replace("'", "''") + "'"
    return f"{quoted}!${_column_letter(first_col)}${first_row + 1}:${_column_letter(last_col)}${last_row + 1}"


def _check_range(cells: CellRange, what: str) -> int:
    """Validate a one-row or one-column range; returns its number of cells."""
    first_row, first_col, last_row, last_col = cells
    if not (0 <= first_row <= last_row < MAX_ROWS and 0 <= first_col <= last_col < MAX_COLUMNS):
        raise ValueError(f"{what} range {cells!r} is empty, reversed or outside the sheet")
    if first_row != last_row and first_col != last_col:
        raise ValueError(f"{what} range {cells!r} must be a single row or a single column")
    return (last_row - first_row) + (last_col - first_col) + 1


def _check_sheet_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a sheet name must be a non-empty string")
    # Excel counts UTF-16 code units, so an emoji takes two of the 31.
    if len(name.encode("utf-16-le", "surrogatepass")) // 2 > MAX_SHEET_NAME:
        raise ValueError(f"sheet name {name!r} is longer than {MAX_SHEET_NAME} characters")
    if bad := sorted(set(name) & _FORBIDDEN_SHEET_NAME_CHARS):
        raise ValueError(f"sheet name {name!r} contains {''.join(bad)!r}")
    if _XML_ILLEGAL.search(name) or any(ch in name for ch in "\t\n\r"):
        raise ValueError(f"sheet name {name!r} contains control characters")
    if name.startswith("'") or name.endswith("'"):
        raise ValueError(f"sheet name {name!r} cannot start or end with an apostrophe")
    if name.casefold() in _RESERVED_SHEET_NAMES:
        raise ValueError(f"sheet name {name!r} is reserved by Excel")
