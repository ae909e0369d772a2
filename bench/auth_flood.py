"""A flood of made-up tokens beside a valid client: how much of its throughput the valid client keeps.

wrk sends valid events at 16 connections for a while alone, then again while a second wrk sends
requests with a new well-formed token each at 64 connections, all from the same address. Two
servers in the same run: the service as configured, and the same with the failure limit off
(`ONEVAULT_AUTH_FAILURES_PER_SECOND=0`), where every made-up token costs a database query.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import harness

PATH = "/api/v1/track/async"
VALID_CONNECTIONS = 16
FLOOD_CONNECTIONS = 64


def measure(url: str, token: str, seconds: int) -> dict[str, Any]:
    """The valid client alone, then beside the flood."""
    alone = harness.wrk(url, harness.CUSTOMER_ID, token, VALID_CONNECTIONS, seconds)
    with ThreadPoolExecutor(2) as pool:
        flood = pool.submit(
            harness.wrk, url, harness.CUSTOMER_ID, "-", FLOOD_CONNECTIONS, seconds, credentials="made-up"
        )
        valid = pool.submit(harness.wrk, url, harness.CUSTOMER_ID, token, VALID_CONNECTIONS, seconds)
        beside, attack = valid.result(), flood.result()
    return {
        "alone_events_per_s": alone["events_per_s"],
        "alone_p99_ms": alone["p99_ms"],
        "flooded_events_per_s": beside["events_per_s"],
        "flooded_p99_ms": beside["p99_ms"],
        "kept": round(beside["events_per_s"] / alone["events_per_s"], 3) if alone["events_per_s"] else 0.0,
        "valid_errors": beside["errors"],
        "flood_requests_per_s": attack["requests_per_s"],
    }


def main(argv: list[str] | None = None) -> None:
    """Run both servers, print the table, save the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    args = parser.parse_args(argv)
    rows = []
    with harness.postgres() as pg:
        for name, env in (
            ("limit on (default)", {}),
            ("limit off", {"ONEVAULT_AUTH_FAILURES_PER_SECOND": "0"}),
        ):
            db = harness.create_database(pg, "bench_auth_" + ("on" if not env else "off"))
            token = harness.tenant_token(db)
            print(f"{name}: valid client alone, then beside the flood ...", file=sys.stderr)
            with harness.onevault(db, harness.free_port(), 2, **env) as server:
                rows.append({"server": name} | measure(server.url + PATH, token, args.seconds))
    print(f"\nValid client at {VALID_CONNECTIONS} connections, made-up tokens at {FLOOD_CONNECTIONS}, {PATH}")
    print(
        harness.table(
            rows,
            [
                "server",
                "alone_events_per_s",
                "alone_p99_ms",
                "flooded_events_per_s",
                "flooded_p99_ms",
                "kept",
                "valid_errors",
                "flood_requests_per_s",
            ],
        )
    )
    kept = rows[0]["kept"]
    verdict = "PASS" if kept >= 0.8 else "FAIL"
    print(f"\nTarget: the valid client keeps >= 80 % of its throughput: {kept:.0%} {verdict}")
    print(f"results: {harness.save('auth_flood', {'rows': rows})}")


if __name__ == "__main__":
    main()
