"""Finance reports built in the Lambda runtime with the standard library only (no openpyxl, no XlsxWriter)."""
