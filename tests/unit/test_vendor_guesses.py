"""Every vendor guess lives in one place: its vendor package's ``guesses`` module.

Each vendor package (closeloop/vendors/<name>/guesses.py) has a ``GUESSES: dict[str, str]`` whose entries say
what would confirm them; every ``GUESSES["key"]`` reference in layers/, local/ and the contract notes
(tests/contracts/<vendor>/GUESSES.md) names an existing key of that vendor's dict; and no bare ``GUESS``
marker is left in layers/ or local/ outside a GUESSES dict.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "closeloop"
GUESS_MODULES = sorted((PACKAGE / "vendors").glob("*/guesses.py"))
VENDORS = {path.parent.name: f"closeloop.vendors.{path.parent.name}.guesses" for path in GUESS_MODULES}
SCANNED = ("layers", "local")
#: ``GUESSES["key"]``, optionally ``<vendor>.GUESSES["key"]`` (the way to cite one from a non-vendor file).
REFERENCE = re.compile(r'(?:\b(?P<vendor>[a-z]+)\.)?GUESSES\["(?P<key>[^"\n]+)"\]')
#: A guess marker: the upper-case word GUESS (``GUESS:``, ``GUESS (``), not GUESSES.
MARKER = re.compile(r"\bGUESS\b")


def _guesses(vendor: str) -> ModuleType:
    return importlib.import_module(VENDORS[vendor])


def _text_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".md", ".yaml", ".txt"}:
                files.append(path)
    return files


def _guesses_lines(source: str) -> set[int]:
    """Line numbers of the module-level ``GUESSES = {...}`` assignment(s) of a Python source."""
    lines: set[int] = set()
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "GUESSES" for t in targets):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def bare_markers(source: str, *, python: bool) -> list[int]:
    """Lines carrying a GUESS marker outside a GUESSES dict."""
    allowed = _guesses_lines(source) if python else set()
    return [n for n, line in enumerate(source.splitlines(), 1) if MARKER.search(line) and n not in allowed]


def references(path: Path, text: str) -> list[tuple[str | None, str]]:
    """(vendor, key) of every GUESSES reference in ``text``; the vendor is the prefix, else the file's own."""
    own = path.stem if path.stem in VENDORS else path.parent.name if path.parent.name in VENDORS else None
    found = []
    for match in REFERENCE.finditer(" ".join(text.split())):  # a reference may be wrapped across lines
        vendor = match["vendor"] if match["vendor"] in VENDORS else own
        found.append((vendor, match["key"]))
    return found


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_each_vendor_lists_its_guesses_with_what_would_confirm_them(vendor: str) -> None:
    module = _guesses(vendor)
    guesses = getattr(module, "GUESSES", None)
    assert isinstance(guesses, dict) and guesses, f"{VENDORS[vendor]} has no GUESSES dict"
    for key, text in guesses.items():
        assert isinstance(key, str) and key.strip(), f"{vendor}: an empty key"
        assert isinstance(text, str) and text.strip(), f"{vendor}: GUESSES[{key!r}] is empty"
        assert "confirm" in text.lower(), f"{vendor}: GUESSES[{key!r}] does not say what would confirm it"
    exported = getattr(module, "__all__", None)
    assert exported is None or "GUESSES" in exported, f"{VENDORS[vendor]}.__all__ leaves GUESSES out"


def test_every_guesses_reference_names_a_key_of_its_vendor() -> None:
    notes = [ROOT / "tests" / "contracts" / vendor / "GUESSES.md" for vendor in VENDORS]
    wrong = []
    seen = 0
    for path in [*_text_files(), *(p for p in notes if p.exists())]:
        for vendor, key in references(path, path.read_text(encoding="utf-8")):
            seen += 1
            if vendor is None or key not in _guesses(vendor).GUESSES:
                wrong.append(f"{path.relative_to(ROOT)}: GUESSES[{key!r}] (vendor {vendor})")
    assert wrong == []
    assert seen >= len(VENDORS)  # the scan does find the references


def test_no_bare_guess_marker_is_left_outside_a_guesses_dict() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _text_files()
        for line in bare_markers(path.read_text(encoding="utf-8"), python=path.suffix == ".py")
    ]
    assert found == []


def test_the_checks_see_what_they_look_for() -> None:
    source = (
        'GUESSES: dict[str, str] = {\n    "a": "GUESS: x. Confirm: y.",\n}\n'
        "# GUESS: scattered\n"
        'WAIT = 1  # see GUESSES["a"]\n'
    )
    assert bare_markers(source, python=True) == [4]
    assert bare_markers("a GUESS (wrapped)\nGUESSES only\n", python=False) == [1]
    path = PACKAGE / "vendors" / "hubspot" / "adapter.py"
    assert references(path, 'see GUESSES["a wrapped\n    key"] and xero.GUESSES["b"]') == [
        ("hubspot", "a wrapped key"),
        ("xero", "b"),
    ]
    assert references(ROOT / "tests" / "contracts" / "xero" / "GUESSES.md", 'GUESSES["k"]') == [("xero", "k")]
    assert references(PACKAGE / "sync" / "invoices.py", 'GUESSES["k"]') == [(None, "k")]
