"""Vendor credentials: from the environment locally, from the stack's Secrets Manager secrets when deployed.

Two secrets, each one JSON object whose keys are the same names as the environment variables:
``webhook_keys()`` (what the internet-facing webhook functions need to verify a delivery) live in the secret
named by ``WEBHOOK_KEYS_SECRET_ID``; every other key of ``credential_keys()`` (the vendors' API credentials)
in the one named by ``CREDENTIALS_SECRET_ID``. So the webhook functions can be allowed to read only the
webhook keys. Only the configured vendors' keys need values, and a key missing from a secret is simply
unset (the template creates the secrets as ``{}`` and never lists keys, so a release adding a key never
rewrites stored values). A non-empty environment variable wins, so a developer's shell never touches a
secret. Values are never logged. Each vendor's spec declares its keys, and which of them are webhook keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from closeloop.errors import ConfigurationError
from closeloop.vendors import registry


def credential_keys() -> tuple[str, ...]:
    """Every vendor's credential keys (each vendor's spec lists its own), vendor by vendor."""
    return registry.credential_keys()


def webhook_keys() -> tuple[str, ...]:
    """The keys a webhook function reads to verify a delivery: kept apart from the vendors' API credentials."""
    return registry.webhook_keys()


def api_keys() -> tuple[str, ...]:
    """The vendors' API credentials (every credential that is not a webhook key)."""
    hooks = set(webhook_keys())
    return tuple(key for key in credential_keys() if key not in hooks)


def secret_keys() -> dict[str, tuple[str, ...]]:
    """The environment variable naming each secret, and the keys that secret holds."""
    return {"CREDENTIALS_SECRET_ID": api_keys(), "WEBHOOK_KEYS_SECRET_ID": webhook_keys()}


_LISTS = {
    "CREDENTIAL_KEYS": credential_keys,
    "WEBHOOK_KEYS": webhook_keys,
    "API_KEYS": api_keys,
    "SECRET_KEYS": secret_keys,
}


def __getattr__(name: str) -> Any:
    """``CREDENTIAL_KEYS``, ``WEBHOOK_KEYS``, ``API_KEYS`` and ``SECRET_KEYS``: the functions above, read from
    the registry when asked (so a vendor registered later is in them)."""
    if name in _LISTS:
        return _LISTS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Credentials:
    """Read (and for rotated tokens, write back) credentials by key."""

    def __init__(
        self, env: Mapping[str, str], secret_id: str = "", max_age: int = 300, *, webhook_secret_id: str = ""
    ) -> None:
        """``secret_id`` holds the API credentials, ``webhook_secret_id`` the webhook keys (when empty, the
        webhook keys are read from ``secret_id`` too: a single-secret setup)."""
        self._env = {k: env[k] for k in credential_keys() if env.get(k)}
        self._secret_id = secret_id
        self._webhook_secret_id = webhook_secret_id
        self._max_age = max_age

    def secret_id_for(self, key: str) -> str:
        """The secret that holds ``key`` ("" when there is none: the environment only)."""
        if key in webhook_keys() and self._webhook_secret_id:
            return self._webhook_secret_id
        return self._secret_id

    def _secret(self, secret_id: str, fresh: bool) -> dict[str, Any]:
        if not secret_id:
            return {}
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - boto3-heavy; only when used

        value = parameters.get_secret(secret_id, transform="json", max_age=self._max_age, force_fetch=fresh)
        return value if isinstance(value, dict) else {}

    def get(self, key: str, *, fresh: bool = False) -> str:
        """The credential ``key``; raise ConfigurationError naming the key (never its value) if unset.

        A key missing from its secret, or stored empty, is unset.
        """
        if key in self._env:
            return self._env[key]
        secret_id = self.secret_id_for(key)
        value = str(self._secret(secret_id, fresh).get(key) or "")
        if not value:
            where = f"secret {secret_id}" if secret_id else "the environment"
            raise ConfigurationError(f"credential {key} is not set in {where}")
        return value

    def get_optional(self, key: str, default: str) -> str:
        """The credential ``key``, or ``default`` when it is not set anywhere."""
        try:
            return self.get(key)
        except ConfigurationError:
            return default

    def from_environment(self, key: str) -> bool:
        return key in self._env

    def put(self, key: str, value: str) -> bool:
        """Write ``key`` back into its secret (rotated refresh tokens). False when it lives in the env."""
        secret_id = self.secret_id_for(key)
        if key in self._env or not secret_id:
            return False
        import boto3  # noqa: PLC0415 - only the rotating path pays for the client

        client = boto3.client("secretsmanager")
        current = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"] or "{}")
        current[key] = value
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(current))
        return True
