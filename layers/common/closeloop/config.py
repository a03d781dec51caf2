"""Settings: read once from the environment, validated, cached. Logic receives them; it never reads os.environ."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from closeloop.errors import ConfigurationError


class EnvSettings(BaseModel):
    """Settings read from an environment mapping by their aliases (the environment variable names)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Build settings from an environment mapping; raise ConfigurationError naming the bad key."""
        try:
            return cls.model_validate({k: v for k, v in env.items() if v != ""})
        except (ValidationError, ValueError) as exc:
            raise ConfigurationError(f"invalid configuration: {exc}") from exc

    def require(self, *names: str) -> None:
        """Raise ConfigurationError if any named setting is empty (a function needs it)."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            aliases = [str(type(self).model_fields[n].alias) for n in missing]
            raise ConfigurationError(f"missing configuration: {', '.join(aliases)}")


class Settings(EnvSettings):
    """What every Closeloop function is configured with (see the README's configuration table); each vendor's
    own settings are its package's model (``closeloop.vendors.registry.vendor_settings``)."""

    #: Which adapters run; empty: the registry's default of that kind (``closeloop.vendors.registry.DEFAULTS``).
    crm_provider: str = Field("", alias="CRM_PROVIDER")
    accounting_provider: str = Field("", alias="ACCOUNTING_PROVIDER")
    webhook_base_url: str = Field("", alias="WEBHOOK_BASE_URL")
    sync_table: str = Field("", alias="SYNC_TABLE")
    #: The KMS key (id, ARN or alias) OAuth tokens are encrypted with in the sync table.
    token_key_id: str = Field("", alias="TOKEN_KEY_ID")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")
    contact_queue_url: str = Field("", alias="CONTACT_QUEUE_URL")
    deal_queue_url: str = Field("", alias="DEAL_QUEUE_URL")
    contact_dlq_url: str = Field("", alias="CONTACT_DLQ_URL")
    deal_dlq_url: str = Field("", alias="DEAL_DLQ_URL")
    report_bucket: str = Field("", alias="REPORT_BUCKET")
    alert_topic_arn: str = Field("", alias="ALERT_TOPIC_ARN")
    credentials_secret_id: str = Field("", alias="CREDENTIALS_SECRET_ID")
    webhook_keys_secret_id: str = Field(
        "", alias="WEBHOOK_KEYS_SECRET_ID", description="the secret of the webhook verification keys"
    )
    credentials_max_age_seconds: int = Field(300, alias="CREDENTIALS_MAX_AGE_SECONDS")
    invoice_status: Literal["DRAFT", "AUTHORISED"] = Field("DRAFT", alias="INVOICE_STATUS")
    invoice_send_email: bool = Field(False, alias="INVOICE_SEND_EMAIL")
    invoice_due_days: int = Field(30, ge=0, le=365, alias="INVOICE_DUE_DAYS")
    default_currency: str = Field("", alias="DEFAULT_CURRENCY")
    sku_item_codes: dict[str, str] = Field(default_factory=dict, alias="SKU_ITEM_CODES")
    product_sync: bool = Field(
        True,
        alias="PRODUCT_SYNC",
        description="keep the CRM's products and the accounting items the same; a won deal's unknown SKU is made "
        "an item from its CRM product first",
    )
    purchase_orders: bool = Field(
        False,
        alias="PURCHASE_ORDERS",
        description="a won deal's lines whose product names a supplier become one draft purchase order per supplier",
    )
    invoice_on_quote_accepted: bool = Field(
        False,
        alias="INVOICE_ON_QUOTE_ACCEPTED",
        description="invoice a deal as soon as its quote is accepted in accounting, before the deal is won",
    )
    recurring_schedule_status: Literal["DRAFT", "AUTHORISED"] = Field(
        "DRAFT",
        alias="RECURRING_SCHEDULE_STATUS",
        description="status of the repeating invoice schedules made from a won deal's recurring lines",
    )
    tax_rules: str = Field("", alias="TAX_RULES")
    field_rules: str = Field("", alias="FIELD_RULES", description="YAML overriding field_rules.yaml")
    event_bus_name: str = Field("default", alias="EVENT_BUS_NAME")
    report_link_expiry_seconds: int = Field(7 * 86400, ge=60, le=7 * 86400, alias="REPORT_LINK_EXPIRY_SECONDS")
    accounting_rate_limit_per_minute: int = Field(
        0,
        ge=0,
        alias="ACCOUNTING_RATE_LIMIT_PER_MINUTE",
        description="calls a minute the workers share for one accounting organisation; 0: the vendor's published limit",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        alias="CLOSELOOP_TIME_SCALE",
        description="local tests only: vendor seconds per real second (rate-limit windows, Retry-After, delays)",
    )

    @field_validator("sku_item_codes", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from os.environ once (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env(os.environ)
