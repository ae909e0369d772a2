"""The `onevault` command run in-process, as the tests drive it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from onevault.cli import main
from onevault.config import get_settings


class Cli:
    """Runs `onevault` commands in-process against one database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
        monkeypatch.setenv("SYSTEM_DATABASE_URL", database_url)
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        """`onevault <args>`."""
        get_settings.cache_clear()
        return self.runner.invoke(main, list(args), catch_exceptions=False)
