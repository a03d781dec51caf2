"""QuickBooks Online, an accounting system: its settings, credentials, webhook route and how its adapter
(``closeloop.vendors.quickbooks.adapter``, over ``client``, ``mapping`` and ``webhooks``) is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from closeloop.vendors.spec import (
    Capabilities,
    CredentialSource,
    Services,
    VendorSettings,
    VendorSpec,
    WebhookRoute,
    oauth_app_keys,
)


class QuickBooksSettings(VendorSettings):
    api_url: str = Field("https://quickbooks.api.intuit.com", alias="QUICKBOOKS_API_URL")
    oauth_url: str = Field("https://oauth.platform.intuit.com", alias="INTUIT_OAUTH_URL")
    item_income_account: str = Field(
        "",
        alias="QUICKBOOKS_ITEM_INCOME_ACCOUNT",
        description="the income account (Id or name) of items Closeloop creates when the CRM names none; empty: "
        "the company's first Income account",
    )
    item_expense_account: str = Field(
        "",
        alias="QUICKBOOKS_ITEM_EXPENSE_ACCOUNT",
        description="the expense account (Id or name) of items created with a unit cost; empty: the company's "
        "first Cost of Goods Sold account, else its first Expense account",
    )
    item_type: Literal["Service", "NonInventory"] = Field(
        "Service", alias="QUICKBOOKS_ITEM_TYPE", description="the Type of items Closeloop creates"
    )


def build(settings: QuickBooksSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting  # noqa: PLC0415
    from closeloop.vendors.quickbooks.client import REFRESH_RESEND_WITHIN_SECONDS, refresh_with_intuit  # noqa: PLC0415

    tokens = services.client_tokens(
        creds,
        "quickbooks",
        "QUICKBOOKS",
        refresh_with_intuit,
        settings.oauth_url,
        resend_within=REFRESH_RESEND_WITHIN_SECONDS,
    )
    realm_id = lambda: creds.get("QUICKBOOKS_REALM_ID")  # noqa: E731
    return QuickBooksAccounting(
        base_url=settings.api_url,
        tokens=tokens,
        realm_id=realm_id,
        webhook_verifier_token=lambda: creds.get_optional("QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN", ""),
        sleep=services.clock().sleep,
        pacer=services.pacer("quickbooks", QuickBooksAccounting.RATE_LIMIT, realm_id),
        item_income_account=settings.item_income_account,
        item_expense_account=settings.item_expense_account,
        item_type=settings.item_type,
    )


SPEC = VendorSpec(
    name="quickbooks",
    kind="accounting",
    title="QuickBooks",
    settings=QuickBooksSettings,
    credential_keys=(*oauth_app_keys("QUICKBOOKS"), "QUICKBOOKS_REALM_ID", "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN"),
    webhook_keys=("QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN",),
    build=build,
    capabilities=Capabilities(
        webhooks=True,
        oauth=True,
        rotating_refresh_tokens=True,
        objects=("customer", "invoice", "payment", "product", "purchase_order", "quote", "repeating_invoice"),
        table={
            "auth": "Intuit OAuth2, rotating refresh tokens",
            "customer stamp (finds a record made before a crash)": (
                "`MiddleName` (the only filterable free-text field no form prints)"
            ),
            "invoice idempotency": "`requestid` + `DocNumber`",
            "bulk customers": "`/batch`, 30 a call; `count(*)` then paged read or `IN` queries",
            "change feed for payments": "Change Data Capture (30 days, 1,000 per entity), else `LastUpdatedTime`",
        },
    ),
    webhook_routes=(
        WebhookRoute(
            "/accounting-webhooks/quickbooks",
            {
                "description": (
                    "An Intuit webhook notification (the legacy eventNotifications object or a CloudEvents array), "
                    "signed with base64(HMAC-SHA256(QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN, body)). Answered with an "
                    "empty body."
                ),
                "parameters": [
                    {"name": "intuit-signature", "in": "header", "required": True, "schema": {"type": "string"}}
                ],
            },
            body="closeloop.vendors.quickbooks.webhooks:QuickBooksWebhookBody",
        ),
    ),
)
