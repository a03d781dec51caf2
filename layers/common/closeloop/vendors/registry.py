"""The registry of vendors: the one place that lists them. Everything else asks it.

Each built-in vendor is one line below (its package's dotted name); its package's ``SPEC`` is imported on
first use, so a function that never asks about vendors never loads them. ``register`` adds a vendor
from elsewhere (a test's toy vendor, a plug-in).
"""

from __future__ import annotations

import importlib
import os
import threading
from functools import cache
from typing import Any

from closeloop.errors import ConfigurationError
from closeloop.vendors.spec import Kind, VendorSpec

#: The built-in vendors, one line each, in the order they are listed everywhere (CLI choices, credential keys).
BUILTIN = (
    "closeloop.vendors.hubspot",
    "closeloop.vendors.pipedrive",
    "closeloop.vendors.sugarcrm",
    "closeloop.vendors.xero",
    "closeloop.vendors.quickbooks",
    "closeloop.vendors.zohobooks",
)
#: The provider of each kind when CRM_PROVIDER / ACCOUNTING_PROVIDER is unset (the template's defaults too).
DEFAULTS: dict[Kind, str] = {"crm": "hubspot", "accounting": "xero"}

_specs: dict[str, VendorSpec] = {}
_lock = threading.Lock()


def _loaded() -> dict[str, VendorSpec]:
    if len(_specs) < len(BUILTIN):
        with _lock:
            for module in BUILTIN:
                spec: VendorSpec = importlib.import_module(module).SPEC
                _specs.setdefault(spec.name, spec)
    return _specs


def register(spec: VendorSpec) -> None:
    """Add ``spec`` (a vendor from outside the built-in list); ValueError if its name or a key is taken."""
    specs = _loaded()
    if spec.name in specs:
        raise ValueError(f"a vendor named {spec.name!r} is already registered")
    taken = {key for other in specs.values() for key in other.credential_keys} & set(spec.credential_keys)
    if taken:
        raise ValueError(f"{spec.name}: credential keys {sorted(taken)} belong to another vendor")
    specs[spec.name] = spec
    vendor_settings.cache_clear()


def unregister(name: str) -> None:
    """Remove a vendor added with ``register`` (tests); the built-in ones stay."""
    if name in {importlib.import_module(module).SPEC.name for module in BUILTIN}:
        raise ValueError(f"{name!r} is built in")
    _loaded().pop(name, None)
    vendor_settings.cache_clear()


def all_specs() -> tuple[VendorSpec, ...]:
    """Every vendor, built-in ones first in their listed order."""
    return tuple(_loaded().values())


def get(name: str, kind: Kind | None = None) -> VendorSpec:
    """The vendor ``name`` (of ``kind`` when given); ConfigurationError naming the known ones otherwise."""
    spec = _loaded().get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        known = ", ".join(sorted(s.name for s in all_specs() if kind is None or s.kind == kind))
        what = {"crm": "CRM ", "accounting": "accounting "}.get(kind or "", "")
        raise ConfigurationError(f"unknown {what}provider {name!r}; known: {known}")
    return spec


def crms() -> tuple[VendorSpec, ...]:
    return tuple(s for s in all_specs() if s.kind == "crm")


def accountings() -> tuple[VendorSpec, ...]:
    return tuple(s for s in all_specs() if s.kind == "accounting")


def names(kind: Kind) -> list[str]:
    """The vendors' names of ``kind``, in the listed order."""
    return [s.name for s in all_specs() if s.kind == kind]


def credential_keys() -> tuple[str, ...]:
    """Every vendor's credential keys, vendor by vendor."""
    return tuple(key for spec in all_specs() for key in spec.credential_keys)


def webhook_keys() -> tuple[str, ...]:
    """The keys that verify webhook deliveries (kept in their own secret)."""
    return tuple(key for spec in all_specs() for key in spec.webhook_keys)


@cache
def vendor_settings(name: str) -> Any:
    """The settings of vendor ``name``, read from os.environ once (``runtime.reset()`` forgets them)."""
    return get(name).settings.from_env(os.environ)
