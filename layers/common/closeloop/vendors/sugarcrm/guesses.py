"""What the SugarCRM adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: What this module assumes without a published source, and what would confirm (or refute) each.
#: Every guess is made safe: the code still works, or fails with a clear message, when one is wrong.
GUESSES: dict[str, str] = {
    "release -> highest REST version": "Verified from the developer guides' REST API overview ('v10 - v11.<n> "
    "API documentation'): 13.2 -> v11_22, 13.3 -> v11_23; 14.0 -> v11_24 (docs/vendors crm.md). GUESS: 12.0 -> "
    "v11_16, 13.0 -> v11_20, 13.1 -> v11_21. Confirm: the 12.0/13.0/13.1 guides' overview line. Safe: "
    "discovery asks the server, it never uses this table.",
    "301 message names the range": "Sugar's RestService::execute (7.x-8.x source) words it 'Please change your "
    "requested API version to value between 10 and 11.20.'; assumed unchanged in 12-14. Confirm: "
    "curl -i <instance>/rest/v11_99/ping. Safe: without a parsable range, the call is repeated one minor "
    "version lower at a time.",
    "a 301 request was not processed": "RestService::execute checks the version before authentication and "
    "routing, so a refused PUT/POST changed nothing and is repeated under the lower version. Confirm: the "
    "curl above answers 301 without a token, and a refused PUT leaves the record unchanged.",
    "rate limit": "Sugar documents none; a third party reports ~20 req/s on Sugar's cloud and a 429. Confirm: "
    "Sugar support or a 429 seen in production. Safe: 429 and 5xx are retried with backoff and Retry-After.",
    "unregistered platform": "A login on a platform missing from Admin > Configure API Platforms is refused "
    "(disable_unknown_platform, default since 7.9); the exact status and label (sandbox: 400 "
    "invalid_parameter) are guessed. Confirm: a login with platform=unregistered. Safe: any refused login "
    "raises AuthRevoked naming SUGARCRM_PLATFORM.",
    "hook event and isUpdate may be absent": "Sugar's Web Logic Hooks page shows bean, event, isUpdate, data and "
    "dataChanges in every payload; the parser still reads a missing event as after_save and a missing isUpdate "
    "as false (the generated schema marks them optional). Confirm: a captured delivery of each trigger. Safe: "
    "a wrongly read creation is still queued and the worker reads the record as it is.",
    "product archived is active_status": "A product template is archived when its active_status is set to "
    "anything but Active. Sugar's ProductTemplates vardefs (12.0, as published copies of its source show) define "
    "active_status, an enum of active_status_dom defaulting to Active ('Active, Inactive or Retired'), and say of "
    "status that it is 'not used in product Catalog'; the developer guide documents neither. Confirm: GET "
    "/metadata?type_filter=modules&module_filter=ProductTemplates (fields.active_status) and the dropdown "
    "active_status_dom on an instance. Safe: a missing or empty active_status reads as active (the product syncs "
    "as any other); an inactive one read as active only keeps its item up to date, and nothing is ever deleted.",
    "closeloop_supplier_c on ProductTemplates": "The supplier name is a Studio text field closeloop_supplier_c "
    "on ProductTemplates (Product Catalog has Studio fields like other modules; ensure_properties('product') "
    "names it for an admin to add). Sugar is assumed to leave a field named in fields= out of its answer when "
    "the module lacks it, as it does for GET and filter. Confirm: GET /ProductTemplates/<id>?fields=name,"
    "closeloop_supplier_c on an instance without the field. Safe: a missing field reads as no supplier.",
    "web logic hooks on ProductTemplates": "Admin > Web Logic Hooks offers the Product Catalog module, and a "
    "delivery names the bean class ProductTemplate (the module name is accepted too), like Account for "
    "Accounts. Confirm: a hook on Product Catalog and a captured delivery. Safe: without it, the catch-up "
    "poll (filter on date_modified, ProductTemplates included) still finds every changed product.",
    "quote_num numbering": "quote_num is an auto-increment int the API answers as a JSON integer (Quotes vardefs: "
    "type int, auto_increment, readonly; SugarFieldInt::apiFormatField casts to int) and a write to it is "
    "ignored; the sandbox numbers from 1. Confirm: GET /Quotes/<id> on an instance, and a PUT of quote_num. "
    "Safe: an adapter reads it as text either way and never writes it.",
    "quoted line copies its product template": "A quoted line (Products) made with a product_template_id and no "
    "name, mft_part_num, prices or tax_class takes them from the catalogue product (Sugar's quote editor copies "
    "them client-side; whether a bare REST create does is not documented). Confirm: POST /Products with only "
    "product_template_id and quantity, then GET it. Safe: an adapter reads the line's own fields and, when "
    "mft_part_num is empty, the template's (GET /ProductTemplates/<id>).",
    "a line edit saves its quote": "Changing a quote's line re-totals its group and quote (the vardefs' rollup "
    "formulas) and saves them, so the quote's date_modified moves and its after_save hook fires, only when a "
    "total changed. Confirm: PUT /Products/<line> with a new quantity, then the quote's date_modified; and a "
    "name-only edit. Safe: the poller also filters Products by date_modified and reads their quote_id, so an "
    "edit that does not touch the quote is still found.",
    "line order is position": "A group's position in its quote and a line's in its group (the join tables' "
    "bundle_index / product_index) come back as each record's position, 0-based, and a link read may be "
    "ordered by it; the default link order is date_modified:DESC like any list. Confirm: GET /Quotes/<id>/link/"
    "product_bundles and /ProductBundles/<id>/link/products?order_by=position on an instance. Safe: an adapter "
    "sorts by position itself, then by id, so a missing position keeps a stable order.",
    "contract opportunity_id": "A contract's opportunity is the one-sided link opportunities (Contracts vardefs: "
    "contracts_opportunities, link_type one); opportunity_id is a non-db id the API fills on read and saves "
    "through the link on write. Confirm: GET /Contracts/<id>?fields=opportunity_id and GET /Contracts/<id>/link/"
    "opportunities. Safe: an adapter reads the link when opportunity_id is empty.",
    "a quoted line's hook carries quote_id": "A web logic hook on Quoted Line Items (Products, bean Product) "
    "sends the line's fields in data, quote_id among them (a db field of Products; CreatePayload.php sends the "
    "bean's fields the user may read). Confirm: a captured Product after_save delivery. Safe: a delivery without "
    "quote_id is ignored, and the catch-up poll (Products filtered on date_modified, quote_id read) finds the "
    "change.",
    "a refused module answers 403 or 404": "A filter on a module the user's role denies answers 403 "
    "not_authorized, and on a module the instance lacks 404 (SugarApiExceptionNotAuthorized / NotFound). Confirm: "
    "POST /Quotes/filter as a user whose role disables Quotes. Safe: only the Quotes and Products scans are "
    "skipped on those answers; any other error fails the poll as before, and a skipped scan only delays a quote "
    "to its next hook.",
    "closeloop_billing_frequency_c on RevenueLineItems": "Sugar has no billing frequency on any stock record "
    "(a service revenue line item, Sugar 10.2+, has service_start_date, service_duration_value/_unit and a "
    "calculated service_end_date; a Contract has dates and a status but no lines). Closeloop reads the frequency "
    "from a Studio dropdown closeloop_billing_frequency_c on RevenueLineItems whose values are the canonical "
    "frequencies (weekly ... every_5_years), named for an admin by `closeloop setup sugarcrm`; Sugar is assumed "
    "to leave a field named in fields= out of its answer when the module lacks it, as for GET and filter. "
    "PRICE: no published Sugar page found says what a service line's price covers; Sugar prorating add-ons "
    "co-termed to a purchase over the remaining duration suggests that a stock service line's "
    "discount_price/likely_case is for the WHOLE term. Closeloop instead reads the line's unit price as the "
    "price PER BILLING PERIOD whenever the frequency is set (README, Recurring lines, SugarCRM): the admin enters "
    "it that way, and a line without the frequency is billed once at its price, as before. Safe if wrong: "
    "nothing recurs until a person sets the frequency; schedules are DRAFT by default "
    "(RECURRING_SCHEDULE_STATUS), so the first per-period amount is seen before it is billed. Confirm: GET "
    "/RevenueLineItems/<id>?fields=closeloop_billing_frequency_c on an instance without the field, and Sugar "
    "support on what a service line's price covers.",
    "contract end bounds the service term": "An opportunity's contracts (the link contracts, "
    "contracts_opportunities) bound its recurring lines: the latest contract end_date caps each term at the "
    "last billing period starting on or before it; contract_status_dom (notstarted, inprogress, signed) has no "
    "cancelled state, so ending early is moving end_date earlier. Safe: a contract never lengthens a term, and "
    "the recurring flow flags a shortened schedule for a person instead of cutting it. Confirm: Admin > "
    "Dropdown Editor contract_status_dom on an instance, and GET /Opportunities/<id>/link/contracts.",
    "a contract's hook carries opportunity_id": "A web logic hook on Contracts sends opportunity_id in data, "
    "and a Contracts filter answers it when named in fields (it is the non-db id of the one-sided link "
    "opportunities, which Sugar fills when it formats the bean). Confirm: a captured Contract after_save "
    "delivery and POST /Contracts/filter with fields=opportunity_id. Safe: a delivery or poll row without it "
    "is ignored; the opportunity's next own change (or a revenue line item's) reads its contracts again.",
    "service_end_date is the day before start + duration": "The sandbox calculates a service line's "
    "service_end_date as its service_start_date moved on by service_duration_value units, less a day (the "
    "vardefs make it a calculated field; the exact formula is not published). Confirm: a service line of 1 year "
    "from 2027-01-01 on an instance. Safe: the adapter never reads service_end_date; it counts the term from "
    "the start and the duration.",
}
