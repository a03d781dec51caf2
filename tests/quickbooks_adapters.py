"""The QuickBooks adapter wired to a QuickBooks sandbox, for the tests that share it."""

from __future__ import annotations

import httpx

from closeloop.oauth import RefreshingTokens
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.quickbooks.client import refresh_with_intuit
from closeloop_local.sandboxes.quickbooks import QuickBooksSandbox
from tests.fakes import MemoryStore


def adapter(
    qbo: QuickBooksSandbox,
    url: str,
    cls: type[QuickBooksAccounting] = QuickBooksAccounting,
    transport: httpx.BaseTransport | None = None,
    **settings: str,
) -> QuickBooksAccounting:
    """The adapter against ``qbo``'s sandbox at ``url`` (its refresh token seeded), with item ``settings``."""
    tokens = RefreshingTokens(
        "quickbooks",
        MemoryStore(),
        seed=lambda fresh: qbo.initial_refresh_token,
        refresh=refresh_with_intuit(url, lambda: qbo.client_id, lambda: qbo.client_secret),
        write_back=lambda token: None,
    )
    return cls(
        base_url=url,
        tokens=tokens,
        realm_id=lambda: qbo.realm_id,
        sleep=lambda s: None,
        transport=transport,
        **settings,  # type: ignore[arg-type]
    )
