"""A dependency-free XLSX (SpreadsheetML) writer for the monthly reconciliation workbook.

The Lambda layer may not ship openpyxl or XlsxWriter, so the workbook is assembled from XML strings and
`zipfile`. Only what the finance workbook needs is supported: typed cells (text, numbers, exact Decimal
money, dates, booleans), bold rows, column widths, a frozen header row, an autofilter and native clustered
column charts. Cell text is always written as an inline string, never as a formula, so CRM data such as
``=HYPERLINK(...)`` cannot execute when the workbook is opened.

Rows are kept in memory as they are appended; `Workbook.write` streams each worksheet into its zip entry in
chunks, so the XML of a large sheet is never held as one string.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import BinaryIO, Final

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
# Excel decodes _xHHHH_ in cell text (ECMA-376 ST_Xstring); a literal one must have its underscore escaped.
_XSTRING_ESCAPE: Final = re.compile("_x[0-9A-Fa-f]{4}_")

_EXCEL_EPOCH: Final = date(1899, 12, 30)
# Excel's 1900 system counts a 29 Feb 1900 that never existed; serials before 1 Mar 1900 are one lower.
_FIRST_DAY_AFTER_LEAP_BUG: Final = date(1900, 3, 1)
_FIRST_EXCEL_DATE: Final = date(1900, 1, 1)
_MICROSECONDS_PER_DAY: Final = 86_400_000_000

# The fixed cellXfs table of xl/styles.xml; each pair is (regular, bold).
_XF_TEXT: Final = (0, 1)
_XF_MONEY: Final = (2, 5)
_XF_DATE: Final = (3, 6)
_XF_DATETIME: Final = (4, 7)
_XF_QUOTED_TEXT: Final = (8, 9)

MONEY_FORMAT: Final = "#,##0.00"
DATE_FORMAT: Final = "yyyy-mm-dd"
DATETIME_FORMAT: Final = "yyyy-mm-dd hh:mm"

_CHART_ROWS_TALL: Final = 15
_CHART_COLUMNS_WIDE: Final = 8
_FLUSH_EVERY_ROWS: Final = 512

_NS_MAIN: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_NS_REL: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_PKG_REL: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_NS_DRAWING: Final = "http://schemas.openxmlformats.org/drawingml/2006/main"
_NS_CHART: Final = "http://schemas.openxmlformats.org/drawingml/2006/chart"
_NS_SS_DRAWING: Final = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
_REL_TYPE: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_CT: Final = "application/vnd.openxmlformats-officedocument."
_XML_DECL: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

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


@dataclass
class _SheetParts:
    """Part numbers assigned to a sheet while the package is laid out."""

    number: int
    drawing: int | None = None
    charts: list[int] = field(default_factory=list)


class Sheet:
    """One worksheet: rows of typed cells plus layout (column widths, frozen header, autofilter, charts).

    Create sheets with `Workbook.add_sheet`. Raises ValueError for an invalid sheet name (empty, longer than
    31 characters, containing ``[]:*?/\\`` or characters XML cannot carry, starting or ending with an
    apostrophe, or Excel's reserved "History").
    """

    def __init__(self, name: str) -> None:
        _check_sheet_name(name)
        self._name = name
        self._rows: list[tuple[CellValue, ...]] = []
        self._bold_rows: set[int] = set()
        self._max_columns = 0
        self._widths: tuple[float, ...] = ()
        self._charts: list[BarChart] = []
        self.freeze_header = False
        self.autofilter = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def append(self, row: Sequence[CellValue], *, bold: bool = False) -> None:
        """Add a row below the last one; ``bold`` sets the whole row in a bold font. None and "" leave a cell empty.

        Raises TypeError for a value that is not a CellValue, and ValueError for values Excel cannot hold: NaN,
        infinite or beyond-double numbers, timezone-aware datetimes (convert to the report's local time first),
        dates before 1900-01-01, text over 32,767 characters, more than 16,384 columns or 1,048,576 rows.
        """
        if len(self._rows) >= MAX_ROWS:
            raise ValueError(f"sheet {self._name!r} is full: Excel allows {MAX_ROWS} rows")
        values = tuple(row)
        if len(values) > MAX_COLUMNS:
            raise ValueError(f"row has {len(values)} cells: Excel allows {MAX_COLUMNS} columns")
        row_number = len(self._rows) + 1
        for column, value in enumerate(values):
            try:
                _check_cell(value)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{self._name}!{_column_letter(column)}{row_number}: {error}") from None
        if bold:
            self._bold_rows.add(len(self._rows))
        self._rows.append(values)
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

    def _cell(self, row: int, column: int) -> CellValue:
        if row < len(self._rows) and column < len(self._rows[row]):
            return self._rows[row][column]
        return None

    def _used_cells(self) -> CellRange | None:
        if not self._rows or not self._max_columns:
            return None
        return (0, 0, len(self._rows) - 1, self._max_columns - 1)

    def _xml_chunks(self, *, selected: bool, has_drawing: bool) -> Iterator[str]:
        """The worksheet part, in chunks of a few hundred rows."""
        used_cells = self._used_cells()
        used = _a1_range(used_cells, absolute=False) if used_cells else None
        yield (
            f'{_XML_DECL}<worksheet xmlns="{_NS_MAIN}" xmlns:r="{_NS_REL}"><dimension ref="{used or "A1"}"/>'
            f'{self._sheet_views_xml(selected)}<sheetFormatPr defaultRowHeight="15"/>'
        )
        if self._widths:
            yield "<cols>"
            yield "".join(
                f'<col min="{n}" max="{n}" width="{width:g}" customWidth="1"/>'
                for n, width in enumerate(self._widths, start=1)
            )
            yield "</cols>"
        yield "<sheetData>"
        letters = [_column_letter(column) for column in range(self._max_columns)]
        bold_rows = self._bold_rows
        chunk: list[str] = []
        for index, values in enumerate(self._rows):
            row_ref = str(index + 1)
            bold = index in bold_rows
            chunk.append(f'<row r="{row_ref}">')
            for column, value in enumerate(values):
                if value is not None and value != "":
                    chunk.append(_cell_xml(letters[column] + row_ref, value, bold))
            chunk.append("</row>")
            if index % _FLUSH_EVERY_ROWS == _FLUSH_EVERY_ROWS - 1:
                yield "".join(chunk)
                chunk.clear()
        yield "".join(chunk)
        yield "</sheetData>"
        if self.autofilter and used:
            yield f'<autoFilter ref="{used}"/>'
        yield '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
        if has_drawing:
            yield '<drawing r:id="rId1"/>'
        yield "</worksheet>"

    def _sheet_views_xml(self, selected: bool) -> str:
        view = '<sheetView tabSelected="1" workbookViewId="0"' if selected else '<sheetView workbookViewId="0"'
        if not self.freeze_header:
            return f"<sheetViews>{view}/></sheetViews>"
        return (
            f"<sheetViews>{view}>"
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
            "</sheetView></sheetViews>"
        )


class Workbook:
    """An XLSX workbook written with the standard library only.

    ``created`` fixes the document timestamps (core properties and zip entry times) so the same content gives
    the same bytes; it defaults to now. A naive ``created`` is taken as UTC. `add_sheet` raises ValueError for
    an invalid or duplicate sheet name; `write` raises ValueError when the workbook has no sheet.
    """

    def __init__(self, *, created: datetime | None = None, creator: str = "Closeloop") -> None:
        moment = created or datetime.now(UTC)
        self._created = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        self._creator = creator
        self._sheets: list[Sheet] = []

    @property
    def sheets(self) -> list[Sheet]:
        return list(self._sheets)

    def add_sheet(self, name: str) -> Sheet:
        """Append a new empty sheet; raises ValueError for an invalid name or one already used (any case)."""
        if any(sheet.name.casefold() == name.casefold() for sheet in self._sheets):
            raise ValueError(f"a sheet named {name!r} already exists")
        sheet = Sheet(name)
        self._sheets.append(sheet)
        return sheet

    def write(self, target: BinaryIO | str | os.PathLike[str]) -> None:
        """Write the .xlsx package to a path or a binary file object (left open; it need not be seekable).

        Raises ValueError when the workbook has no sheet (Excel refuses such a file).
        """
        if not self._sheets:
            raise ValueError("a workbook needs at least one sheet")
        layout = self._layout()
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, xml in self._package_parts(layout):
                archive.writestr(self._entry(name), xml.encode())
            for sheet, parts in zip(self._sheets, layout, strict=True):
                with archive.open(self._entry(f"xl/worksheets/sheet{parts.number}.xml"), "w") as stream:
                    for chunk in sheet._xml_chunks(selected=parts.number == 1, has_drawing=parts.drawing is not None):
                        stream.write(chunk.encode())
                for name, xml in _drawing_parts(sheet, parts):
                    archive.writestr(self._entry(name), xml.encode())

    def to_bytes(self) -> bytes:
        """The .xlsx package as bytes; raises ValueError when the workbook has no sheet."""
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    def _entry(self, name: str) -> zipfile.ZipInfo:
        stamp = self._created.timetuple()[:6] if self._created.year >= 1980 else (1980, 1, 1, 0, 0, 0)
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def _layout(self) -> list[_SheetParts]:
        layout: list[_SheetParts] = []
        drawings = charts = 0
        for number, sheet in enumerate(self._sheets, start=1):
            parts = _SheetParts(number)
            if sheet._charts:
                drawings += 1
                parts.drawing = drawings
                parts.charts = list(range(charts + 1, charts + 1 + len(sheet._charts)))
                charts += len(sheet._charts)
            layout.append(parts)
        return layout

    def _package_parts(self, layout: list[_SheetParts]) -> Iterator[tuple[str, str]]:
        yield "[Content_Types].xml", _content_types_xml(layout)
        yield (
            "_rels/.rels",
            _relationships_xml(
                [
                    ("officeDocument", "xl/workbook.xml"),
                    ("../package/2006/relationships/metadata/core-properties", "docProps/core.xml"),
                    ("extended-properties", "docProps/app.xml"),
                ]
            ),
        )
        yield "docProps/core.xml", self._core_xml()
        yield "docProps/app.xml", self._app_xml()
        yield "xl/workbook.xml", self._workbook_xml()
        yield (
            "xl/_rels/workbook.xml.rels",
            _relationships_xml(
                [("worksheet", f"worksheets/sheet{parts.number}.xml") for parts in layout] + [("styles", "styles.xml")]
            ),
        )
        yield "xl/styles.xml", _STYLES_XML

    def _core_xml(self) -> str:
        stamp = self._created.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{_XML_DECL}<cp:coreProperties"
            ' xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"'
            ' xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<dc:creator>{_xml_escape(self._creator)}</dc:creator>"
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
            "</cp:coreProperties>"
        )

    def _app_xml(self) -> str:
        titles = "".join(f"<vt:lpstr>{_xml_escape(sheet.name)}</vt:lpstr>" for sheet in self._sheets)
        count = len(self._sheets)
        return (
            f"{_XML_DECL}<Properties"
            ' xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"'
            ' xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
            "<Application>Closeloop</Application>"
            '<HeadingPairs><vt:vector size="2" baseType="variant">'
            f"<vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant><vt:variant><vt:i4>{count}</vt:i4></vt:variant>"
            f'</vt:vector></HeadingPairs><TitlesOfParts><vt:vector size="{count}" baseType="lpstr">{titles}'
            "</vt:vector></TitlesOfParts></Properties>"
        )

    def _workbook_xml(self) -> str:
        sheets = "".join(
            f'<sheet name="{_xml_escape(sheet.name)}" sheetId="{n}" r:id="rId{n}"/>'
            for n, sheet in enumerate(self._sheets, start=1)
        )
        # Excel keeps an autofilter's range in this hidden, sheet-local name; it adds one itself if missing.
        filters = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{index}" hidden="1">'
            f"{_xml_escape(_sheet_ref(sheet.name, used))}</definedName>"
            for index, sheet in enumerate(self._sheets)
            if sheet.autofilter and (used := sheet._used_cells())
        )
        names = f"<definedNames>{filters}</definedNames>" if filters else ""
        return (
            f'{_XML_DECL}<workbook xmlns="{_NS_MAIN}" xmlns:r="{_NS_REL}"><workbookPr/>'
            f'<bookViews><workbookView activeTab="0"/></bookViews><sheets>{sheets}</sheets>{names}</workbook>'
        )


def _content_types_xml(layout: list[_SheetParts]) -> str:
    overrides = [
        ("/xl/workbook.xml", f"{_CT}spreadsheetml.sheet.main+xml"),
        ("/xl/styles.xml", f"{_CT}spreadsheetml.styles+xml"),
        ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
        ("/docProps/app.xml", f"{_CT}extended-properties+xml"),
    ]
    for parts in layout:
        overrides.append((f"/xl/worksheets/sheet{parts.number}.xml", f"{_CT}spreadsheetml.worksheet+xml"))
        if parts.drawing is not None:
            overrides.append((f"/xl/drawings/drawing{parts.drawing}.xml", f"{_CT}drawing+xml"))
        overrides.extend((f"/xl/charts/chart{n}.xml", f"{_CT}drawingml.chart+xml") for n in parts.charts)
    return (
        f'{_XML_DECL}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        + "".join(f'<Override PartName="{name}" ContentType="{kind}"/>' for name, kind in overrides)
        + "</Types>"
    )


def _relationships_xml(targets: list[tuple[str, str]]) -> str:
    """A .rels part; each target is (relationship type suffix, target path), numbered rId1, rId2, …"""
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL_TYPE}{kind}" Target="{target}"/>'
        for n, (kind, target) in enumerate(targets, start=1)
    )
    return f'{_XML_DECL}<Relationships xmlns="{_NS_PKG_REL}">{rels}</Relationships>'


def _drawing_parts(sheet: Sheet, parts: _SheetParts) -> Iterator[tuple[str, str]]:
    if parts.drawing is None:
        return
    drawing = f"drawing{parts.drawing}.xml"
    yield (
        f"xl/worksheets/_rels/sheet{parts.number}.xml.rels",
        _relationships_xml([("drawing", f"../drawings/{drawing}")]),
    )
    yield f"xl/drawings/{drawing}", _drawing_xml(sheet._charts)
    yield (
        f"xl/drawings/_rels/{drawing}.rels",
        _relationships_xml([("chart", f"../charts/chart{n}.xml") for n in parts.charts]),
    )
    for number, chart in zip(parts.charts, sheet._charts, strict=True):
        yield f"xl/charts/chart{number}.xml", _chart_xml(sheet, chart)


def _drawing_xml(charts: list[BarChart]) -> str:
    anchors = []
    for index, chart in enumerate(charts):
        row, col = chart.anchor
        end_row, end_col = min(row + _CHART_ROWS_TALL, MAX_ROWS - 1), min(col + _CHART_COLUMNS_WIDE, MAX_COLUMNS - 1)
        anchors.append(
            '<xdr:twoCellAnchor editAs="oneCell">'
            f"{_anchor_marker('from', row, col)}{_anchor_marker('to', end_row, end_col)}"
            '<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr>'
            f'<xdr:cNvPr id="{index + 2}" name="Chart {index + 1}"/><xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>'
            '<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm>'
            f'<a:graphic><a:graphicData uri="{_NS_CHART}">'
            f'<c:chart xmlns:c="{_NS_CHART}" xmlns:r="{_NS_REL}" r:id="rId{index + 1}"/>'
            "</a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/></xdr:twoCellAnchor>"
        )
    return f'{_XML_DECL}<xdr:wsDr xmlns:xdr="{_NS_SS_DRAWING}" xmlns:a="{_NS_DRAWING}">{"".join(anchors)}</xdr:wsDr>'


def _anchor_marker(tag: str, row: int, col: int) -> str:
    return (
        f"<xdr:{tag}><xdr:col>{col}</xdr:col><xdr:colOff>0</xdr:colOff>"
        f"<xdr:row>{row}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:{tag}>"
    )


def _chart_xml(sheet: Sheet, chart: BarChart) -> str:
    cat_axis, val_axis = 500_000_001, 500_000_002
    categories = _range_cells(chart.categories)
    category_ref = _xml_escape(_sheet_ref(sheet.name, chart.categories))
    category_points = "".join(
        f'<c:pt idx="{n}"><c:v>{_xml_escape(_display_text(value))}</c:v></c:pt>'
        for n, (row, col) in enumerate(categories)
        if (value := sheet._cell(row, col)) is not None
    )
    series_xml = []
    for index, (name, values) in enumerate(chart.series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        value_points = "".join(
            f'<c:pt idx="{n}"><c:v>{_number_text(value)}</c:v></c:pt>'
            for n, (row, col) in enumerate(_range_cells(values))
            if isinstance(value := sheet._cell(row, col), int | float | Decimal) and not isinstance(value, bool)
        )
        series_xml.append(
            f'<c:ser><c:idx val="{index}"/><c:order val="{index}"/><c:tx><c:v>{_xml_escape(name)}</c:v></c:tx>'
            # An explicit fill: without one, LibreOffice draws the axes but no bars.
            f'<c:spPr><a:solidFill><a:srgbClr val="{colour}"/></a:solidFill></c:spPr>'
            '<c:invertIfNegative val="0"/>'
            f"<c:cat><c:strRef><c:f>{category_ref}</c:f>"
            f'<c:strCache><c:ptCount val="{len(categories)}"/>{category_points}</c:strCache></c:strRef></c:cat>'
            f"<c:val><c:numRef><c:f>{_xml_escape(_sheet_ref(sheet.name, values))}</c:f>"
            f'<c:numCache><c:formatCode>General</c:formatCode><c:ptCount val="{len(categories)}"/>{value_points}'
            "</c:numCache></c:numRef></c:val></c:ser>"
        )
    title = _chart_title_xml(chart.title) if chart.title else ""
    return (
        f'{_XML_DECL}<c:chartSpace xmlns:c="{_NS_CHART}" xmlns:a="{_NS_DRAWING}" xmlns:r="{_NS_REL}">'
        '<c:roundedCorners val="0"/><c:chart>'
        f'{title}<c:autoTitleDeleted val="{0 if chart.title else 1}"/><c:plotArea><c:layout/>'
        '<c:barChart><c:barDir val="col"/><c:grouping val="clustered"/><c:varyColors val="0"/>'
        f'{"".join(series_xml)}<c:gapWidth val="150"/><c:axId val="{cat_axis}"/><c:axId val="{val_axis}"/></c:barChart>'
        f'<c:catAx><c:axId val="{cat_axis}"/><c:scaling><c:orientation val="minMax"/></c:scaling>'
        '<c:delete val="0"/><c:axPos val="b"/>'
        f"{_chart_title_xml(chart.x_axis_title) if chart.x_axis_title else ''}"
        '<c:numFmt formatCode="General" sourceLinked="1"/><c:majorTickMark val="out"/><c:minorTickMark val="none"/>'
        f'<c:tickLblPos val="nextTo"/><c:crossAx val="{val_axis}"/><c:crosses val="autoZero"/><c:auto val="1"/>'
        '<c:lblAlgn val="ctr"/><c:lblOffset val="100"/><c:noMultiLvlLbl val="0"/></c:catAx>'
        f'<c:valAx><c:axId val="{val_axis}"/><c:scaling><c:orientation val="minMax"/></c:scaling>'
        '<c:delete val="0"/><c:axPos val="l"/><c:majorGridlines/>'
        f"{_chart_title_xml(chart.y_axis_title, vertical=True) if chart.y_axis_title else ''}"
        '<c:numFmt formatCode="General" sourceLinked="1"/><c:majorTickMark val="out"/><c:minorTickMark val="none"/>'
        f'<c:tickLblPos val="nextTo"/><c:crossAx val="{cat_axis}"/><c:crosses val="autoZero"/>'
        '<c:crossBetween val="between"/></c:valAx></c:plotArea>'
        '<c:legend><c:legendPos val="r"/><c:overlay val="0"/></c:legend>'
        '<c:plotVisOnly val="1"/><c:dispBlanksAs val="gap"/></c:chart></c:chartSpace>'
    )


def _chart_title_xml(text: str, *, vertical: bool = False) -> str:
    body = '<a:bodyPr rot="-5400000" vert="horz"/>' if vertical else "<a:bodyPr/>"
    return (
        f"<c:title><c:tx><c:rich>{body}<a:lstStyle/><a:p><a:pPr><a:defRPr/></a:pPr>"
        f'<a:r><a:rPr lang="en-US"/><a:t>{_xml_escape(text)}</a:t></a:r></a:p></c:rich></c:tx>'
        '<c:overlay val="0"/></c:title>'
    )


def _cell_xml(ref: str, value: CellValue, bold: bool) -> str:
    """One <c> element; text is always an inline string, so nothing the CRM sends becomes a formula."""
    if isinstance(value, str):
        style = (_XF_QUOTED_TEXT if value[0] in _FORMULA_TRIGGERS else _XF_TEXT)[bold]
        space = ' xml:space="preserve"' if value[0].isspace() or value[-1].isspace() else ""
        return f'<c r="{ref}"{_style_attr(style)} t="inlineStr"><is><t{space}>{_cell_text(value)}</t></is></c>'
    if isinstance(value, bool):
        return f'<c r="{ref}"{_style_attr(_XF_TEXT[bold])} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, Decimal):
        return f'<c r="{ref}" s="{_XF_MONEY[bold]}"><v>{_number_text(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"{_style_attr(_XF_TEXT[bold])}><v>{_number_text(value)}</v></c>'
    if isinstance(value, datetime):
        return f'<c r="{ref}" s="{_XF_DATETIME[bold]}"><v>{_datetime_serial(value)}</v></c>'
    if isinstance(value, date):
        return f'<c r="{ref}" s="{_XF_DATE[bold]}"><v>{_date_serial(value)}</v></c>'
    raise TypeError(f"cannot write {type(value).__name__} to a cell")  # pragma: no cover - append checks first


def _style_attr(style: int) -> str:
    return f' s="{style}"' if style else ""


def _check_cell(value: object) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_CELL_TEXT // 2 and len(value.encode("utf-16-le")) // 2 > MAX_CELL_TEXT:
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


def _number_text(value: int | float | Decimal) -> str:
    if isinstance(value, Decimal):
        # Fixed-point text keeps the exact digits (never a float, never an exponent Excel might misread).
        return format(value if value else abs(value), "f")
    if isinstance(value, float):
        return float.__repr__(value)
    return int.__repr__(value)


def _date_serial(value: date) -> int:
    days = (value - _EXCEL_EPOCH).days
    return days if value >= _FIRST_DAY_AFTER_LEAP_BUG else days - 1


def _datetime_serial(value: datetime) -> str:
    days = _date_serial(value.date())
    microseconds = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if not microseconds:
        return str(days)
    return repr(days + microseconds / _MICROSECONDS_PER_DAY)


def _display_text(value: CellValue) -> str:
    """How a category label reads in the chart's cache (Excel recomputes it from the cells on open)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return _number_text(value)
    return str(value)


def _xml_escape(text: str) -> str:
    """Text safe for XML element content and double-quoted attributes; characters XML forbids are dropped."""
    text = _XML_ILLEGAL.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _cell_text(text: str) -> str:
    if "_x" in text:
        text = _XSTRING_ESCAPE.sub(lambda match: "_x005F" + match.group(0), text)
    # A raw CR would be normalised to LF by every XML parser; the character reference keeps it.
    return _xml_escape(text).replace("\r", "&#13;")


def _column_letter(column: int) -> str:
    """0-based column index to Excel letters: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    column += 1
    while column:
        column, remainder = divmod(column - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _a1_range(cells: CellRange, *, absolute: bool = True) -> str:
    first_row, first_col, last_row, last_col = cells
    pin = "$" if absolute else ""
    return f"{pin}{_column_letter(first_col)}{pin}{first_row + 1}:{pin}{_column_letter(last_col)}{pin}{last_row + 1}"


def _sheet_ref(sheet_name: str, cells: CellRange) -> str:
    """``'Sheet Name'!$A$1:$B$2``; the name is always quoted and its apostrophes doubled."""
    return "'" + sheet_name.replace("'", "''") + "'!" + _a1_range(cells)


def _range_cells(cells: CellRange) -> list[tuple[int, int]]:
    first_row, first_col, last_row, last_col = cells
    return [(row, col) for row in range(first_row, last_row + 1) for col in range(first_col, last_col + 1)]


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
    if len(name.encode("utf-16-le")) // 2 > MAX_SHEET_NAME:
        raise ValueError(f"sheet name {name!r} is longer than {MAX_SHEET_NAME} characters")
    if bad := sorted(set(name) & _FORBIDDEN_SHEET_NAME_CHARS):
        raise ValueError(f"sheet name {name!r} contains {''.join(bad)!r}")
    if _XML_ILLEGAL.search(name) or any(ch in name for ch in "\t\n\r"):
        raise ValueError(f"sheet name {name!r} contains control characters")
    if name.startswith("'") or name.endswith("'"):
        raise ValueError(f"sheet name {name!r} cannot start or end with an apostrophe")
    if name.casefold() in _RESERVED_SHEET_NAMES:
        raise ValueError(f"sheet name {name!r} is reserved by Excel")


def _styles_xml() -> str:
    fonts = '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    bold_font = '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    # (numFmtId, fontId, quotePrefix) in cellXfs order: the _XF_* constants index this table.
    xfs = [(0, 0, False), (0, 1, False), (4, 0, False), (164, 0, False), (165, 0, False)]
    xfs += [(4, 1, False), (164, 1, False), (165, 1, False), (0, 0, True), (0, 1, True)]
    cell_xfs = "".join(
        f'<xf numFmtId="{fmt}" fontId="{font}" fillId="0" borderId="0" xfId="0"'
        + (' applyNumberFormat="1"' if fmt else "")
        + (' applyFont="1"' if font else "")
        + (' quotePrefix="1"' if quoted else "")
        + "/>"
        for fmt, font, quoted in xfs
    )
    return (
        f'{_XML_DECL}<styleSheet xmlns="{_NS_MAIN}">'
        # Money uses built-in format 4, which is exactly "#,##0.00" in every Excel locale.
        f'<numFmts count="2"><numFmt numFmtId="164" formatCode="{DATE_FORMAT}"/>'
        f'<numFmt numFmtId="165" formatCode="{DATETIME_FORMAT}"/></numFmts>'
        f'<fonts count="2">{fonts}{bold_font}</fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        f'<cellXfs count="{len(xfs)}">{cell_xfs}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        '<dxfs count="0"/><tableStyles count="0" defaultTableStyle="TableStyleMedium9" '
        'defaultPivotStyle="PivotStyleLight16"/></styleSheet>'
    )


_STYLES_XML: Final = _styles_xml()
