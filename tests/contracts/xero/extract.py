"""Cut the Xero OpenAPI files down to the operations Closeloop calls, verbatim, as JSON.

Run from the repository root with the full specs beside it (the shared copy of XeroAPI/Xero-OpenAPI)::

    python tests/contracts/xero/extract.py /path/to/Xero-OpenAPI

Kept: the listed accounting paths (every method of each) and every component they reference,
transitively; xero-webhooks.yaml is small and copied whole. Nothing is edited: the YAML is only
re-serialised as JSON (same content).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ACCOUNTING_PATHS = (
    "/Contacts",
    "/Contacts/{ContactID}",
    "/Invoices",
    "/Invoices/{InvoiceID}",
    "/Items",
    "/Items/{ItemID}",
    "/Payments",
    "/PurchaseOrders",
    "/PurchaseOrders/{PurchaseOrderID}",
    "/Quotes",
    "/Quotes/{QuoteID}",
    # Repeating invoice templates (issue 12 part 4)
    "/RepeatingInvoices",
    "/RepeatingInvoices/{RepeatingInvoiceID}",
)


class _TextDates(yaml.SafeLoader):
    """SafeLoader that leaves dates in examples as the text they are written as."""


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _with_components(spec: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """``kept`` plus every ``#/components/<kind>/<name>`` it references, transitively."""
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(kept)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen or not ref.startswith("#/components/"):
            continue
        seen.add(ref)
        kind, name = ref.removeprefix("#/components/").split("/")[:2]
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        pending |= _refs(node)
    return (
        {k: v for k, v in spec.items() if k not in ("paths", "components")}
        | kept
        | {"components": {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())}}
    )


def main(source: Path) -> None:
    accounting = yaml.load((source / "xero_accounting.yaml").read_text(), Loader=_TextDates)  # noqa: S506 - a SafeLoader
    subset = _with_components(accounting, {"paths": {p: accounting["paths"][p] for p in ACCOUNTING_PATHS}})
    (HERE / "accounting.subset.json").write_text(json.dumps(subset, indent=1, sort_keys=False) + "\n")
    shutil.copyfile(source / "xero-webhooks.yaml", HERE / "xero-webhooks.yaml")  # small: kept whole


if __name__ == "__main__":
    main(Path(sys.argv[1]))
