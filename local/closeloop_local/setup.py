"""``closeloop setup hubspot|pipedrive|sugarcrm``: create the deal and company properties Closeloop writes back,
and, for a CRM whose catalogue Closeloop reads (its spec lists ``product``), the product property it reads the
supplier from (``closeloop_supplier``); for a CRM whose quotes it syncs (``quote``), the quote fields it writes
back (``closeloop_quote_number``, ``_status``, ``_url``, ``_revision``); for a CRM whose recurring lines need a
field Closeloop reads (its adapter has ``ensure_recurring_line_properties``: SugarCRM's billing frequency
dropdown on revenue line items), that field and the deal fields the schedules write back.

For the CRMs whose webhooks prove themselves by a secret in the URL (Pipedrive, SugarCRM), setup also makes that
secret: 43 random URL-safe characters (``secrets.token_urlsafe(32)``), stored in the webhook keys secret
(``--webhook-secret-id`` / ``WEBHOOK_KEYS_SECRET_ID``) unless a long enough one is already there, and prints the
webhook URLs to register in the CRM (to this terminal only: it is never logged).

Uses the deployment's own configuration: ``HUBSPOT_ACCESS_TOKEN`` (and ``HUBSPOT_API_URL``) from the
environment, or from the stack's secret named by ``--secret-id`` / ``CREDENTIALS_SECRET_ID``; an OAuth app
(``HUBSPOT_CLIENT_ID``/``_CLIENT_SECRET``/``_REFRESH_TOKEN``) also needs ``SYNC_TABLE``, where the access token
is kept and its refresh leased. Property definitions carry every field HubSpot's properties API requires
(options with label, value, displayOrder and hidden). Safe to run
again: existing properties are left as they are. (The deals worker also creates them when it finds them
missing; running setup first keeps the first invoice's write-back to one call.)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from closeloop import runtime
from closeloop.credentials import Credentials
from closeloop.ports import PropertyDefinition
from closeloop.sync.invoices import CUSTOMER_PROPERTIES, DEAL_PROPERTIES
from closeloop.sync.purchase_orders import PURCHASE_ORDER_PROPERTIES
from closeloop.sync.recurring import SCHEDULE_PROPERTIES
from closeloop.vendors import registry
from closeloop.wire import MIN_PATH_SECRET_LENGTH

#: The CRMs whose webhook URLs end in a secret, and the credential that holds it (their specs say which).
PATH_SECRETS = {
    spec.name: spec.capabilities.path_secret_key for spec in registry.crms() if spec.capabilities.path_secret_key
}


#: The product property the catalogue sync reads a product's supplier from (``Product.supplier``).
PRODUCT_PROPERTIES = (
    PropertyDefinition("closeloop_supplier", "Supplier", description="The supplier's name, read by Closeloop"),
)


def property_sets(system: str) -> list[tuple[str, Sequence[PropertyDefinition]]]:
    """The custom properties setup makes in CRM ``system``, per object type."""
    objects = registry.get(system, "crm").capabilities.objects
    deal: tuple[PropertyDefinition, ...] = DEAL_PROPERTIES
    if "purchase_order" in objects:  # the deal's purchase order numbers (made whatever PURCHASE_ORDERS says)
        deal = (*deal, *PURCHASE_ORDER_PROPERTIES)
    sets: list[tuple[str, Sequence[PropertyDefinition]]] = [("deal", deal), ("company", CUSTOMER_PROPERTIES)]
    if "product" in objects:
        sets.append(("product", PRODUCT_PROPERTIES))
    return sets


def ensure_crm_properties(crm: Any, system: str) -> None:
    """Create the missing properties of ``property_sets(system)``; print what was made, per object type."""
    for object_type, definitions in property_sets(system):
        created = crm.ensure_properties(object_type, definitions)
        existing = len(definitions) - len(created)
        print(f"{object_type}: created {len(created)} ({', '.join(created) or '-'}), {existing} already there")
    ensure_quote_properties(crm, system)
    ensure_recurring_line_properties(crm, system)


def ensure_recurring_line_properties(crm: Any, system: str) -> None:
    """For a CRM whose recurring lines Closeloop schedules (its spec lists ``repeating_invoice``) and whose
    lines lack a stock billing frequency: the field its adapter reads it from (SugarCRM: a Studio dropdown on
    revenue line items, which the API cannot create, so a missing one is named for an admin)."""
    ensure = getattr(crm, "ensure_recurring_line_properties", None)
    if ensure is None or "repeating_invoice" not in registry.get(system, "crm").capabilities.objects:
        return
    # Such a CRM cannot create the schedules' deal write-back fields when the flow first writes them either
    # (SugarCRM's Studio fields): they are named here, before a schedule is made.
    deal = crm.ensure_properties("deal", SCHEDULE_PROPERTIES)
    created = ensure()
    print(f"recurring fields: created {len(deal) + len(created)} ({', '.join([*deal, *created]) or '-'})")


def ensure_quote_properties(crm: Any, system: str) -> None:
    """For a CRM whose quotes Closeloop syncs (its spec lists ``quote``): create the quote fields Closeloop
    writes back (``closeloop_quote_*``) where its adapter writes them (``QuoteCrm.ensure_quote_properties``:
    on the quote, or on the deal where the CRM refuses custom quote properties)."""
    if "quote" not in registry.get(system, "crm").capabilities.objects:
        return
    from closeloop.sync.quotes import QUOTE_PROPERTIES  # noqa: PLC0415 - only CRMs with quotes need it

    created = crm.ensure_quote_properties(QUOTE_PROPERTIES)
    holder = getattr(crm, "quote_fields_holder", "quote")
    print(f"quote fields on the {holder}: created or reachable {len(created)} ({', '.join(created) or '-'})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-id", help="the stack's credentials secret (default: $CREDENTIALS_SECRET_ID)")
    parser.add_argument(
        "--webhook-secret-id", help="the stack's webhook keys secret (default: $WEBHOOK_KEYS_SECRET_ID)"
    )
    parser.add_argument("--api-url", default="", help="the stack's ApiUrl output, to print the full webhook URLs")


def ensure_path_secret(creds: Credentials, key: str) -> tuple[str, bool]:
    """The URL secret ``key``, made and stored when missing or shorter than the minimum; (secret, made now).

    Raises SystemExit when a new one is needed but cannot be stored (the key is set in the environment, or no
    webhook keys secret is named).
    """
    current = creds.get_optional(key, "")
    if len(current) >= MIN_PATH_SECRET_LENGTH:
        return current, False
    made = secrets.token_urlsafe(32)
    if not creds.put(key, made):
        raise SystemExit(
            f"{key} must be at least {MIN_PATH_SECRET_LENGTH} random characters; it cannot be stored here "
            "(set in the environment, or no --webhook-secret-id): store a new one made with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return made, True


def main(args: argparse.Namespace) -> int:
    if getattr(args, "secret_id", None):
        os.environ["CREDENTIALS_SECRET_ID"] = args.secret_id
    if getattr(args, "webhook_secret_id", None):
        os.environ["WEBHOOK_KEYS_SECRET_ID"] = args.webhook_secret_id
    system = getattr(args, "system", registry.DEFAULTS["crm"])
    os.environ.setdefault("CRM_PROVIDER", system)
    runtime.reset()
    key = PATH_SECRETS.get(system)
    if key is not None:
        secret, made = ensure_path_secret(runtime.credentials(), key)
        base = (getattr(args, "api_url", "") or "<ApiUrl>").rstrip("/")
        print(f"{key}: {'made and stored' if made else 'kept (already set)'}; register these webhook URLs:")
        for pipeline in ("contacts", "deals"):
            print(f"  {base}/webhooks/{system}/{pipeline}/{secret}")
    ensure_crm_properties(runtime.crm(), system)
    sys.stdout.flush()
    return 0
