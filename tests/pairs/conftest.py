"""Every CRM x accounting pair on the local stack: one suite, written once against the sandbox drivers.

The ``pair`` fixture is module-scoped and parametrised, so pytest runs the whole module for one pair
(one LocalStack, two sandbox servers) before it starts the next. Each pair's adapters are chosen the way a
deployment chooses them: ``CRM_PROVIDER`` / ``ACCOUNTING_PROVIDER`` and the vendors' URL settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from closeloop.store import DynamoStore
from closeloop_local.sandboxes import hubspot, pipedrive, quickbooks, sugarcrm, xero, zohobooks
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.drivers import AccountingDriver, CrmDriver
from closeloop_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]

CRMS = ("hubspot", "pipedrive", "sugarcrm")
ACCOUNTING = ("xero", "quickbooks", "zohobooks")


def _hubspot() -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    sandbox, server = hubspot.serve()
    return hubspot.HubSpotDriver(sandbox, server.url), server, sandbox.close


def _pipedrive() -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    sandbox, server = pipedrive.serve()
    return pipedrive.PipedriveDriver(sandbox), server, lambda: None


def _sugarcrm() -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    sandbox, server = sugarcrm.serve()
    return sugarcrm.SugarCrmDriver(sandbox), server, lambda: None


def _xero() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = xero.serve()
    return xero.XeroDriver(sandbox, server.url), server


def _quickbooks() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = quickbooks.serve()
    return quickbooks.QuickBooksDriver(sandbox), server


def _zohobooks() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = zohobooks.serve()
    return zohobooks.ZohoBooksDriver(sandbox), server


CRM_SANDBOXES: dict[str, Callable[[], tuple[CrmDriver, SandboxServer, Callable[[], None]]]] = {
    "hubspot": _hubspot,
    "pipedrive": _pipedrive,
    "sugarcrm": _sugarcrm,
}
ACCOUNTING_SANDBOXES: dict[str, Callable[[], tuple[AccountingDriver, SandboxServer]]] = {
    "xero": _xero,
    "quickbooks": _quickbooks,
    "zohobooks": _zohobooks,
}


@dataclass
class Pair:
    crm: CrmDriver
    books: AccountingDriver
    stack: LocalStack

    @property
    def store(self) -> DynamoStore:
        return DynamoStore(self.stack.env["SYNC_TABLE"])

    def settle(self) -> None:
        """Let the CRM deliver its webhooks and the stack's workers finish."""
        self.crm.flush_webhooks()
        self.stack.drain(timeout=60)

    def poll(self) -> Any:
        return self.stack.run_schedule("PaymentPollerFunction")


@pytest.fixture(scope="module", params=[(c, a) for c in CRMS for a in ACCOUNTING], ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    crm_name, books_name = request.param
    crm, crm_server, close_crm = CRM_SANDBOXES[crm_name]()
    books, books_server = ACCOUNTING_SANDBOXES[books_name]()
    environment = crm.environment(crm_server.url) | books.environment(books_server.url)
    stack = LocalStack(ROOT, port=0, env_overrides=environment)
    try:
        stack.start()
        crm.subscribe(stack.api_url)
        yield Pair(crm, books, stack)
    finally:
        stack.stop()
        close_crm()
        crm_server.stop()
        books_server.stop()
