"""The README's generated blocks (the Supported systems tables) are what the specs render to now."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from closeloop.vendors import registry
from closeloop.vendors.spec import VendorSpec
from closeloop_local import readme

ROOT = Path(__file__).resolve().parents[2]


def _with_table(spec: VendorSpec, table: dict[str, str], title: str | None = None) -> VendorSpec:
    capabilities = dataclasses.replace(spec.capabilities, table=table)
    return dataclasses.replace(spec, capabilities=capabilities, title=title or spec.title)


def _cells(row: str) -> list[str]:
    """A rendered row's cells, split on the pipes that are not escaped."""
    return [c.strip().replace(r"\|", "|") for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_the_readme_s_generated_blocks_are_the_specs_as_they_are_now() -> None:
    # Given the README as committed
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # When its generated blocks are rendered from the registry's specs
    rendered = readme.render(text)
    # Then nothing changes: a spec edited without `make readme` fails here
    assert rendered == text, "README.md's generated blocks are out of date with the vendors' specs: run `make readme`"


def test_a_table_has_the_titles_in_registry_order_and_the_table_keys_as_columns() -> None:
    # When the accounting table is rendered
    lines = readme.vendor_table("accounting", registry.accountings()).splitlines()
    # Then its header is "accounting" and the capabilities' table keys, and one row per vendor follows
    specs = registry.accountings()
    assert _cells(lines[0]) == ["accounting", *specs[0].capabilities.table]
    assert lines[1] == "|---|---|---|---|---|---|"
    assert [_cells(line) for line in lines[2:]] == [[s.title, *s.capabilities.table.values()] for s in specs]


def test_a_pipe_in_a_cell_is_escaped() -> None:
    # Given a vendor whose title and a cell hold a pipe, one of them in a code span
    spec = _with_table(registry.crms()[0], {"auth": "`a | b`", "poll": "c"}, title="Pipe | Co")
    # When its table is rendered
    header, rule, row = readme.vendor_table("crm", [spec]).splitlines()
    # Then each pipe is escaped, so the row keeps three cells
    assert row == r"| Pipe \| Co | `a \| b` | c |"
    assert _cells(row) == ["Pipe | Co", "`a | b`", "c"]
    assert header == "| CRM | auth | poll |"
    assert rule == "|---|---|---|"


def test_a_line_break_in_a_cell_or_specs_that_disagree_on_columns_are_refused() -> None:
    first, second = registry.crms()[:2]
    with pytest.raises(ValueError, match="line break"):
        readme.vendor_table("crm", [_with_table(first, {"auth": "two\nlines"})])
    with pytest.raises(ValueError, match=f"{second.name}: capabilities.table columns"):
        readme.vendor_table("crm", [_with_table(first, {"auth": "a"}), _with_table(second, {"poll": "b"})])
    with pytest.raises(ValueError, match="no crm vendor"):
        readme.vendor_table("crm", [])


def test_only_the_text_between_the_markers_is_rewritten() -> None:
    # Given a document with a stale block between text that must stay
    text = "intro | kept\n<!-- generated: one -->\nstale\n<!-- end generated -->\noutro\n"
    # When it is rendered
    rendered = readme.render(text, {"one": "fresh\n"})
    # Then only the block's content changed
    assert rendered == "intro | kept\n<!-- generated: one -->\nfresh\n<!-- end generated -->\noutro\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- generated: one -->\nx\n", "without"),
        ("<!-- generated: one -->\nx\n<!-- generated: two -->\ny\n<!-- end generated -->\n", "without"),
        ("<!-- generated: two -->\nx\n<!-- end generated -->\n", "unknown generated block 'two'"),
        ("no markers at all\n", "no generated block for one"),
    ],
)
def test_a_missing_unknown_or_unclosed_block_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        readme.render(text, {"one": "fresh\n"})


def test_make_readme_rewrites_a_stale_readme_and_then_leaves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a copy of the README whose CRM table lost a row
    path = tmp_path / "README.md"
    current = (ROOT / "README.md").read_text(encoding="utf-8")
    stale_table = readme.vendor_table("crm", registry.crms()[:1])
    path.write_text(current.replace(readme.vendor_table("crm", registry.crms()), stale_table), encoding="utf-8")
    assert path.read_text(encoding="utf-8") != current
    # When `make readme` runs on it, twice
    assert readme.main([str(path)]) == 0
    assert readme.main([str(path)]) == 0
    # Then the first run wrote the tables back and the second found nothing to do
    assert path.read_text(encoding="utf-8") == current
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: generated blocks rewritten",
        f"{path}: generated blocks up to date",
    ]


def _with_objects(spec: VendorSpec, *objects: str) -> VendorSpec:
    return dataclasses.replace(spec, capabilities=dataclasses.replace(spec.capabilities, objects=objects))


def test_the_objects_table_has_a_row_per_accounting_system_and_a_column_per_crm_with_what_the_pair_carries() -> None:
    # Given a CRM with a catalogue and one without, and two accounting systems, one with items
    hub, pipe = registry.crms()[:2]
    xero, books = registry.accountings()[:2]
    crms = [_with_objects(hub, "company", "contact", "deal", "product"), _with_objects(pipe, "company", "deal")]
    accountings = [
        _with_objects(xero, "customer", "invoice", "payment", "product"),
        _with_objects(books, "customer", "invoice"),
    ]
    # When the table of objects is rendered
    header, rule, *rows = readme.objects_table(crms, accountings).splitlines()
    # Then products appear only where both sides carry them, payments only where accounting reads them
    assert _cells(header) == ["accounting / CRM", hub.title, pipe.title]
    assert rule == "|---|---|---|"
    assert [_cells(row) for row in rows] == [
        [xero.title, "customers, invoices, payments, products", "customers, invoices, payments"],
        [books.title, "customers, invoices", "customers, invoices"],
    ]


def test_a_pair_that_shares_no_object_shows_a_dash_and_an_object_no_rule_reads_is_refused() -> None:
    hub, xero = registry.crms()[0], registry.accountings()[0]
    (row,) = readme.objects_table([_with_objects(hub, "deal")], [_with_objects(xero, "customer")]).splitlines()[2:]
    assert _cells(row) == [xero.title, "-"]
    with pytest.raises(ValueError, match=f"{hub.name}: objects \\['ticket'\\] are in no PAIR_OBJECTS entry"):
        readme.objects_table([_with_objects(hub, "deal", "ticket")], [xero])
    with pytest.raises(ValueError, match="needs a CRM and an accounting system"):
        readme.objects_table([], [xero])
