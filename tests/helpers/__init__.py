"""Classes and functions the tests import: one concept per module, no fixtures."""
