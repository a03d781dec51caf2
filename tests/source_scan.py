"""Reading Python source with ``ast`` for the tests that check the code itself: docstrings, vendor names."""

from __future__ import annotations

import ast
import re

_NAMES = "hubspot|pipedrive|sugarcrm|sugar|salesforce|xero|quickbooks|qbo|intuit|zoho|sage|saasu"
VENDOR = re.compile(rf"(?<![a-z])({_NAMES})(?![a-z])", re.IGNORECASE)


def docstring_nodes(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants in ``tree`` (module, class and function docstrings)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def vendor_mentions(source: str) -> list[str]:
    """Every identifier, import or string literal (docstrings aside) in ``source`` that names a vendor."""
    tree = ast.parse(source)
    docstrings = docstring_nodes(tree)
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
