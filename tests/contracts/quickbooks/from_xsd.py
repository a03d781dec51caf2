"""Write ``entities.json``: JSON Schemas of the QuickBooks Online entities Closeloop exchanges, from Intuit's XSDs.

QuickBooks Online publishes no OpenAPI; its Java SDK (intuit/QuickBooks-V3-Java-SDK, Apache-2.0) generates
its entity classes from XSDs, which its JSON serialiser maps one to one (element and attribute names become
keys; ``maxOccurs="unbounded"`` becomes an array). Run from the repository root with a checkout of the SDK::

    python tests/contracts/quickbooks/from_xsd.py /path/to/QuickBooks-V3-Java-SDK

Each schema names the XSD file and complexType it comes from (``$comment``); nothing is added that the
XSD does not declare. Types this contract does not look into stay ``{"type": "object"}``.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
XS = "{http://www.w3.org/2001/XMLSchema}"
FILES = ("IntuitBaseTypes.xsd", "IntuitNamesTypes.xsd", "Finance.xsd", "IntuitRestServiceDef.xsd")
WANTED = (
    "Customer", "Invoice", "Item", "Payment", "Line", "SalesItemLineDetail", "SubTotalLineDetail", "ReferenceType",
    "EmailAddress", "TelephoneNumber", "PhysicalAddress", "WebSiteAddress", "ModificationMetaData", "TxnTaxDetail",
    "LinkedTxn", "Fault", "Error", "Account", "RecurringInfo", "RecurringScheduleInfo", "Estimate",
    "Vendor", "PurchaseOrder", "ItemBasedExpenseLineDetail", "AccountBasedExpenseLineDetail",
)  # fmt: skip
SCALARS: dict[str, dict[str, Any]] = {
    "xs:string": {"type": "string"}, "id": {"type": "string"}, "xs:date": {"type": "string"},
    "xs:dateTime": {"type": "string"}, "xs:decimal": {"type": "number"}, "xs:double": {"type": "number"},
    "xs:boolean": {"type": "boolean"}, "xs:int": {"type": "integer"}, "xs:integer": {"type": "integer"},
    "xs:long": {"type": "integer"}, "xs:positiveInteger": {"type": "integer", "minimum": 1},
}  # fmt: skip


def _load(sdk: Path) -> tuple[dict[str, tuple[str, ET.Element]], dict[str, ET.Element]]:
    complex_types: dict[str, tuple[str, ET.Element]] = {}
    simple_types: dict[str, ET.Element] = {}
    for name in FILES:
        root = ET.parse(sdk / "ipp-v3-java-data/src/main/xsd" / name).getroot()  # noqa: S314 - Intuit's own files
        for node in root.iter(XS + "complexType"):
            if node.get("name"):
                complex_types[node.get("name", "")] = (name, node)
        for node in root.iter(XS + "simpleType"):
            if node.get("name"):
                simple_types[node.get("name", "")] = node
    return complex_types, simple_types


def main(sdk: Path) -> None:
    complex_types, simple_types = _load(sdk)

    def type_schema(type_name: str) -> dict[str, Any]:
        if type_name in SCALARS:
            return dict(SCALARS[type_name])
        if type_name in WANTED:
            return {"$ref": f"#/$defs/{type_name}"}
        if type_name in simple_types:
            values = [e.get("value") for e in simple_types[type_name].iter(XS + "enumeration")]
            return {"enum": values} if values else {"type": "string"}
        return {"type": "object"}

    def members(type_name: str) -> tuple[list[str], dict[str, Any]]:
        file_name, node = complex_types[type_name]
        chain = [f"{file_name} {type_name}"]
        properties: dict[str, Any] = {}
        for extension in node.iter(XS + "extension"):
            base = extension.get("base", "")
            if base in complex_types:
                more, inherited = members(base)
                chain += more
                properties |= inherited
            elif base in SCALARS or base in simple_types:  # simple content: the text is "value" in JSON
                properties["value"] = type_schema(base)
        for element in node.iter(XS + "element"):
            name = element.get("name") or element.get("ref") or ""
            schema = type_schema(element.get("type", ""))
            properties[name] = {"type": "array", "items": schema} if element.get("maxOccurs") == "unbounded" else schema
        for attribute in node.iter(XS + "attribute"):
            properties[attribute.get("name", "")] = type_schema(attribute.get("type", "xs:string"))
        return chain, properties

    defs = {}
    for type_name in WANTED:
        chain, properties = members(type_name)
        defs[type_name] = {
            "$comment": "from " + " <- ".join(chain),
            "type": "object",
            "properties": dict(sorted(properties.items())),
            "additionalProperties": False,
        }
    (HERE / "entities.json").write_text(json.dumps({"$defs": defs}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
