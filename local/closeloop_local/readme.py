"""The README's generated blocks: the "Supported systems" tables, rendered from the vendors' specs.

Each block sits between ``<!-- generated: vendors <kind> -->`` and ``<!-- end generated -->``; ``make readme``
(``python -m closeloop_local.readme [README.md]``) rewrites what is between them and leaves the rest alone.
A table has one row per registered vendor of its kind, in the registry's order: the spec's ``title``, then
its ``capabilities.table`` cells, whose keys are the columns. The table of objects has one row per accounting
system and one column per CRM: what that pair carries, read from both specs' ``capabilities.objects``
(``PAIR_OBJECTS`` says which objects on each side make one the pair carries).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from closeloop.vendors import registry
from closeloop.vendors.spec import Kind, VendorSpec

END = "<!-- end generated -->"
#: The first column's header of each kind's table.
FIRST_HEADERS: dict[Kind, str] = {"crm": "CRM", "accounting": "accounting"}
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w -]+?) -->\n)(?P<body>.*?)(?=" + re.escape(END) + ")", re.DOTALL)


def cell(text: str) -> str:
    """``text`` as one markdown table cell: ``|`` escaped; ValueError on a line break (a row is one line)."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"a table cell cannot hold a line break: {text!r}")
    return text.replace("|", r"\|")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def vendor_table(kind: Kind, specs: Sequence[VendorSpec]) -> str:
    """The markdown table of ``specs`` (all of ``kind``); ValueError if they disagree on the columns."""
    if not specs:
        raise ValueError(f"no {kind} vendor is registered: the table would have no columns")
    columns = list(specs[0].capabilities.table)
    rows = [_row([FIRST_HEADERS[kind], *columns]), "|" + "---|" * (len(columns) + 1)]
    for spec in specs:
        if list(spec.capabilities.table) != columns:
            raise ValueError(
                f"{spec.name}: capabilities.table columns {list(spec.capabilities.table)} are not {columns} "
                f"(those of {specs[0].name})"
            )
        rows.append(_row([spec.title, *spec.capabilities.table.values()]))
    return "\n".join(rows) + "\n"


@dataclass(frozen=True)
class PairObject:
    """What a pair carries (``label``) when its CRM lists one of ``crm`` and its accounting system one of
    ``accounting`` in their specs' ``capabilities.objects``."""

    label: str
    crm: tuple[str, ...]
    accounting: tuple[str, ...]


#: The objects a pair carries, in the table's order: customers (companies and contacts as accounting
#: customers), invoices (won deals), payments (written back onto the deal) and the product catalogue (items).
PAIR_OBJECTS = (
    PairObject("customers", crm=("company", "contact"), accounting=("customer",)),
    PairObject("invoices", crm=("deal",), accounting=("invoice",)),
    PairObject("payments", crm=("deal",), accounting=("payment",)),
    PairObject("products", crm=("product",), accounting=("product",)),
    # Recurring CRM lines (contracts) -> the accounting system's repeating invoice schedules.
    PairObject("repeating schedules", crm=("repeating_invoice",), accounting=("repeating_invoice",)),
)
PAIR_HEADER = "accounting / CRM"


def pair_objects(crm: VendorSpec, accounting: VendorSpec) -> list[str]:
    """The labels of what the pair carries, in ``PAIR_OBJECTS`` order."""
    return [
        o.label
        for o in PAIR_OBJECTS
        if set(o.crm) & set(crm.capabilities.objects) and set(o.accounting) & set(accounting.capabilities.objects)
    ]


def objects_table(crms: Sequence[VendorSpec], accountings: Sequence[VendorSpec]) -> str:
    """The markdown table of what each pair carries: a row per accounting system, a column per CRM.

    ValueError when a spec lists an object no ``PAIR_OBJECTS`` entry reads (the table would hide it), or a
    side has no vendor."""
    if not crms or not accountings:
        raise ValueError("the table of objects needs a CRM and an accounting system")
    for spec in (*crms, *accountings):
        known = {name for o in PAIR_OBJECTS for name in (o.crm if spec.kind == "crm" else o.accounting)}
        unknown = sorted(set(spec.capabilities.objects) - known)
        if unknown:
            raise ValueError(f"{spec.name}: objects {unknown} are in no PAIR_OBJECTS entry (say what a pair carries)")
    rows = [_row([PAIR_HEADER, *(c.title for c in crms)]), "|" + "---|" * (len(crms) + 1)]
    for accounting in accountings:
        rows.append(_row([accounting.title, *(", ".join(pair_objects(c, accounting)) or "-" for c in crms)]))
    return "\n".join(rows) + "\n"


def blocks() -> dict[str, str]:
    """Every generated block's content, by the name its opening marker carries."""
    return {
        "vendors crm": vendor_table("crm", registry.crms()),
        "vendors accounting": vendor_table("accounting", registry.accountings()),
        "pairs objects": objects_table(registry.crms(), registry.accountings()),
    }


def render(text: str, contents: Mapping[str, str] | None = None) -> str:
    """``text`` with each generated block's content replaced by ``contents`` (``blocks()`` by default).

    ValueError when a block's name is unknown, a known block is missing, or a block is not closed.
    """
    contents = blocks() if contents is None else contents
    found: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in contents:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(contents)}")
        found.append(name)
        return match[1] + contents[name]

    rendered = _BLOCK.sub(replace, text)
    opened = text.count("<!-- generated: ")
    if opened != len(found):
        raise ValueError(f"{opened - len(found)} generated block(s) without {END!r}")
    missing = [name for name in contents if name not in found]
    if missing:
        raise ValueError(f"no generated block for {', '.join(missing)}: add its markers")
    return rendered


def main(argv: Sequence[str] = ()) -> int:
    """Rewrite the generated blocks of the README at ``argv[0]`` (README.md by default)."""
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text(encoding="utf-8")
    rendered = render(text)
    if rendered == text:
        print(f"{path}: generated blocks up to date")
    else:
        path.write_text(rendered, encoding="utf-8")
        print(f"{path}: generated blocks rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
