"""Health, status, dashboard and metrics endpoints."""
