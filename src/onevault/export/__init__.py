"""Export: a customer's events of the raw or the business layer, as JSON Lines or CSV, streamed."""
