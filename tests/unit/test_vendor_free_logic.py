"""The sync logic never names a vendor: no identifier, import or string literal (docstrings aside) does."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

LOGIC = Path(__file__).resolve().parents[2] / "layers" / "common" / "closeloop"
MODULES = sorted([*LOGIC.joinpath("sync").glob("*.py"), *LOGIC.joinpath("reports").glob("*.py")])
MODULES += [LOGIC / "models.py", LOGIC / "ports.py", LOGIC / "store.py", LOGIC / "rules.py"]
_NAMES = "hubspot|pipedrive|sugarcrm|sugar|salesforce|xero|quickbooks|qbo|intuit|zoho|sage|saasu"
VENDOR = re.compile(rf"(?<![a-z])({_NAMES})(?![a-z])", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def vendor_mentions(source: str) -> list[str]:
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.ImportFrom):
            text = node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        if text and VENDOR.search(text):
            hits.append(text)
    return hits


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(LOGIC)))
def test_the_logic_module_names_no_vendor(module: Path) -> None:
    assert vendor_mentions(module.read_text()) == []


def test_the_check_sees_a_vendor_in_code_but_not_in_a_docstring() -> None:
    source = '"""Talks to Xero."""\nimport closeloop.accounting.xero\nif name == "hubspot":\n    pass\n'
    assert vendor_mentions(source) == ["closeloop.accounting.xero", "hubspot"]
