"""Tenants, API tokens and the resolution of a request's caller."""
