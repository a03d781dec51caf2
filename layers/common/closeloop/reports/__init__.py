"""Finance reports built in the Lambda runtime: CSV and HTML with the standard library, XLSX with XlsxWriter."""
