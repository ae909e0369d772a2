"""Privacy: erasing one person's data from every layer on request."""
