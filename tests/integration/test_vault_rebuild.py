"""`onevault vault rebuild`: a customer's vault recomputed from staging in chunks, and again to no effect."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.pipeline import CUSTOMER, ingest, trigger
from tests.helpers.queries import scalar
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault_load import business_counts

OTHER = "other_shop"
# Events per visitor of the customer rebuilt.
VISITORS = {"v-1": 3, "v-2": 2, "v-3": 1}
REBUILD = [sys.executable, "-m", "onevault", "vault", "rebuild", "--customer-id", CUSTOMER]
REPORT = re.compile(r"rebuilt (\d+) visitors \((\d+) events\) of customer (\S+) in \d+\.\d s")


def _page_views(visitor_id: str, count: int) -> list[dict[str, object]]:
    start = datetime(2026, 11, 1, 10, tzinfo=UTC)
    return [
        {
            "page_url": f"https://example.com/{visitor_id}/{n}",
            "visitor_id": visitor_id,
            "timestamp": (start + timedelta(minutes=5 * n)).isoformat(),
        }
        for n in range(count)
    ]


@pytest.fixture
def populated(conn: psycopg.Connection, tenant: Tenant) -> None:
    """`one_spa` with the VISITORS' events processed, and another customer with a visitor of its own."""
    payloads = [event for visitor, count in VISITORS.items() for event in _page_views(visitor, count)]
    ingest(conn, payloads, [f"e-{n}" for n in range(len(payloads))])
    make_tenant(conn, OTHER)
    ingest(conn, _page_views("v-9", 4), [f"o-{n}" for n in range(4)], customer=OTHER)
    trigger(conn, None)
    assert scalar(conn, "SELECT count(*) FROM business.site_event_h") == len(payloads) + 4


def _report(output: str) -> tuple[int, int, str]:
    """(visitors, events, customer) of the command's one line of standard output."""
    lines = output.splitlines()
    assert len(lines) == 1, output
    found = REPORT.fullmatch(lines[0])
    assert found, lines[0]
    return int(found[1]), int(found[2]), found[3]


def test_unknown_customer_is_refused(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], populated: None
) -> None:
    """A customer that is not registered: exit status 1, one line naming it, and nothing written."""
    before = business_counts(conn)
    result = cli_for(db_url)("vault", "rebuild", "--customer-id", "no_such_shop")
    assert result.exit_code == 1
    assert result.output == "Error: no tenant 'no_such_shop' (see `onevault tenant list`)\n"
    assert business_counts(conn) == before


def test_rebuild_reports_the_customers_visitors_and_a_second_run_the_same(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], populated: None
) -> None:
    """Chunks smaller than the customer: every visitor and event of its own, none of the other customer's.

    A second run (one chunk) reports the same and inserts nothing. Off a terminal, standard output
    is the result line alone (no progress bar).
    """
    cli = cli_for(db_url)
    first = cli("vault", "rebuild", "--customer-id", CUSTOMER, "--chunk-size", "2")
    assert first.exit_code == 0, first.output
    expected = (len(VISITORS), sum(VISITORS.values()), CUSTOMER)
    assert _report(first.stdout) == expected
    settled = business_counts(conn)

    second = cli("vault", "rebuild", "--customer-id", CUSTOMER)
    assert second.exit_code == 0, second.output
    assert _report(second.stdout) == expected
    assert business_counts(conn) == settled


def test_progress_bar_on_a_terminal(db_url: str, populated: None) -> None:
    """With standard error on a terminal, a bar counts the visitors; standard output is still one line."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL")
    }
    terminal, child_end = pty.openpty()
    try:
        result = subprocess.run(
            [*REBUILD, "--chunk-size", "1"],
            env=environment | {"SYSTEM_DATABASE_URL": db_url},
            stdout=subprocess.PIPE,
            stderr=child_end,
            text=True,
            timeout=60,
        )
    finally:
        os.close(child_end)
    shown = b""
    try:
        while chunk := os.read(terminal, 4096):
            shown += chunk
    except OSError:  # EIO: the terminal is closed and everything written was read
        pass
    finally:
        os.close(terminal)
    assert result.returncode == 0, shown
    assert _report(result.stdout) == (len(VISITORS), sum(VISITORS.values()), CUSTOMER)
    assert re.search(rb"Rebuilding one_spa +\[#+\] +3/3", shown), shown
