"""Closeloop: the shared runtime library shipped to Lambda as a layer.

Layering: ``functions/*/app.py`` (thin handlers) -> ``closeloop.sync`` (vendor-free logic) -> ports
(``closeloop.ports``) implemented by one adapter module per vendor (``closeloop.crm.*``,
``closeloop.accounting.*``) and the DynamoDB repository (``closeloop.store``).
"""

__version__ = "0.1.0"
