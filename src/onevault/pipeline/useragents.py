"""User agents → browser, OS, device type and bot flag, with ua-parser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ua_parser

_BOT_HINT = re.compile(
    r"bot|crawl|spider|slurp|scrape|headless|curl/|wget|python-|java/|go-http|httpclient|phantomjs|lighthouse",
    re.IGNORECASE,
)
_TABLET_HINT = re.compile(r"ipad|tablet|kindle|silk|playbook|sm-t|sm-x|nexus (7|9|10)", re.IGNORECASE)
_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS"}


@dataclass(frozen=True)
class ParsedAgent:
    """What a user agent tells about the visitor's software and device."""

    browser_family: str
    browser_version: str | None
    os_family: str
    os_version: str | None
    device_type: str
    is_bot: bool


def _version(*parts: str | None) -> str | None:
    present = [p for p in parts if p]
    return ".".join(present) if present else None


@lru_cache(maxsize=10_000)
def parse(user_agent: str) -> ParsedAgent:
    """Parse one user agent string."""
    result = ua_parser.parse(user_agent)
    agent, os, device = result.user_agent, result.os, result.device
    device_family = device.family if device else ""
    brand = (device.brand or "") if device else ""
    is_bot = device_family == "Spider" or bool(_BOT_HINT.search(user_agent))
    if is_bot:
        device_type = "bot"
    elif _TABLET_HINT.search(user_agent) or "tablet" in brand.lower() or device_family == "iPad":
        device_type = "tablet"
    elif (os and os.family in _MOBILE_OS) or "mobi" in user_agent.lower():
        device_type = "mobile"
    else:
        device_type = "desktop"
    return ParsedAgent(
        browser_family=agent.family if agent else "Other",
        browser_version=_version(agent.major, agent.minor) if agent else None,
        os_family=os.family if os else "Other",
        os_version=_version(os.major, os.minor) if os else None,
        device_type=device_type,
        is_bot=is_bot,
    )


def save_parameters(user_agents: list[str]) -> dict[str, list[Any]]:
    """The parameters of the `save_user_agents` statement for these user agents, parsed."""
    parsed = [parse(agent) for agent in user_agents]
    return {
        "user_agents": user_agents,
        "browser_families": [p.browser_family for p in parsed],
        "browser_versions": [p.browser_version for p in parsed],
        "os_families": [p.os_family for p in parsed],
        "os_versions": [p.os_version for p in parsed],
        "device_types": [p.device_type for p in parsed],
        "bots": [p.is_bot for p in parsed],
    }
