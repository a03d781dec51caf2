"""Shared fixtures: the vendor sandboxes and the local stack (template.yaml in moto, real handlers).

``loop`` is HubSpot and Xero around one stack; ``pair`` is every CRM x accounting pair in turn, ``covering_pair``
the pairs CLOSELOOP_PAIRS chooses (all, or a covering set). A tier's
conftest.py imports the ones its tests use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from closeloop.aws import KmsTokenCipher
from closeloop.store import DynamoStore
from closeloop_local.demo import sandbox_environment
from closeloop_local.pairs import ACCOUNTING, CRMS, EVERY_FLOW, Pair, running_pair
from closeloop_local.sandboxes import hubspot as hubspot_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path, name: str, template: dict[str, Any]) -> Path:
    """A copy of the project with ``template`` as its template.yaml (JSON is YAML), sharing the code."""
    root = tmp_path / name
    root.mkdir()
    (root / "template.yaml").write_text(json.dumps(template, indent=1))
    for shared in ("functions", "layers"):
        (root / shared).symlink_to(ROOT / shared)
    return root


@dataclass
class Loop:
    """Everything a loop test touches."""

    stack: LocalStack
    xero: xero_sandbox.XeroSandbox
    xero_server: SandboxServer
    hubspot: hubspot_sandbox.HubSpotSandbox
    hubspot_server: SandboxServer

    @property
    def store(self) -> DynamoStore:
        # The functions encrypt OAuth tokens with the stack's TokenKey: read them with the same key.
        return DynamoStore(self.stack.env["SYNC_TABLE"], cipher=KmsTokenCipher(self.stack.env["TOKEN_KEY_ID"]))

    @property
    def contacts_url(self) -> str:
        return f"{self.stack.api_url}/webhooks/hubspot/contacts"

    def active_xero_contacts(self) -> list[dict[str, object]]:
        return [c for c in self.xero.contacts() if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def settle(self) -> None:
        self.hubspot.flush_webhooks()
        self.stack.drain(timeout=60)

    def finance(self) -> httpx.Client:
        """A Xero client of finance's own (another app connection)."""
        return xero_sandbox.finance_client(self.xero, self.xero_server.url)

    def approve_and_pay(self, invoice_id: str, amount: str, on: str) -> None:
        xero_sandbox.finance_approve_and_pay(self.xero, self.xero_server.url, invoice_id, amount, on)


#: What the loop's HubSpot app subscribes to (its webhook settings, as a HubSpot admin would set them).
LOOP_SUBSCRIPTIONS = (
    "contact.creation",
    "contact.propertyChange",
    "company.creation",
    "company.propertyChange",
    "deal.creation",
    "deal.propertyChange:dealstage",
    "product.creation",
    "product.propertyChange",
)


def loop_webhooks(api_url: str, subscriptions: Sequence[str] = LOOP_SUBSCRIPTIONS) -> dict[str, Any]:
    """The loop's HubSpot webhook settings: every subscription to the contacts route, delivered on ``settle``."""
    return {
        "target_url": f"{api_url}/webhooks/hubspot/contacts",
        "signature_version": "v3",
        "mode": "manual",
        "subscriptions": list(subscriptions),
    }


@contextmanager
def running_loop(env: Mapping[str, str] | None = None) -> Iterator[Loop]:
    """The HubSpot and Xero sandboxes and the local stack between them (``env``: extra function settings)."""
    xero, xero_server = xero_sandbox.serve()
    hubspot, hubspot_server = hubspot_sandbox.serve()
    overrides = sandbox_environment(xero, xero_server.url, hubspot_server.url) | dict(env or {})
    stack = LocalStack(ROOT, port=0, env_overrides=overrides)
    stack.start()
    hubspot.configure_webhooks(loop_webhooks(stack.api_url))
    try:
        yield Loop(stack, xero, xero_server, hubspot, hubspot_server)
    finally:
        stack.stop()
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()


#: The functions' clock in the loop tests runs 10x (CLOSELOOP_TIME_SCALE): backoff, Retry-After waits and SQS
#: delays shrink; the sandboxes keep real time, and the faults these tests inject are counted, not timed.
FUNCTIONS_CLOCK = {"CLOSELOOP_TIME_SCALE": "10"}


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with running_loop(FUNCTIONS_CLOCK) as started:
        yield started


EVERY_PAIR = [(c, a) for c in CRMS for a in ACCOUNTING]
#: Every CRM and every accounting system in one pair at least: what `make test` runs a slow scenario on
#: (``CLOSELOOP_PAIRS=covering``); `make test-all` (and a plain pytest run) runs it on every pair.
COVERING_PAIRS = [("hubspot", "xero"), ("pipedrive", "quickbooks"), ("sugarcrm", "zohobooks")]


def chosen_pairs() -> list[tuple[str, str]]:
    """The pairs ``covering_pair`` runs: the covering set when CLOSELOOP_PAIRS is ``covering``, else all."""
    choice = os.environ.get("CLOSELOOP_PAIRS", "all").strip().lower() or "all"
    if choice not in ("all", "covering"):
        raise ValueError(f"CLOSELOOP_PAIRS is {choice!r}: all or covering")
    return COVERING_PAIRS if choice == "covering" else EVERY_PAIR


@contextmanager
def _started(request: pytest.FixtureRequest) -> Iterator[Pair]:
    crm_name, books_name = request.param
    with running_pair(crm_name, books_name, ROOT, env=FUNCTIONS_CLOCK | EVERY_FLOW) as started:
        yield started


@pytest.fixture(scope="module", params=EVERY_PAIR, ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """One pair started (one local stack, two sandbox servers), for every CRM x accounting pair in turn.

    Module-scoped and parametrised, so pytest runs a whole module for one pair before it starts the next.
    """
    with _started(request) as started:
        yield started


@pytest.fixture(scope="module", params=chosen_pairs(), ids=lambda p: f"{p[0]}-{p[1]}")
def covering_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """As ``pair``, for the pairs ``chosen_pairs`` names (CLOSELOOP_PAIRS): a scenario that takes long per pair
    runs on the covering set in `make test` and on every pair in `make test-all`."""
    with _started(request) as started:
        yield started
