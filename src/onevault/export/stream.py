"""A customer's events of some days as JSON Lines or CSV, read through a server-side cursor.

`onevault export` and `GET /api/v1/export` both stream `chunks`/`achunks`: the cursor is fetched
`BATCH_ROWS` at a time and each batch is encoded and handed on before the next is fetched, so the
memory an export takes does not grow with its size.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncGenerator, Generator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, get_args

import orjson
import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.postgres import types as pg_types

from onevault import sqlfile

Q = sqlfile.load(__package__, "queries.sql")

Layer = Literal["raw", "business"]
Format = Literal["jsonl", "csv"]
LAYERS: tuple[str, ...] = get_args(Layer)
FORMATS: tuple[str, ...] = get_args(Format)
MEDIA_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
# Rows per FETCH: large enough that round trips cost little, small enough that a batch and its
# encoding take a few megabytes (bench.export: 6-15 MB above the command's own start).
BATCH_ROWS = 1000
CURSOR_NAME = "onevault_export"
_STATEMENTS = {"raw": Q["raw_events"], "business": Q["business_events"]}
_JSONB = pg_types["jsonb"].oid
_BOOL = pg_types["bool"].oid


class ExportError(ValueError):
    """An export that cannot be one (its days in the wrong order, an unknown layer or format)."""


class _JsonText(Loader):
    """jsonb as its text: written to the export as it is, never parsed and serialised again."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


@dataclass(frozen=True)
class Export:
    """What to export: one customer's events of the UTC days [first_day, last_day] of a layer, in a format."""

    tenant_hk: bytes
    first_day: date
    last_day: date
    layer: str
    format: str

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ExportError(f"unknown layer {self.layer!r}: raw or business")
        if self.format not in FORMATS:
            raise ExportError(f"unknown format {self.format!r}: jsonl or csv")
        if self.first_day > self.last_day:
            raise ExportError(f"from ({self.first_day}) is after to ({self.last_day})")

    @property
    def media_type(self) -> str:
        """The content type of the export."""
        return MEDIA_TYPES[self.format]

    def filename(self, customer_id: str) -> str:
        """A file name that says what the export holds."""
        return f"{customer_id}-{self.layer}-{self.first_day}-{self.last_day}.{self.format}"

    @property
    def params(self) -> dict[str, Any]:
        """The statements' parameters."""
        return {"tenant_hk": self.tenant_hk, "first_day": self.first_day, "last_day": self.last_day}


class _Encoder:
    """Rows of a cursor as bytes: JSON Lines (one object per row) or CSV with a header row."""

    def __init__(self, fmt: str, description: Sequence[Any]) -> None:
        self.format = fmt
        self.names = [column.name for column in description]
        self.json_columns = [i for i, c in enumerate(description) if c.type_code == _JSONB]
        self.bool_columns = [i for i, c in enumerate(description) if c.type_code == _BOOL]

    def header(self) -> bytes:
        """What comes before the rows: CSV's header row (nothing for JSON Lines)."""
        return self._csv([self.names]) if self.format == "csv" else b""

    def encode(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        """A batch of rows."""
        if self.format == "jsonl":
            return self._jsonl(rows)
        return self._csv([self._bools(row) for row in rows] if self.bool_columns else rows)

    def _jsonl(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        lines = []
        for row in rows:
            obj = dict(zip(self.names, row, strict=True))
            for i in self.json_columns:
                if row[i] is not None:
                    obj[self.names[i]] = orjson.Fragment(row[i])
            lines.append(orjson.dumps(obj))
        lines.append(b"")
        return b"\n".join(lines)

    @staticmethod
    def _csv(rows: Sequence[Sequence[Any]]) -> bytes:
        # An empty cell is NULL (or empty text); JSON columns are their JSON text.
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue().encode()

    def _bools(self, row: Sequence[Any]) -> list[Any]:
        # As JSON writes them, not Python's True and False.
        cells = list(row)
        for i in self.bool_columns:
            if cells[i] is not None:
                cells[i] = "true" if cells[i] else "false"
        return cells


def _statement(export: Export) -> sql.SQL:
    return _STATEMENTS[export.layer]


def count(conn: psycopg.Connection, export: Export) -> int:
    """How many events the export holds (a progress bar's length; it runs the export's query once more)."""
    row = conn.execute(Q["count"].format(events=_statement(export)), export.params).fetchone()
    return int(row[0]) if row else 0


def chunks(conn: psycopg.Connection, export: Export) -> Generator[tuple[int, bytes], None, None]:
    """The export's bytes, batch by batch, with the number of events in each (0 for CSV's header).

    One transaction holds the cursor (a savepoint if `conn` is in one already).
    """
    with conn.transaction(), conn.cursor(name=CURSOR_NAME) as cur:
        cur.adapters.register_loader(_JSONB, _JsonText)
        cur.execute(_statement(export), export.params)
        encoder = _Encoder(export.format, cur.description or ())
        yield 0, encoder.header()
        while rows := cur.fetchmany(BATCH_ROWS):
            yield len(rows), encoder.encode(rows)


async def achunks(conn: psycopg.AsyncConnection[Any], export: Export) -> AsyncGenerator[bytes, None]:
    """The export's bytes, batch by batch, as `chunks` gives them, for an asynchronous connection."""
    async with conn.transaction(), conn.cursor(name=CURSOR_NAME) as cur:
        cur.adapters.register_loader(_JSONB, _JsonText)
        await cur.execute(_statement(export), export.params)
        encoder = _Encoder(export.format, cur.description or ())
        yield encoder.header()
        while rows := await cur.fetchmany(BATCH_ROWS):
            yield encoder.encode(rows)
