"""A stateful stand-in for the HubSpot API (CRM v3 objects, v4 associations, properties, pipelines).

Production adapters talk to it over real HTTP through ``HUBSPOT_API_URL``. Paths, payload shapes,
auth, error bodies and rate-limit headers follow the real API; where HubSpot's behaviour was not
documented well enough to copy, the choice made is noted next to the code.

It also plays the part of HubSpot's *app webhooks*: objects created or changed (through the API or
the test helpers) become webhook events that are POSTed, in JSON-array batches and signed (v1/v2/v3),
to a target URL configured through the control API. Delivery runs on a background thread, with
retries, or synchronously on ``POST /_sandbox/webhooks/flush``.

Auth: the private-app token, or OAuth access tokens issued by ``POST /oauth/v1/token``
(``grant_type=refresh_token`` with the app's client id, client secret and the account's refresh token, which
is not replaced on refresh). OAuth access tokens expire after ``oauth_token_lifetime`` seconds of the sandbox
clock (HubSpot: 30 minutes); an expired one is answered 401 ``EXPIRED_AUTHENTICATION``.

v4 association batch reads page each input object's associations ``association_page_size`` at a time
(HubSpot: 500) with ``paging.next.after`` per result; ``inputs: [{id, after}]`` asks for the next page.
v3 object reads embed at most ``embedded_association_limit`` associations per type (HubSpot: 100), the
rest behind that list's ``paging.next``.

Webhook events use the legacy typed subscription types ("contact.creation") or, with the settings'
``generic_events`` switch, the current platform's generic ones ("object.creation" + ``objectTypeId``).

Account information (``GET /account-info/v3/details``): the portal id, UI domain (``ui_domain``; its data
hosting location follows from it), time zone and currencies of the account, for any valid token. A sandbox
made with ``account_info_scope=False`` answers the private-app token 403 ``MISSING_SCOPES`` there, as for an
app without the ``oauth`` scope; OAuth access tokens always carry that scope (HubSpot requires it of every
OAuth app). Private apps are served by default (the adapter's GUESSES["account_info_private_app"]); the
adapter treats a refusal as "no deal links", which ``account_info_scope=False`` keeps under test.

Products (the product library: ``hs_sku``, ``price``, ``hs_cost_of_goods_sold``, custom properties such as
``closeloop_supplier``) are objects like the others: listed live or archived (``archived=true``), searched (live
ones only), deleted by archiving, with ``product.*`` webhooks. A sandbox made with ``product_scope=False``
answers the private-app token's product object calls 403 ``MISSING_SCOPES`` (``crm.objects.products.read`` or
``.write``, the scopes the Products spec lists), as for an app made without them.

Rate limits: a rolling 10-second window and a daily budget (UTC day of the sandbox clock), with the
five ``X-HubSpot-RateLimit-*`` headers on every authenticated answer. A 429 carries HubSpot's
documented body and no ``Retry-After`` (HubSpot documents none for CRM APIs); inject one with a fault
(``{"path_glob": ..., "status": 429, "headers": {"Retry-After": "1"}}``) to test that path.

Control API (no auth, never logged in ``state.requests``)::

    POST  /_sandbox/reset                      objects, properties, associations, limits, webhooks, log
    GET   /_sandbox/requests                   the request log
    POST  /_sandbox/faults                     a base.Fault as JSON (or a list of them)
    POST  /_sandbox/clock        {"advance": s}
    POST  /_sandbox/objects/{type}             {"properties": {...}, "associations": [...]} (fires webhooks)
    GET   /_sandbox/objects/{type}/{id}
    PATCH /_sandbox/objects/{type}/{id}        {"properties": {...}} (fires webhooks)
    POST  /_sandbox/associations               {from_type, from_id, to_type, to_id, primary}
    POST  /_sandbox/webhooks                   webhook settings (see ``WebhookSettings``)
    GET   /_sandbox/webhooks                   current settings
    POST  /_sandbox/webhooks/flush             deliver everything pending now, synchronously
    GET   /_sandbox/webhooks/deliveries        every delivery attempt
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from closeloop.models import CrmRef
from closeloop_local.sandboxes import outbound
from closeloop_local.sandboxes.base import Handler, Router, SandboxApp, SandboxServer, SandboxState, json_response
from closeloop_local.sandboxes.drivers import DealLine, QuotedDeal, SentWebhook, not_carried
from closeloop_local.sandboxes.limits import WindowAndDay

__all__ = [
    "SIGNATURE_VERSIONS",
    "HubSpotDriver",
    "HubSpotSandbox",
    "WebhookSettings",
    "serve",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "signed_batch_headers",
    "v3_signing_uri",
]

JSON = dict[str, Any]

# ---------------------------------------------------------------------------------------------------
# Webhook signatures (https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests)
# ---------------------------------------------------------------------------------------------------

SIGNATURE_VERSIONS = ("v1", "v2", "v3", "all")
WEBHOOK_USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon-executor"


def sign_v1(secret: str, body: bytes) -> str:
    """``X-HubSpot-Signature`` v1: hex(sha256(client_secret + raw_body))."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """``X-HubSpot-Signature`` v2: hex(sha256(client_secret + METHOD + URI + raw_body))."""
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """``X-HubSpot-Signature-v3``: base64(HMAC-SHA256(secret, METHOD + URI + raw_body + timestamp_ms)).

    The timestamp goes in as the decimal string of an integer (a float would sign ``...0.0``).
    """
    message = method.encode() + uri.encode() + body + str(int(timestamp_ms)).encode()
    return outbound.hmac_sha256_base64(secret, message)


# The %-escapes HubSpot decodes in the URI before computing a v3 signature (request-validation docs).
_V3_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
               "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}  # fmt: skip


def v3_signing_uri(uri: str) -> str:
    """The URI as HubSpot puts it into a v3 signature: the escapes above decoded, nothing else."""
    for escaped, char in _V3_DECODED.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def signed_batch_headers(
    secret: str,
    uri: str,
    body: bytes,
    timestamp_ms: int,
    signature_version: str = "all",
    method: str = "POST",
) -> dict[str, str]:
    """The headers HubSpot puts on a webhook POST of ``body`` to ``uri``.

    ``signature_version`` "v1"/"v2" send ``X-HubSpot-Signature`` + ``X-HubSpot-Signature-Version``;
    "v3" sends ``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp`` (ms); "all" (what real
    webhook deliveries carry) sends the v1 pair and the v3 pair. The v3 signature covers
    ``v3_signing_uri(uri)``, as HubSpot computes it.
    """
    if signature_version not in SIGNATURE_VERSIONS:
        raise ValueError(f"signature_version must be one of {SIGNATURE_VERSIONS}")
    headers = {"Content-Type": "application/json"}
    if signature_version in ("v1", "all"):
        headers["X-HubSpot-Signature"] = sign_v1(secret, body)
        headers["X-HubSpot-Signature-Version"] = "v1"
    elif signature_version == "v2":
        headers["X-HubSpot-Signature"] = sign_v2(secret, method, uri, body)
        headers["X-HubSpot-Signature-Version"] = "v2"
    if signature_version in ("v3", "all"):
        headers["X-HubSpot-Signature-v3"] = sign_v3(secret, method, v3_signing_uri(uri), body, timestamp_ms)
        headers["X-HubSpot-Request-Timestamp"] = str(int(timestamp_ms))
    return headers


# ---------------------------------------------------------------------------------------------------
# Object types, associations, properties and pipelines HubSpot ships with
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ObjectType:
    name: str  # path name ("line_items")
    type_id: str  # "0-8"
    singular: str  # webhook prefix ("line_item")
    batch_label: str  # "LINE_ITEM" in batch-read errors
    assoc_key: str  # key under "associations" in v3 reads: HubSpot spells line items "line items"
    id_base: int
    modified_prop: str  # contacts: lastmodifieddate, every other type: hs_lastmodifieddate
    group: str
    default_props: tuple[str, ...]  # returned when the request names no properties
    search_props: tuple[str, ...]  # matched by the search "query" string


_TYPES: dict[str, _ObjectType] = {
    t.name: t
    for t in (
        _ObjectType(
            "contacts", "0-1", "contact", "CONTACT", "contacts", 51, "lastmodifieddate",
            "contactinformation",
            ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
            ("firstname", "lastname", "email", "phone", "company"),
        ),
        _ObjectType(
            "companies", "0-2", "company", "COMPANY", "companies", 10_000_000_001, "hs_lastmodifieddate",
            "companyinformation",
            ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
            ("name", "domain", "website", "phone"),
        ),
        _ObjectType(
            "deals", "0-3", "deal", "DEAL", "deals", 20_000_000_001, "hs_lastmodifieddate",
            "dealinformation",
            ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
             "hs_object_id", "pipeline"),
            ("dealname",),
        ),
        _ObjectType(
            "line_items", "0-8", "line_item", "LINE_ITEM", "line items", 30_000_000_001,
            "hs_lastmodifieddate", "lineiteminformation",
            ("amount", "createdate", "hs_lastmodifieddate", "hs_object_id", "hs_product_id", "name",
             "price", "quantity"),
            ("name", "hs_sku"),
        ),
        _ObjectType(
            "products", "0-7", "product", "PRODUCT", "products", 1_000_000_001, "hs_lastmodifieddate",
            "productinformation",
            ("createdate", "description", "hs_lastmodifieddate", "hs_object_id", "name", "price"),
            ("name", "hs_sku", "description"),
        ),
    )
}  # fmt: skip
_TYPE_ALIASES: dict[str, str] = {}
for _t in _TYPES.values():
    for _alias in (_t.name, _t.singular, _t.type_id, _t.name.replace("_", "")):
        _TYPE_ALIASES[_alias.lower()] = _t.name


@dataclass(frozen=True)
class _AssocType:
    type_id: int
    from_type: str
    to_type: str
    name: str  # the v3 "type" string
    label: str | None
    primary: bool


# HUBSPOT_DEFINED association types (v4 typeIds). Since Feb 2024 the reverse primary labels read
# "Contact with Primary Company" / "Deal with Primary Company" (developer changelog).
_ASSOC_TYPES: tuple[_AssocType, ...] = (
    _AssocType(1, "contacts", "companies", "contact_to_company", "Primary", True),
    _AssocType(279, "contacts", "companies", "contact_to_company_unlabeled", None, False),
    _AssocType(2, "companies", "contacts", "company_to_contact", "Contact with Primary Company", True),
    _AssocType(280, "companies", "contacts", "company_to_contact_unlabeled", None, False),
    _AssocType(5, "deals", "companies", "deal_to_company", "Primary", True),
    _AssocType(341, "deals", "companies", "deal_to_company_unlabeled", None, False),
    _AssocType(6, "companies", "deals", "company_to_deal", "Deal with Primary Company", True),
    _AssocType(342, "companies", "deals", "company_to_deal_unlabeled", None, False),
    _AssocType(3, "deals", "contacts", "deal_to_contact", None, False),
    _AssocType(4, "contacts", "deals", "contact_to_deal", None, False),
    _AssocType(19, "deals", "line_items", "deal_to_line_item", None, False),
    _AssocType(20, "line_items", "deals", "line_item_to_deal", None, False),
)
_ASSOC_BY_ID = {a.type_id: a for a in _ASSOC_TYPES}


@dataclass(frozen=True)
class _Pair:
    unlabeled: _AssocType
    primary: _AssocType | None


_PAIRS: dict[tuple[str, str], _Pair] = {}
for _a in _ASSOC_TYPES:
    if not _a.primary:
        _PAIRS[(_a.from_type, _a.to_type)] = _Pair(
            _a,
            next(
                (p for p in _ASSOC_TYPES if p.primary and (p.from_type, p.to_type) == (_a.from_type, _a.to_type)),
                None,
            ),
        )

_CURRENCIES = ("AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "INR", "JPY", "MXN", "NOK",
               "NZD", "PLN", "SEK", "SGD", "USD", "ZAR")  # fmt: skip
_SEED_TIME = "2024-01-02T09:30:00.000Z"
_PIPELINES_SEED: tuple[tuple[str, str, tuple[tuple[str, str, str, bool], ...]], ...] = (
    (
        "default",
        "Sales Pipeline",
        (
            ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
            ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
            ("presentationscheduled", "Presentation Scheduled", "0.6", False),
            ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
            ("contractsent", "Contract Sent", "0.9", False),
            ("closedwon", "Closed Won", "1.0", True),
            ("closedlost", "Closed Lost", "0.0", True),
        ),
    ),
    (
        "75519611",
        "Partner Pipeline",
        (
            ("148613101", "Discovery", "0.1", False),
            ("148613102", "Proposal Sent", "0.5", False),
            ("148613103", "Won", "1.0", True),
            ("148613104", "Lost", "0.0", True),
        ),
    ),
)


def _pipelines_seed() -> list[JSON]:
    pipelines: list[JSON] = []
    for order, (pid, label, stages) in enumerate(_PIPELINES_SEED):
        pipelines.append(
            {
                "label": label,
                "displayOrder": order,
                "id": pid,
                "stages": [
                    {
                        "label": stage_label,
                        "displayOrder": index,
                        "metadata": {"isClosed": "true" if closed else "false", "probability": probability},
                        "id": stage_id,
                        "createdAt": _SEED_TIME,
                        "updatedAt": _SEED_TIME,
                        "archived": False,
                        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                    }
                    for index, (stage_id, stage_label, probability, closed) in enumerate(stages)
                ],
                "createdAt": _SEED_TIME,
                "updatedAt": _SEED_TIME,
                "archived": False,
            }
        )
    return pipelines


_FIELD_TYPES = {"string": "text", "number": "number", "datetime": "date", "date": "date", "bool": "booleancheckbox"}
_PROPERTY_TYPES = ("string", "number", "date", "datetime", "enumeration", "bool", "phone_number")


def _options(values: Iterable[str] | Iterable[tuple[str, str]]) -> list[JSON]:
    out: list[JSON] = []
    for order, item in enumerate(values):
        value, label = item if isinstance(item, tuple) else (item, item)
        out.append({"label": label, "value": value, "displayOrder": order, "hidden": False, "description": ""})
    return out


def _definition(
    name: str,
    label: str,
    ptype: str = "string",
    *,
    group: str,
    field_type: str | None = None,
    options: list[JSON] | None = None,
    read_only: bool = False,
    calculated: bool = False,
    external_options: bool = False,
    unique: bool = False,
    hubspot_defined: bool = True,
    description: str = "",
    when: str = _SEED_TIME,
) -> JSON:
    if ptype == "bool" and options is None:
        options = _options([("true", "Yes"), ("false", "No")])
    return {
        "updatedAt": when,
        "createdAt": when,
        "name": name,
        "label": label,
        "type": ptype,
        "fieldType": field_type or _FIELD_TYPES.get(ptype, "select"),
        "description": description,
        "groupName": group,
        "options": options or [],
        "displayOrder": -1,
        "calculated": calculated,
        "externalOptions": external_options,
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only,
        },
        "formField": not read_only,
    }


_LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
              "customer", "evangelist", "other")  # fmt: skip
_BILLING = ("weekly", "biweekly", "monthly", "quarterly", "per_six_months", "annually", "per_two_years",
            "per_three_years", "per_four_years", "per_five_years")  # fmt: skip

# Default properties per object type: "name | Label | type[/fieldType] | flags", where flags are
# r = read-only value, c = calculated, u = unique, x = external options (owners). Every type also gets
# hs_object_id, createdate and its last-modified property. HubSpot has no default VAT property.
# fmt: off
_PROPERTY_TABLE: dict[str, str] = {
    "contacts": """
        firstname | First Name | string
        lastname | Last Name | string
        email | Email | string | u
        phone | Phone Number | string/phonenumber
        mobilephone | Mobile Phone Number | string/phonenumber
        company | Company Name | string
        address | Street Address | string
        city | City | string
        state | State/Region | string
        zip | Postal Code | string
        country | Country/Region | string
        jobtitle | Job Title | string
        website | Website URL | string
        lifecyclestage | Lifecycle Stage | enumeration/radio
        associatedcompanyid | Primary Associated Company ID | number | rc
        hubspot_owner_id | Contact owner | enumeration | x
    """,
    "companies": """
        name | Company name | string
        domain | Company Domain Name | string
        website | Website URL | string
        phone | Phone Number | string/phonenumber
        address | Street Address | string
        address2 | Street Address 2 | string
        city | City | string
        state | State/Region | string
        zip | Postal Code | string
        country | Country/Region | string
        industry | Industry | string
        description | Description | string/textarea
        numberofemployees | Number of Employees | number
        annualrevenue | Annual Revenue | number
        lifecyclestage | Lifecycle Stage | enumeration/radio
        hubspot_owner_id | Company owner | enumeration | x
    """,
    "deals": """
        dealname | Deal Name | string
        amount | Amount | number
        closedate | Close Date | datetime
        description | Deal Description | string/textarea
        pipeline | Pipeline | enumeration
        dealstage | Deal Stage | enumeration/radio
        deal_currency_code | Currency | enumeration
        dealtype | Deal Type | enumeration/radio
        hs_is_closed_won | Is Closed Won | bool | rc
        hs_is_closed | Is Deal Closed? | bool | rc
        hubspot_owner_id | Deal owner | enumeration | x
    """,
    "line_items": """
        name | Name | string
        description | Description | string/textarea
        quantity | Quantity | number
        price | Unit price | number
        amount | Net price | number | rc
        hs_sku | SKU | string
        hs_product_id | Product ID | number
        discount | Unit discount | number
        hs_discount_percentage | Discount Percentage | number
        hs_total_discount | Total discount | number | rc
        hs_tax_rate | Tax rate | number
        hs_tax_amount | Tax amount | number
        hs_line_item_currency_code | Currency | enumeration
        hs_recurring_billing_period | Term | string
        recurringbillingfrequency | Billing frequency | enumeration
        hs_recurring_billing_start_date | Billing start date | date
        hs_billing_start_delay_days | Delay billing start by days | number
        hs_billing_start_delay_months | Delay billing start by months | number
        hs_position_on_quote | Position on quote | number
    """,
    "products": """
        name | Name | string
        description | Description | string/textarea
        price | Unit price | number
        hs_sku | SKU | string
        hs_cost_of_goods_sold | Unit cost | number
        hs_product_type | Product type | enumeration
        hs_recurring_billing_period | Term | string
        recurringbillingfrequency | Billing frequency | enumeration
    """,
}
# fmt: on
_PIPELINE_OPTIONS = [(p[0], p[1]) for p in _PIPELINES_SEED]
_STAGE_OPTIONS = [(s[0], s[1]) for p in _PIPELINES_SEED for s in p[2]]
_SEED_OPTIONS: dict[str, Sequence[str] | Sequence[tuple[str, str]]] = {
    "lifecyclestage": _LIFECYCLE,
    "pipeline": _PIPELINE_OPTIONS,
    "dealstage": _STAGE_OPTIONS,
    "deal_currency_code": _CURRENCIES,
    "hs_line_item_currency_code": _CURRENCIES,
    "dealtype": [("newbusiness", "New Business"), ("existingbusiness", "Existing Business")],
    "recurringbillingfrequency": _BILLING,
    "hs_product_type": [("inventory", "Inventory"), ("non_inventory", "Non-inventory"), ("service", "Service")],
}


# ---------------------------------------------------------------------------------------------------
# Quotes (object type 0-14): HubSpot's quotes guide (developers.hubspot.com/docs/guides/api/crm/objects/quotes)
# and PublicApiSpecs/CRM/Quotes/Rollouts/424/v3/quotes.json (the generic object components). A quote has
# no webhooks (the Webhooks v3 eventType enum names no quote.* event): a change is seen by search only.
# ---------------------------------------------------------------------------------------------------

#: hs_status: the quotes guide's approval states; APPROVAL_NOT_NEEDED and APPROVED are published.
_QUOTE_STATUSES = ("DRAFT", "APPROVAL_NOT_NEEDED", "PENDING_APPROVAL", "APPROVED", "REJECTED")
_QUOTE_PUBLISHED = frozenset({"APPROVAL_NOT_NEEDED", "APPROVED"})
_QUOTE_TYPE = _ObjectType(
    "quotes", "0-14", "quote", "QUOTE", "quotes", 40_000_000_001, "hs_lastmodifieddate", "quoteinformation",
    ("createdate", "hs_expiration_date", "hs_lastmodifieddate", "hs_object_id", "hs_status", "hs_title"),
    ("hs_title", "hs_quote_number"),
)  # fmt: skip
#: HUBSPOT_DEFINED quote association typeIds (HubSpot's associations v4 guide, "association type IDs").
_QUOTE_ASSOC_TYPES: tuple[_AssocType, ...] = (
    _AssocType(64, "quotes", "deals", "quote_to_deal", None, False),
    _AssocType(63, "deals", "quotes", "deal_to_quote", None, False),
    _AssocType(67, "quotes", "line_items", "quote_to_line_item", None, False),
    _AssocType(68, "line_items", "quotes", "line_item_to_quote", None, False),
    _AssocType(69, "quotes", "contacts", "quote_to_contact", None, False),
    _AssocType(70, "contacts", "quotes", "contact_to_quote", None, False),
    _AssocType(71, "quotes", "companies", "quote_to_company", None, False),
    _AssocType(72, "companies", "quotes", "company_to_quote", None, False),
)
# The quote properties the quotes guide names (hs_quote_link is set by HubSpot when the quote is published).
_QUOTE_PROPERTY_TABLE = """
    hs_title | Quote name | string
    hs_status | Quote approval status | enumeration
    hs_expiration_date | Expiration date | date
    hs_quote_number | Quote number | string
    hs_currency | Currency | enumeration
    hs_quote_link | Quote link | string | r
    hs_language | Language | string
    hs_locale | Locale | string
"""
_TYPES[_QUOTE_TYPE.name] = _QUOTE_TYPE
_TYPE_ALIASES.update({alias.lower(): _QUOTE_TYPE.name for alias in ("quotes", "quote", "0-14")})
_ASSOC_TYPES = (*_ASSOC_TYPES, *_QUOTE_ASSOC_TYPES)
_ASSOC_BY_ID.update({a.type_id: a for a in _QUOTE_ASSOC_TYPES})
_PAIRS.update({(a.from_type, a.to_type): _Pair(a, None) for a in _QUOTE_ASSOC_TYPES})
_PROPERTY_TABLE[_QUOTE_TYPE.name] = _QUOTE_PROPERTY_TABLE
_SEED_OPTIONS.update({"hs_status": _QUOTE_STATUSES, "hs_currency": _CURRENCIES})


def _seed_properties() -> dict[str, dict[str, JSON]]:
    seeded: dict[str, dict[str, JSON]] = {}
    for name, otype in _TYPES.items():
        group = otype.group
        defs = [
            _definition("hs_object_id", "Record ID", "number", group=group, read_only=True, unique=True),
            _definition("createdate", "Create Date", "datetime", group=group),
            _definition(otype.modified_prop, "Last Modified Date", "datetime", group=group, read_only=True),
        ]
        for line in _PROPERTY_TABLE[name].strip().splitlines():
            prop, label, kind, *rest = (part.strip() for part in line.split("|"))
            flags = rest[0] if rest else ""
            ptype, _, field_type = kind.partition("/")
            options = _SEED_OPTIONS.get(prop)
            defs.append(
                _definition(
                    prop,
                    label,
                    ptype,
                    group=group,
                    field_type=field_type or None,
                    options=None if options is None else _options(options),
                    read_only="r" in flags,
                    calculated="c" in flags,
                    unique="u" in flags,
                    external_options="x" in flags,
                )
            )
        seeded[name] = {d["name"]: d for d in defs}
    return seeded


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    """ISO-8601 with milliseconds and Z, as HubSpot prints timestamps."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _to_ms(text: str) -> int | None:
    """Epoch ms from a property value: digits are already ms, otherwise an ISO date/datetime."""
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _decimal(text: str | None) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _number_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _list_arg(request: Request, name: str) -> list[str] | None:
    """A query parameter that may repeat and/or hold a comma-separated list; None when absent."""
    if name not in request.args:
        return None
    return [v.strip() for raw in request.args.getlist(name) for v in raw.split(",") if v.strip()]


def _correlation() -> str:
    return str(uuid.uuid4())


def _error(status: int, message: str, category: str | None = None, **extra: Any) -> Response:
    correlation = _correlation()
    body: JSON = {"status": "error", "message": message, "correlationId": correlation}
    body.update(extra)
    if category is not None:
        body["category"] = category
    return json_response(body, status, {"X-HubSpot-Correlation-Id": correlation})


def _not_found() -> Response:
    return _error(404, "resource not found", "OBJECT_NOT_FOUND")


class _ApiError(Exception):
    """Raised by handlers to answer with a prepared error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class _Record:
    otype: str
    id: str
    props: dict[str, str]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None


@dataclass
class _Subscription:
    id: int
    event_type: str  # "deal.propertyChange"
    property_name: str | None = None  # propertyChange only; None = every non-system property
    active: bool = True


@dataclass
class WebhookSettings:
    """What ``POST /_sandbox/webhooks`` accepts (all fields but target_url optional).

    ``subscriptions``: "contact.creation", "deal.propertyChange" (every property),
    "deal.propertyChange:dealstage" or {"eventType": ..., "propertyName": ..., "active": ...}.
    ``mode``: "background" delivers on a worker thread as events arrive; "manual" only on flush.
    ``generic_events``: send events as the current developer platform's generic subscriptions do
    ("object.propertyChange" with ``objectTypeId`` "0-1") instead of the typed ones ("contact.propertyChange").
    Failed attempts (connection error, any non-2xx, slower than ``timeout``) are retried up to
    ``max_retries`` times, ``retry_delay`` seconds apart, with ``attemptNumber`` counting up.
    """

    target_url: str
    signature_version: str = "all"
    max_batch: int = 100
    max_retries: int = 10
    retry_delay: float = 0.1
    timeout: float = 5.0
    mode: str = "background"
    generic_events: bool = False
    subscriptions: list[_Subscription] = field(default_factory=list)

    def to_json(self) -> JSON:
        data = asdict(self)
        data["subscriptions"] = [
            {"id": s.id, "eventType": s.event_type, "propertyName": s.property_name, "active": s.active}
            for s in self.subscriptions
        ]
        return data


_EVENT_TYPE = re.compile(
    r"^(contact|company|deal|line_item|product)\."
    r"(creation|deletion|propertyChange|associationChange|merge|restore)$"
)
_NEVER_ANNOUNCED = frozenset({"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate"})


@dataclass
class _Batch:
    events: list[JSON]
    attempt: int = 0
    due: float = 0.0  # time.monotonic()


class _Dispatcher:
    """Queues webhook events and POSTs them in signed batches; one worker thread, plus flush()."""

    def __init__(self, sandbox: HubSpotSandbox) -> None:
        self._sandbox = sandbox
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[JSON] = []
        self._retries: list[_Batch] = []
        self._inflight = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self.settings: WebhookSettings | None = None
        self.deliveries: list[JSON] = []

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, settings: WebhookSettings | None) -> None:
        with self._cond:
            self.settings = settings
            if settings is None:
                self._queue.clear()
                self._retries.clear()
            self._cond.notify_all()
        if settings is not None and settings.mode == "background":
            self._ensure_thread()

    def reset(self) -> None:
        with self._cond:
            self.settings = None
            self._queue.clear()
            self._retries.clear()
            self.deliveries.clear()
            self._cond.notify_all()

    def enqueue(self, events: list[JSON]) -> None:
        if not events:
            return
        with self._cond:
            if self.settings is None:
                return
            self._queue.extend(events)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + sum(len(b.events) for b in self._retries)

    def lose_pending(self) -> int:
        """Drop every queued event and pending retry (HubSpot gave up on them); how many were dropped."""
        with self._cond:
            lost = len(self._queue) + sum(len(b.events) for b in self._retries)
            self._queue.clear()
            self._retries.clear()
            self._cond.notify_all()
            return lost

    def snapshot(self) -> list[JSON]:
        with self._cond:
            return [dict(d) for d in self.deliveries]

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- worker -------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="hubspot-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_ready_locked(include_waiting=False)
                while batch is None:
                    if self._stop:
                        return
                    self._cond.wait(self._wait_time_locked())
                    batch = self._next_ready_locked(include_waiting=False)
                self._inflight += 1
            self._attempt_and_release(batch)

    def _wait_time_locked(self) -> float | None:
        if self.settings is None or self.settings.mode != "background" or not self._retries:
            return None
        return max(0.0, min(b.due for b in self._retries) - time.monotonic())

    def _next_ready_locked(self, *, include_waiting: bool) -> _Batch | None:
        settings = self.settings
        if settings is None or (settings.mode != "background" and not include_waiting):
            return None
        if self._queue:
            events = self._queue[: settings.max_batch]
            del self._queue[: settings.max_batch]
            return _Batch(events)
        ready = [b for b in self._retries if include_waiting or b.due <= time.monotonic()]
        if not ready:
            return None
        batch = min(ready, key=lambda b: b.due)
        self._retries.remove(batch)
        return batch

    def flush(self) -> JSON:
        """Deliver every queued event and every pending retry now (waiting out retry delays)."""
        attempts = ok = 0
        while True:
            with self._cond:
                batch = self._next_ready_locked(include_waiting=True)
                if batch is None:
                    if self._inflight == 0:
                        break
                    self._cond.wait(0.05)
                    continue
                self._inflight += 1
            delay = batch.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            attempts += 1
            ok += self._attempt_and_release(batch)
        return {"attempts": attempts, "succeeded": ok, "failed": attempts - ok}

    def _attempt_and_release(self, batch: _Batch) -> bool:
        try:
            return self._attempt(batch)
        except Exception as exc:  # never let the worker thread die
            with self._cond:
                self.deliveries.append({"attempt": batch.attempt, "ok": False, "error": repr(exc)})
            return False
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _attempt(self, batch: _Batch) -> bool:
        with self._cond:
            settings = self.settings
        if settings is None:
            return False
        events = [{**event, "attemptNumber": batch.attempt} for event in batch.events]
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = int(self._sandbox.state.clock.now() * 1000)
        headers = signed_batch_headers(
            self._sandbox.client_secret, settings.target_url, body, timestamp, settings.signature_version
        )
        headers["User-Agent"] = WEBHOOK_USER_AGENT
        sent = outbound.send(settings.target_url, body, headers, settings.timeout)
        status, error, elapsed, success = sent.status, sent.detail or None, sent.elapsed, sent.ok
        if status is not None and not success:
            error = f"HTTP {status}" if elapsed <= settings.timeout else "timed out"
        with self._cond:
            self.deliveries.append(
                {
                    "id": len(self.deliveries) + 1,
                    "url": settings.target_url,
                    "attempt": batch.attempt,
                    "status": status,
                    "ok": success,
                    "error": error,
                    "event_count": len(events),
                    "duration_ms": int(elapsed * 1000),
                    "at": _iso(timestamp),
                    "headers": headers,
                    "body": body.decode(),
                }
            )
            if not success and batch.attempt < settings.max_retries:
                self._retries.append(_Batch(batch.events, batch.attempt + 1, time.monotonic() + settings.retry_delay))
        return success


class _RateLimiter(WindowAndDay):
    """HubSpot's per-token rolling 10-second window and per-account daily budget."""

    WINDOW_MS = 10_000

    def __init__(self, ten_second_limit: int, daily_limit: int) -> None:
        super().__init__(ten_second_limit, self.WINDOW_MS, daily_limit, per_second=1000)

    def take_call(self, now_ms: int) -> tuple[str | None, dict[str, str]]:
        """Count one call; returns the policy that refused it (or None) and the headers to send."""
        policy = {"day": "DAILY", "window": "TEN_SECONDLY_ROLLING"}.get(self.take(now_ms) or "")
        headers = {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(self.day_remaining(now_ms)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.WINDOW_MS),
            "X-HubSpot-RateLimit-Max": str(self.window_limit),
            "X-HubSpot-RateLimit-Remaining": str(self.window_remaining(now_ms)),
        }
        return policy, headers


_SEARCH_OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                               "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"})  # fmt: skip
_Source = tuple[str, str]  # (changeSource, sourceId) on webhook events
_UI_SOURCE: _Source = ("CRM_UI", "userId:1234567")


# ---------------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------------


class HubSpotSandbox(SandboxApp):
    """In-memory HubSpot account (portal) with one private-app token and one app's webhooks."""

    correlation_header = "X-HubSpot-Correlation-Id"

    #: What ``GET /account-info/v3/details`` reports besides the portal id and UI domain (HubSpot's example
    #: answer uses this time zone). The other currencies the deal currency property offers are the account's
    #: additional currencies.
    TIME_ZONE: ClassVar[str] = "US/Eastern"
    COMPANY_CURRENCY: ClassVar[str] = "USD"
    ACCOUNT_TYPE: ClassVar[str] = "STANDARD"

    def __init__(
        self,
        access_token: str = "pat-sandbox-token",
        client_secret: str = "sandbox-webhook-secret",
        portal_id: int = 62515,
        app_id: int = 54321,
        ten_second_limit: int = 100,
        daily_limit: int = 250000,
        client_id: str = "sandbox-client-id",
        refresh_token: str = "sandbox-refresh-token",
        oauth_token_lifetime: int = 1800,
        association_page_size: int = 500,
        embedded_association_limit: int = 100,
        ui_domain: str = "app.hubspot.com",
        account_info_scope: bool = True,
        product_scope: bool = True,
    ) -> None:
        self.access_token = access_token
        self.client_secret = client_secret
        self.client_id = client_id
        self.refresh_token = refresh_token
        self.oauth_token_lifetime = oauth_token_lifetime
        self.association_page_size = association_page_size
        self.embedded_association_limit = embedded_association_limit
        self.portal_id = portal_id
        self.ui_domain = ui_domain
        self.account_info_scope = account_info_scope
        self.product_scope = product_scope
        self.app_id = app_id
        self.state = SandboxState()
        self._limiter = _RateLimiter(ten_second_limit, daily_limit)
        self._dispatcher = _Dispatcher(self)
        self._api_source: _Source = ("INTEGRATION", str(app_id))
        self._routes = self._api_routes()
        self._reset_data()

    # -- lifecycle ----------------------------------------------------------------------------------
    def _reset_data(self) -> None:
        with self.state.lock:
            self._records: dict[str, dict[str, _Record]] = {name: {} for name in _TYPES}
            self._next_id = {name: t.id_base for name, t in _TYPES.items()}
            self._properties = _seed_properties()
            self._pipelines = _pipelines_seed()
            self._assoc: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
            self._event_id = 100
            self._subscription_id = 1_000_000
            self._oauth_tokens: dict[str, float] = {}  # access token -> expiry (sandbox clock seconds)
            self._limiter.reset()

    def reset(self) -> None:
        """Back to a freshly seeded account: no objects, default properties, no webhook settings."""
        with self.state.lock:
            self._reset_data()
            self.state.reset_log()
        self._dispatcher.reset()

    def close(self) -> None:
        """Stop the webhook worker thread (if one was started)."""
        self._dispatcher.close()

    @property
    def ten_second_limit(self) -> int:
        return self._limiter.window_limit

    @property
    def daily_limit(self) -> int:
        return self._limiter.daily_limit

    # -- quotes ---------------------------------------------------------------------------------------
    #: Whether the account lets an app create custom quote properties (POST /crm/v3/properties/quotes): the
    #: adapter's GUESSES["custom_quote_properties"]; False answers HubSpot's 400 for an object type without them.
    custom_quote_properties: bool = True

    def _quote_property_refused(self, otype: str) -> Response | None:
        if self._type(otype).name != _QUOTE_TYPE.name or self.custom_quote_properties:
            return None
        return _error(400, "Custom properties are not supported for object type quotes", "VALIDATION_ERROR")

    def _derive_quote(self, record: _Record) -> None:
        """A published quote gets its public link (``hs_quote_link``), as HubSpot sets it on publishing."""
        if record.props.get("hs_status") in _QUOTE_PUBLISHED and not record.props.get("hs_quote_link"):
            record.props["hs_quote_link"] = f"https://{self.ui_domain}/quotes/{self.portal_id}-{record.id}"

    # -- test helpers (behave like a user working in the HubSpot UI) -----------------------------
    def create_object(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: Sequence[Any] | None = None,
    ) -> JSON:
        """Create a record as a user would; fires creation/propertyChange webhooks.

        ``associations``: items of {"to_type", "to_id", "primary"?}, (to_type, to_id[, primary]) or
        HubSpot's own {"to": {"id"}, "types": [{"associationTypeId": ...}]}.
        """
        otype = self._type_or_value_error(object_type)
        with self.state.lock:
            values = self._checked(otype, properties, None)
            links = [self._helper_link(otype, item) for item in associations or ()]
            record = self._create_locked(otype, values, links, _UI_SOURCE)
            return self._render_all(record)

    def update_object(self, object_type: str, object_id: str | int, properties: Mapping[str, Any]) -> JSON:
        """Change a record as a user would; fires one propertyChange webhook per changed property."""
        otype = self._type_or_value_error(object_type)
        with self.state.lock:
            record = self._records[otype.name].get(str(object_id))
            if record is None or record.archived:
                raise KeyError(f"{otype.name} {object_id} does not exist")
            values = self._checked(otype, properties, record)
            self._update_locked(record, values, _UI_SOURCE)
            return self._render_all(record)

    def archive_object(self, object_type: str, object_id: str | int) -> None:
        """Delete a record as a user would (HubSpot archives it: restorable, read with ``archived=true``);
        fires the deletion webhook."""
        otype = self._type_or_value_error(object_type)
        with self.state.lock:
            record = self._live(otype.name, str(object_id))
            if record is None:
                raise KeyError(f"{otype.name} {object_id} does not exist")
            self._archive_locked(record, _UI_SOURCE)

    def associate(
        self, from_type: str, from_id: str | int, to_type: str, to_id: str | int, primary: bool = False
    ) -> None:
        """Associate two records (both directions, unlabeled plus the primary label when asked)."""
        a, b = self._type_or_value_error(from_type), self._type_or_value_error(to_type)
        with self.state.lock:
            for t, oid in ((a, from_id), (b, to_id)):
                if self._live(t.name, str(oid)) is None:
                    raise KeyError(f"{t.name} {oid} does not exist")
            self._link_locked(a.name, str(from_id), b.name, str(to_id), primary, _UI_SOURCE)

    def get_object(self, object_type: str, object_id: str | int) -> JSON | None:
        """The record with every property that has a value (None when missing or archived)."""
        otype = self._type_or_value_error(object_type)
        with self.state.lock:
            record = self._live(otype.name, str(object_id))
            return None if record is None else self._render_all(record)

    def configure_webhooks(self, settings: Mapping[str, Any] | None) -> WebhookSettings | None:
        """Same as ``POST /_sandbox/webhooks``; None switches webhooks off."""
        parsed = None if settings is None else self._parse_settings(settings)
        self._dispatcher.configure(parsed)
        return parsed

    def flush_webhooks(self) -> JSON:
        return self._dispatcher.flush()

    def pending_webhooks(self) -> int:
        """How many webhook events are queued or waiting for a retry."""
        return self._dispatcher.pending()

    def lose_pending_webhooks(self) -> int:
        """Drop every webhook event not yet delivered (as after HubSpot's last retry); how many were dropped."""
        return self._dispatcher.lose_pending()

    @property
    def deliveries(self) -> list[JSON]:
        return self._dispatcher.snapshot()

    # -- WSGI ---------------------------------------------------------------------------------------
    # -- the API (SandboxApp's pipeline: log, faults, then ``handle``) --------------------------------
    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        if request.path == "/oauth/v1/token":
            return self._oauth_token(request)
        return self._authorized_call(request)

    def fault_error(self, status: int) -> Response:
        if status == 429:
            return self._rate_limited("TEN_SECONDLY_ROLLING")
        return _error(status, "internal error" if status >= 500 else "error")

    def internal_error(self) -> Response:
        return _error(500, "internal error")

    def _oauth_token(self, request: Request) -> Response:
        """``POST /oauth/v1/token`` (form-encoded), refresh_token grant only; errors as HubSpot's v1 answers."""
        if request.method != "POST":
            return _error(405, f"HTTP {request.method} is not supported by this endpoint")
        form = request.form
        if form.get("grant_type") != "refresh_token":
            return _oauth_error("BAD_GRANT_TYPE", "grant_type must be refresh_token")
        if not hmac.compare_digest(form.get("client_id", ""), self.client_id):
            return _oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
            return _oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if not hmac.compare_digest(form.get("refresh_token", ""), self.refresh_token):
            return _oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        token = f"oauth-{uuid.uuid4().hex}"
        with self.state.lock:
            self._oauth_tokens[token] = self.state.clock.now() + self.oauth_token_lifetime
        body = {
            "token_type": "bearer",
            "refresh_token": self.refresh_token,
            "access_token": token,
            "expires_in": self.oauth_token_lifetime,
        }
        return json_response(body)

    @staticmethod
    def _bearer(request: Request) -> str:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        return raw.strip() if scheme.lower() == "bearer" else ""

    def _is_private_app(self, request: Request) -> bool:
        return hmac.compare_digest(self._bearer(request), self.access_token)

    def _authorization(self, request: Request) -> str:
        """ "ok", "expired" (an OAuth token past its lifetime) or "missing" (no token we know)."""
        token = self._bearer(request)
        if not token:
            return "missing"
        if self._is_private_app(request):
            return "ok"
        with self.state.lock:
            expires = self._oauth_tokens.get(token)
        if expires is None:
            return "missing"
        return "ok" if self.state.clock.now() < expires else "expired"

    def _authorized_call(self, request: Request) -> Response:
        authorization = self._authorization(request)
        if authorization == "expired":
            response = _error(401, "The OAuth token used to make this call expired.", "EXPIRED_AUTHENTICATION")
            response.headers["X-HubSpot-Auth-Failure"] = "401 Unauthorized"
            return response
        if authorization != "ok":
            response = _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
            response.headers["X-HubSpot-Auth-Failure"] = "401 Unauthorized"
            return response
        with self.state.lock:
            policy, limit_headers = self._limiter.take_call(self._now_ms())
        response = self._rate_limited(policy) if policy else self._route(request)
        response.headers.update(limit_headers)
        return response

    def _rate_limited(self, policy: str) -> Response:
        correlation = _correlation()
        window = "daily" if policy == "DAILY" else "ten_secondly_rolling"
        group = "api-calls-daily" if policy == "DAILY" else "api-calls-ten-secondly"
        body = {
            "status": "error",
            "message": f"You have reached your {window} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": correlation,
            "policyName": policy,
            "groupName": f"publicapi:private-app-{group}:{self.app_id}:{self.portal_id}",
        }
        return json_response(body, 429, {"X-HubSpot-Correlation-Id": correlation})

    def _api_routes(self) -> Router:
        """The API this sandbox serves; a handler takes the request and the path's arguments (werkzeug also serves
        HEAD with a GET route). The CRM object routes sit behind the products scopes."""
        objects, v4 = "/crm/v3/objects/<otype>", "/crm/v4/objects/<otype>/<oid>/associations"
        scoped = self._products_scoped
        routes = Router()
        routes.add("GET", objects, scoped(self._api_list_objects))
        routes.add("POST", objects, scoped(self._api_create_object))
        routes.add("POST", f"{objects}/batch/read", scoped(self._api_batch_read, reads=True))
        routes.add("POST", f"{objects}/batch/update", scoped(self._api_batch_update))
        routes.add("POST", f"{objects}/batch/create", scoped(self._api_batch_create))
        routes.add("POST", f"{objects}/search", scoped(self._api_search, reads=True))
        routes.add("GET", f"{objects}/<oid>", scoped(self._api_get_object))
        routes.add("PATCH", f"{objects}/<oid>", scoped(self._api_update_object))
        routes.add("DELETE", f"{objects}/<oid>", scoped(self._api_archive_object))
        routes.add("GET", "/crm/v3/properties/<otype>", self._api_list_properties)
        routes.add("POST", "/crm/v3/properties/<otype>", self._api_create_property)
        routes.add("GET", "/crm/v3/properties/<otype>/<name>", self._api_get_property)
        routes.add("GET", "/crm/v3/pipelines/<otype>", self._api_list_pipelines)
        routes.add("GET", "/crm/v3/pipelines/<otype>/<pid>", self._api_get_pipeline)
        routes.add("GET", "/crm/v3/pipelines/<otype>/<pid>/stages", self._api_list_stages)
        routes.add("GET", f"{v4}/<to_type>", self._api_v4_list)
        routes.add("PUT", f"{v4}/default/<to_type>/<to_id>", self._api_v4_default)
        routes.add("PUT", f"{v4}/<to_type>/<to_id>", self._api_v4_put)
        routes.add("DELETE", f"{v4}/<to_type>/<to_id>", self._api_v4_delete)
        routes.add("POST", "/crm/v4/associations/<otype>/<to_type>/batch/read", self._api_v4_batch_read)
        routes.add("GET", "/account-info/v3/details", self._api_account_details)
        return routes

    def _products_scoped(self, handler: Handler, *, reads: bool = False) -> Handler:
        """``handler``, a CRM object route, refused with HubSpot's 403 when the private app, made without the
        products scopes, calls it on products: naming the read scope for GET and for a POST that ``reads``, the
        write scope otherwise (HEAD included, as it always was)."""

        def guarded(request: Request, otype: str, **args: str) -> Response:
            products = _TYPE_ALIASES.get(otype.lower()) == "products"
            if products and not self.product_scope and self._is_private_app(request):
                access = "read" if reads or request.method == "GET" else "write"
                return _missing_scopes(f"crm.objects.products.{access}")
            response: Response = handler(request, otype, **args)
            return response

        return guarded

    def _route(self, request: Request) -> Response:
        try:
            handler, args = self._routes.match(request.method, request.path)
        except MethodNotAllowed:
            return _error(405, f"HTTP {request.method} is not supported by this endpoint")
        except (NotFound, RequestRedirect):  # a doubled slash: werkzeug would redirect; no HubSpot path has one
            return _not_found()
        try:
            response: Response = handler(request, **args)
        except _ApiError as exc:
            return exc.response
        return response

    # -- request parsing ----------------------------------------------------------------------------
    @staticmethod
    def _json_body(request: Request) -> Any:
        raw = request.get_data(cache=True)
        try:
            return json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
            raise _ApiError(
                _error(
                    400,
                    f"Invalid input JSON on line {line}, column {column}: {exc}",
                    "VALIDATION_ERROR",
                )
            ) from exc

    def _json_object(self, request: Request) -> JSON:
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _ApiError(_error(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR"))
        return body

    @staticmethod
    def _type(name: str) -> _ObjectType:
        otype = _TYPE_ALIASES.get(name.lower())
        if otype is None:
            raise _ApiError(_error(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR"))
        return _TYPES[otype]

    @staticmethod
    def _type_or_value_error(name: str) -> _ObjectType:
        otype = _TYPE_ALIASES.get(name.lower())
        if otype is None:
            raise ValueError(f"unknown HubSpot object type {name!r}")
        return _TYPES[otype]

    def _now_ms(self) -> int:
        return int(self.state.clock.now() * 1000)

    # -- records ------------------------------------------------------------------------------------
    def _live(self, otype: str, oid: str) -> _Record | None:
        record = self._records[otype].get(oid)
        return None if record is None or record.archived else record

    def _find(self, otype: _ObjectType, key: str, id_property: str | None, archived: bool = False) -> _Record | None:
        records = self._records[otype.name]
        if not id_property or id_property == "hs_object_id":
            found = records.get(key)
            return found if found is not None and found.archived == archived else None
        for record in records.values():
            value = record.props.get(id_property)
            if record.archived == archived and value is not None and value.lower() == key.lower():
                return record
        return None

    def _render(
        self, record: _Record, properties: Sequence[str] | None, associations: Sequence[str] = (), host: str = "/"
    ) -> JSON:
        otype = _TYPES[record.otype]
        known = self._properties[otype.name]
        names = set(properties) if properties else set(otype.default_props)
        names |= {"hs_object_id", "createdate", otype.modified_prop}
        out: JSON = {
            "id": record.id,
            "properties": {n: record.props.get(n) for n in sorted(names) if n in known or n in record.props},
            "createdAt": _iso(record.created_ms),
            "updatedAt": _iso(record.updated_ms),
            "archived": record.archived,
        }
        if record.archived and record.archived_ms is not None:
            out["archivedAt"] = _iso(record.archived_ms)
        rendered = self._render_associations(record, associations, host)
        if rendered:
            out["associations"] = rendered
        return out

    def _render_all(self, record: _Record) -> JSON:
        return self._render(record, sorted(record.props))

    def _render_associations(self, record: _Record, to_types: Sequence[str], host: str) -> JSON:
        """v3 shape: {"companies": {"results": [{"id": "1", "type": "contact_to_company"}, ...]}}.

        At most ``embedded_association_limit`` entries per type, in ascending id order; a longer list is cut
        there and carries ``paging.next`` (HubSpot: "if your request returns more than 100 associations, you
        will need to use the value of the after field", changelog 2020-10, "Announcing a change to how v3 CRM
        APIs return association data"). Entries are counted (an id once per association type), not distinct
        ids: the adapter's GUESSES["embedded_association_count"]. The cursor is this sandbox's offset and its
        link names the v3 associations list, which this sandbox does not serve (read the rest through v4).
        """
        out: JSON = {}
        limit = self.embedded_association_limit
        for name in to_types:
            to_name = _TYPE_ALIASES.get(name.lower())
            if to_name is None:
                continue
            results = [
                {"id": to_id, "type": _ASSOC_BY_ID[type_id].name}
                for to_id, type_ids in self._targets(record.otype, record.id, to_name)
                for type_id in sorted(type_ids, key=lambda i: not _ASSOC_BY_ID[i].primary)
            ]
            if not results:
                continue
            embedded: JSON = {"results": results[:limit]}
            if len(results) > limit:
                from_t, to_t = _TYPES[record.otype], _TYPES[to_name]
                link = f"{host}crm/v3/objects/{from_t.type_id}/{record.id}/associations/{to_t.type_id}?after={limit}"
                embedded["paging"] = {"next": {"after": str(limit), "link": link}}
            out[_TYPES[to_name].assoc_key] = embedded
        return out

    def _targets(self, otype: str, oid: str, to_type: str) -> list[tuple[str, set[int]]]:
        edges = self._assoc.get((otype, oid), {})
        found = [
            (to_id, types)
            for (t, to_id), types in edges.items()
            if t == to_type and types and self._live(to_type, to_id) is not None
        ]
        return sorted(found, key=lambda item: int(item[0]))

    # -- property validation and derived values ------------------------------------------------------
    def _problems(
        self, otype: _ObjectType, raw: Mapping[str, Any], record: _Record | None
    ) -> tuple[dict[str, str | None], list[tuple[str, str, str]]]:
        defs = self._properties[otype.name]
        values: dict[str, str | None] = {}
        problems: list[tuple[str, str, str]] = []
        for name, value in raw.items():
            definition = defs.get(name)
            if definition is None:
                problems.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                problems.append((name, "READ_ONLY_VALUE", f'Property "{name}" is read-only'))
                continue
            coerced, problem = _coerce(definition, value)
            if problem is not None:
                problems.append((name, *problem))
            else:
                values[name] = coerced
        if otype.name == "deals" and not problems:
            problems.extend(self._stage_problems(values, record))
        return values, problems

    def _stage_problems(self, values: Mapping[str, str | None], record: _Record | None) -> list[tuple[str, str, str]]:
        stage = values.get("dealstage")
        if stage is None:
            return []
        current = record.props.get("pipeline") if record is not None else None
        pipeline_id = values.get("pipeline") or current or "default"
        pipeline = next(p for p in self._pipelines if p["id"] == pipeline_id)
        if any(s["id"] == stage for s in pipeline["stages"]):
            return []
        return [("dealstage", "INVALID_OPTION", f"{stage} is not a valid deal stage for pipeline {pipeline_id}")]

    def _validation_error(self, problems: list[tuple[str, str, str]]) -> Response:
        details = [
            {
                "isValid": False,
                "message": message,
                "error": code,
                "name": name,
                "localizedErrorMessage": message,
                "portalId": self.portal_id,
            }
            for name, code, message in problems
        ]
        return _error(
            400,
            "Property values were not valid: " + json.dumps(details, separators=(",", ":")),
            "VALIDATION_ERROR",
            errors=[
                {"message": message, "code": code, "context": {"propertyName": [name]}}
                for name, code, message in problems
            ],
        )

    def _validated(self, otype: _ObjectType, raw: Any, record: _Record | None) -> dict[str, str | None]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise _ApiError(_error(400, "Invalid input JSON: properties must be an object", "VALIDATION_ERROR"))
        values, problems = self._problems(otype, raw, record)
        if problems:
            raise _ApiError(self._validation_error(problems))
        return values

    def _checked(self, otype: _ObjectType, raw: Mapping[str, Any], record: _Record | None) -> dict[str, str | None]:
        """Helper-side validation: same rules, but a ValueError instead of an HTTP answer."""
        values, problems = self._problems(otype, dict(raw), record)
        if problems:
            raise ValueError("; ".join(f"{name}: {code} ({message})" for name, code, message in problems))
        return values

    def _derive(self, record: _Record) -> None:
        """Values HubSpot calculates: line-item totals, product defaults, deal pipeline/closed flags."""
        props = record.props
        if record.otype == "deals":
            if props.get("dealstage") and not props.get("pipeline"):
                props["pipeline"] = "default"
            stage = self._stage(props.get("pipeline"), props.get("dealstage"))
            if stage is not None:
                closed = stage["metadata"]["isClosed"] == "true"
                won = closed and Decimal(stage["metadata"]["probability"]) >= 1
                props["hs_is_closed"] = "true" if closed else "false"
                props["hs_is_closed_won"] = "true" if won else "false"
        elif record.otype == "line_items":
            _derive_line_item(props)
        elif record.otype == _QUOTE_TYPE.name:
            self._derive_quote(record)

    def _stage(self, pipeline_id: str | None, stage_id: str | None) -> JSON | None:
        for pipeline in self._pipelines:
            if pipeline["id"] == pipeline_id:
                return next((s for s in pipeline["stages"] if s["id"] == stage_id), None)
        return None

    # -- writes (state.lock held) -----------------------------------------------------------------
    def _create_locked(
        self,
        otype: _ObjectType,
        values: dict[str, str | None],
        links: list[tuple[str, str, bool]],
        source: _Source,
    ) -> _Record:
        now = self._now_ms()
        oid = str(self._next_id[otype.name])
        self._next_id[otype.name] += 1
        props = {k: v for k, v in values.items() if v is not None}
        if otype.name == "contacts" and "email" in props:
            props["email"] = props["email"].lower()
        if otype.name == "line_items":
            self._copy_product(props)
        record = _Record(otype.name, oid, {}, now, now)
        record.props = {"hs_object_id": oid, "createdate": _iso(now), otype.modified_prop: _iso(now), **props}
        self._derive(record)
        self._records[otype.name][oid] = record
        events = [self._event(record, "creation", source, changeFlag="CREATED")]
        events += self._property_events(record, dict(record.props), source)
        self._dispatcher.enqueue([e for e in events if e])
        for to_type, to_id, primary in links:
            self._link_locked(otype.name, oid, to_type, to_id, primary, source)
        return record

    def _copy_product(self, props: dict[str, str]) -> None:
        product = self._live("products", props.get("hs_product_id", ""))
        if product is None:
            return
        for name in (
            "name",
            "price",
            "hs_sku",
            "description",
            "hs_recurring_billing_period",
            "recurringbillingfrequency",
        ):
            if name in product.props and name not in props:
                props[name] = product.props[name]

    def _update_locked(
        self, record: _Record, values: Mapping[str, str | None], source: _Source
    ) -> dict[str, str | None]:
        before = dict(record.props)
        for name, value in values.items():
            if value is None:
                record.props.pop(name, None)
            else:
                record.props[name] = value.lower() if name == "email" and record.otype == "contacts" else value
        self._derive(record)
        changed = {
            name: record.props.get(name)
            for name in set(before) | set(record.props)
            if before.get(name) != record.props.get(name)
        }
        if changed:
            record.updated_ms = self._now_ms()
            record.props[_TYPES[record.otype].modified_prop] = _iso(record.updated_ms)
            self._dispatcher.enqueue(self._property_events(record, changed, source))
        return changed

    def _archive_locked(self, record: _Record, source: _Source) -> None:
        record.archived = True
        record.archived_ms = record.updated_ms = self._now_ms()
        event = self._event(record, "deletion", source, changeFlag="DELETED")
        self._dispatcher.enqueue([event] if event else [])

    # -- associations (state.lock held) -------------------------------------------------------------
    def _edge(self, a: tuple[str, str], b: tuple[str, str]) -> set[int]:
        return self._assoc.setdefault(a, {}).setdefault(b, set())

    def _link_locked(self, a_type: str, a_id: str, b_type: str, b_id: str, primary: bool, source: _Source) -> None:
        pair, reverse = _PAIRS.get((a_type, b_type)), _PAIRS.get((b_type, a_type))
        if pair is None or reverse is None:
            raise ValueError(f"HubSpot has no default association from {a_type} to {b_type}")
        if primary and pair.primary is None:
            raise ValueError(f"{a_type} to {b_type} associations have no primary label")
        self._edge((a_type, a_id), (b_type, b_id)).add(pair.unlabeled.type_id)
        self._edge((b_type, b_id), (a_type, a_id)).add(reverse.unlabeled.type_id)
        if primary:
            # The company is the "primary" end: a contact (or deal) has at most one primary company.
            owner, company = (
                ((a_type, a_id), (b_type, b_id)) if b_type == "companies" else ((b_type, b_id), (a_type, a_id))
            )
            self._set_primary(owner, company, source)
        events = [
            self._association_event((a_type, a_id), (b_type, b_id), primary, False, source),
            self._association_event((b_type, b_id), (a_type, a_id), primary, False, source),
        ]
        self._dispatcher.enqueue([e for e in events if e])

    def _set_primary(self, owner: tuple[str, str], company: tuple[str, str], source: _Source) -> None:
        to_company = _PAIRS[(owner[0], "companies")].primary
        to_owner = _PAIRS[("companies", owner[0])].primary
        assert to_company is not None and to_owner is not None
        for target, types in self._assoc.get(owner, {}).items():
            if target[0] == "companies" and target != company:
                types.discard(to_company.type_id)
                self._edge(target, owner).discard(to_owner.type_id)
        self._edge(owner, company).add(to_company.type_id)
        self._edge(company, owner).add(to_owner.type_id)
        if owner[0] == "contacts":
            self._set_derived(owner, "associatedcompanyid", company[1], source)

    def _clear_primary(self, a: tuple[str, str], b: tuple[str, str], source: _Source) -> None:
        for x, y in ((a, b), (b, a)):
            edge = self._edge(x, y)
            edge.difference_update({t for t in edge if _ASSOC_BY_ID[t].primary})
        contact = a if a[0] == "contacts" else b if b[0] == "contacts" else None
        company = b if contact is a else a
        if contact is not None:
            record = self._live(*contact)
            if record is not None and record.props.get("associatedcompanyid") == company[1]:
                self._set_derived(contact, "associatedcompanyid", None, source)

    def _set_derived(self, key: tuple[str, str], name: str, value: str | None, source: _Source) -> None:
        record = self._live(*key)
        if record is None or record.props.get(name) == value:
            return
        if value is None:
            record.props.pop(name, None)
        else:
            record.props[name] = value
        self._dispatcher.enqueue(self._property_events(record, {name: value}, source))

    def _unlink_locked(self, a: tuple[str, str], b: tuple[str, str], source: _Source) -> bool:
        if not self._assoc.get(a, {}).get(b):
            return False
        self._clear_primary(a, b, source)
        self._assoc.get(a, {}).pop(b, None)
        self._assoc.get(b, {}).pop(a, None)
        events = [
            self._association_event(a, b, False, True, source),
            self._association_event(b, a, False, True, source),
        ]
        self._dispatcher.enqueue([e for e in events if e])
        return True

    # -- webhook events (state.lock held) -------------------------------------------------------------
    def _subscriptions(self, event_type: str) -> list[_Subscription]:
        settings = self._dispatcher.settings
        if settings is None:
            return []
        return [s for s in settings.subscriptions if s.active and s.event_type == event_type]

    def _envelope(self, subscription: _Subscription, otype: str, type_key: str = "objectTypeId") -> JSON:
        """The fields every event carries; with ``generic_events`` as "object.<kind>" + the type's id."""
        self._event_id += 1
        settings = self._dispatcher.settings
        generic = settings is not None and settings.generic_events
        kind = subscription.event_type.partition(".")[2]
        envelope: JSON = {
            "eventId": self._event_id,
            "subscriptionId": subscription.id,
            "portalId": self.portal_id,
            "appId": self.app_id,
            "occurredAt": self._now_ms(),
            "subscriptionType": f"object.{kind}" if generic else subscription.event_type,
            "attemptNumber": 0,
        }
        if generic:
            # Association events: the subscribed end's type as fromObjectTypeId (the adapter's
            # GUESSES["association_change_type_id"]).
            envelope[type_key] = _TYPES[otype].type_id
        return envelope

    def _event(self, record: _Record, kind: str, source: _Source, **extra: Any) -> JSON | None:
        subscriptions = self._subscriptions(f"{_TYPES[record.otype].singular}.{kind}")
        if not subscriptions:
            return None
        return {
            **self._envelope(subscriptions[0], record.otype),
            "objectId": int(record.id),
            **extra,
            "changeSource": source[0],
            "sourceId": source[1],
        }

    def _property_events(self, record: _Record, changed: Mapping[str, str | None], source: _Source) -> list[JSON]:
        events: list[JSON] = []
        for subscription in self._subscriptions(f"{_TYPES[record.otype].singular}.propertyChange"):
            for name in sorted(changed):
                wanted = subscription.property_name
                if (wanted is None and name not in _NEVER_ANNOUNCED) or wanted == name:
                    events.append(
                        {
                            **self._envelope(subscription, record.otype),
                            "objectId": int(record.id),
                            "propertyName": name,
                            "propertyValue": changed[name] or "",
                            "changeSource": source[0],
                            "sourceId": source[1],
                        }
                    )
        return events

    def _association_event(
        self, a: tuple[str, str], b: tuple[str, str], primary: bool, removed: bool, source: _Source
    ) -> JSON | None:
        subscriptions = self._subscriptions(f"{_TYPES[a[0]].singular}.associationChange")
        if not subscriptions:
            return None
        pair = _PAIRS[(a[0], b[0])]
        envelope = self._envelope(subscriptions[0], a[0], "fromObjectTypeId")
        if "fromObjectTypeId" in envelope:
            envelope["toObjectTypeId"] = _TYPES[b[0]].type_id
        return {
            **envelope,
            "changeSource": source[0],
            "associationType": pair.unlabeled.name.removesuffix("_unlabeled").upper(),
            "fromObjectId": int(a[1]),
            "toObjectId": int(b[1]),
            "associationRemoved": removed,
            "isPrimaryAssociation": primary,
            "sourceId": source[1],
        }

    # -- helper argument parsing ----------------------------------------------------------------------
    def _helper_link(self, otype: _ObjectType, item: Any) -> tuple[str, str, bool]:
        if isinstance(item, Mapping) and "to" in item:
            return self._api_link(otype, item, value_errors=True)
        if isinstance(item, Mapping):
            to_type, to_id, primary = item["to_type"], item["to_id"], bool(item.get("primary", False))
        else:
            to_type, to_id, *rest = item
            primary = bool(rest[0]) if rest else False
        target = self._type_or_value_error(str(to_type))
        if self._live(target.name, str(to_id)) is None:
            raise KeyError(f"{target.name} {to_id} does not exist")
        if (otype.name, target.name) not in _PAIRS:
            raise ValueError(f"HubSpot has no default association from {otype.name} to {target.name}")
        return target.name, str(to_id), primary

    def _api_link(self, otype: _ObjectType, item: Any, *, value_errors: bool = False) -> tuple[str, str, bool]:
        """One entry of a create body's "associations": {"to": {"id"}, "types": [{...TypeId}]}."""
        try:
            to_id = str(item["to"]["id"])
            type_ids = [int(t["associationTypeId"]) for t in item["types"]]
            kinds = [_ASSOC_BY_ID[type_id] for type_id in type_ids]
        except (KeyError, TypeError, ValueError) as exc:
            message = f"Invalid association input: {item}"
            if value_errors:
                raise ValueError(message) from exc
            raise _ApiError(_error(400, message, "VALIDATION_ERROR")) from exc
        targets = {k.to_type for k in kinds}
        problem = None
        if len(targets) != 1 or any(k.from_type != otype.name for k in kinds):
            problem = f"association types {type_ids} are not valid from {otype.name}"
        elif self._live(targets.copy().pop(), to_id) is None:
            problem = f"{targets.copy().pop()} {to_id} does not exist"
        if problem is not None:
            if value_errors:
                raise ValueError(problem)
            raise _ApiError(_error(400, problem, "VALIDATION_ERROR"))
        return targets.pop(), to_id, any(k.primary for k in kinds)

    @staticmethod
    def _parse_subscription(raw: Any, sub_id: int) -> _Subscription:
        if isinstance(raw, str):
            event_type, _, prop = raw.partition(":")
            sub = _Subscription(sub_id, event_type, prop or None)
        elif isinstance(raw, Mapping):
            sub = _Subscription(
                sub_id, str(raw.get("eventType", "")), raw.get("propertyName"), bool(raw.get("active", True))
            )
        else:
            raise ValueError(f"invalid subscription {raw!r}")
        if not _EVENT_TYPE.match(sub.event_type):
            raise ValueError(f"unknown webhook event type {sub.event_type!r}")
        return sub

    def _parse_settings(self, raw: Mapping[str, Any]) -> WebhookSettings:
        target = raw.get("target_url") or raw.get("targetUrl")
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            raise ValueError("target_url must be an http(s) URL")
        settings = WebhookSettings(target_url=target)
        for name in ("signature_version", "mode"):
            if name in raw:
                setattr(settings, name, str(raw[name]))
        for name in ("max_batch", "max_retries"):
            if name in raw:
                setattr(settings, name, int(raw[name]))
        for name in ("retry_delay", "timeout"):
            if name in raw:
                setattr(settings, name, float(raw[name]))
        settings.generic_events = _bool_setting(raw, "generic_events", settings.generic_events)
        if settings.signature_version not in SIGNATURE_VERSIONS:
            raise ValueError(f"signature_version must be one of {SIGNATURE_VERSIONS}")
        if settings.mode not in ("background", "manual"):
            raise ValueError("mode must be 'background' or 'manual'")
        if not 1 <= settings.max_batch <= 100:
            raise ValueError("max_batch must be between 1 and 100")
        with self.state.lock:
            for item in raw.get("subscriptions", []):
                self._subscription_id += 1
                settings.subscriptions.append(self._parse_subscription(item, self._subscription_id))
        return settings

    # -- API: objects -------------------------------------------------------------------------------
    def _api_get_object(self, request: Request, otype: str, oid: str) -> Response:
        t = self._type(otype)
        archived = request.args.get("archived", "false").lower() == "true"
        with self.state.lock:
            record = self._find(t, oid, request.args.get("idProperty"), archived)
            if record is None:
                return _not_found()
            body = self._render(
                record, _list_arg(request, "properties"), _list_arg(request, "associations") or (), request.host_url
            )
        return json_response(body)

    def _api_list_objects(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        archived = request.args.get("archived", "false").lower() == "true"
        limit = max(1, min(_int_arg(request.args.get("limit"), 10), 100))
        after = _int_arg(request.args.get("after"), 0)
        properties = _list_arg(request, "properties")
        associations = _list_arg(request, "associations") or ()
        with self.state.lock:
            records = sorted(
                (r for r in self._records[t.name].values() if r.archived == archived and int(r.id) >= after),
                key=lambda r: int(r.id),
            )
            body: JSON = {
                "results": [self._render(r, properties, associations, request.host_url) for r in records[:limit]]
            }
        if len(records) > limit:
            next_after = records[limit].id
            link = f"{request.host_url}crm/v3/objects/{otype}?after={next_after}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return json_response(body)

    def _api_create_object(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        with self.state.lock:
            record = self._create_checked(t, body)
            return json_response(self._render(record, sorted(record.props)), 201)

    def _create_checked(self, t: _ObjectType, body: Mapping[str, Any]) -> _Record:
        values = self._validated(t, body.get("properties"), None)
        links = [self._api_link(t, item) for item in body.get("associations") or []]
        email = values.get("email")
        if t.name == "contacts" and email:
            existing = self._find(t, email, "email")
            if existing is not None:
                raise _ApiError(_error(409, f"Contact already exists. Existing ID: {existing.id}", "CONFLICT"))
        return self._create_locked(t, values, links, self._api_source)

    def _api_update_object(self, request: Request, otype: str, oid: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        with self.state.lock:
            record = self._find(t, oid, request.args.get("idProperty"))
            if record is None:
                return _not_found()
            values = self._validated(t, body.get("properties"), record)
            self._update_locked(record, values, self._api_source)
            written = sorted(values)
            return json_response(self._render(record, written or None))

    def _api_archive_object(self, request: Request, otype: str, oid: str) -> Response:
        t = self._type(otype)
        with self.state.lock:
            record = self._find(t, oid, None)
            if record is not None:
                self._archive_locked(record, self._api_source)
        return Response(status=204)

    def _batch_inputs(self, body: JSON, limit: int = 100) -> list[Any]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise _ApiError(_error(400, "Invalid input JSON: inputs must be an array", "VALIDATION_ERROR"))
        if len(inputs) > limit:
            raise _ApiError(
                _error(
                    400,
                    f"Batch input limit exceeded: got {len(inputs)} inputs, the maximum is {limit}",
                    "VALIDATION_ERROR",
                    context={"size": [str(len(inputs))], "limit": [str(limit)]},
                )
            )
        return inputs

    def _batch_response(self, t: _ObjectType, results: list[JSON], missing: list[str], started: int) -> Response:
        body: JSON = {"status": "COMPLETE", "results": results}
        if missing:
            body["numErrors"] = 1
            body["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {t.batch_label} objects, they may be deleted or not "
                    "exist. Check that ids are valid.",
                    "context": {"ids": missing},
                }
            ]
        body["startedAt"] = _iso(started)
        body["completedAt"] = _iso(self._now_ms())
        return json_response(body, 207 if missing else 200)

    def _api_batch_read(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        started = self._now_ms()
        inputs = self._batch_inputs(body)
        archived = request.args.get("archived", "false").lower() == "true"
        properties = body.get("properties") or None
        results: list[JSON] = []
        missing: list[str] = []
        seen: set[str] = set()
        with self.state.lock:
            for item in inputs:
                key = str(item.get("id", "")) if isinstance(item, dict) else ""
                record = self._find(t, key, body.get("idProperty"), archived)
                if record is None:
                    missing.append(key)
                elif record.id not in seen:
                    seen.add(record.id)
                    results.append(self._render(record, properties))
        return self._batch_response(t, results, missing, started)

    def _api_batch_update(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        started = self._now_ms()
        inputs = self._batch_inputs(body)
        with self.state.lock:
            planned: list[tuple[_Record, dict[str, str | None]]] = []
            missing: list[str] = []
            for item in inputs:
                if not isinstance(item, dict):
                    raise _ApiError(_error(400, "Invalid input JSON: inputs must be objects", "VALIDATION_ERROR"))
                key = str(item.get("id", ""))
                record = self._find(t, key, item.get("idProperty"))
                if record is None:
                    missing.append(key)
                    continue
                planned.append((record, self._validated(t, item.get("properties"), record)))
            results = []
            for record, values in planned:
                self._update_locked(record, values, self._api_source)
                results.append(self._render(record, sorted(values) or None))
        return self._batch_response(t, results, missing, started)

    def _api_batch_create(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        started = self._now_ms()
        inputs = self._batch_inputs(body)
        with self.state.lock:
            # Validate everything first: one bad input fails the whole batch, as on HubSpot.
            for item in inputs:
                self._validated(t, item.get("properties") if isinstance(item, dict) else None, None)
            records = [self._create_checked(t, item) for item in inputs]
            results = [self._render(r, sorted(r.props)) for r in records]
        response = self._batch_response(t, results, [], started)
        response.status_code = 201
        return response

    def _api_search(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        body = self._json_object(request)
        groups = body.get("filterGroups") or []
        _check_filters(groups)
        limit = max(1, min(_int_arg(body.get("limit"), 10), 200))
        offset = _int_arg(body.get("after"), 0)
        with self.state.lock:
            records = [
                r
                for r in self._records[t.name].values()
                if not r.archived and _matches_groups(r, groups) and _matches_query(r, t, body.get("query"))
            ]
            records = _sorted_records(records, body.get("sorts") or [])
            page = records[offset : offset + limit]
            out: JSON = {"total": len(records), "results": [self._render(r, body.get("properties")) for r in page]}
        if offset + limit < len(records):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return json_response(out)

    # -- API: properties & pipelines ----------------------------------------------------------------
    def _api_list_properties(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        with self.state.lock:
            return json_response({"results": list(self._properties[t.name].values())})

    def _api_get_property(self, request: Request, otype: str, name: str) -> Response:
        t = self._type(otype)
        with self.state.lock:
            definition = self._properties[t.name].get(name)
        if definition is None:
            return _error(404, f"Unable to find property {name} for object type {t.type_id}", "OBJECT_NOT_FOUND")
        return json_response(definition)

    def _api_create_property(self, request: Request, otype: str) -> Response:
        t = self._type(otype)
        refused = self._quote_property_refused(otype)
        if refused is not None:
            return refused
        body = self._json_object(request)
        problem = _property_problem(body)
        if problem is not None:
            return _error(400, problem, "VALIDATION_ERROR")
        name = str(body["name"])
        with self.state.lock:
            if name in self._properties[t.name]:
                return _error(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
            now = _iso(self._now_ms())
            definition = _definition(
                name,
                str(body["label"]),
                str(body["type"]),
                group=str(body["groupName"]),
                field_type=str(body["fieldType"]),
                options=[dict(o) for o in body.get("options") or []],
                unique=bool(body.get("hasUniqueValue", False)),
                hubspot_defined=False,
                description=str(body.get("description", "")),
                when=now,
            )
            definition["displayOrder"] = int(body.get("displayOrder", -1))
            self._properties[t.name][name] = definition
        return json_response(definition, 201)

    def _deal_pipelines(self, otype: str) -> list[JSON]:
        if self._type(otype).name != "deals":
            raise _ApiError(_not_found())
        return self._pipelines

    def _api_list_pipelines(self, request: Request, otype: str) -> Response:
        return json_response({"results": self._deal_pipelines(otype)})

    def _api_get_pipeline(self, request: Request, otype: str, pid: str) -> Response:
        pipeline = next((p for p in self._deal_pipelines(otype) if p["id"] == pid), None)
        return _not_found() if pipeline is None else json_response(pipeline)

    def _api_list_stages(self, request: Request, otype: str, pid: str) -> Response:
        pipeline = next((p for p in self._deal_pipelines(otype) if p["id"] == pid), None)
        return _not_found() if pipeline is None else json_response({"results": pipeline["stages"]})

    # -- API: account information ---------------------------------------------------------------------
    def _api_account_details(self, request: Request) -> Response:
        """HubSpot's ``PortalInformationResponse`` for this account (Account Information API v3)."""
        if not self.account_info_scope and self._is_private_app(request):
            return _missing_scopes("oauth")
        now = datetime.fromtimestamp(self.state.clock.now(), UTC)
        offset = now.astimezone(ZoneInfo(self.TIME_ZONE)).utcoffset() or timedelta(0)
        return json_response(
            {
                "portalId": self.portal_id,
                "accountType": self.ACCOUNT_TYPE,
                "timeZone": self.TIME_ZONE,
                "companyCurrency": self.COMPANY_CURRENCY,
                "additionalCurrencies": [c for c in _CURRENCIES if c != self.COMPANY_CURRENCY],
                "utcOffset": _utc_offset(offset),
                "utcOffsetMilliseconds": int(offset.total_seconds() * 1000),
                "uiDomain": self.ui_domain,
                "dataHostingLocation": _hosting_location(self.ui_domain),
            }
        )

    # -- API: associations v4 -----------------------------------------------------------------------
    def _v4_results(self, a_type: str, a_id: str, b_type: str) -> list[JSON]:
        return [
            {
                "toObjectId": int(to_id),
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": i, "label": _ASSOC_BY_ID[i].label}
                    for i in sorted(types, key=lambda i: not _ASSOC_BY_ID[i].primary)
                ],
            }
            for to_id, types in self._targets(a_type, a_id, b_type)
        ]

    def _api_v4_list(self, request: Request, otype: str, oid: str, to_type: str) -> Response:
        a, b = self._type(otype), self._type(to_type)
        limit = max(1, min(_int_arg(request.args.get("limit"), 500), 500))
        offset = _int_arg(request.args.get("after"), 0)
        with self.state.lock:
            results = self._v4_results(a.name, oid, b.name)
        body: JSON = {"results": results[offset : offset + limit]}
        if offset + limit < len(results):
            after = str(offset + limit)
            link = f"{request.host_url}crm/v4/objects/{otype}/{oid}/associations/{to_type}?after={after}"
            body["paging"] = {"next": {"after": after, "link": link}}
        return json_response(body)

    def _v4_pair(self, otype: str, oid: str, to_type: str, to_id: str) -> tuple[_ObjectType, _ObjectType]:
        a, b = self._type(otype), self._type(to_type)
        if (a.name, b.name) not in _PAIRS:
            raise _ApiError(
                _error(400, f"No association definitions exist between {a.name} and {b.name}", "VALIDATION_ERROR")
            )
        if self._live(a.name, oid) is None or self._live(b.name, to_id) is None:
            raise _ApiError(_not_found())
        return a, b

    def _api_v4_default(self, request: Request, otype: str, oid: str, to_type: str, to_id: str) -> Response:
        started = self._now_ms()
        with self.state.lock:
            a, b = self._v4_pair(otype, oid, to_type, to_id)
            self._link_locked(a.name, oid, b.name, to_id, False, self._api_source)
        results = [
            {
                "from": {"id": x_id},
                "to": {"id": y_id},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": _PAIRS[(x.name, y.name)].unlabeled.type_id,
                },
            }
            for (x, x_id), (y, y_id) in (((a, oid), (b, to_id)), ((b, to_id), (a, oid)))
        ]
        body = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _iso(started),
            "completedAt": _iso(self._now_ms()),
        }
        return json_response(body)

    def _api_v4_put(self, request: Request, otype: str, oid: str, to_type: str, to_id: str) -> Response:
        specs = self._json_body(request)
        with self.state.lock:
            a, b = self._v4_pair(otype, oid, to_type, to_id)
            kinds = _v4_specs(specs, a.name, b.name)
            primary = any(k.primary for k in kinds)
            if not primary:
                self._clear_primary((a.name, oid), (b.name, to_id), self._api_source)
            self._link_locked(a.name, oid, b.name, to_id, primary, self._api_source)
            labels = [
                _ASSOC_BY_ID[i].label
                for i in sorted(self._edge((a.name, oid), (b.name, to_id)))
                if _ASSOC_BY_ID[i].label
            ]
        return json_response(
            {
                "fromObjectTypeId": a.type_id,
                "fromObjectId": int(oid),
                "toObjectTypeId": b.type_id,
                "toObjectId": int(to_id),
                "labels": labels,
            }
        )

    def _api_v4_delete(self, request: Request, otype: str, oid: str, to_type: str, to_id: str) -> Response:
        a, b = self._type(otype), self._type(to_type)
        with self.state.lock:
            self._unlink_locked((a.name, oid), (b.name, to_id), self._api_source)
        return Response(status=204)

    def _api_v4_batch_read(self, request: Request, otype: str, to_type: str) -> Response:
        a, b = self._type(otype), self._type(to_type)
        body = self._json_object(request)
        started = self._now_ms()
        inputs = self._batch_inputs(body, limit=1000)
        results: list[JSON] = []
        errors: list[JSON] = []
        size = self.association_page_size
        with self.state.lock:
            for item in inputs:
                key = str(item.get("id", "")) if isinstance(item, dict) else ""
                after = item.get("after") if isinstance(item, dict) else None
                offset = _int_arg(after, 0)
                if offset < 0:
                    raise _ApiError(_error(400, f"Invalid after value: {after}", "VALIDATION_ERROR"))
                found = self._v4_results(a.name, key, b.name)
                if found:
                    result: JSON = {"from": {"id": key}, "to": found[offset : offset + size]}
                    if offset + size < len(found):
                        # HubSpot's cursors are opaque strings; an offset is this sandbox's choice.
                        result["paging"] = {"next": {"after": str(offset + size)}}
                    results.append(result)
                else:
                    errors.append(_no_associations(a, b, key))
        out: JSON = {"status": "COMPLETE", "results": results}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
        out["startedAt"] = _iso(started)
        out["completedAt"] = _iso(self._now_ms())
        return json_response(out, 207 if errors else 200)

    # -- control API ----------------------------------------------------------------------------------
    def control_routes(self) -> Router:
        routes = super().control_routes()
        routes.add("POST", "/_sandbox/objects/<otype>", self._control_create)
        routes.add("GET", "/_sandbox/objects/<otype>/<oid>", self._control_read)
        routes.add("PATCH", "/_sandbox/objects/<otype>/<oid>", self._control_update)
        routes.add("POST", "/_sandbox/associations", self._control_associate)
        routes.add("GET", "/_sandbox/webhooks", lambda body: self._webhook_settings(self._dispatcher.settings))
        routes.add(
            "POST", "/_sandbox/webhooks", lambda body: self._webhook_settings(self.configure_webhooks(body or None))
        )
        routes.add("POST", "/_sandbox/webhooks/flush", lambda body: self.flush_webhooks())
        routes.add("GET", "/_sandbox/webhooks/deliveries", self._control_deliveries)
        return routes

    def clock_reading(self) -> JSON:
        now = self._now_ms()
        return {"now": _iso(now), "now_ms": now}

    def _control_create(self, body: JSON, otype: str) -> Response:
        return json_response(self.create_object(otype, body.get("properties") or {}, body.get("associations")), 201)

    def _control_read(self, body: JSON, otype: str, oid: str) -> JSON:
        found = self.get_object(otype, oid)
        if found is None:
            raise KeyError(f"{otype} {oid} does not exist")
        return found

    def _control_update(self, body: JSON, otype: str, oid: str) -> JSON:
        return self.update_object(otype, oid, body.get("properties") or {})

    def _control_associate(self, body: JSON) -> Response:
        self.associate(
            str(body["from_type"]), body["from_id"], str(body["to_type"]), body["to_id"], bool(body.get("primary"))
        )
        return json_response({"ok": True}, 201)

    @staticmethod
    def _webhook_settings(settings: WebhookSettings | None) -> JSON:
        return {"settings": None if settings is None else settings.to_json()}

    def _control_deliveries(self, body: JSON) -> JSON:
        return {"deliveries": self.deliveries, "pending": self._dispatcher.pending()}


# ---------------------------------------------------------------------------------------------------
# Pure helpers used by the handlers
# ---------------------------------------------------------------------------------------------------


def _int_arg(raw: Any, default: int) -> int:
    try:
        return int(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        raise _ApiError(_error(400, f"Invalid integer value: {raw}", "VALIDATION_ERROR")) from None


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(Decimal(repr(value)))
    if isinstance(value, str):
        return value
    return None


def _coerce(definition: JSON, value: Any) -> tuple[str | None, tuple[str, str] | None]:
    """A written value as HubSpot stores it (a string; None = cleared) or (error code, message)."""
    text = _as_text(value)
    if value is not None and text is None:
        return None, ("INVALID_PROPERTY_VALUE", f"{json.dumps(value)} is not a valid property value")
    if not text:
        return None, None
    ptype = definition["type"]
    if ptype == "number" and _decimal(text) is None:
        return None, ("INVALID_FLOAT", f"{text} was not a valid number.")
    if ptype in ("datetime", "date"):
        return _coerce_date(ptype, text)
    if ptype in ("enumeration", "bool") and not definition.get("externalOptions"):
        return _coerce_option(definition, text)
    return text, None


def _coerce_option(definition: JSON, text: str) -> tuple[str | None, tuple[str, str] | None]:
    allowed = [o["value"] for o in definition["options"]]
    chosen = text.split(";") if definition["fieldType"] == "checkbox" else [text]
    if definition["type"] == "bool":
        chosen = [c.lower() for c in chosen]
    bad = [c for c in chosen if c not in allowed]
    if bad:
        return None, ("INVALID_OPTION", f"{bad[0]} was not one of the allowed options: [{', '.join(allowed)}]")
    return ";".join(chosen), None


def _coerce_date(ptype: str, text: str) -> tuple[str | None, tuple[str, str] | None]:
    ms = _to_ms(text)
    if ms is None:
        return None, ("INVALID_DATE", f"{text} is not a valid date")
    if ptype == "date":
        return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat(), None
    return (text if not text.isdigit() else _iso(ms)), None


def _derive_line_item(props: dict[str, str]) -> None:
    """Net price (``amount``) = quantity x (price - unit discount), less the discount percentage."""
    price, quantity = _decimal(props.get("price")), _decimal(props.get("quantity"))
    if price is None or quantity is None:
        props.pop("amount", None)
        return
    gross = price * quantity
    unit_discount = _decimal(props.get("discount")) or Decimal(0)
    percentage = _decimal(props.get("hs_discount_percentage")) or Decimal(0)
    discount = unit_discount * quantity + (gross - unit_discount * quantity) * percentage / 100
    props["amount"] = _number_text(gross - discount)
    if discount:
        props["hs_total_discount"] = _number_text(discount)
    else:
        props.pop("hs_total_discount", None)


def _property_problem(body: JSON) -> str | None:
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        return f"Property is missing required fields: {missing}"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(body["name"])):
        return f"Property name '{body['name']}' is invalid: use lower case letters, digits and underscores"
    if body["type"] not in _PROPERTY_TYPES:
        return f"Property type '{body['type']}' is not one of {list(_PROPERTY_TYPES)}"
    options = body.get("options") or []
    problem = _options_problem(options)
    if problem is not None:
        return problem
    if body["type"] == "enumeration" and not options and body["fieldType"] != "booleancheckbox":
        return "Enumeration properties need options"
    return None


def _options_problem(options: Any) -> str | None:
    """OptionInput in HubSpot's CRM Properties v3 spec: label, value and hidden are required."""
    if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
        return "Property options must be a list of objects"
    for index, option in enumerate(options):
        missing = [k for k, kind in (("label", str), ("value", str), ("hidden", bool))
                   if not isinstance(option.get(k), kind)]  # fmt: skip
        if missing:
            return f"Property option {index} is missing required fields or has the wrong type: {missing}"
        order = option.get("displayOrder")
        if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
            return f"Property option {index}: displayOrder must be an integer"
    return None


def _bool_setting(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _oauth_error(status: str, message: str) -> Response:
    """A v1 OAuth endpoint refusal: 400 with HubSpot's ``status`` code (e.g. BAD_REFRESH_TOKEN)."""
    correlation = _correlation()
    body = {"status": status, "message": message, "correlationId": correlation}
    return json_response(body, 400, {"X-HubSpot-Correlation-Id": correlation})


def _missing_scopes(*scopes: str) -> Response:
    """HubSpot's 403 for a token without a scope the endpoint requires (category ``MISSING_SCOPES``)."""
    # The body as HubSpot's community threads quote it: the adapter's GUESSES["missing_scopes_body"].
    return _error(
        403,
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes "
        "here: https://developers.hubspot.com/scopes.",
        "MISSING_SCOPES",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(scopes)},
            }
        ],
        links={"scopes": "https://developers.hubspot.com/scopes"},
    )


def _utc_offset(offset: timedelta) -> str:
    """``-04:00`` as in HubSpot's example answer; east of UTC ``+01:00`` (GUESSES["account_info_formats"])."""
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _hosting_location(ui_domain: str) -> str:
    """``app-eu1.hubspot.com`` -> ``eu1`` (HubSpot's example answer pairs the two).

    ``app.hubspot.com`` (and any other domain) is the North American data centre, ``na1``: the adapter's
    GUESSES["account_info_formats"].
    """
    match = re.fullmatch(r"app-([a-z]+\d+)\.hubspot\.com", ui_domain)
    return match.group(1) if match else "na1"


def _v4_specs(specs: Any, a_type: str, b_type: str) -> list[_AssocType]:
    if not isinstance(specs, list) or not specs:
        raise _ApiError(_error(400, "Invalid input JSON: expected a list of association types", "VALIDATION_ERROR"))
    kinds: list[_AssocType] = []
    for spec in specs:
        kind = _ASSOC_BY_ID.get(_int_arg(spec.get("associationTypeId"), 0)) if isinstance(spec, dict) else None
        category = spec.get("associationCategory") if isinstance(spec, dict) else None
        if kind is None or category != "HUBSPOT_DEFINED" or (kind.from_type, kind.to_type) != (a_type, b_type):
            raise _ApiError(
                _error(400, f"Invalid association type {spec} from {a_type} to {b_type}", "VALIDATION_ERROR")
            )
        kinds.append(kind)
    return kinds


def _no_associations(a: _ObjectType, b: _ObjectType, key: str) -> JSON:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {b.singular} is associated with {a.singular} {key}.",
        "context": {"fromObjectId": [key], "fromObjectType": [a.singular], "toObjectType": [b.singular]},
    }


def _check_filters(groups: Any) -> None:
    if not isinstance(groups, list):
        raise _ApiError(_error(400, "filterGroups must be an array", "VALIDATION_ERROR"))
    for group in groups:
        for flt in group.get("filters", []) if isinstance(group, dict) else [None]:
            if not isinstance(flt, dict) or flt.get("operator") not in _SEARCH_OPERATORS or "propertyName" not in flt:
                raise _ApiError(_error(400, f"Invalid filter: {flt}", "VALIDATION_ERROR"))


def _comparable(text: str | None) -> Decimal | str | None:
    if text is None:
        return None
    number = _decimal(text)
    if number is not None:
        return number
    ms = _to_ms(text) if len(text) >= 10 and text[4:5] == "-" else None
    return Decimal(ms) if ms is not None else text.lower()


def _compare(op: str, actual: str | None, flt: JSON) -> bool:
    left, right = _comparable(actual), _comparable(_as_text(flt.get("value")))
    if left is None or right is None or isinstance(left, Decimal) != isinstance(right, Decimal):
        return False
    if op == "BETWEEN":
        high = _comparable(_as_text(flt.get("highValue")))
        return high is not None and type(high) is type(left) and right <= left <= high  # type: ignore[operator]
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "LT": lambda x, y: x < y,
        "LTE": lambda x, y: x <= y,
        "GT": lambda x, y: x > y,
        "GTE": lambda x, y: x >= y,
    }
    return checks[op](left, right)


def _matches_filter(record: _Record, flt: JSON) -> bool:  # noqa: PLR0911 - one return per operator family
    op = flt["operator"]
    actual = record.props.get(flt["propertyName"])
    if op == "HAS_PROPERTY":
        return actual is not None
    if op == "NOT_HAS_PROPERTY":
        return actual is None
    if op in ("IN", "NOT_IN"):
        wanted = {str(v).lower() for v in flt.get("values") or []}
        return (actual is not None and actual.lower() in wanted) == (op == "IN")
    if op in ("EQ", "NEQ"):
        equal = actual is not None and _comparable(actual) == _comparable(_as_text(flt.get("value")))
        return equal == (op == "EQ")
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = re.escape(str(flt.get("value", "")).lower()).replace(r"\*", ".*")
        found = actual is not None and re.search(rf"(^|\W){pattern}($|\W)", actual.lower()) is not None
        return found == (op == "CONTAINS_TOKEN")
    return _compare(op, actual, flt)


def _matches_groups(record: _Record, groups: list[Any]) -> bool:
    if not groups:
        return True
    return any(all(_matches_filter(record, f) for f in g.get("filters", [])) for g in groups)


def _matches_query(record: _Record, otype: _ObjectType, query: Any) -> bool:
    if not query:
        return True
    needle = str(query).lower()
    return any(needle in (record.props.get(p) or "").lower() for p in otype.search_props)


def _sorted_records(records: list[_Record], sorts: list[Any]) -> list[_Record]:
    ordered = sorted(records, key=lambda r: int(r.id))
    for spec in reversed(sorts):
        if isinstance(spec, str):
            name, descending = spec.lstrip("-"), spec.startswith("-")
        else:
            name, descending = spec.get("propertyName", ""), spec.get("direction") == "DESCENDING"
        present = [r for r in ordered if r.props.get(name) is not None]
        absent = [r for r in ordered if r.props.get(name) is None]
        present.sort(key=lambda r: _sort_key(r.props[name]), reverse=descending)
        ordered = present + absent
    return ordered


def _sort_key(text: str) -> tuple[int, Any]:
    value = _comparable(text)
    return (0, value) if isinstance(value, Decimal) else (1, value)


def serve(sandbox: HubSpotSandbox | None = None, port: int = 0) -> tuple[HubSpotSandbox, SandboxServer]:
    """Start a HubSpot sandbox on 127.0.0.1 (``port=0`` picks a free port); stop the server when done."""
    sandbox = sandbox or HubSpotSandbox()
    server = SandboxServer(sandbox, port=port).start()
    return sandbox, server


class HubSpotDriver:
    """CrmDriver for the HubSpot sandbox: what a salesperson and an admin do in HubSpot."""

    name = "hubspot"
    #: The company property Closeloop reads tax numbers from (``HubSpotCrm.tax_number_property``).
    tax_number_property = "vat_number"

    def __init__(self, sandbox: HubSpotSandbox, base_url: str, *, oauth: bool = False) -> None:
        """``oauth``: point Closeloop at the sandbox as an OAuth app (client id, secret and refresh token; access
        tokens from ``/oauth/v1/token`` that expire) instead of as a private app with a fixed token."""
        self.sandbox = sandbox
        self.base_url = base_url
        self.oauth = oauth
        self.state = sandbox.state
        self._has_tax_property = False
        self._made_properties: set[str] = set()  # properties made by _ensure_property (quote to cash)

    def environment(self, base_url: str) -> dict[str, str]:
        common = {
            "CRM_PROVIDER": self.name,
            "HUBSPOT_API_URL": base_url,
            "HUBSPOT_CLIENT_SECRET": self.sandbox.client_secret,
        }
        if not self.oauth:
            return {**common, "HUBSPOT_ACCESS_TOKEN": self.sandbox.access_token}
        return {
            **common,
            # Empty, not absent: a private-app token set in the developer's shell would otherwise win.
            "HUBSPOT_ACCESS_TOKEN": "",
            "HUBSPOT_CLIENT_ID": self.sandbox.client_id,
            "HUBSPOT_REFRESH_TOKEN": self.sandbox.refresh_token,
        }

    def subscribe(self, webhook_base_url: str) -> None:
        """One target URL per app, as HubSpot has it: every event goes to the contacts route."""
        self.sandbox.configure_webhooks(
            {
                "target_url": f"{webhook_base_url.rstrip('/')}/webhooks/hubspot/contacts",
                "signature_version": "v3",
                "mode": "manual",
                "subscriptions": [
                    "contact.creation",
                    "contact.propertyChange",
                    "company.creation",
                    "company.propertyChange",
                    "deal.creation",
                    "deal.propertyChange:dealstage",
                    "product.creation",
                    "product.propertyChange",
                    "product.deletion",
                ],
            }
        )

    def flush_webhooks(self) -> None:
        self.sandbox.flush_webhooks()

    def lose_pending_webhooks(self) -> None:
        self.sandbox.lose_pending_webhooks()

    def sent_webhooks(self) -> list[SentWebhook]:
        return [
            SentWebhook(str(d["url"]), dict(d["headers"]), str(d["body"]).encode(), d.get("status"))
            for d in self.sandbox.deliveries
            if "body" in d
        ]

    def forged_webhook(self, webhook_base_url: str) -> SentWebhook:
        """A company.creation batch signed (v3, current timestamp) with a guessed client secret."""
        url = f"{webhook_base_url.rstrip('/')}/webhooks/hubspot/contacts"
        event = {"eventId": 1, "subscriptionId": 1, "portalId": self.sandbox.portal_id, "occurredAt": 1,
                 "subscriptionType": "company.creation", "objectId": 1}  # fmt: skip
        body = json.dumps([event]).encode()
        headers = signed_batch_headers("a-guessed-secret", url, body, int(time.time() * 1000), "v3")
        return SentWebhook(url, {**headers, "Content-Type": "application/json"}, body)

    def _ensure_tax_property(self) -> None:
        if self._has_tax_property:
            return
        response = httpx.post(
            f"{self.base_url}/crm/v3/properties/companies",
            json={
                "name": self.tax_number_property,
                "label": "VAT number",
                "type": "string",
                "fieldType": "text",
                "groupName": "companyinformation",
            },
            headers={"Authorization": f"Bearer {self.sandbox.access_token}"},
            timeout=10,
        )
        if response.status_code not in (201, 409):
            response.raise_for_status()
        self._has_tax_property = True

    def create_company(
        self, name: str, *, email: str = "", tax_number: str = "", country: str = "", city: str = ""
    ) -> CrmRef:
        properties = {"name": name, "country": country, "city": city}
        if tax_number:
            self._ensure_tax_property()
            properties[self.tax_number_property] = tax_number
        company = self.sandbox.create_object("companies", {k: v for k, v in properties.items() if v})
        if email:
            self.sandbox.create_object(
                "contacts",
                {"firstname": "Accounts", "lastname": name, "email": email},
                associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
            )
        return CrmRef(crm=self.name, object_type="company", object_id=str(company["id"]))

    def update_company(self, ref: CrmRef, *, name: str | None = None, phone: str | None = None) -> None:
        changes = {k: v for k, v in {"name": name, "phone": phone}.items() if v is not None}
        self.sandbox.update_object("companies", ref.object_id, changes)

    def create_won_deal(self, company: CrmRef, lines: Sequence[DealLine], *, currency: str) -> CrmRef:
        amount = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
        deal = self.sandbox.create_object(
            "deals",
            {
                "dealname": f"Deal for company {company.object_id}",
                "amount": str(amount),
                "dealstage": "contractsent",
                "pipeline": "default",
                "deal_currency_code": currency,
                "closedate": datetime.now(UTC).date().isoformat(),
            },
            associations=[{"to_type": "companies", "to_id": company.object_id, "primary": True}],
        )
        for line in lines:
            properties = {"name": line.name, "hs_sku": line.sku, "quantity": str(line.quantity),
                          "price": str(line.unit_price)}  # fmt: skip
            if line.product is not None:
                properties["hs_product_id"] = line.product.object_id  # the product the line was made from
            self.sandbox.create_object(
                "line_items", properties, associations=[{"to_type": "deals", "to_id": deal["id"]}]
            )
        self.sandbox.update_object("deals", deal["id"], {"dealstage": "closedwon"})
        return CrmRef(crm=self.name, object_type="deal", object_id=str(deal["id"]))

    def create_product(self, sku: str, name: str, price: Decimal, cost: Decimal | None = None) -> CrmRef:
        properties = {"name": name, "hs_sku": sku, "price": str(price)}
        if cost is not None:
            properties["hs_cost_of_goods_sold"] = str(cost)
        product = self.sandbox.create_object("products", properties)
        return CrmRef(crm=self.name, object_type="product", object_id=str(product["id"]))

    def update_product(self, ref: CrmRef, *, price: Decimal) -> None:
        self.sandbox.update_object("products", ref.object_id, {"price": str(price)})

    def _closeloop_properties(self, object_type: str, object_id: str) -> dict[str, str]:
        record = self.sandbox.get_object(object_type, object_id) or {}
        properties = record.get("properties") or {}
        return {k: str(v) for k, v in properties.items() if k.startswith("closeloop_") and v not in (None, "")}

    def deal_fields(self, deal: CrmRef) -> dict[str, str]:
        return self._closeloop_properties("deals", deal.object_id)

    def customer_fields(self, ref: CrmRef) -> dict[str, str]:
        return self._closeloop_properties("companies" if ref.object_type == "company" else "contacts", ref.object_id)

    # -- quote to cash (issue 12): supplier products, quotes made from a deal, recurring lines -----------------

    #: Canonical frequency -> HubSpot's ``recurringbillingfrequency`` option and its months (0: weekly terms).
    BILLING_FREQUENCIES: ClassVar[dict[str, tuple[str, int]]] = {
        "weekly": ("weekly", 0),
        "monthly": ("monthly", 1),
        "quarterly": ("quarterly", 3),
        "semi_annual": ("per_six_months", 6),
        "annual": ("annually", 12),
    }

    def create_supplier_product(
        self, sku: str, name: str, price: Decimal, *, cost: Decimal, supplier: str, currency: str
    ) -> CrmRef:
        """The product with ``hs_cost_of_goods_sold`` and ``closeloop_supplier`` (the property ``closeloop
        setup`` makes; the driver makes it once, as the stack runs no setup). ``currency`` is not kept: a
        single-currency portal's product prices are in the portal's currency, the deal's."""
        self._ensure_property("products", "closeloop_supplier", "Supplier", "productinformation")
        properties = {"name": name, "hs_sku": sku, "price": str(price), "hs_cost_of_goods_sold": str(cost),
                      "closeloop_supplier": supplier}  # fmt: skip
        product = self.sandbox.create_object("products", properties)
        return CrmRef(crm=self.name, object_type="product", object_id=str(product["id"]))

    def create_quoted_deal(
        self, company: CrmRef, lines: Sequence[DealLine], *, currency: str, expires: date
    ) -> QuotedDeal:
        """The deal (open) with its line items, then a quote with copies of them, as HubSpot makes a quote
        from a deal (a quote has line items of its own), associated with the deal and the company; DRAFT,
        then APPROVED. HubSpot sends no quote webhooks: the poller's catch-up scan finds it."""
        deal = self._open_deal(company, lines, currency)
        quote = self.sandbox.create_object(
            "quotes",
            {
                "hs_title": f"Quote for deal {deal}",
                "hs_status": "DRAFT",
                "hs_expiration_date": expires.isoformat(),
                "hs_currency": currency,
            },  # fmt: skip
            associations=[{"to_type": "deals", "to_id": deal}, {"to_type": "companies", "to_id": company.object_id}],
        )
        for line in lines:
            self.sandbox.create_object(
                "line_items", self._line_properties(line), associations=[{"to_type": "quotes", "to_id": quote["id"]}]
            )
        self.sandbox.update_object("quotes", quote["id"], {"hs_status": "APPROVED"})
        return QuotedDeal(
            deal=CrmRef(crm=self.name, object_type="deal", object_id=str(deal)),
            quote=CrmRef(crm=self.name, object_type="quote", object_id=str(quote["id"])),
        )

    def win_deal(self, deal: CrmRef) -> None:
        self.sandbox.update_object("deals", deal.object_id, {"dealstage": "closedwon"})

    def quote_fields(self, quote: CrmRef) -> dict[str, str]:
        return self._closeloop_properties("quotes", quote.object_id)

    def _open_deal(self, company: CrmRef, lines: Sequence[DealLine], currency: str) -> str:
        """The deal's amount is its lines' total, a recurring line counted for one billing period (the portal's
        deal amount set to the line items' sum): what Closeloop's amount checks expect (the one-off invoice
        bills the deal amount less its recurring lines, which the schedule bills)."""
        amount = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
        deal = self.sandbox.create_object(
            "deals",
            {
                "dealname": f"Deal for company {company.object_id}",
                "amount": str(amount),
                "dealstage": "contractsent",
                "pipeline": "default",
                "deal_currency_code": currency,
                "closedate": datetime.now(UTC).date().isoformat(),
            },  # fmt: skip
            associations=[{"to_type": "companies", "to_id": company.object_id, "primary": True}],
        )
        for line in lines:
            self.sandbox.create_object(
                "line_items", self._line_properties(line), associations=[{"to_type": "deals", "to_id": deal["id"]}]
            )
        return str(deal["id"])

    def _line_properties(self, line: DealLine) -> dict[str, str]:
        """A line item's properties: the product it is made from, and its recurring terms (the line items
        guide: ``recurringbillingfrequency``, the term ``hs_recurring_billing_period`` as ISO-8601 ``PnM`` or
        ``PnW``, ``hs_recurring_billing_start_date``)."""
        properties = {"name": line.name, "hs_sku": line.sku, "quantity": str(line.quantity),
                      "price": str(line.unit_price)}  # fmt: skip
        if line.product is not None:
            properties["hs_product_id"] = line.product.object_id
        if line.recurring is not None:
            terms = line.recurring
            if terms.frequency not in self.BILLING_FREQUENCIES:
                raise not_carried("HubSpot", f"a {terms.frequency} recurring line")
            option, months = self.BILLING_FREQUENCIES[terms.frequency]
            period = f"P{terms.periods}W" if months == 0 else f"P{terms.periods * months}M"
            properties |= {"recurringbillingfrequency": option, "hs_recurring_billing_period": period,
                           "hs_recurring_billing_start_date": terms.start.isoformat()}  # fmt: skip
        return properties

    def _ensure_property(self, object_type: str, name: str, label: str, group: str) -> None:
        if name in self._made_properties:
            return
        response = httpx.post(
            f"{self.base_url}/crm/v3/properties/{object_type}",
            json={"name": name, "label": label, "type": "string", "fieldType": "text", "groupName": group},
            headers={"Authorization": f"Bearer {self.sandbox.access_token}"},
            timeout=10,
        )
        if response.status_code not in (201, 409):
            response.raise_for_status()
        self._made_properties.add(name)

    # -- end of quote to cash --------------------------------------------------------------------------------
