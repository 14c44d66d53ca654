"""The CRM's web pages, one blueprint per kind of record."""
