"""`onevault export`: a customer's events of some days, raw or from the business vault, as JSON Lines or CSV.

Exports are checked line by line against what the customer sent: the days' bounds (UTC, both
included), another customer's events never in them (one of them with the same event id), the
session in force of events a late event moved, CSV read back by the csv module equal to JSON Lines,
the file written whole or not at all, a progress bar only when the data goes to a file from a
terminal. The export is read through a server-side cursor a batch at a time: its Python memory
does not grow with its size.
"""

from __future__ import annotations

import os
import pty
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from tests.helpers.cli import Cli
from tests.helpers.exports import (
    AFTER,
    AWKWARD,
    BEFORE,
    DAY,
    Customers,
    as_csv_cell,
    at,
    csv_rows,
    jsonl,
    known_events,
    raw_line,
    store_many,
    two_customers,
    utc,
)
from tests.helpers.queries import scalar
from tests.helpers.vault_load import Event, ingest_events, new_customer, process_all

from onevault.export import stream

RAW_COLUMNS = [
    "event_id",
    "received_at",
    "event_type",
    "record_source",
    "user_agent",
    "processing_status",
    "processed_at",
    "error_message",
    "payload",
]
BUSINESS_COLUMNS = [
    "event_id",
    "occurred_at",
    "received_at",
    "event_type",
    "page_url",
    "referrer_url",
    "referrer_host",
    "referrer_class",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "user_id",
    "language",
    "screen_width",
    "screen_height",
    "viewport_width",
    "viewport_height",
    "is_bot",
    "validation_status",
    "quality_score",
    "session_key",
    "visitor_key",
    "record_source",
    "event_properties",
]


@pytest.fixture
def cli(cli_for: Callable[[str], Cli], db_url: str) -> Cli:
    """`onevault` on this test's database."""
    return cli_for(db_url)


def export(cli: Cli, customer_id: str, layer: str, fmt: str, first: Any = DAY, last: Any = DAY) -> bytes:
    """`onevault export` to standard output, which must succeed; the data."""
    result = cli(
        "export", customer_id, "--from", str(first), "--to", str(last), "--layer", layer, "--format", fmt
    )
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def business_line(event_id: str, occurred: Any, received: Any, **fields: Any) -> dict[str, Any]:
    """An event as the business layer's JSON Lines export writes it: a valid page view of a direct visit."""
    line: dict[str, Any] = dict.fromkeys(BUSINESS_COLUMNS)
    line |= {
        "event_id": event_id,
        "occurred_at": utc(occurred),
        "received_at": utc(received),
        "event_type": "page_view",
        "referrer_class": "direct",
        "is_bot": False,
        "validation_status": "VALID",
        "quality_score": 1.0,
        "record_source": "test:ingest",
        "event_properties": {},
    }
    return line | fields


def known(event_id: str) -> Any:
    """The known event with this id."""
    return next(e for e in known_events() if e.event_id == event_id)


def test_raw_jsonl_is_each_event_as_received_on_the_days_it_was_received(
    conn: psycopg.Connection, cli: Cli
) -> None:
    """The body as sent, its type, source, user agent and pipeline status, in order of receipt; the
    first and last microsecond of the day are in, a microsecond outside is not; no IP hash."""
    customers = two_customers(conn, processed=False)
    day = jsonl(export(cli, customers.a, "raw", "jsonl"))
    assert day == [raw_line(known("e-first")), raw_line(known("e-last"))]
    assert day[0]["payload"]["event_data"] == {"plan": AWKWARD}
    three_days = jsonl(export(cli, customers.a, "raw", "jsonl", BEFORE, AFTER))
    assert [line["event_id"] for line in three_days] == [
        "e-before",
        "e-first",
        "e-last",
        "e-after",
        "e-clock",
    ]
    assert jsonl(export(cli, customers.a, "raw", "jsonl", AFTER, AFTER)) == [
        raw_line(known("e-after")),
        raw_line(known("e-clock")),
    ]
    assert export(cli, customers.a, "raw", "jsonl", DAY - timedelta(days=9), DAY - timedelta(days=2)) == b""


def test_raw_export_says_where_each_event_is_in_the_pipeline(conn: psycopg.Connection, cli: Cli) -> None:
    """After processing: PROCESSED and when, in UTC."""
    customers = two_customers(conn, processed=True)
    lines = jsonl(export(cli, customers.a, "raw", "jsonl"))
    processed = scalar(
        conn,
        "SELECT util.iso_utc(processed_at) FROM raw.site_tracking_events_r"
        " WHERE tenant_hk = util.tenant_hk(%s) AND event_id = 'e-first'",
        (customers.a,),
    )
    assert lines[0] == raw_line(known("e-first"), "PROCESSED") | {"processed_at": processed}
    assert [line["processing_status"] for line in lines] == ["PROCESSED", "PROCESSED"]


def test_raw_csv_reads_back_as_the_jsonl(conn: psycopg.Connection, cli: Cli) -> None:
    """Header, then one row per event; the csv module gives back every value of the JSON Lines export,
    the payload as its JSON text (with a comma, quotes, a line break and non-ASCII text in it)."""
    customers = two_customers(conn, processed=False)
    data = export(cli, customers.a, "raw", "csv", BEFORE, AFTER)
    assert data.split(b"\r\n", 1)[0] == b",".join(c.encode() for c in RAW_COLUMNS)
    header, rows = csv_rows(data)
    assert header == RAW_COLUMNS
    lines = jsonl(export(cli, customers.a, "raw", "jsonl", BEFORE, AFTER))
    assert len(rows) == len(lines) == 5
    for row, line in zip(rows, lines, strict=True):
        assert row == {k: as_csv_cell(v) for k, v in line.items() if k != "payload"} | {
            "payload": row["payload"]
        }
        assert jsonl(row["payload"].encode() + b"\n") == [line["payload"]]


def test_business_jsonl_is_each_event_in_force_on_the_days_it_occurred(
    conn: psycopg.Connection, cli: Cli
) -> None:
    """The vault's details of each event with its session and visitor keys, in order of occurrence; an
    event received after the day but that occurred in it is in, by the client's clock."""
    customers = two_customers(conn, processed=True)
    first, last, clock = known("e-first"), known("e-last"), known("e-clock")
    anna = {"session_key": "s-1", "visitor_key": "anna"}
    assert jsonl(export(cli, customers.a, "business", "jsonl")) == [
        business_line(
            "e-first",
            first.received,
            first.received,
            page_url="https://example.com/pricing?utm_source=news&utm_medium=email",
            referrer_url="https://www.google.com/",
            referrer_host="www.google.com",
            referrer_class="search",
            utm_source="news",
            utm_medium="email",
            event_properties={"plan": AWKWARD},
            **anna,
        ),
        business_line(
            "e-clock",
            at(DAY, 23, 59, 50),
            clock.received,
            page_url="https://example.com/",
            # No session id sent: the derived session of the visitor, as its first event names it.
            session_key=f"ben@{DAY}T23:59:50.000Z",
            visitor_key="ben",
            quality_score=0.9,
        ),
        business_line(
            "e-last",
            at(DAY, 23, 59, 59, 999_000),
            last.received,
            event_type="signup",
            page_url="https://example.com/pricing",
            user_id="User-7",
            **anna,
        ),
    ]
    around = jsonl(export(cli, customers.a, "business", "jsonl", BEFORE, AFTER))
    assert [line["event_id"] for line in around] == ["e-before", "e-first", "e-clock", "e-last", "e-after"]


def test_business_export_gives_the_session_in_force_after_a_late_event(
    conn: psycopg.Connection, cli: Cli
) -> None:
    """A late event bridging a visitor's two derived sessions merges them: all three events are in the
    session that starts with the first, and the session that was merged away is in no line."""
    customer = new_customer(conn, "export-merge")
    early = [
        Event("m-1", at(DAY, 10), visitor_id="carl", page="/a"),
        Event("m-3", at(DAY, 11), visitor_id="carl", page="/c"),
    ]
    ingest_events(conn, customer, early)
    process_all(conn, customer)
    before = jsonl(export(cli, customer, "business", "jsonl"))
    assert [line["session_key"] for line in before] == [
        f"carl@{DAY}T10:00:00.000Z",
        f"carl@{DAY}T11:00:00.000Z",
    ]
    ingest_events(conn, customer, [Event("m-2", at(DAY, 10, 30), visitor_id="carl", page="/b")])
    process_all(conn, customer)
    after = jsonl(export(cli, customer, "business", "jsonl"))
    assert [(line["event_id"], line["session_key"], line["visitor_key"]) for line in after] == [
        (event_id, f"carl@{DAY}T10:00:00.000Z", "carl") for event_id in ("m-1", "m-2", "m-3")
    ]


def test_business_csv_reads_back_as_the_jsonl(conn: psycopg.Connection, cli: Cli) -> None:
    """Every cell is the JSON Lines value: empty for null, true/false, numbers, JSON text for properties."""
    customers = two_customers(conn, processed=True)
    data = export(cli, customers.a, "business", "csv", BEFORE, AFTER)
    header, rows = csv_rows(data)
    assert header == BUSINESS_COLUMNS
    lines = jsonl(export(cli, customers.a, "business", "jsonl", BEFORE, AFTER))
    assert len(rows) == len(lines) == 5
    for row, line in zip(rows, lines, strict=True):
        properties = jsonl(row.pop("event_properties").encode() + b"\n")
        assert properties == [line.pop("event_properties")]
        assert row == {k: as_csv_cell(v) for k, v in line.items()}
    assert rows[1]["is_bot"] == "false" and rows[1]["quality_score"] == "1.0" and rows[1]["language"] == ""


@pytest.mark.parametrize(
    ("layer", "fmt"), [("raw", "jsonl"), ("raw", "csv"), ("business", "jsonl"), ("business", "csv")]
)
def test_another_customers_events_are_never_exported(
    conn: psycopg.Connection, cli: Cli, layer: str, fmt: str
) -> None:
    """B's events, on the same day and one with the same event id as one of A's, are in B's export only."""
    customers: Customers = two_customers(conn, processed=True)
    mine = export(cli, customers.a, layer, fmt, BEFORE, AFTER)
    theirs = export(cli, customers.b, layer, fmt, BEFORE, AFTER)
    assert b"other.example" not in mine and b"b-only" not in mine and b"zoe" not in mine
    assert mine.count(b"e-first") == theirs.count(b"e-first") == 1
    assert b"other.example/secret" in theirs and b"b-only" in theirs
    assert b"Anna" not in theirs and b"anna" not in theirs


def test_output_writes_the_file_and_says_what_it_did(
    conn: psycopg.Connection, cli: Cli, tmp_path: Path
) -> None:
    """--output: the same bytes as standard output, in a file only its owner reads; nothing on standard
    output, one line on standard error."""
    customers = two_customers(conn, processed=True)
    target = tmp_path / "out.csv"
    result = cli(
        "export", customers.a, "--from", str(DAY), "--to", str(DAY), "--layer", "business", "--format", "csv",
        "--output", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""
    assert result.stderr.startswith(
        f"exported 3 events of customer {customers.a} (business layer, {DAY} to {DAY}) in "
    )
    assert target.read_bytes() == export(cli, customers.a, "business", "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # personal data: its owner's only


def test_a_failed_export_leaves_no_file(
    conn: psycopg.Connection, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection lost half-way: exit status 1 with one line, and neither the file nor a part of it."""
    customers = two_customers(conn, processed=False)

    def broken(conn: psycopg.Connection, export: stream.Export) -> Iterator[tuple[int, bytes]]:
        yield 1, b'{"event_id": "half"}\n'
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(stream, "chunks", broken)
    target = tmp_path / "out.jsonl"
    result = cli(
        "export", customers.a, "--from", str(DAY), "--to", str(DAY), "--layer", "raw", "--format", "jsonl",
        "--output", str(target),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot reach PostgreSQL" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_one_line(
    conn: psycopg.Connection, cli: Cli, tmp_path: Path
) -> None:
    """A directory that does not exist: exit status 1 and the reason."""
    customer = new_customer(conn, "export-nowhere")
    target = tmp_path / "missing" / "out.jsonl"
    result = cli(
        "export", customer, "--from", str(DAY), "--to", str(DAY), "--layer", "raw", "--format", "jsonl",
        "--output", str(target),
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {target}: No such file or directory\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--from", str(DAY), "--to", str(BEFORE)], 2, f"from ({DAY}) is after to ({BEFORE})"),
        (["--from", "2026-02-30", "--to", str(DAY)], 2, "'2026-02-30' does not match the format '%Y-%m-%d'"),
        (["--from", str(DAY)], 2, "Missing option '--to'"),
        (
            ["--from", str(DAY), "--to", str(DAY), "--layer", "gold"],
            2,
            "'gold' is not one of 'raw', 'business'",
        ),
        (["--from", str(DAY), "--to", str(DAY), "--format", "xml"], 2, "'xml' is not one of 'jsonl', 'csv'"),
    ],
)
def test_bad_arguments_are_refused(
    conn: psycopg.Connection, cli: Cli, args: list[str], status: int, message: str
) -> None:
    """Days in the wrong order, a date that is not one, a missing day, an unknown layer or format."""
    customer = new_customer(conn, "export-args")
    defaults = {"--layer": "raw", "--format": "jsonl"}
    extra = [x for k, v in defaults.items() if k not in args for x in (k, v)]
    result = cli("export", customer, *args, *extra)
    assert result.exit_code == status
    assert message in result.stderr
    assert result.stdout_bytes == b""


def test_an_unknown_customer_is_refused(cli: Cli, db_url: str) -> None:
    """Exit status 1 and one line naming it."""
    result: Result = cli(
        "export", "nobody", "--from", str(DAY), "--to", str(DAY), "--layer", "raw", "--format", "jsonl"
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: no tenant 'nobody' (see `onevault tenant list`)\n"


def _export_process(db_url: str, customer_id: str, stdout: Any, stderr: Any, *extra: str) -> int:
    env = {**os.environ, "SYSTEM_DATABASE_URL": db_url}
    argv = [
        sys.executable,
        "-m",
        "onevault",
        "export",
        customer_id,
        "--from",
        str(BEFORE),
        "--to",
        str(AFTER),
    ]
    argv += ["--layer", "raw", "--format", "jsonl", *extra]
    return subprocess.run(argv, env=env, stdout=stdout, stderr=stderr, timeout=60).returncode


def _terminal_output(master: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_a_progress_bar_only_when_the_data_goes_to_a_file_from_a_terminal(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    """Standard error a terminal: a bar with --output or standard output redirected to a file; none when
    standard output is a pipe (its reader wants the data alone) or a terminal (it would mix with it)."""
    customers = two_customers(conn, processed=False)
    label = f"Exporting {customers.a}'s raw events"

    def run(stdout: Any, *extra: str) -> str:
        master, terminal = pty.openpty()
        try:
            assert _export_process(db_url, customers.a, stdout, terminal, *extra) == 0
        finally:
            os.close(terminal)
        try:
            return _terminal_output(master)
        finally:
            os.close(master)

    with (tmp_path / "redirected.jsonl").open("wb") as redirected:
        assert label in run(redirected)
    assert label in run(subprocess.DEVNULL, "--output", str(tmp_path / "out.jsonl"))
    assert len(jsonl((tmp_path / "out.jsonl").read_bytes())) == 5
    assert len(jsonl((tmp_path / "redirected.jsonl").read_bytes())) == 5
    piped = run(subprocess.PIPE)
    assert label not in piped and "exported 5 events" in piped
    master, terminal = pty.openpty()
    try:
        assert _export_process(db_url, customers.a, terminal, terminal) == 0
    finally:
        os.close(terminal)
    on_terminal = _terminal_output(master)
    os.close(master)
    assert label not in on_terminal and '"event_id":"e-clock"' in on_terminal


def test_the_export_is_read_a_batch_at_a_time(conn: psycopg.Connection, db_url: str) -> None:
    """After the first batch the rest is still in PostgreSQL, behind an open cursor; abandoning the
    export closes it and leaves the connection usable."""
    customer = new_customer(conn, "export-many")
    store_many(conn, customer, 5 * stream.BATCH_ROWS, DAY)
    export = stream.Export(
        bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (customer,))), DAY, DAY, "raw", "jsonl"
    )
    with psycopg.connect(db_url, autocommit=True) as exporting:
        chunks = stream.chunks(exporting, export)
        assert next(chunks)[0] == 0
        rows, data = next(chunks)
        assert rows == stream.BATCH_ROWS and data.count(b"\n") == stream.BATCH_ROWS
        state, query = conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (exporting.info.backend_pid,)
        ).fetchone() or (None, None)
        assert state == "idle in transaction"
        assert query == f'FETCH FORWARD {stream.BATCH_ROWS} FROM "{stream.CURSOR_NAME}"'
        assert scalar(exporting, "SELECT array_agg(name) FROM pg_cursors") == [stream.CURSOR_NAME]
        chunks.close()
        assert scalar(exporting, "SELECT count(*) FROM pg_cursors") == 0
        assert exporting.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _peak_python_memory(conn: psycopg.Connection, export: stream.Export) -> tuple[int, int]:
    """The export consumed chunk by chunk: its bytes, and the peak of memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        size = sum(len(data) for _, data in stream.chunks(conn, export))
        return size, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_memory_of_an_export_does_not_grow_with_its_size(
    conn: psycopg.Connection, db_url: str, fmt: str
) -> None:
    """Ten times the events (over 20 MB) take no more Python memory than a tenth of them: a batch's worth."""
    customer = new_customer(conn, "export-memory")
    store_many(conn, customer, 2 * stream.BATCH_ROWS, BEFORE, prefix="small")
    store_many(conn, customer, 20 * stream.BATCH_ROWS, DAY, prefix="large")
    tenant_hk = bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (customer,)))
    small = stream.Export(tenant_hk, BEFORE, BEFORE, "raw", fmt)
    large = stream.Export(tenant_hk, DAY, DAY, "raw", fmt)
    with psycopg.connect(db_url, autocommit=True) as exporting:
        _peak_python_memory(exporting, small)  # the first run loads what every run uses
        small_size, small_peak = _peak_python_memory(exporting, small)
        large_size, large_peak = _peak_python_memory(exporting, large)
    assert large_size > 9 * small_size > 9 * 2_000_000
    # Flat: what the larger export allocates at its peak is a small export's (about a batch of rows and
    # their encoding); all of its rows at once would be over 20 MB.
    assert large_peak < small_peak + 256 * 1024
    assert large_peak < large_size / 2
