"""One package per vendor, each declaring itself in one ``VendorSpec`` (see ``spec``); ``registry`` lists them."""
