"""The stats query core: a query of the API answered from the rollups or the facts of the marts.

Two paths give the same answers (docs/analytics.md): the **rollups** (hourly and daily sums and
visitor days, read by index for the range only) answer queries without filters and with at most one
dimension besides time; the **facts** (sessions and their events by hour, page and type) answer
everything. Both compose one statement that sums by the query's keys, and the same wrapper turns the
sums into metrics, fills the time buckets, orders, pages and counts the rows. Over a range with more
sessions than the caller allows a facts statement to read, the facts path reads a sample of the
visitors (`Sample`) and scales its counts.
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.errors import QueryCanceled
from psycopg.rows import dict_row

from onevault import sqlfile
from onevault.stats.models import DIMENSIONS, StatsQuery

Q = sqlfile.load(__package__, "queries.sql")
Source = Literal["rollups", "facts"]
# Metrics that need a visit figure (the others: visitors, pageviews, events are their own figure).
VISIT_METRICS = frozenset({"visits", "views_per_visit", "bounce_rate", "visit_duration"})
INTEGER_METRICS = frozenset({"visitors", "visits", "pageviews", "events", "visit_duration"})
# Metrics that are counts: a sample's are scaled up (the others are ratios, a sample's own).
COUNT_METRICS = frozenset({"visitors", "visits", "pageviews", "events"})
_DIRECTIONS = {"asc": sql.SQL("ASC"), "desc": sql.SQL("DESC")}
_OPERATORS = {
    "is": sql.SQL("{} = ANY({})"),
    "is_not": sql.SQL("{} <> ALL({})"),
    "contains": sql.SQL("{} ILIKE ANY({})"),
}
_TRUNCATED = sql.SQL("date_trunc(%(unit)s, {})")


class QueryError(ValueError):
    """A valid query that has no answer (a comparison period before the first day of the calendar)."""


class TooSlow(Exception):
    """Stats statements that ran past their time limit (`time_limited`)."""


@dataclass(frozen=True)
class Sample:
    """The visitors a facts statement reads: those whose key's first byte is below `below` (of 256),
    with all of their sessions. Visitor keys are SHA-256, so that is `below`/256 of the visitors, and
    of their sessions and events: the sample's counts times 256/`below` estimate the whole's."""

    below: int = 256

    @property
    def whole(self) -> bool:
        return self.below >= 256

    @property
    def percent(self) -> float:
        return round(100 * self.below / 256, 2)

    def scaled(self, count: int) -> int:
        """`count` of the sample as the whole's estimate, rounded half up."""
        return (count * 512 + self.below) // (2 * self.below)


WHOLE = Sample()


@dataclass(frozen=True)
class Clock:
    """The customer's tenant key, time zone, today there, and first day with data (when asked)."""

    tenant_hk: bytes
    zone: str
    today: date
    first_day: date | None


def resolve_range(
    date_range: str | tuple[date, date], today: date, first_day: date | None
) -> tuple[date, date]:
    """The local days [start, end] a date range covers; relative ranges end today."""
    if isinstance(date_range, tuple):
        return date_range
    days = {"today": 1, "day": 1, "7d": 7, "28d": 28, "30d": 30, "91d": 91}
    if date_range in days:
        return today - timedelta(days=days[date_range] - 1), today
    if date_range == "month":
        return today.replace(day=1), today
    if date_range in ("6mo", "12mo"):
        return _months_before(today.replace(day=1), 5 if date_range == "6mo" else 11), today
    if date_range == "year":
        return today.replace(month=1, day=1), today
    return min(first_day or today, today), today


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The same number of days just before [start, end]."""
    days = (end - start).days + 1
    if (start - date.min).days < days:
        raise QueryError(f"date_range: no previous period of {days} days before {start}")
    return start - timedelta(days=days), start - timedelta(days=1)


def _months_before(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def uses_rollups(query: StatsQuery) -> bool:
    """Whether the rollups answer the query: at most one dimension besides time, hours only alone,
    and no filter but one that picks a single value of that dimension (or, with none, of any), as a
    click on a row of the dashboard does."""
    time_dimension = query.time_dimension
    others = [d for d in query.dimensions if d != time_dimension]
    if len(others) > 1 or (time_dimension == "time:hour" and (others or query.filters)):
        return False
    return not query.filters or rollup_filter(query) is not None


def rollup_filter(query: StatsQuery) -> tuple[str, str | None] | None:
    """The dimension and value of a query's filter that the rollups apply: one `is` filter of one value
    on the query's dimension besides time, or on any when it has none (filters are never on time).
    A visitor or a session counts once in a value's rows of the daily rollup and its visitor days, as
    in the facts; with more values or dimensions it could count in several."""
    if len(query.filters) != 1:
        return None
    op, dimension, values = query.filters[0]
    others = [d for d in query.dimensions if d != query.time_dimension]
    if op != "is" or len(values) != 1 or others not in ([], [dimension]):
        return None
    return dimension, values[0]


def buckets(unit: str, start: date, end: date) -> list[datetime]:
    """The starts of the time buckets of `unit` (hour, day, week, month) that [start, end] touches."""
    lo = datetime.combine(start, time())
    hi = datetime.combine(end + timedelta(days=1), time())
    if unit == "hour":
        return [lo + timedelta(hours=h) for h in range(int((hi - lo).total_seconds()) // 3600)]
    if unit == "day":
        return [lo + timedelta(days=d) for d in range((hi - lo).days)]
    if unit == "week":
        first = lo - timedelta(days=lo.weekday())
        return [
            first + timedelta(weeks=w) for w in range((hi - first).days // 7 + ((hi - first).days % 7 > 0))
        ]
    found: list[datetime] = []
    month = lo.replace(day=1)
    while month < hi:
        found.append(month)
        month += timedelta(days=calendar.monthrange(month.year, month.month)[1])
    return found


async def run_query(
    conn: AsyncConnection[Any],
    customer_id: str,
    query: StatsQuery | Mapping[str, Any],
    *,
    force_facts: bool = False,
    sample_sessions: int = 0,
) -> dict[str, Any]:
    """Answer a stats query for the customer: results, meta and the query as answered.

    `force_facts` answers from the facts even when the rollups could (the two must agree). From the
    facts, a range that more than `sample_sessions` sessions start in is counted over a sample of
    visitors expected to hold about that many (0: never). A mapping is validated as StatsQuery
    (pydantic.ValidationError when it is not one).
    """
    query = query if isinstance(query, StatsQuery) else StatsQuery.model_validate(query)
    clock = await _clock(conn, customer_id, query.date_range == "all")
    return await _run_one(conn, clock, query, force_facts, sample_sessions)


async def _run_one(
    conn: AsyncConnection[Any], clock: Clock, query: StatsQuery, force_facts: bool, sample_sessions: int
) -> dict[str, Any]:
    """run_query's answer, the customer's clock known."""
    start, end = resolve_range(query.date_range, clock.today, clock.first_day)
    source: Source = "facts" if force_facts or not uses_rollups(query) else "rollups"
    sample = await _sample(conn, clock, start, end, sample_sessions) if source == "facts" else WHOLE
    composed = statement(query, source, sample)
    comparing = query.include is not None and query.include.comparison == "previous_period"
    before = previous_period(start, end) if comparing else None
    # Never prepared: a prepared statement soon runs PostgreSQL's generic plan, which for a
    # many-valued dimension (pages) sorts the range's rows instead of hashing them, up to three
    # times slower (bench.analytics); planning for the values costs about a millisecond.
    async with conn.cursor(row_factory=dict_row) as cur:
        params = _params(query, clock, start, end, query.limit, query.offset, sample)
        await cur.execute(composed, params, prepare=False)
        current = await cur.fetchall()
        previous: list[dict[str, Any]] = []
        if before is not None:
            # The previous period is counted over the same visitors.
            await cur.execute(composed, _params(query, clock, *before, None, 0, sample), prepare=False)
            previous = await cur.fetchall()
    answer = _answer(query, clock, (start, end), source, current, sample)
    if before is not None:
        answer["meta"]["comparison_date_range"] = list(before)
        _compare(query, answer["results"], current, previous, (start, end), before, sample)
    return answer


async def _sample(
    conn: AsyncConnection[Any], clock: Clock, start: date, end: date, sessions_cap: int
) -> Sample:
    """The visitors the facts are read for over the local days [start, end]: all of them, unless more
    than `sessions_cap` sessions (when positive) start there; then a sample expected to hold about that
    many, at least 1/256 of them."""
    if sessions_cap <= 0:
        return WHOLE
    lo, hi = datetime.combine(start, time()), datetime.combine(end + timedelta(days=1), time())
    cur = await conn.execute(Q["range_sessions"], {"tenant": clock.tenant_hk, "lo": lo, "hi": hi})
    row = await cur.fetchone()
    assert row is not None
    sessions = int(row[0])
    return WHOLE if sessions <= sessions_cap else Sample(max(1, 256 * sessions_cap // sessions))


async def run_queries(
    conn: AsyncConnection[Any], customer_id: str, queries: Sequence[StatsQuery], *, sample_sessions: int = 0
) -> list[dict[str, Any]]:
    """Answer several stats queries of the customer, each as `run_query` does, in their order.

    Queries on the facts that differ only in their one dimension (a filtered dashboard's panels: same
    range and filters, no comparison) are answered together: by one visit dimension and asking no
    event figure, by one pass over the range's sessions grouped by each of their dimensions
    (`fact_session_sets`); by one event dimension and asking no visit figure, by one pass over the
    range's events (`fact_event_sets`)."""
    clock = await _clock(conn, customer_id, any(q.date_range == "all" for q in queries))
    answers: dict[int, dict[str, Any]] = {}
    batches: dict[tuple[Any, ...], list[int]] = {}
    for i, query in enumerate(queries):
        if level := _batch_level(query):
            batches.setdefault((level, query.date_range, tuple(query.filters)), []).append(i)
    for members in batches.values():
        if len(members) < 2:
            continue
        batch = [queries[i] for i in members]
        start, end = resolve_range(batch[0].date_range, clock.today, clock.first_day)
        sample = await _sample(conn, clock, start, end, sample_sessions)
        params = _params(_union(batch), clock, start, end, None, 0, sample)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(batch_statement(batch, sample), params, prepare=False)
            rows = await cur.fetchall()
        for position, (i, query) in enumerate(zip(members, batch, strict=True)):
            own = [row for row in rows if row["query"] == position]
            answers[i] = _answer(query, clock, (start, end), "facts", own, sample)
    for i, query in enumerate(queries):
        if i not in answers:
            try:
                answers[i] = await _run_one(conn, clock, query, False, sample_sessions)
            except QueryError as exc:
                raise QueryError(f"queries[{i}]: {exc}") from None
    return [answers[i] for i in range(len(queries))]


@asynccontextmanager
async def time_limited(conn: AsyncConnection[Any], seconds: float) -> AsyncIterator[None]:
    """A transaction on `conn` that may last `seconds`: past them, the statement running is cancelled
    and TooSlow raised. The deadline is the whole block's (psycopg cancels the server's statement
    when its task is); each statement's `statement_timeout` also holds if that cancel is lost."""
    try:
        async with asyncio.timeout(seconds), conn.transaction():
            await conn.execute(Q["statement_timeout"], {"ms": max(1, round(seconds * 1000))})
            yield
    except (TimeoutError, QueryCanceled):
        raise TooSlow(f"the figures took longer than {seconds:g} s to count and were given up") from None


async def realtime_visitors(
    conn: AsyncConnection[Any], customer_id: str, seconds: int
) -> tuple[int, datetime]:
    """Distinct visitors of the customer's sessions active in the last `seconds`, and the time now."""
    cur = await conn.execute(Q["realtime_visitors"], {"customer_id": customer_id, "seconds": seconds})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), row[1]


def _answer(
    query: StatsQuery,
    clock: Clock,
    period: tuple[date, date],
    source: Source,
    rows: list[dict[str, Any]],
    sample: Sample,
) -> dict[str, Any]:
    """The answer to `query` from the rows of its statement (without the comparison)."""
    meta: dict[str, Any] = {
        "time_zone": clock.zone,
        "date_range": list(period),
        "total_rows": int(rows[0]["total_rows"]) if rows else 0,
        "source": source,
    }
    if not sample.whole:
        meta["sample_percent"] = sample.percent
    return {
        "results": [_result(query, row, sample) for row in rows if row["present"]],
        "meta": meta,
        "query": _echo(query, *period),
    }


def _batch_level(query: StatsQuery) -> str | None:
    """The batch `query` can be answered in (from the facts, by one dimension, without comparison):
    "visit" (fact_session_sets) by a visit dimension asking no event figure, "event" (fact_event_sets)
    by an event dimension asking no visit figure; None for none."""
    if uses_rollups(query) or len(query.dimensions) != 1:
        return None
    if query.include is not None and query.include.comparison is not None:
        return None
    level = DIMENSIONS[query.dimensions[0]].level
    if level == "visit" and not set(query.metrics) & {"pageviews", "events"}:
        return level
    if level == "event" and not set(query.metrics) & VISIT_METRICS:
        return level
    return None


def _union(batch: list[StatsQuery]) -> StatsQuery:
    """One query asking every metric that a query of the batch asks (its sums' parameters)."""
    metrics = list(dict.fromkeys(m for q in batch for m in q.metrics))
    return batch[0].model_copy(update={"metrics": metrics})


def _batch_answers(batch: list[StatsQuery], one_set: sql.SQL) -> sql.Composable:
    """Each query's answer from its set (`one_set`: fact_session_set or fact_event_set), tagged with
    its place in the batch (`query`)."""
    return sql.SQL("\nUNION ALL\n").join(
        sql.SQL("SELECT {} AS query, a.* FROM ({}) a").format(
            sql.Literal(position),
            _answer_statement(
                query,
                one_set.format(
                    column=sql.Identifier("x", column),
                    visitors=sql.Identifier("x", f"visitors_{column}"),
                ),
                _literals(query),
            ),
        )
        for position, query in enumerate(batch)
        for column in [DIMENSIONS[query.dimensions[0]].column]
    )


def batch_statement(batch: list[StatsQuery], sample: Sample = WHOLE) -> sql.Composed:
    """The one statement answering the batch's queries: their rows tagged with their place (`query`)."""
    columns = list(dict.fromkeys(DIMENSIONS[q.dimensions[0]].column for q in batch))
    if _batch_level(batch[0]) == "event":
        return Q["fact_event_sets"].format(
            keys=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(sql.Identifier("e", c), sql.Identifier(c)) for c in columns
            ),
            sample=_sampled(sample),
            filters=_conditions(batch[0], "event") + _conditions(batch[0], "visit"),
            sets=sql.SQL(", ").join(sql.SQL("({})").format(sql.Identifier("e", c)) for c in columns),
            answers=_batch_answers(batch, Q["fact_event_set"]),
        )

    def each(template: str, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL(template).format(
                column=sql.Identifier(alias, c),
                visitors=sql.Identifier(f"visitors_{c}"),
                own=sql.Identifier(alias, f"visitors_{c}"),
            )
            for c in columns
        )

    return Q["fact_session_sets"].format(
        columns=each("{column}", "x"),
        sessions=_sessions(batch[0], sample),
        keys=each("{column}", "y"),
        visitors=each("sum({own}) AS {visitors}", "y"),
        once=each("r.seen::integer AS {visitors}", "r"),
        firsts=each(
            "(r.seen AND row_number() OVER (PARTITION BY r.site_visitor_hk, {column}"
            " ORDER BY r.seen DESC) = 1)::integer",
            "r",
        ),
        sets=each("({column})", "y"),
        answers=_batch_answers(batch, Q["fact_session_set"]),
    )


def _sessions(query: StatsQuery, sample: Sample) -> sql.Composable:
    """The sessions whose figures answer `query` (fact_sessions): with or without event filters."""
    visit_filters = _conditions(query, "visit")
    if any(DIMENSIONS[f[1]].level == "event" for f in query.filters):
        return Q["fact_sessions_matching"].format(
            event_filters=_conditions(query, "event"), sample=_sampled(sample), filters=visit_filters
        )
    return Q["fact_sessions_seen"].format(filters=visit_filters, sample=_sampled(sample))


def _sampled(sample: Sample) -> sql.Composable:
    """The condition on a facts statement's sessions `s` that reads `sample`'s visitors only."""
    if sample.whole:
        return sql.SQL("")
    return sql.SQL(" AND s.site_visitor_hk < {}").format(sql.Placeholder("sample_below"))


async def _clock(conn: AsyncConnection[Any], customer_id: str, first_day: bool) -> Clock:
    cur = await conn.execute(Q["tenant_clock"], {"customer_id": customer_id, "first_day": first_day})
    row = await cur.fetchone()
    assert row is not None
    return Clock(tenant_hk=bytes(row[0]), zone=row[1], today=row[2], first_day=row[3])


def _params(
    query: StatsQuery, clock: Clock, start: date, end: date, limit: int | None, offset: int, sample: Sample
) -> dict[str, Any]:
    asked = set(query.metrics)
    time_dimension = query.time_dimension
    others = [d for d in query.dimensions if d != time_dimension]
    picked = rollup_filter(query)
    params: dict[str, Any] = {
        "tenant": clock.tenant_hk,
        "zone": clock.zone,
        "start": start,
        "end": end,
        "lo": datetime.combine(start, time()),
        "hi": datetime.combine(end + timedelta(days=1), time()),
        "unit": DIMENSIONS[time_dimension].column if time_dimension else "day",
        "dimension": others[0] if others else (picked[0] if picked else None),
        # The value the rollups keep (a missing one is '' there), or NULL: all.
        "value": None if picked is None else picked[1] or "",
        "visitors_asked": "visitors" in asked,
        "visits_asked": bool(asked & VISIT_METRICS),
        "pageviews_asked": "pageviews" in asked,
        "events_asked": "events" in asked,
        "limit": limit,
        "offset": offset,
    }
    # The first bytes of the sample's visitor keys: mart.session_event_f is read by them.
    params["visitor_bytes"] = list(range(sample.below))
    if not sample.whole:
        params["sample_below"] = bytes([sample.below])
    for i, (op, _, values) in enumerate(query.filters):
        if op == "contains":
            params[f"f{i}"] = [f"%{_escape_like(v or '')}%" for v in values]
        else:
            # A missing value is '' in the marts.
            params[f"f{i}"] = ["" if v is None else v for v in values]
    return params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _key(i: int) -> sql.Identifier:
    return sql.Identifier(f"k{i}")


# What the answer of one statement takes from its parameters; a batch's answers have their own.
_ANSWER_VALUES = ("limit", "offset", "visitors_asked", "visits_asked", "pageviews_asked", "events_asked")


def statement(query: StatsQuery, source: Source, sample: Sample = WHOLE) -> sql.Composed:
    """The one statement answering `query` from `source` (the facts: over `sample`'s visitors): a page
    of rows with the count of all."""
    sums = _rollups(query) if source == "rollups" else _facts(query, sample)
    return _answer_statement(query, sums, {name: sql.Placeholder(name) for name in _ANSWER_VALUES})


def _literals(query: StatsQuery) -> dict[str, sql.Composable]:
    """The answer's values of `query` written into the statement (a batch's part)."""
    asked = set(query.metrics)
    return {
        "limit": sql.Literal(query.limit),
        "offset": sql.Literal(query.offset),
        "visitors_asked": sql.Literal("visitors" in asked),
        "visits_asked": sql.Literal(bool(asked & VISIT_METRICS)),
        "pageviews_asked": sql.Literal("pageviews" in asked),
        "events_asked": sql.Literal("events" in asked),
    }


def _answer_statement(
    query: StatsQuery, sums: sql.Composable, values: Mapping[str, sql.Composable]
) -> sql.Composed:
    keys = [_key(i) for i in range(len(query.dimensions))]
    time_dimension = query.time_dimension
    rows: sql.Composable
    if not keys:
        rows = Q["rows_total"]
    elif query.dimensions == [time_dimension]:
        rows = Q["rows_of_buckets"].format(bucket=keys[0])
    else:
        rows = Q["rows_of_sums"].format(**{k: v for k, v in values.items() if k.endswith("_asked")})
    columns = {name: _key(i) for i, name in enumerate(query.dimensions)}
    order = [
        sql.SQL("{} {}").format(columns.get(field, sql.Identifier(field)), _DIRECTIONS[direction])
        for field, direction in query.ordering()
    ]
    # The keys make the order total: pages of one answer never overlap.
    order += [sql.SQL("{} ASC").format(k) for k in keys]
    return Q["answer"].format(
        sums=sums,
        keys=sql.SQL("").join(sql.SQL("{}, ").format(k) for k in keys),
        rows=rows,
        order=sql.SQL(", ").join(order),
        limit=values["limit"],
        offset=values["offset"],
    )


def _rollups(query: StatsQuery) -> sql.Composable:
    time_dimension = query.time_dimension
    names = {d: _key(i) for i, d in enumerate(query.dimensions)}
    others = [d for d in query.dimensions if d != time_dimension]
    # A filter without a dimension to break down: the filter's one value, in a column of its own.
    picked = sql.Identifier("picked")
    if time_dimension is None:
        if others:
            return Q["rollup_values"].format(value=names[others[0]])
        if query.filters:
            return Q["rollup_value_total"].format(values=Q["rollup_values"].format(value=picked))
        return Q["rollup_total"]
    bucket = names[time_dimension]
    if others or query.filters:
        return Q["rollup_bucket_values"].format(bucket=bucket, value=names[others[0]] if others else picked)
    if time_dimension == "time:hour":
        return Q["rollup_hours"].format(bucket=bucket)
    return Q["rollup_buckets"].format(bucket=bucket)


def _column(name: str, side: str) -> sql.Composable:
    """Dimension `name` on the events' side (`e`: an event's hour) or the visits' (`s`: the session's start).

    Page and type are always the event's (`e`), the visit attributes the session's (`s`)."""
    dimension = DIMENSIONS[name]
    if dimension.level == "time":
        hour = sql.Identifier("e", "hour") if side == "e" else sql.Identifier("s", "start_hour")
        return _TRUNCATED.format(hour)
    return sql.Identifier("e" if dimension.level == "event" else "s", dimension.column)


def _conditions(query: StatsQuery, level: str) -> sql.Composable:
    """` AND ...` for each filter on a dimension of `level` (event or visit)."""
    parts = [
        sql.SQL(" AND ") + _OPERATORS[op].format(_column(dimension, "e"), sql.Placeholder(f"f{i}"))
        for i, (op, dimension, _) in enumerate(query.filters)
        if DIMENSIONS[dimension].level == level
    ]
    return sql.SQL("").join(parts)


def _facts(query: StatsQuery, sample: Sample) -> sql.Composable:
    dims = query.dimensions
    keys = [_key(i) for i in range(len(dims))]
    event_keys = sql.SQL("").join(
        sql.SQL("{} AS {}, ").format(_column(d, "e"), k) for d, k in zip(dims, keys, strict=True)
    )
    visit_keys = sql.SQL("").join(
        sql.SQL("{} AS {}, ").format(_column(d, "s"), k) for d, k in zip(dims, keys, strict=True)
    )
    group = (
        sql.SQL("GROUP BY {}").format(sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(keys))))
        if keys
        else sql.SQL("")
    )
    event_filters = _conditions(query, "event")
    visit_filters = _conditions(query, "visit")
    if (
        all(DIMENSIONS[d].level == "visit" for d in dims)
        and all(DIMENSIONS[f[1]].level == "visit" for f in query.filters)
        and not set(query.metrics) & {"pageviews", "events"}
    ):
        # No event figure asked and no event dimension or filter: every figure comes from one pass
        # over the sessions, none from the range's events (a dashboard's visit panels).
        return Q["fact_sessions"].format(keys=visit_keys, sessions=_sessions(query, sample), group=group)
    events = Q["fact_events"].format(
        keys=event_keys, sample=_sampled(sample), filters=event_filters + visit_filters, group=group
    )
    if any(DIMENSIONS[d].level == "event" for d in dims):
        visits = Q["fact_visits_by_event"].format(
            outer_keys=sql.SQL("").join(
                sql.SQL("{}, ").format(sql.Identifier("x", f"k{i}")) for i in range(len(keys))
            ),
            keys=visit_keys,
            sample=_sampled(sample),
            filters=event_filters + visit_filters,
            group=group,
        )
    else:
        exists = (
            sql.SQL(" AND ") + Q["fact_event_exists"].format(filters=event_filters)
            if any(DIMENSIONS[f[1]].level == "event" for f in query.filters)
            else sql.SQL("")
        )
        visits = Q["fact_visits"].format(
            keys=visit_keys, sample=_sampled(sample), filters=visit_filters + exists, group=group
        )
    if not keys:
        return Q["fact_sums_total"].format(events=events, visits=visits)
    return Q["fact_sums"].format(keys=sql.SQL(", ").join(keys), events=events, visits=visits)


def _value(name: str, value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat() if name == "time:hour" else value.date().isoformat()
    return value or None


def _number(metric: str, value: Any, sample: Sample) -> int | float:
    if metric in COUNT_METRICS:
        return sample.scaled(int(value))
    if metric in INTEGER_METRICS:
        return int(value)
    return float(value) if isinstance(value, Decimal) else value


def _result(query: StatsQuery, row: Mapping[str, Any], sample: Sample) -> dict[str, Any]:
    return {
        "dimensions": [_value(d, row[f"k{i}"]) for i, d in enumerate(query.dimensions)],
        "metrics": [_number(m, row[m], sample) for m in query.metrics],
    }


def _compare(
    query: StatsQuery,
    results: list[dict[str, Any]],
    current: list[dict[str, Any]],
    previous: list[dict[str, Any]],
    period: tuple[date, date],
    before: tuple[date, date],
    sample: Sample,
) -> None:
    """Add each result's comparison: the row of the same keys before (a time bucket: the same place)."""
    time_dimension = query.time_dimension
    position: dict[Any, int] = {}
    earlier: dict[Any, int] = {}
    if time_dimension is not None:
        unit = DIMENSIONS[time_dimension].column
        position = {b: i for i, b in enumerate(buckets(unit, *period))}
        earlier = {b: i for i, b in enumerate(buckets(unit, *before))}

    def key(row: Mapping[str, Any], places: dict[Any, int]) -> tuple[Any, ...]:
        return tuple(
            places.get(row[f"k{i}"]) if d == time_dimension else row[f"k{i}"]
            for i, d in enumerate(query.dimensions)
        )

    found = {key(row, earlier): row for row in previous if row["present"]}
    shown = [row for row in current if row["present"]]
    for result, row in zip(results, shown, strict=True):
        then = found.get(key(row, position))
        values = [_number(m, then[m], sample) if then else 0 for m in query.metrics]
        result["comparison"] = {
            "metrics": values,
            "change": [
                _change(m, new, old)
                for m, new, old in zip(query.metrics, result["metrics"], values, strict=True)
            ],
        }


def _change(metric: str, new: float, old: float) -> float | None:
    if old == 0:
        return None
    if metric == "bounce_rate":
        return round(new - old, 1)
    return round((new - old) * 100 / old, 1)


def _echo(query: StatsQuery, start: date, end: date) -> dict[str, Any]:
    echo: dict[str, Any] = {
        "date_range": [start, end],
        "metrics": list(query.metrics),
        "dimensions": list(query.dimensions),
        "filters": [[op, dimension, list(values)] for op, dimension, values in query.filters],
        "order_by": [[field, direction] for field, direction in query.ordering()],
        "limit": query.limit,
        "offset": query.offset,
    }
    if query.include is not None and query.include.comparison is not None:
        echo["include"] = {"comparison": query.include.comparison}
    return echo
