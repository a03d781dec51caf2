"""Closeloop benchmarks: ``make bench`` (``python -m bench.run``), one table of figures beside their floors."""
