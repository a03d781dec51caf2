"""An invoice's payment status as sales sees it (accounting systems have no "overdue" status of their own).

Shared by the deal sync (write-back), the payment poller and the monthly reconciliation, so the CRM and the
report always agree on what "overdue" or "paid" means.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from closeloop.models import Invoice, PaymentStatus


def payment_status(invoice: Invoice, today: date) -> PaymentStatus:
    """The invoice's payment status on ``today``; the first rule that applies wins.

    voided (VOIDED/DELETED) → draft (DRAFT/SUBMITTED: not approved yet) → paid (PAID, or nothing due on a
    non-zero total) → overdue (AUTHORISED, something due, due date before ``today``) → partially_paid
    (something paid) → awaiting_payment. Raises nothing.
    """
    if invoice.status in ("VOIDED", "DELETED"):
        return "voided"
    if invoice.status in ("DRAFT", "SUBMITTED"):
        return "draft"
    if invoice.status == "PAID" or (invoice.amount_due <= Decimal(0) and invoice.total > Decimal(0)):
        return "paid"
    # Only AUTHORISED is left here: every other status returned above.
    if invoice.due_date is not None and invoice.due_date < today and invoice.amount_due > Decimal(0):
        return "overdue"
    if invoice.amount_paid > Decimal(0):
        return "partially_paid"
    return "awaiting_payment"
