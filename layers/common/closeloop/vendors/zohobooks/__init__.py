"""Zoho Books, an accounting system: its settings, credentials and how its adapter
(``closeloop.vendors.zohobooks.adapter``, over ``client`` and ``mapping``) is built. It sends no signed
webhooks: its change feed is polled."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from closeloop.vendors.spec import Capabilities, CredentialSource, Services, VendorSettings, VendorSpec, oauth_app_keys


class ZohoBooksSettings(VendorSettings):
    data_centre: str = Field("com", alias="ZOHO_DATA_CENTRE", pattern=r"^(com|eu|in|com\.au|jp|ca|com\.cn|sa)$")
    books_api_url: str = Field("", alias="ZOHO_BOOKS_API_URL", description="default: www.zohoapis.<dc>")
    accounts_url: str = Field("", alias="ZOHO_ACCOUNTS_URL", description="default: accounts.zoho.<dc>")

    @property
    def books_base_url(self) -> str:
        """Zoho Books' API root for the configured data centre (``ZOHO_BOOKS_API_URL`` overrides)."""
        return self.books_api_url or f"https://www.zohoapis.{self.data_centre}"

    @property
    def accounts_base_url(self) -> str:
        """Zoho's OAuth server for the configured data centre (``ZOHO_ACCOUNTS_URL`` overrides)."""
        return self.accounts_url or f"https://accounts.zoho.{self.data_centre}"


def build(settings: ZohoBooksSettings, creds: CredentialSource, services: Services) -> Any:
    from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting  # noqa: PLC0415
    from closeloop.vendors.zohobooks.client import REFRESH_RESEND_WITHIN_SECONDS, refresh_with_zoho  # noqa: PLC0415

    centre = settings.data_centre
    # Zoho's refresh tokens do not rotate: nothing to write back.
    tokens = services.client_tokens(
        creds,
        "zohobooks",
        "ZOHO",
        refresh_with_zoho,
        settings.accounts_base_url,
        resend_within=REFRESH_RESEND_WITHIN_SECONDS,
        rotates=False,
    )
    organization_id = lambda: creds.get("ZOHO_BOOKS_ORGANIZATION_ID")  # noqa: E731
    return ZohoBooksAccounting(
        base_url=settings.books_base_url,
        tokens=tokens,
        organization_id=organization_id,
        web_url=f"https://books.zoho.{centre}",
        tax_number_field={"in": "gst_no", "sa": "tax_reg_no"}.get(centre, "vat_reg_no"),
        sleep=services.clock().sleep,
        pacer=services.pacer("zohobooks", ZohoBooksAccounting.RATE_LIMIT, organization_id),
    )


SPEC = VendorSpec(
    name="zohobooks",
    kind="accounting",
    title="Zoho Books",
    settings=ZohoBooksSettings,
    credential_keys=(*oauth_app_keys("ZOHO"), "ZOHO_BOOKS_ORGANIZATION_ID"),
    webhook_keys=(),
    build=build,
    capabilities=Capabilities(
        webhooks=False,
        oauth=True,
        objects=("customer", "invoice", "payment", "product", "quote", "repeating_invoice", "purchase_order"),
        table={
            "auth": "Zoho OAuth2 per data centre (refresh tokens do not rotate)",
            "customer stamp (finds a record made before a crash)": "unique custom field `cf_closeloop_ref`",
            "invoice idempotency": "upsert on unique custom field `cf_closeloop_deal`",
            "bulk customers": "one upsert per customer (no bulk create)",
            "change feed for payments": "`last_modified_time`",
        },
    ),
)
