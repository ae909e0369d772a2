"""The stats query as clients send it (Plausible Stats API v2's shape) and the answers' shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

METRICS = ("visitors", "visits", "pageviews", "events", "views_per_visit", "bounce_rate", "visit_duration")
RELATIVE_RANGES = ("today", "day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all")
OPERATORS = ("is", "is_not", "contains")
DIRECTIONS = ("asc", "desc")
# A custom range spans at most about ten years (time:hour: 87,840 buckets).
MAX_RANGE_DAYS = 3660
LAST_DATE = date(9999, 12, 30)  # the day after the range is a date too
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Dimension:
    """A dimension of the stats API: where its value lives in the marts (docs/analytics.md)."""

    name: str
    # "event": a column of mart.session_event_f; "visit": of mart.session_f; "time": a date_trunc unit.
    level: Literal["event", "visit", "time"]
    column: str


# The one table from dimension names to mart columns (rollups find theirs by name in mart.dimension).
DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("event:page", "event", "page"),
        Dimension("event:type", "event", "event_type"),
        Dimension("visit:entry_page", "visit", "entry_page"),
        Dimension("visit:exit_page", "visit", "exit_page"),
        Dimension("visit:referrer", "visit", "referrer"),
        Dimension("visit:channel", "visit", "channel"),
        Dimension("visit:utm_source", "visit", "utm_source"),
        Dimension("visit:utm_medium", "visit", "utm_medium"),
        Dimension("visit:utm_campaign", "visit", "utm_campaign"),
        Dimension("visit:browser", "visit", "browser"),
        Dimension("visit:os", "visit", "os"),
        Dimension("visit:device", "visit", "device"),
        Dimension("time:hour", "time", "hour"),
        Dimension("time:day", "time", "day"),
        Dimension("time:week", "time", "week"),
        Dimension("time:month", "time", "month"),
    )
}
TIME_DIMENSIONS = tuple(n for n, d in DIMENSIONS.items() if d.level == "time")
FILTER_DIMENSIONS = tuple(n for n, d in DIMENSIONS.items() if d.level != "time")


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("stats_query", "{message}", {"message": message})


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def _metric(value: object) -> str:
    if not isinstance(value, str):
        raise _bad(f"a metric is a string, not {value!r}")
    if value not in METRICS:
        raise _bad(f"unknown metric {value!r} (one of {_listing(METRICS)})")
    return value


def _dimension(value: object) -> str:
    if not isinstance(value, str):
        raise _bad(f"a dimension is a string, not {value!r}")
    if value not in DIMENSIONS:
        raise _bad(f"unknown dimension {value!r} (one of {_listing(tuple(DIMENSIONS))})")
    return value


def _date(value: object) -> date:
    if not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        raise _bad(f"date_range: {value!r} is not an ISO date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _bad(f"date_range: {value!r} is not a date") from None
    if day > LAST_DATE:
        raise _bad(f"date_range: {value!r} is after {LAST_DATE}")
    return day


def _date_range(value: object) -> str | tuple[date, date]:
    if isinstance(value, str):
        if value in RELATIVE_RANGES:
            return value
        raise _bad(
            f"unknown date_range {value!r}: one of {_listing(RELATIVE_RANGES)}, or [start, end] as ISO dates"
        )
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise _bad(f"date_range is one of {_listing(RELATIVE_RANGES)}, or [start, end] as ISO dates")
    start, end = _date(value[0]), _date(value[1])
    if start > end:
        raise _bad(f"date_range: start {start} is after end {end}")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise _bad(f"date_range: {start} to {end} is longer than {MAX_RANGE_DAYS} days")
    return (start, end)


def _filter(value: object) -> tuple[str, str, tuple[str | None, ...]]:
    if not (isinstance(value, list | tuple) and len(value) == 3):
        raise _bad(f"a filter is [operator, dimension, [values]], not {value!r}")
    op, dimension, values = value
    if op not in OPERATORS:
        raise _bad(f"unknown filter operator {op!r} (one of {_listing(OPERATORS)})")
    if dimension not in FILTER_DIMENSIONS:
        raise _bad(f"cannot filter on {dimension!r} (one of {_listing(FILTER_DIMENSIONS)})")
    if not (isinstance(values, list | tuple) and values):
        raise _bad(f"filter on {dimension!r}: the values are a non-empty list, not {values!r}")
    for v in values:
        if v is None and op == "contains":
            raise _bad(
                f"filter on {dimension!r}: null (a missing value) goes with is or is_not, not contains"
            )
        if v is not None and not isinstance(v, str):
            raise _bad(f"filter on {dimension!r}: the values are strings (or null), not {v!r}")
        if isinstance(v, str) and not _storable(v):
            raise _bad(f"filter on {dimension!r}: text PostgreSQL cannot hold (U+0000, lone surrogates)")
    return (op, dimension, tuple(values))


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _whole(value: object) -> int:
    # JSON Schema's integers include 3.0; a string or a boolean is not one.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{value!r} is not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise _bad(f"{value!r} is not an integer")
    return int(value)


def _order(value: object) -> tuple[str, str]:
    if not (isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)):
        raise _bad(f"order_by items are [metric or dimension, asc or desc], not {value!r}")
    field, direction = value
    if direction not in DIRECTIONS:
        raise _bad(f"order_by {field!r}: direction {direction!r} is not asc or desc")
    return (field, direction)


def _enum(names: tuple[str, ...], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(names)}
    return schema | ({"description": description} if description else {})


_DATE_SCHEMA = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_FILTER_VALUES = {"type": "array", "minItems": 1, "items": {"type": "string"}}
_FILTER_SCHEMA = {
    "description": "[operator, dimension, values]: `is`/`is_not` (null in the values: a missing value) "
    "or `contains` (case-insensitive substring)",
    "anyOf": [
        {
            "type": "array",
            "prefixItems": [
                _enum(("is", "is_not")),
                _enum(FILTER_DIMENSIONS),
                {"type": "array", "minItems": 1, "items": {"type": ["string", "null"]}},
            ],
            "items": False,
            "minItems": 3,
        },
        {
            "type": "array",
            "prefixItems": [_enum(("contains",)), _enum(FILTER_DIMENSIONS), _FILTER_VALUES],
            "items": False,
            "minItems": 3,
        },
    ],
}
_ORDER_SCHEMA = {
    "type": "array",
    "description": "[field, direction]: a metric or a dimension of the query, `asc` or `desc`",
    "prefixItems": [_enum(METRICS + tuple(DIMENSIONS)), _enum(DIRECTIONS)],
    "items": False,
    "minItems": 2,
}


Metric = Annotated[str, PlainValidator(_metric), WithJsonSchema(_enum(METRICS))]
DimensionName = Annotated[str, PlainValidator(_dimension), WithJsonSchema(_enum(tuple(DIMENSIONS)))]
DateRange = Annotated[
    str | tuple[date, date],
    PlainValidator(_date_range),
    WithJsonSchema(
        {
            "description": "A range relative to today in the customer's time zone, ending today "
            "(`7d`: today and the 6 days before; `month`: since the 1st; `12mo`: since the 1st of "
            "the month 11 months ago; `year`: since January 1; `all`: since the first day with "
            "data), or [start, end]: ISO dates, start <= end, at most 3660 days",
            "anyOf": [
                _enum(RELATIVE_RANGES),
                {
                    "type": "array",
                    "prefixItems": [_DATE_SCHEMA, _DATE_SCHEMA],
                    "items": False,
                    "minItems": 2,
                },
            ],
        }
    ),
]
Filter = Annotated[
    tuple[str, str, tuple[str | None, ...]], PlainValidator(_filter), WithJsonSchema(_FILTER_SCHEMA)
]
Whole = Annotated[int, BeforeValidator(_whole)]
Order = Annotated[tuple[str, str], PlainValidator(_order), WithJsonSchema(_ORDER_SCHEMA)]


class Include(BaseModel):
    """What to add to the answer."""

    model_config = ConfigDict(extra="forbid")

    comparison: Literal["previous_period"] | None = Field(
        default=None, description="`previous_period`: the figures of the same number of days just before"
    )


class StatsQuery(BaseModel):
    """A query of the stats API (modelled on Plausible's Stats API v2); see docs/analytics.md."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"date_range": "30d", "metrics": ["visitors", "pageviews"], "dimensions": ["visit:referrer"]}
            ],
        },
    )

    date_range: DateRange
    metrics: list[Metric] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    dimensions: list[DimensionName] = Field(
        default_factory=list,
        description="At most one `time:` dimension",
        json_schema_extra={
            "uniqueItems": True,
            "contains": _enum(TIME_DIMENSIONS),
            "minContains": 0,
            "maxContains": 1,
        },
    )
    filters: list[Filter] = Field(default_factory=list, description="Combined with AND")
    order_by: list[Order] | None = Field(
        default=None,
        description="Fields of the query (its metrics and dimensions), each once. Default: the time "
        "dimension ascending, then the first metric descending, then the dimensions ascending",
    )
    limit: Whole = Field(default=100, ge=1, le=10_000)
    offset: Whole = Field(default=0, ge=0, le=2_147_483_647)
    include: Include | None = None

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, metrics: list[str]) -> list[str]:
        _no_repeats("metric", metrics)
        return metrics

    @field_validator("dimensions")
    @classmethod
    def _distinct_dimensions(cls, dimensions: list[str]) -> list[str]:
        _no_repeats("dimension", dimensions)
        times = [d for d in dimensions if d in TIME_DIMENSIONS]
        if len(times) > 1:
            raise _bad(f"at most one time dimension: {', '.join(times)}")
        return dimensions

    @model_validator(mode="after")
    def _ordered_fields(self) -> StatsQuery:
        for field, _ in self.order_by or ():
            if field not in self.metrics and field not in self.dimensions:
                raise _bad(f"order_by {field!r} is not a metric or dimension of the query")
        return self

    @property
    def time_dimension(self) -> str | None:
        """The query's time dimension, if any."""
        return next((d for d in self.dimensions if d in TIME_DIMENSIONS), None)

    def ordering(self) -> list[tuple[str, str]]:
        """order_by, or by default: the time dimension, the first metric (descending), the dimensions."""
        if self.order_by:
            return list(self.order_by)
        time = self.time_dimension
        first = [(time, "asc")] if time else []
        return [*first, (self.metrics[0], "desc"), *((d, "asc") for d in self.dimensions if d != time)]


def _no_repeats(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _bad(f"{kind} {name!r} is listed twice")
        seen.add(name)


class Comparison(BaseModel):
    """The row's figures in the comparison period, and the change."""

    metrics: list[int | float]
    change: list[float | None] = Field(
        description="Percent change (one decimal; bounce_rate: the difference in points), "
        "null when the previous value is 0"
    )


class StatsRow(BaseModel):
    """One row: its dimension values (null: missing) and its metrics, in the query's order."""

    dimensions: list[str | None]
    metrics: list[int | float]
    comparison: Comparison | None = None


class StatsMeta(BaseModel):
    """How the answer was made."""

    time_zone: str
    date_range: list[date] = Field(min_length=2, max_length=2)
    comparison_date_range: list[date] | None = Field(default=None, min_length=2, max_length=2)
    total_rows: int = Field(description="Rows of the whole answer, before limit and offset")
    source: Literal["rollups", "facts"]
    sample_percent: float | None = Field(
        default=None,
        description="Present when the facts of a large range were read for a sample of the visitors "
        "(ONEVAULT_STATS_SAMPLE_SESSIONS): the percent read; visitors, visits, pageviews and events "
        "are then estimates, scaled up",
    )


class StatsResponse(BaseModel):
    """Answer of `POST /api/v1/stats/query`."""

    results: list[StatsRow]
    meta: StatsMeta
    query: dict[str, Any] = Field(description="The query as answered: date_range as its two dates")


MAX_BATCH = 20


class StatsBatch(BaseModel):
    """Several stats queries answered in one request (a dashboard's panels)."""

    model_config = ConfigDict(extra="forbid")

    queries: list[StatsQuery] = Field(min_length=1, max_length=MAX_BATCH)


class StatsBatchResponse(BaseModel):
    """Answer of `POST /api/v1/stats/queries`: one answer per query, in their order."""

    answers: list[StatsResponse]


class RealtimeResponse(BaseModel):
    """Answer of `GET /api/v1/stats/realtime`."""

    visitors: int = Field(description="Distinct visitors of sessions active in the window")
    window_seconds: int
    timestamp: datetime
