"""``closeloop setup hubspot``: create the deal and company properties Closeloop writes back.

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
import sys

from closeloop import runtime
from closeloop.sync.invoices import CUSTOMER_PROPERTIES, DEAL_PROPERTIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-id", help="the stack's credentials secret (default: $CREDENTIALS_SECRET_ID)")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "secret_id", None):
        os.environ["CREDENTIALS_SECRET_ID"] = args.secret_id
    os.environ.setdefault("CRM_PROVIDER", getattr(args, "system", "hubspot"))
    runtime.reset()
    crm = runtime.crm()
    for object_type, definitions in (("deal", DEAL_PROPERTIES), ("company", CUSTOMER_PROPERTIES)):
        created = crm.ensure_properties(object_type, definitions)
        existing = len(definitions) - len(created)
        print(f"{object_type}: created {len(created)} ({', '.join(created) or '-'}), {existing} already there")
    sys.stdout.flush()
    return 0
