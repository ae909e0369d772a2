"""Event ingestion: the wire format, the group-commit writer and the /api/v1/track routes."""
