"""The backfill and review commands refuse contradictory options with a clear message (exit 2), before any I/O."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from closeloop import runtime
from closeloop.vendors import registry
from closeloop_local.backfill import _ref, product_backfill, report_products
from closeloop_local.cli import main
from closeloop_local.cli_support import CliError
from tests.catalogue_backfill_support import mixed


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["backfill", "deals", "--fan-out"], "--fan-out is for `closeloop backfill contacts`"),
        (["backfill", "contacts", "--create-missing"], "--create-missing is for `closeloop backfill deals`"),
        (["backfill", "contacts", "--resume", "--since", "2026-01-01"], "--resume continues the interrupted run"),
        (["backfill", "contacts", "--fan-out", "--dry-run"], "--fan-out queues a real contacts backfill"),
        (["backfill", "contacts", "--since", "01/02/2026"], "--since must look like 2026-01-31"),
    ],
)
def test_contradictory_options_are_refused_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_an_unknown_target_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["backfill", "everything"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["backfill", "products", "--fan-out"], "--fan-out is for `closeloop backfill contacts`"),
        (["backfill", "products", "--since", "2026-01-01"], "--since is not for products"),
        (["backfill", "products", "--create-missing"], "--create-missing is for `closeloop backfill deals`"),
        (["backfill", "products", "--resume", "--dry-run"], "--resume continues the interrupted run"),
    ],
)
def test_the_products_backfill_refuses_options_it_has_no_use_for(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Configure a HubSpot x Xero stack whose specs list the given objects (whatever the real specs say)."""
    real = registry.get

    def configure(crm: tuple[str, ...], books: tuple[str, ...], product_sync: str = "true") -> None:
        def get(name: str, kind: Any = None) -> Any:
            spec = real(name, kind)
            objects = crm if spec.kind == "crm" else books
            return replace(spec, capabilities=replace(spec.capabilities, objects=objects))

        monkeypatch.setattr(registry, "get", get)
        monkeypatch.setenv("CRM_PROVIDER", "hubspot")
        monkeypatch.setenv("ACCOUNTING_PROVIDER", "xero")
        monkeypatch.setenv("PRODUCT_SYNC", product_sync)
        runtime.reset()

    yield configure
    runtime.reset()


def test_the_products_backfill_refuses_a_pair_without_a_catalogue_saying_which_side_lacks_it(
    pair: Callable[..., None],
) -> None:
    pair(("company", "contact", "deal"), ("customer", "invoice", "payment", "product"))
    with pytest.raises(CliError, match=r"cannot backfill products: HubSpot does not carry products yet"):
        product_backfill(io.StringIO())
    pair(("deal",), ("invoice",))
    assert runtime.catalogue_off_reason().startswith("HubSpot and Xero do not carry products yet")
    pair(("deal", "product"), ("invoice", "product"), product_sync="false")
    assert "PRODUCT_SYNC=false" in runtime.catalogue_off_reason()
    pair(("deal", "product"), ("invoice", "product"))
    assert runtime.catalogue_off_reason() == ""


def test_a_products_dry_run_prints_its_plan_as_an_aligned_table() -> None:
    backfill, *_ = mixed()
    out = io.StringIO()
    report_products(backfill.run(dry_run=True), out)
    text = out.getvalue()
    assert "8 CRM products read" in text and "1 would be linked to the item" in text
    assert "      4 reported, not guessed" in text and text.rstrip().endswith("dry run: nothing was written")
    header = next(line for line in text.splitlines() if line.lstrip().startswith("action"))
    review = next(line for line in text.splitlines() if line.lstrip().startswith("review"))
    # The columns line up: each value starts where its header does
    starts = {column: header.index(column) for column in ("crm product", "sku", "item code", "why")}
    assert review[starts["crm product"] :].startswith("crm/product/2 ")
    assert review[starts["sku"] :].startswith("GAD-1 ")
    assert review[starts["item code"] :].startswith("GAD ")
    assert review[starts["why"] :].startswith("same name, but the item's code is 'GAD'")


def test_review_takes_a_crm_product_as_well_as_customers_and_deals() -> None:
    assert str(_ref("hubspot/product/77")) == "hubspot/product/77"
    with pytest.raises(CliError, match="a CRM record looks like"):
        _ref("hubspot/ticket/1")
