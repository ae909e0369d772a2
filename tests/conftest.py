"""Fixtures live in tests/fixtures/ (registered here), helpers the tests import in tests/helpers/."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.tenants",
    "tests.fixtures.server",
    "tests.fixtures.cli",
    "tests.fixtures.old_postgres",
    "tests.fixtures.replica",
    "tests.fixtures.browser",
]
