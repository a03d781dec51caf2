"""The real accounting adapters pointed at a vendor sandbox (tokens in memory, no sleeping), and the small
webhook and clock helpers that go with them: one builder per vendor, shared by the integration and sandbox
tests so none of them imports another test module."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from closeloop.oauth import RefreshingTokens
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.quickbooks.client import refresh_with_intuit
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.sugarcrm.client import password_grant
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.client import refresh_with_identity
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop.vendors.zohobooks.client import refresh_with_zoho
from closeloop_local.sandboxes.quickbooks import QuickBooksSandbox
from closeloop_local.sandboxes.sugarcrm import SugarSandbox
from closeloop_local.sandboxes.xero import XeroSandbox
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox
from tests.fakes import MemoryStore


def signed(secret: str, body: bytes) -> str:
    """The base64 HMAC-SHA256 of ``body`` under ``secret``, as the sandboxes sign a webhook delivery."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def sandbox_now(state_now: float) -> datetime:
    """A sandbox clock reading as an aware UTC datetime."""
    return datetime.fromtimestamp(state_now, UTC)


def sugarcrm_adapter(
    sugar: SugarSandbox, url: str, *, webhook_token: str = "hook-token-8d1e-Qm3xV9pL2rT7wY5zK8nB4cF6", **settings: Any
) -> SugarCrm:
    """The SugarCRM CRM adapter logged in to the sandbox on the ``closeloop`` platform (``settings``: the
    adapter's keyword settings, e.g. quote stages)."""
    tokens = RefreshingTokens(
        "sugarcrm",
        MemoryStore(),
        seed=lambda fresh: "",
        refresh=password_grant(
            url, username=lambda: sugar.username, password=lambda: sugar.password, platform="closeloop"
        ),
        write_back=lambda token: None,
    )
    return SugarCrm(instance_url=url, tokens=tokens, webhook_token=webhook_token, sleep=lambda s: None, **settings)


def xero_adapter(
    xero: XeroSandbox, url: str, store: MemoryStore | None = None, refresh_token: str | None = None
) -> XeroAccounting:
    """The Xero adapter on the sandbox, with the given token store and first refresh token (no webhook key)."""
    tokens = RefreshingTokens(
        "xero",
        store or MemoryStore(),
        seed=lambda fresh: refresh_token or str(xero.initial_refresh_token),
        refresh=refresh_with_identity(url, lambda: xero.client_id, lambda: xero.client_secret),
        write_back=lambda token: None,
    )
    return XeroAccounting(base_url=url, tokens=tokens, tenant_id=lambda: xero.tenant_id, sleep=lambda s: None)


def xero_books(sandbox: XeroSandbox, url: str, key: str | None = None) -> XeroAccounting:
    """The Xero adapter on the sandbox, verifying webhooks with ``key`` (default: the sandbox's own)."""
    tokens = RefreshingTokens(
        "xero",
        MemoryStore(),
        seed=lambda fresh: str(sandbox.initial_refresh_token),
        refresh=refresh_with_identity(url, lambda: sandbox.client_id, lambda: sandbox.client_secret),
        write_back=lambda token: None,
    )
    webhook_key = sandbox.webhooks.key if key is None else key
    return XeroAccounting(
        base_url=url,
        tokens=tokens,
        tenant_id=lambda: sandbox.tenant_id,
        sleep=lambda s: None,
        webhook_key=lambda: webhook_key,
    )


def qbo_books(
    sandbox: QuickBooksSandbox,
    url: str,
    clock: Callable[[], datetime] | None = None,
    cls: type[QuickBooksAccounting] = QuickBooksAccounting,
) -> QuickBooksAccounting:
    tokens = RefreshingTokens(
        "quickbooks",
        MemoryStore(),
        seed=lambda fresh: sandbox.initial_refresh_token,
        refresh=refresh_with_intuit(url, lambda: sandbox.client_id, lambda: sandbox.client_secret),
        write_back=lambda token: None,
    )
    return cls(
        base_url=url,
        tokens=tokens,
        realm_id=lambda: sandbox.realm_id,
        sleep=lambda s: None,
        clock=clock or (lambda: sandbox_now(sandbox.state.clock.now())),
        webhook_verifier_token=lambda: sandbox.webhooks.verifier_token,
    )


def zohobooks_adapter(
    zoho: ZohoBooksSandbox,
    url: str,
    store: MemoryStore | None = None,
    organization: str | None = None,
    cls: type[ZohoBooksAccounting] = ZohoBooksAccounting,
    *,
    transport: httpx.BaseTransport | None = None,
) -> ZohoBooksAccounting:
    tokens = RefreshingTokens(
        "zohobooks",
        store or MemoryStore(),
        seed=lambda fresh: zoho.initial_refresh_token,
        refresh=refresh_with_zoho(url, lambda: zoho.client_id, lambda: zoho.client_secret),
        write_back=lambda token: None,
    )
    return cls(
        base_url=url,
        tokens=tokens,
        organization_id=lambda: organization or zoho.organization_id,
        transport=transport,
        sleep=lambda s: None,
    )


class ZohoPagesOfTwo(ZohoBooksAccounting):
    """The Zoho Books adapter reading lists two rows a page (paging in tests without hundreds of rows)."""

    PAGE_SIZE = 2


class LoseAnswers(httpx.BaseTransport):
    """Sends every request to the sandbox, then loses the answer of the next ``times`` ``method path`` calls
    (the vendor acted, the caller never hears): a read timeout after the request went out."""

    def __init__(self, method: str, path: str, times: int = 1) -> None:
        self.inner = httpx.HTTPTransport()
        self.method, self.path, self.times = method, path, times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.times and request.method == self.method and request.url.path == self.path:
            self.times -= 1
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response
