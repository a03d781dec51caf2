"""What a vendor declares about itself: one ``VendorSpec`` per vendor package, read by the rest of Closeloop.

A vendor package holds its spec (and, later, its adapter): its name and kind, its settings model (its own
environment variables), its credential keys and which of them verify webhooks, how to build its adapter,
its webhook routes with their OpenAPI description, and its capabilities. Nothing outside the package names it:
the runtime, the settings, the credentials, the webhook API and the CLI read the registry of specs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ConfigDict

from closeloop.config import EnvSettings

Kind = Literal["crm", "accounting"]


class VendorSettings(EnvSettings):
    """A vendor's own settings, read from the environment by their aliases (``vendor_settings(name)``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class NoSettings(VendorSettings):
    """For a vendor configured by its credentials alone."""


class CredentialSource(Protocol):
    """The credentials a vendor's ``build`` reads (``closeloop.credentials.Credentials``)."""

    def get(self, key: str, *, fresh: bool = False) -> str: ...

    def get_optional(self, key: str, default: str) -> str: ...


class Services(Protocol):
    """What the runtime lends a vendor's ``build``: each built on first use and shared by the process."""

    def lazy_store(self) -> Any:
        """The DynamoDB repository (token state, call slots), built when first called."""

    def clock(self) -> Any:
        """The clock of rate limits and delays (``closeloop.pacing.Clock``)."""

    def pacer(self, vendor: str, limit: Any, organisation: Callable[[], str]) -> Any:
        """The shared call budget of one vendor organisation (``closeloop.pacing.SharedPacer``)."""

    def client_tokens(
        self,
        credentials: CredentialSource,
        connection: str,
        prefix: str,
        refresh_with: Callable[[str, Callable[[], str], Callable[[], str]], Any],
        token_url: str,
        *,
        resend_within: float,
        rotates: bool = True,
    ) -> Any:
        """OAuth tokens of an app whose credentials are ``<PREFIX>_CLIENT_ID/_CLIENT_SECRET/_REFRESH_TOKEN``."""

    def invocation_ends_at(self) -> float | None:
        """When this invocation ends (epoch seconds); None: no deadline."""


def oauth_app_keys(prefix: str) -> tuple[str, str, str]:
    """The credential keys of an OAuth app whose tokens ``Services.client_tokens`` refreshes (one naming
    convention for every vendor): ``<PREFIX>_CLIENT_ID``, ``_CLIENT_SECRET``, ``_REFRESH_TOKEN``."""
    return (f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET", f"{prefix}_REFRESH_TOKEN")


@dataclass(frozen=True)
class WebhookRoute:
    """One webhook path a vendor's deliveries arrive on, with its OpenAPI operation (``post``).

    ``path`` is an OpenAPI path template (``/webhooks/<crm>/{pipeline}``); ``operation`` holds what the
    handler reads itself (the signature headers, the description). ``body`` names the pydantic model the
    adapter parses a delivery's JSON body with (``"module:Name"``, imported only when the OpenAPI document is
    built, never at cold start): the document's request body schema is generated from it, so it says what the
    parser accepts. The webhook API serves the route through its generic handlers and adds the errors every
    route answers.
    """

    path: str
    operation: Mapping[str, Any]
    body: str | None = None
    #: The media type the body arrives as (the schema describes it after parsing).
    media_type: str = "application/json"

    def __post_init__(self) -> None:
        if self.body is not None and "requestBody" in self.operation:
            raise ValueError(f"{self.path}: a body model and a hand-written requestBody; keep one")
        if self.body is not None and ":" not in self.body:
            raise ValueError(f"{self.path}: body {self.body!r} is not 'module:Name'")


@dataclass(frozen=True)
class Capabilities:
    """What a vendor's adapter does, as the README's "Supported systems" tables say it.

    ``webhooks``: it receives signed (or otherwise authenticated) deliveries; ``oauth``: it connects through
    OAuth2 with refreshed tokens; ``rotating_refresh_tokens``: each refresh returns a new refresh token,
    written back to the secret; ``connect``: ``closeloop connect <name>`` runs its consent flow;
    ``path_secret_key``: the credential key its webhook URLs end with (``closeloop setup`` prints it);
    ``objects``: the canonical object types it syncs; ``table``: its row of the README table, by column.
    """

    webhooks: bool
    oauth: bool
    objects: tuple[str, ...]
    rotating_refresh_tokens: bool = False
    connect: bool = False
    path_secret_key: str | None = None
    table: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VendorSpec:
    """A vendor, declared once (its package's ``SPEC``)."""

    name: str
    kind: Kind
    title: str
    settings: type[VendorSettings]
    #: Every credential key it reads (environment variables / secret keys), in the order the README lists them.
    credential_keys: tuple[str, ...]
    #: The credential keys that verify its webhook deliveries (a subset of ``credential_keys``).
    webhook_keys: tuple[str, ...]
    #: ``build(settings, credentials, services)``: its adapter (a CrmPort or an AccountingPort).
    build: Callable[[Any, CredentialSource, Services], Any]
    capabilities: Capabilities
    webhook_routes: tuple[WebhookRoute, ...] = ()

    def __post_init__(self) -> None:
        stray = set(self.webhook_keys) - set(self.credential_keys)
        if stray:
            raise ValueError(f"{self.name}: webhook keys {sorted(stray)} are not among its credential keys")

    @property
    def api_keys(self) -> tuple[str, ...]:
        """Its credential keys that are not webhook keys (the vendor's API credentials)."""
        return tuple(key for key in self.credential_keys if key not in self.webhook_keys)

    def env_vars(self) -> Collection[str]:
        """The environment variables of its settings model."""
        return [str(f.alias) for f in self.settings.model_fields.values()]
