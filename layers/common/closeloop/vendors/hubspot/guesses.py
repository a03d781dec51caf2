"""What the HubSpot adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: Everything this adapter assumes about HubSpot without a published source, in one place: what is assumed,
#: how the code stays safe if it is wrong, and what would confirm it. Code and sandbox comments name the key.
GUESSES: dict[str, str] = {
    "secondly_wait": (
        "A 429 whose policyName is SECONDLY (CRM search: 5 requests a second per account) is waited out for one "
        "second when no Retry-After comes; HubSpot's 'API usage guidelines and limits' name the ten-second and "
        "daily policies and document no Retry-After for CRM APIs, but give no wait for the per-second one. Safe "
        "if wrong: a longer real window only answers another 429, retried with growing backoff (its floor is "
        "the retry policy's backoff, not this second) until the attempts run out and RateLimited re-queues the "
        "work. Confirm: the body and headers of a real 429 from CRM search called faster than 5 a second."
    ),
    "association_change_type_id": (
        "A generic object.associationChange event names its subscribed end's type as fromObjectTypeId, beside "
        "fromObjectId; HubSpot's changelog 'Public Beta: Generic Webhook Subscriptions' (2024-08) lists "
        "objectTypeId for the other five event kinds only (the sandbox sends fromObjectTypeId and "
        "toObjectTypeId). Safe if wrong: an event carrying neither objectTypeId nor fromObjectTypeId names no "
        "object type we follow and is ignored, and the CRM poll still sees the change. Confirm: a real "
        "object.associationChange delivery to a generic subscription."
    ),
    "embedded_association_count": (
        "The 100 associations a v3 object read embeds per type (changelog 2020-10, 'Announcing a change to how "
        "v3 CRM APIs return association data') count entries, an id listed once per association type (a "
        "primary-labelled company appears twice), not distinct ids. Safe if wrong: the adapter reads the list "
        "again in full through the v4 batch read at 100 entries as well as on a paging.next cursor, so either "
        "counting finds every id (at worst one extra call). Confirm: a real v3 read of an object with 100 "
        "distinct associated ids, one of them primary: whether paging.next comes at 100 entries or 100 ids."
    ),
    "account_info_private_app": (
        "GET /account-info/v3/details answers a private app's token (the spec lists the oauth scope for it, "
        "which a private app's scope picker does not offer). Safe if wrong: a refusal (403/404) means no deal "
        "links on invoices, nothing else; the sandbox keeps that path under test (account_info_scope=False). "
        "Confirm: a real private app's answer to that call."
    ),
    "missing_scopes_body": (
        "The 403 MISSING_SCOPES body (message, errors[].context.requiredGranularScopes, links.scopes) as "
        "HubSpot's community threads quote it. Safe if wrong: the adapter reads only the status. Confirm: a "
        "real 403 from a private app without the scope."
    ),
    "account_info_formats": (
        "utcOffset east of UTC is written '+01:00' (the example shows only '-04:00'), and app.hubspot.com means "
        "the North American data centre, na1 (the example pairs app-eu1 with eu1). Safe if wrong: the adapter "
        "reads only portalId and uiDomain. Confirm: answers from a US account and from an account east of UTC."
    ),
    "product_unit_cost_property": (
        "A product's unit cost is its default property hs_cost_of_goods_sold (labelled 'Unit cost' in HubSpot's "
        "product library); the Products OpenAPI file lists no properties (they are per account), and HubSpot's "
        "products guide names only name, description, price and hs_sku. Safe if wrong: an account without it "
        "answers no value (HubSpot ignores unknown requested properties), so Product.unit_cost is None and the "
        "item's cost is left as accounting has it (an ItemDraft's None is 'not set by us'). Confirm: GET "
        "/crm/v3/properties/products/hs_cost_of_goods_sold on a real account (label, type number)."
    ),
    "custom_quote_properties": (
        "An app can create custom quote properties (POST /crm/v3/properties/quotes): the Properties API takes any "
        "objectType, and HubSpot's property settings list quote properties, but no published page says custom "
        "ones may be made for quotes on every account tier. Safe if wrong: a 400 or 403 to that call makes the "
        "adapter create the closeloop_quote_* properties on deals instead and write each quote's number, "
        "status and link on its deal (ensure_quote_properties / write_quote), so the write-back still lands "
        "where a person sees it. Confirm: POST /crm/v3/properties/quotes on a real account (Starter and Pro)."
    ),
    "quote_property_group": (
        "Custom quote properties go in the group 'quoteinformation' (the default groups of the other objects are "
        "'<object>information'; no page names the quotes one). Safe if wrong: HubSpot refuses an unknown group "
        "with a 400, which ensure_quote_properties treats as custom quote properties refused (they go on the "
        "deal, GUESSES['custom_quote_properties']). Confirm: GET /crm/v3/properties/quotes/groups."
    ),
    "quote_webhooks": (
        "HubSpot sends no quote events: the Webhooks v3 spec's eventType enum (PublicApiSpecs/Webhooks, "
        "checked at commit 99893791383254f52aa07662baeb98aad65cc710) lists no quote.*; generic object.* "
        "subscriptions might cover quotes (object type 0-14) but nothing says so. Safe if wrong: quotes are "
        "found by the catch-up scan (search on hs_lastmodifieddate), a quote webhook would only be faster. "
        "Confirm: try to subscribe an app to object.propertyChange for objectTypeId 0-14."
    ),
    # -- recurring line items (closeloop.vendors.hubspot.mapping.recurring_terms) ---------------------------
    "billing_start_delay": (
        "A recurring line item without hs_recurring_billing_start_date but with hs_billing_start_delay_days or "
        "hs_billing_start_delay_months starts billing that long after the deal's close date. The line items "
        "guide names the start date and the term (hs_recurring_billing_period, ISO-8601) but not the delay "
        "properties nor what they count from (HubSpot's UI offers 'delay by N days/months' on a deal's line "
        "items). Safe if wrong: the schedule's start date is written back to the deal and audited; a start "
        "date set on the line always wins; a line with neither starts at the close date. Confirm: a line "
        "item with a 1-month delay on a won deal, read back with both properties and the deal's closedate."
    ),
}
