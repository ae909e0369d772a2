"""The `onevault smoke-test` command run as an operator does, and its report read back."""

from __future__ import annotations

import re
import subprocess
import sys

SMOKE_TEST = [sys.executable, "-m", "onevault", "smoke-test"]
LINE = re.compile(
    r"(?P<verdict>PASS|FAIL)  (?P<number>\d+) (?P<name>.+?) +(?P<ms>\d+) ms(?:  (?P<reason>.*))?"
)


def smoke_test(url: str, customer_id: str, token: str) -> subprocess.CompletedProcess[str]:
    """Run `onevault smoke-test` against `url`."""
    return subprocess.run(
        [*SMOKE_TEST, "--url", url, "--customer-id", customer_id, "--token", token, "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def report(output: str) -> list[tuple[str, int, str, str]]:
    """The check lines of the report: (PASS or FAIL, number, name, reason)."""
    lines = [LINE.fullmatch(line) for line in output.splitlines()]
    return [(m["verdict"], int(m["number"]), m["name"], m["reason"] or "") for m in lines if m]


def failed(output: str) -> dict[str, str]:
    """Name → reason of every failed check."""
    return {name: reason for verdict, _, name, reason in report(output) if verdict == "FAIL"}
