"""The processing pipeline: the runner driving the SQL pipeline, user-agent parsing, the vault rebuild."""
