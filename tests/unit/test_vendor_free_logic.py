"""The sync logic never names a vendor: no identifier, import or string literal (docstrings aside) does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.source_scan import vendor_mentions

LOGIC = Path(__file__).resolve().parents[2] / "layers" / "common" / "closeloop"
MODULES = sorted([*LOGIC.joinpath("sync").glob("*.py"), *LOGIC.joinpath("reports").glob("*.py")])
MODULES += [LOGIC / "models.py", LOGIC / "ports.py", LOGIC / "store.py", LOGIC / "rules.py"]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(LOGIC)))
def test_the_logic_module_names_no_vendor(module: Path) -> None:
    assert vendor_mentions(module.read_text()) == []


def test_the_check_sees_a_vendor_in_code_but_not_in_a_docstring() -> None:
    source = '"""Talks to Xero."""\nimport closeloop.vendors.xero.adapter\nif name == "hubspot":\n    pass\n'
    assert vendor_mentions(source) == ["closeloop.vendors.xero.adapter", "hubspot"]
