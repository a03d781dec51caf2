"""Every CRM x accounting pair the local stack can run: the sandboxes, their drivers, and the stack between them.

``running_pair("pipedrive", "quickbooks", root)`` starts both sandbox servers, starts the local stack with
the adapters chosen the way a deployment chooses them (``CRM_PROVIDER`` / ``ACCOUNTING_PROVIDER`` and the
vendors' URL settings), subscribes Closeloop's webhooks in the CRM, and stops everything on exit. The pair
suite (tests/pairs) and ``closeloop demo --crm --accounting`` both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from closeloop.aws import KmsTokenCipher
from closeloop.store import DynamoStore
from closeloop.vendors import registry
from closeloop_local.sandboxes import hubspot, pipedrive, quickbooks, sugarcrm, xero, zohobooks
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.drivers import AccountingDriver, CrmDriver
from closeloop_local.stack import LocalStack

#: The functional stacks (demo, e2e, pairs) are not about rate limits: their workers spend a budget far above
#: the sandboxes' real limits, so a step is not paced to Xero's one call a second, and an occasional 429 is
#: retried as any would be. Pacing at the real limits is tested and measured where it is the point
#: (tests/faults/test_rate_limited_burst.py and `make bench`, which leave this at 0: the vendor's own limit).
UNPACED = {"ACCOUNTING_RATE_LIMIT_PER_MINUTE": "100000"}
#: ... and the pairs' accounting sandboxes take that much a minute (their other limits stay the vendors').
FUNCTIONAL_MINUTE_LIMIT = 100_000
#: ... and HubSpot that much in its ten-second window: a quote-to-cash step (quote, schedule and purchase order
#: write-backs, the poller's catch-up of them) spends more than HubSpot's 100, and the tests' 10x function clock
#: shortens the adapter's backoff below the window's real 10 s.
FUNCTIONAL_TEN_SECOND_LIMIT = 10_000
#: The demo's and the pair suite's stacks turn on every quote-to-cash flow a pair can carry (purchase orders
#: are off by default in a deployment).
EVERY_FLOW = {"PURCHASE_ORDERS": "true"}
#: How the vendors spell themselves, for people reading the demo's output (their specs' titles).
TITLES = {spec.name: spec.title for spec in registry.all_specs()}


def _hubspot(oauth: bool) -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    sandbox, server = hubspot.serve(hubspot.HubSpotSandbox(ten_second_limit=FUNCTIONAL_TEN_SECOND_LIMIT))
    return hubspot.HubSpotDriver(sandbox, server.url, oauth=oauth), server, sandbox.close


def _no_oauth(name: str, oauth: bool) -> None:
    if oauth:
        raise ValueError(f"the {TITLES[name]} sandbox driver has no OAuth app option")


def _pipedrive(oauth: bool) -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    _no_oauth("pipedrive", oauth)
    sandbox, server = pipedrive.serve()
    return pipedrive.PipedriveDriver(sandbox), server, lambda: None


def _sugarcrm(oauth: bool) -> tuple[CrmDriver, SandboxServer, Callable[[], None]]:
    _no_oauth("sugarcrm", oauth)
    sandbox, server = sugarcrm.serve()
    return sugarcrm.SugarCrmDriver(sandbox), server, lambda: None


def _xero() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = xero.serve(xero.XeroSandbox(minute_limit=FUNCTIONAL_MINUTE_LIMIT))
    return xero.XeroDriver(sandbox, server.url), server


def _quickbooks() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = quickbooks.serve()
    return quickbooks.QuickBooksDriver(sandbox), server


def _zohobooks() -> tuple[AccountingDriver, SandboxServer]:
    sandbox, server = zohobooks.serve(zohobooks.ZohoBooksSandbox(minute_limit=FUNCTIONAL_MINUTE_LIMIT))
    return zohobooks.ZohoBooksDriver(sandbox), server


#: CRM name -> start its sandbox (``oauth``: connect as an OAuth app where the driver offers it).
CRM_SANDBOXES: dict[str, Callable[[bool], tuple[CrmDriver, SandboxServer, Callable[[], None]]]] = {
    "hubspot": _hubspot,
    "pipedrive": _pipedrive,
    "sugarcrm": _sugarcrm,
}
ACCOUNTING_SANDBOXES: dict[str, Callable[[], tuple[AccountingDriver, SandboxServer]]] = {
    "xero": _xero,
    "quickbooks": _quickbooks,
    "zohobooks": _zohobooks,
}
#: The vendors a pair can be made of: the registry's, in its order, that have a sandbox.
CRMS = tuple(name for name in registry.names("crm") if name in CRM_SANDBOXES)
ACCOUNTING = tuple(name for name in registry.names("accounting") if name in ACCOUNTING_SANDBOXES)


@dataclass
class Pair:
    crm: CrmDriver
    books: AccountingDriver
    stack: LocalStack
    crm_url: str = ""  # the CRM sandbox server
    books_url: str = ""  # the accounting sandbox server

    @property
    def store(self) -> DynamoStore:
        # The functions encrypt OAuth tokens with the stack's TokenKey: read them with the same key.
        return DynamoStore(self.stack.env["SYNC_TABLE"], cipher=KmsTokenCipher(self.stack.env["TOKEN_KEY_ID"]))

    def settle(self) -> None:
        """Let the CRM deliver its webhooks and the stack's workers finish."""
        self.crm.flush_webhooks()
        self.stack.drain(timeout=60)

    def poll(self) -> Any:
        return self.stack.run_schedule("PaymentPollerFunction")


@contextmanager
def running_pair(
    crm_name: str,
    books_name: str,
    root: Path,
    *,
    port: int = 0,
    crm_oauth: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[Pair]:
    """Both sandboxes and the local stack for one pair, webhooks subscribed; everything stopped on exit.

    ``crm_oauth`` connects to the CRM as an OAuth app (HubSpot); ValueError for a CRM whose driver lacks it.
    ``env``: more function settings (the tests' CLOSELOOP_TIME_SCALE).
    """
    if crm_name not in CRM_SANDBOXES:
        raise ValueError(f"unknown CRM {crm_name!r}: one of {', '.join(CRMS)}")
    if books_name not in ACCOUNTING_SANDBOXES:
        raise ValueError(f"unknown accounting system {books_name!r}: one of {', '.join(ACCOUNTING)}")
    crm, crm_server, close_crm = CRM_SANDBOXES[crm_name](crm_oauth)
    try:
        books, books_server = ACCOUNTING_SANDBOXES[books_name]()
        try:
            environment = UNPACED | crm.environment(crm_server.url) | books.environment(books_server.url)
            environment |= dict(env or {})
            stack = LocalStack(root, port=port, env_overrides=environment)
            try:
                stack.start()
                crm.subscribe(stack.api_url)
                yield Pair(crm, books, stack, crm_server.url, books_server.url)
            finally:
                stack.stop()
        finally:
            books_server.stop()
    finally:
        close_crm()
        crm_server.stop()
