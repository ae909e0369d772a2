"""Events to export: a small known set of two customers around one day, and many large events at once."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from tests.helpers.pipeline import CHROME, ingest
from tests.helpers.vault_load import iso, new_customer, process_all

# The day exported: a few days back, so that its neighbours are in the past and none is too old.
DAY = datetime.now(UTC).date() - timedelta(days=5)
BEFORE = DAY - timedelta(days=1)
AFTER = DAY + timedelta(days=1)
# A property value a CSV writer must quote: a comma, quotes, a line break, and text beyond ASCII.
AWKWARD = 'pro, "yearly"\nsecond line ü🙂'


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A UTC moment of `day`."""
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=UTC)


def utc(moment: datetime) -> str:
    """A moment as the export writes it: UTC ISO 8601 with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Sent:
    """An event as its client sent it, and when it was received."""

    event_id: str
    received: datetime
    payload: dict[str, Any]


def _event(event_id: str, received: datetime, occurred: datetime | None = None, **fields: Any) -> Sent:
    payload = {"timestamp": iso(occurred or received), **fields}
    return Sent(event_id, received, payload)


def known_events() -> list[Sent]:
    """Customer A's events, in the order they were received.

    `e-first` and `e-last` are the first and last moments of DAY (by receipt and occurrence);
    `e-before` and `e-after` are a moment outside it on either side; `e-clock` was received after
    DAY but occurred at its end (the client's clock says so).
    """
    anna = {"visitor_id": "Anna", "session_id": "S-1"}
    return [
        _event(
            "e-before",
            at(BEFORE, 23, 59, 59, 999_999),
            event_type="page_view",
            page_url="https://example.com/",
            **anna,
        ),
        _event(
            "e-first",
            at(DAY, 0),
            event_type="page_view",
            page_url="https://Example.com/pricing?utm_source=news&utm_medium=email#plans",
            referrer="https://www.google.com/",
            event_data={"plan": AWKWARD},
            **anna,
        ),
        _event(
            "e-last",
            at(DAY, 23, 59, 59, 999_999),
            at(DAY, 23, 59, 59, 999_000),
            event_type="signup",
            page_url="https://example.com/pricing",
            user_id="User-7",
            **anna,
        ),
        _event("e-after", at(AFTER, 0), event_type="page_view", page_url="https://example.com/docs", **anna),
        _event(
            "e-clock",
            at(AFTER, 0, 0, 30),
            at(DAY, 23, 59, 50),
            event_type="page_view",
            page_url="https://example.com/",
            visitor_id="ben",
        ),
    ]


def other_events() -> list[Sent]:
    """Customer B's events on DAY, one of them with the same event id as one of A's."""
    return [
        _event(
            "e-first",
            at(DAY, 12),
            event_type="page_view",
            page_url="https://other.example/secret",
            visitor_id="zoe",
        ),
        _event(
            "b-only", at(DAY, 13), event_type="purchase", page_url="https://other.example/", visitor_id="zoe"
        ),
    ]


def store(conn: psycopg.Connection, customer_id: str, events: list[Sent]) -> None:
    """Store events as the service does, each received when it says."""
    for event in events:
        ingest(conn, [event.payload], [event.event_id], customer=customer_id, received=[event.received])


@dataclass(frozen=True)
class Customers:
    """The two customers of the known set."""

    a: str
    b: str


def two_customers(conn: psycopg.Connection, processed: bool) -> Customers:
    """Customers A and B with their known events, pending or processed into the business layer."""
    customers = Customers(new_customer(conn, "export-a"), new_customer(conn, "export-b"))
    store(conn, customers.a, known_events())
    store(conn, customers.b, other_events())
    if processed:
        process_all(conn, customers.a)
        process_all(conn, customers.b)
    return customers


def raw_line(event: Sent, status: str = "PENDING") -> dict[str, Any]:
    """An event of the known set as the raw layer's JSON Lines export writes it (before processing)."""
    return {
        "event_id": event.event_id,
        "received_at": utc(event.received),
        "event_type": event.payload.get("event_type", "page_view"),
        "record_source": "test:ingest",
        "user_agent": CHROME,
        "processing_status": status,
        "processed_at": None,
        "error_message": None,
        "payload": event.payload,
    }


def jsonl(data: bytes) -> list[dict[str, Any]]:
    """The objects of a JSON Lines export (every line one, each line ended)."""
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.decode().split("\n")[:-1]]


def csv_rows(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV export, read back with the csv module."""
    reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def as_csv_cell(value: Any) -> str:
    """What a JSON Lines value is in the CSV export: empty for null, JSON text for objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def store_many(
    conn: psycopg.Connection, customer_id: str, n: int, day: date, prefix: str = "many", padding: int = 800
) -> None:
    """`n` events received through `day`, ids `<prefix>-<i>`, each with `padding` bytes of properties."""
    conn.execute(
        "SELECT count(*) FROM raw.ingest_site_events("
        " array_fill(util.tenant_hk(%(customer)s), ARRAY[%(n)s]),"
        " ARRAY(SELECT %(prefix)s || '-' || i FROM generate_series(1, %(n)s) i),"
        " ARRAY(SELECT jsonb_build_object('page_url', 'https://example.com/p' || i,"
        "                                 'visitor_id', 'v' || mod(i, 97),"
        "                                 'event_data', jsonb_build_object('pad', repeat('x', %(padding)s)))"
        "       FROM generate_series(1, %(n)s) i),"
        " array_fill(%(agent)s::text, ARRAY[%(n)s]), array_fill('203.0.113.9'::inet, ARRAY[%(n)s]),"
        " ARRAY(SELECT (%(day)s::date + i * (interval '1 day' / (%(n)s + 1))) AT TIME ZONE 'UTC'"
        "       FROM generate_series(1, %(n)s) i),"
        " array_fill('test:many'::text, ARRAY[%(n)s]))",
        {"customer": customer_id, "n": n, "prefix": prefix, "padding": padding, "agent": CHROME, "day": day},
    )
