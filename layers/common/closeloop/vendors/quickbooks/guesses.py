"""What the QuickBooks Online adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: Everything this adapter assumes about QuickBooks Online without a settled source, in one place: what is
#: assumed, how the code stays safe if it is wrong, and what would confirm it. Code and sandbox comments name
#: the key.
GUESSES: dict[str, str] = {
    "refresh_token_resend_window": (
        "A refresh inside the ~24 h rotation window answers the same refresh token value, so after a lost "
        "answer the next scheduled attempt with the stored token usually works. Intuit's sources disagree: the "
        "help article 'Validity of Refresh Token' says the previous value fails with invalid_grant once a new "
        "one is returned, the older oauth-jsclient README says it expires 24 hours later (sources at "
        "REFRESH_RESEND_WITHIN_SECONDS); the sandbox models the 24 h reading (rotate_after, superseded_grace). "
        "Safe if wrong: a lost answer is never re-sent by itself (REFRESH_RESEND_WITHIN_SECONDS = 0) but "
        "reported as RefreshAnswerLost, and a refused token is AuthRevoked asking for a reconnect. Confirm: "
        "refresh twice within a day with one refresh token against a real company and compare the answers."
    ),
    "cloudevents_action_words": (
        "The action in a CloudEvents type qbo.<entity>.<action>.v<n> is the legacy operation as a past "
        "participle (created, updated, deleted, merged, voided, emailed: CLOUD_EVENT_OPERATIONS), as "
        "integrations that read the new shape spell them; Intuit's migration post and the SDK test payload "
        "show only 'created'. Safe if wrong: an action outside CLOUD_EVENT_OPERATIONS is kept as kind "
        "'other', like an unknown legacy operation, so the record is still read back. Confirm: the developer "
        "portal's 'send test event' for Invoice, Payment and Customer updates, deletes and voids."
    ),
    "cloudevents_time": (
        "A CloudEvent's time is when the change happened (the legacy lastUpdated). CloudEvents 1.0 makes time "
        "optional. Safe if wrong: time only orders and stamps the event; an event without one is kept and "
        "timed now, and events are de-duplicated on their id (unique per event), never on time. Confirm: "
        "compare a test event's time with the record's MetaData.LastUpdatedTime."
    ),
    "cloudevents_data_and_source": (
        "A CloudEvent's data is an empty object (notifications carry ids only) and source is 'intuit.' plus an "
        "opaque app id, as in the SDK samples; the sandbox sends that shape. Safe if wrong: the adapter reads "
        "neither field. Confirm: the developer portal's 'send test event'."
    ),
    "cloudevents_required_ids": (
        "Every CloudEvent in a delivery, including those of entities or products we do not follow, carries a "
        "non-blank id, intuitaccountid and intuitentityid (strings; a number is read as its digits), as the "
        "contract schema (tests/contracts/quickbooks/operations.json) and the SDKs' test payload show; the "
        "delivery model (webhooks.QuickBooksCloudEvent) requires them for every event, where the hand-written "
        "parser checked them only on the events it kept. Safe if wrong: such a delivery is refused with a 400 "
        "naming the field (never a 5xx), and the changes it carried are still found by the CDC / "
        "LastUpdatedTime polls. Confirm: the developer portal's 'send test event' for a non-accounting entity."
    ),
    "item_sparse_update": (
        'An Item takes a sparse update ("sparse": true with Id and SyncToken) that leaves the keys it omits '
        "as they are, as Intuit documents for Customer and as this adapter already relies on there; Intuit's "
        "Item page lists a full update. Safe if wrong: update_item sends, besides the keys it changes, the "
        "item's current Name, Type and every key the catalogue maps (Description, UnitPrice, PurchaseCost and "
        "the tax code and account refs), so a full update would only clear keys the catalogue never reads "
        "(Sku is always sent). Confirm: a sparse update of one key of an item in a sandbox company, then read "
        "it back."
    ),
    "item_sku_stored": (
        "QuickBooks stores an Item's Sku sent through the API whatever the company's 'Show SKU column' "
        "setting, and does not refuse two items with one Sku (the XSD says a Sku 'identifies an item "
        "uniquely' but names no error). Safe if wrong: a refused Sku fails the product's sync with QBO's "
        "reason (nothing half-made: the create is one call); two active items found with one SKU make "
        "get_items raise ValidationFailed naming both, so no invoice line picks one at random. Confirm: "
        "create two items with one Sku in a company with the SKU column off, then query them by Sku."
    ),
    "item_create_accounts": (
        "Intuit's XSD requires IncomeAccountRef for Service items and ExpenseAccountRef once purchase "
        "information (PurchaseCost) is given; nothing says which account an app should pick. The adapter "
        "takes QUICKBOOKS_ITEM_INCOME_ACCOUNT / QUICKBOOKS_ITEM_EXPENSE_ACCOUNT, else the active Income "
        "(resp. Cost of Goods Sold, then Expense) account with the lowest Id. Safe if wrong: the account is "
        "the company's own and named in the audit's item; finance can re-point it in QuickBooks and the "
        "catalogue never overwrites accounts (accounting owns them). Confirm: finance's choice per company."
    ),
    # ---- recurring transactions (the sandbox's RecurringTransaction; no adapter yet) ---------------------
    "recurring_read_envelope": (
        "GET /recurringtransaction/{id} answers a QueryResponse holding a one-element RecurringTransaction list, as "
        "the sample of 'Read a recurring transaction' on Intuit's RecurringTransaction page shows (read through "
        'its mirrors), unlike other entities\' reads ({"Invoice": {...}}); create, update and delete answer '
        '{"RecurringTransaction": {"Invoice": {...}}}, the template under its type as the read\'s rows '
        "hold it (a deleted one {Id, status: Deleted}). Safe if wrong: an adapter reads the template from either "
        "envelope (QueryResponse.RecurringTransaction[0] or RecurringTransaction) and, after a write it cannot "
        "read, finds the template by query on its Id. Confirm: create, read and delete one template in a "
        "sandbox company and compare the bodies."
    ),
    "recurring_query_filters": (
        "select * from RecurringTransaction filters on Id, MetaData.CreateTime and MetaData.LastUpdatedTime "
        "only (what CData's QuickBooks Online driver passes to QBO as server-side filters for its recurring "
        "tables; Intuit's page shows the bare select); the sandbox answers any other property with 4001. Safe "
        "if wrong: an adapter that needs a template by name or customer lists the templates and filters them "
        "itself. Confirm: query RecurringTransaction where RecurringInfo.Name = '...' against a real company."
    ),
    "recurring_required_fields": (
        "A template needs RecurringInfo with a Name unique among the company's templates (6240 otherwise, the "
        "duplicate-name fault), a RecurType of Automated, Reminded, UnScheduled or Manual (the XSD's words) and, "
        "for Automated and Reminded, ScheduleInfo with an IntervalType and a StartDate (2020 when missing); the "
        "XSD marks every element optional and the page lists RecurringInfo and an item line as required. Safe "
        "if wrong: an adapter always sends all of them, and names a template after its deal and frequency, "
        "which is unique anyway. Confirm: create templates without a Name, a StartDate, and with a Name "
        "already used."
    ),
    "recurring_past_start": (
        "A template's NextDate is its schedule's first day on or after both its StartDate and the day it is "
        "created or changed (and after its last run): QBO does not make invoices for days before the template "
        "existed. Safe if wrong: an adapter writes back NextDate as QBO answers it and never computes it. "
        "Confirm: create an Automated template with last month's StartDate and read its NextDate."
    ),
    "recurring_generated_invoice": (
        "An invoice an Automated template makes on its day copies the template's CustomerRef, CurrencyRef, "
        "lines (recomputed), tax, PrivateNote, CustomerMemo, BillEmail, addresses and terms refs; is dated that "
        "day, due as many days later as the template's DueDate is after its TxnDate (else that day); takes the "
        "company's next invoice number, never the template's DocNumber; and carries RecurDataRef "
        "{value: template Id} (Finance.xsd: 'Reference to the RecurTemplate which was used to create the "
        "Transaction'). A template made inactive, Reminded or UnScheduled makes none. Safe if wrong: a poller "
        "recognises a generated invoice by RecurDataRef first and by the deal reference the template puts in "
        "PrivateNote and CustomerMemo, never by DocNumber. Confirm: let a daily Automated template run in a "
        "sandbox company and read the invoice it made."
    ),
    "estimate_closed_by_invoice": (
        "An Invoice created with LinkedTxn [{TxnId, TxnType: 'Estimate'}] sets that Estimate's TxnStatus to "
        "Closed and adds a LinkedTxn {TxnId: the invoice, TxnType: 'Invoice'} to it, as QuickBooks' own "
        "'Create invoice' from an estimate does; Intuit's pages say an Estimate's LinkedTxn holds 'Zero or more "
        "Invoice objects related to this transaction' and that linking is how an invoice is made from an "
        "estimate, but not that the API closes it. The sandbox also refuses a link to an estimate it does not "
        "hold (610) or of another customer (6000), as it does for a Payment's links. Safe if wrong: an adapter "
        "that reads the estimate back after invoicing and sets TxnStatus Closed itself (a sparse update at "
        "the current SyncToken) when it is not, works either way. Confirm: create an invoice linked to a "
        "Pending estimate in a QBO sandbox company and read the estimate."
    ),
    "estimate_closed_by_update": (
        "A sparse Estimate update setting TxnStatus to Closed is accepted without an invoice linked to it, and "
        "Closed is what QuickBooks shows for an estimate an invoice was made from (Intuit's Estimate page lists "
        "TxnStatus as a writable field with the values of Finance.xsd QboEstimateStatusEnum: Accepted, Closed, "
        "Pending, Rejected; it does not say Closed needs a link). So mark_quote_invoiced closes the estimate "
        "itself when it is still open after the invoice: the fallback for invoices made without LinkedTxn to it "
        "(before invoices named their quote), or for a linked one QBO left open. And a "
        "Closed estimate reads INVOICED, though a person may also close one by hand. Safe if wrong: a refusal "
        "is a failed sync of the CRM quote's invoiced mark with QuickBooks' message (the invoice is made "
        "either way, and the mark is retried on the deal's next delivery). Confirm: close a Pending estimate "
        "with no linked invoice through the API of a QBO sandbox company."
    ),
    "estimate_web_path": (
        "A person opens an estimate at https://app.qbo.intuit.com/app/estimate?txnId={Id}, as invoices open at "
        "/app/invoice?txnId={Id}: the API gives estimates no web link. Safe if wrong: the link is only written "
        "to the CRM quote for a person to click; nothing reads it back. Confirm: open an estimate in QBO and "
        "compare the address bar."
    ),
    # ---- recurring transactions: the adapter (RecurringAccounting) --------------------------------------
    "recurring_reference_in_name": (
        "Our schedule reference ({crm}-deal-{id}/{frequency}, about 30-40 characters) is a valid, unique "
        "RecurringInfo.Name, so QBO refuses a second template for one deal and frequency with 6240 (as "
        'GUESSES["recurring_required_fields"] reads the duplicate-name rule) and find_schedule matches the '
        "Name client-side over the paged template list (Name is not filterable: "
        'GUESSES["recurring_query_filters"]). Why Name: it is the only template text QBO keeps unique, and '
        "the PrivateNote cannot be queried either. Safe if wrong: if Names were not unique, a repeat create "
        "is still stopped by the requestid and the flow's mapping, lease and find-before-create; a Name too "
        "long or refused is a ValidationFailed of the deal, nothing made. Confirm: create two templates with "
        "one Name, and one with a 40-character Name containing '/' and '-', in a real company."
    ),
    "recurring_draft_reminded": (
        "RECURRING_SCHEDULE_STATUS=DRAFT maps to RecurType Reminded (QBO reminds a person on each due day to "
        "make the invoice, which is then made from the template) and AUTHORISED to Automated (QBO makes each "
        "invoice by itself): QBO has no draft invoices, and Active false would stop the schedule altogether "
        "(we read it as ended). Safe if wrong: a Reminded template makes no invoice by itself, so a draft "
        "schedule never bills unasked; its invoices, if made by hand without RecurDataRef, still carry the "
        "template's PrivateNote. Confirm: create a Reminded template in a real company, act on its reminder "
        "and read the invoice made (RecurDataRef, PrivateNote)."
    ),
    "recurring_day_pinning": (
        "ScheduleInfo names the start's own day: DayOfWeek for Weekly, DayOfMonth for Monthly, DayOfMonth and "
        "MonthOfYear for Yearly, and a DayOfMonth past a month's end (31) falls on its last day, as the core's "
        "add_periods counts a term. Safe if wrong: NextDate and EndDate are read back as QBO answers them, and "
        "a first invoice off its day only moves a date; a refused combination is a ValidationFailed of the "
        "deal. Confirm: create Monthly DayOfMonth 31 and Yearly templates and read their NextDate sequence."
    ),
    "recurring_template_dates": (
        "A template's TxnDate and DueDate (its StartDate and due_days later) set the generated invoices' terms: "
        'each is due as many days after its date (the sandbox models this, GUESSES["recurring_generated_invoice"]). '
        "Safe if wrong: QBO then dates the invoice's due day by the customer's terms, and the poller writes "
        "back the DueDate the invoice carries, never a computed one. Confirm: a template with TxnDate and a "
        "DueDate 14 days later, and the DueDate of the invoice it makes."
    ),
    "recurring_ended_inactive": (
        "Ending a schedule sets RecurringInfo.Active false in a sparse update that sends RecurringInfo whole "
        "(a sparse update replaces a nested aggregate), with ScheduleInfo's read-only NextDate/PreviousDate "
        "left out; QBO then makes no invoice from it and keeps it readable. Chosen over ?operation=delete so "
        "get_schedule still reads it (the reconciliation says ended, not gone), the invoices keep a "
        "RecurDataRef that resolves, and its Name stays taken. Safe if wrong: get_schedule reads a template "
        "QBO deleted as None, which the flow and reconciliation treat as ended too; a refused update is a "
        "ValidationFailed with QBO's reason. Confirm: deactivate an Automated template in a real company, "
        "read it back and run past its next date."
    ),
    "recurring_generated_reference": (
        "An invoice a template made carries RecurDataRef with the template's Name as its name (QBO fills "
        "ReferenceType names as on CustomerRef), so the invoice's reference is our schedule reference; else "
        "its PrivateNote's first line, copied from the template. Safe if wrong: with neither, the invoice's "
        "reference is its DocNumber, the poller and reconciliation treat it as an invoice of no deal (it still "
        "counts in the customer's summary), nothing is written to a wrong deal. Confirm: read an invoice made "
        "by an Automated template in a real company."
    ),
    # ---- purchase orders and vendors (PurchasingAccounting) -------------------------------------------------
    "purchase_order_web_path": (
        "A person opens a purchase order at https://app.qbo.intuit.com/app/purchaseorder?txnId={Id}, as invoices "
        "open at /app/invoice?txnId={Id}: the API gives purchase orders no web link. Safe if wrong: the link is "
        "only written to the deal for a person to click; nothing reads it back. Confirm: open a purchase order "
        "in QBO and compare the address bar."
    ),
    "purchase_order_ap_account": (
        "With several active Accounts Payable accounts, a purchase order is credited to the one in its currency "
        "(Account.CurrencyRef), else to one naming no currency, the lowest Id first (the A/P account QBO made "
        "with the company). Intuit's PurchaseOrder page only says the account is implied when the company has "
        "one and should always be named. Safe if wrong: an Open purchase order posts nothing to the ledger "
        "(it is non-posting until billed), a refused account is a ValidationFailed of the deal with QBO's "
        "reason, and a person can change the account on the purchase order. Confirm: a multicurrency company "
        "with an EUR vendor: create a purchase order naming the home A/P account and read QBO's answer."
    ),
    "purchase_order_doc_number_unique": (
        "QBO refuses a purchase order whose DocNumber another purchase order holds (6140), as it refuses a "
        "duplicate invoice number with custom transaction numbers on; the sandbox models it, and numbers a "
        "purchase order sent without one (1001, 1002...) when custom transaction numbers are off, as "
        "ApprovalMax describes QBO's PO numbers. Safe if wrong: the adapter never relies on the refusal: "
        "find_purchase_order looks the DocNumber up (and compares the whole reference in the PrivateNote) before "
        "every create, and each create carries a requestid derived from the deal and supplier, so a replay "
        "answers the first purchase order. Confirm: create two purchase orders with one DocNumber in a real "
        "company, with custom transaction numbers on and off."
    ),
    "purchase_order_open_not_draft": (
        "A purchase order made Open (QBO has no draft: PurchaseOrderStatusEnum is Open or Closed) is the nearest "
        "state to Xero's draft: it is non-posting (Finance.xsd: 'a non-posting transaction'), so nothing reaches "
        "the books until a person turns it into a bill, and it can be edited or deleted until then. Safe if "
        "wrong: the README says QuickBooks purchase orders are made Open, and the canonical status reads "
        "AUTHORISED, so nobody is told it is a draft. Confirm: Intuit's PurchaseOrder page lists no other "
        "writable status."
    ),
}
