"""The processing pipeline: the runner that drives the SQL pipeline, and user-agent parsing."""
