"""Closeloop: the shared runtime library shipped to Lambda as a layer.

Layering: ``functions/*/app.py`` (thin handlers) -> ``closeloop.sync`` (vendor-free logic) -> ports
(``closeloop.ports``) implemented by one package per vendor (``closeloop.vendors.<name>``: its spec, adapter and
guesses, listed in ``closeloop.vendors.registry``) and the DynamoDB repository (``closeloop.store``).
"""

__version__ = "0.1.0"
