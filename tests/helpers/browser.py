"""Driving Debian's Chromium with Playwright: how it is started, and a page with its console log."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Error, Page

# Without the networking flags Chromium keeps reaching for Google's hosts, which this closed
# network refuses; --no-sandbox because CI runs as root. Launch's default user-data-dir is fresh.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
NO_CHROMIUM = "Debian's chromium is not installed: apt-get install chromium"


def chromium_path() -> str | None:
    """Debian's chromium on PATH, or None."""
    return shutil.which("chromium")


def in_ci() -> bool:
    """Whether this run is CI (`CI` set, as .ci/run does), where a missing browser is a failure."""
    return bool(os.environ.get("CI"))


def desktop_user_agent(browser_version: str) -> str:
    """A normal desktop Chrome user agent for this browser's major version.

    Headless Chromium's own user agent says "HeadlessChrome", which the pipeline flags as a bot
    (staging.classify_user_agent), so the tests' events would not count as a visitor's.
    """
    major = browser_version.split(".", 1)[0]
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major}.0.0.0 Safari/537.36"
    )


@dataclass
class BrowserPage:
    """A page of a fresh browser context, with what it logged to the console and its uncaught errors."""

    page: Page
    console: list[ConsoleMessage] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Start collecting console messages and page errors."""
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        """Keep a console message."""
        self.console.append(message)

    def _on_error(self, error: Error) -> None:
        """Keep an uncaught page error."""
        self.errors.append(error)

    def console_errors(self) -> list[str]:
        """Console errors and warnings, and uncaught page errors, as text with where they came from."""
        logged = [
            f"console.{m.type}: {m.text} ({m.location.get('url', '')})"
            for m in self.console
            if m.type in ("error", "warning")
        ]
        return logged + [f"page error: {e.message}\n{e.stack or ''}" for e in self.errors]

    def tracker_errors(self) -> list[str]:
        """Console errors and warnings logged by /tracker.js, and uncaught errors raised in it."""
        logged = [
            f"console.{m.type}: {m.text}"
            for m in self.console
            if m.type in ("error", "warning") and "/tracker.js" in m.location.get("url", "")
        ]
        return logged + [f"page error: {e.message}" for e in self.errors if "tracker.js" in (e.stack or "")]
