"""The naive baseline: the reference design, done naively but correctly, on the same schema.

What the benchmarks compare the service against: a new PostgreSQL connection and a token query
per request, one single-row statement at a time, and every event processed row by row through
staging into the business layer (in the request for `/track`, in a background task otherwise).
Run it with `python -m bench.naive_baseline --port N`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import psycopg
from fastapi import BackgroundTasks, Body, FastAPI, Header, HTTPException, Request
from psycopg.types.json import Jsonb

from onevault import sqlfile
from onevault.pipeline import useragents

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__ or "bench", "naive.sql")

Conn = psycopg.Connection[Any]

_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# An absolute http(s) URL, as the service accepts it (PostgreSQL's `.` and `$` in Python terms).
_URL = re.compile(r"https?://[^/?#\s]+[^?#\s]*(?:\?[^#]*)?(?:#.*)?", re.IGNORECASE | re.DOTALL)
_USER_INFO_OR_PORT = re.compile(r"^[^@]*@|:[0-9]*\Z")
_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_SIZES = ("screen_width", "screen_height", "viewport_width", "viewport_height")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*", re.IGNORECASE)
_NO_AGENT = useragents.ParsedAgent("Other", None, "Other", None, "desktop", False)
_YEAR_2000 = datetime(2000, 1, 1, tzinfo=UTC)


# --- enrichment, in Python, one event at a time ------------------------------------------------


def _text(value: Any) -> str | None:
    """A JSON value as `->>` would give it: strings as they are, anything else as JSON text."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _language_tag(value: str | None) -> str | None:
    """A browser's language as a BCP 47 tag in its usual case, else None (as util.language_tag)."""
    if value is None or len(value) > 35:
        return None
    tag = value.strip(" ").replace("_", "-")
    if not _LANGUAGE.fullmatch(tag):
        return None
    first, *rest = tag.split("-")
    cased = [
        sub.upper()
        if len(sub) == 2 and sub.isalpha()
        else sub.capitalize()
        if len(sub) == 4 and sub.isalpha()
        else sub.lower()
        for sub in rest
    ]
    return "-".join([first.lower(), *cased])


def _pixels(value: Any) -> int | None:
    """A size in CSS pixels (a JSON number, 0 to 100,000), rounded half away from zero (as util.pixels)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = Decimal(str(value))
    if not 0 <= number <= 100_000:
        return None
    return int(number.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _split_url(url: str | None) -> tuple[str, str, str, str | None] | None:
    """An absolute http(s) URL normalised and split: (url, host, path, query), else None.

    Scheme and authority lower-cased, fragment dropped, the host without user info and port."""
    if url is None:
        return None
    url = url.strip(" ")
    if not _URL.fullmatch(url):
        return None
    scheme, _, after = url.partition("://")
    authority = after.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    path, _, query = after[len(authority) :].split("#", 1)[0].partition("?")
    path = path or "/"
    normalised = scheme.lower() + "://" + authority.lower() + path + ("?" + query if query else "")
    return normalised, _USER_INFO_OR_PORT.sub("", authority).lower(), path, query or None


def _url_decode(value: str) -> str | None:
    """A percent-encoded URL component ('+' is a space) decoded; None when it is not UTF-8 text."""
    try:
        text = unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _query_param(query: str | None, name: str) -> str | None:
    """The first `name=` parameter of a query string, decoded."""
    marker = "&" + name + "="
    if query is None or marker not in "&" + query:
        return None
    return _url_decode(("&" + query).split(marker, 2)[1].split("&", 1)[0])


def _milliseconds(delta: timedelta) -> int:
    """A duration in whole milliseconds, halves rounded away from zero."""
    microseconds = Decimal(delta // timedelta(microseconds=1))
    return int((microseconds / 1000).quantize(Decimal(1), ROUND_HALF_UP))


def _client_time(value: Any) -> tuple[datetime | None, bool]:
    """A client timestamp (ISO 8601 or epoch milliseconds) and whether it was readable."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int | float):
        if abs(value) >= 1e14:
            return None, False
        return datetime.fromtimestamp(value / 1000, UTC), True
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None, False
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), True
    return None, False


def enrich(
    raw_event_id: int,
    tenant_hk: bytes,
    event_id: str,
    payload: dict[str, Any],
    received_at: datetime,
    user_agent: str | None,
    client_ip_hash: bytes | None,
    record_source: str,
) -> dict[str, Any]:
    """The staging row of one raw event: validation, normalised URL, UTM, agent, time, visitor, session."""
    raw_data = payload.get("event_data")
    data = raw_data if isinstance(raw_data, dict) else {}

    def known(key: str) -> Any:
        value = payload.get(key)
        return value if value is not None else data.get(key)

    event_type = _text(known("event_type"))
    if event_type is None:
        event_type = "page_view"
    page_in, referrer_in = _text(known("page_url")), _text(known("referrer"))
    page, referrer = _split_url(page_in), _split_url(referrer_in)
    query = page[3] if page else None
    agent = useragents.parse(user_agent) if user_agent else _NO_AGENT
    ts, ts_ok = _client_time(known("timestamp"))
    sent, sent_ok = _client_time(known("sent_at"))
    if ts is None:
        occurred_at = received_at
    elif sent is not None:
        occurred_at = received_at - (sent - ts)
    else:
        occurred_at = ts
    clock_skew_ms = _milliseconds(sent - received_at) if sent is not None else None

    invalid = [
        reason
        for reason, failed in (
            ("page_url is not an absolute http(s) URL", page_in is not None and page is None),
            ("invalid event_type", not _EVENT_TYPE.fullmatch(event_type)),
            ("event_data is not an object", raw_data is not None and not isinstance(raw_data, dict)),
            ("timestamp is neither ISO 8601 nor epoch milliseconds", not ts_ok),
            ("sent_at is neither ISO 8601 nor epoch milliseconds", not sent_ok),
            ("timestamp is in the future", occurred_at > received_at + timedelta(days=1)),
            ("timestamp is before 2000", occurred_at < _YEAR_2000),
        )
        if failed
    ]
    suspicious = [
        reason
        for reason, flagged in (
            ("bot user agent", agent.is_bot),
            (
                "timestamp more than 30 days before receipt",
                _YEAR_2000 <= occurred_at < received_at - timedelta(days=30),
            ),
        )
        if flagged
    ]
    visitor_in, session_in = _text(known("visitor_id")), _text(known("session_id"))
    visitor_id = (
        visitor_in
        or "anon-"
        + hashlib.sha256(tenant_hk + (client_ip_hash or b"") + (user_agent or "").encode()).hexdigest()[:32]
    )
    penalties = (
        ("0.15", page is None),
        ("0.1", visitor_in is None),
        ("0.1", session_in is None),
        ("0.1", user_agent is None),
        ("0.3", bool(suspicious)),
    )
    score = Decimal(1) - sum((Decimal(penalty) for penalty, applies in penalties if applies), Decimal(0))
    status = "INVALID" if invalid else "SUSPICIOUS" if suspicious else "VALID"
    return {
        "raw_event_id": raw_event_id,
        "tenant_hk": tenant_hk,
        "event_id": event_id,
        "record_source": "staging:" + record_source,
        "validation_status": status,
        "validation_reasons": invalid + suspicious,
        "quality_score": Decimal(0) if invalid else max(Decimal(0), score),
        "event_type": event_type,
        "page_url": page[0] if page else None,
        "page_host": page[1] if page else None,
        "page_path": page[2] if page else None,
        "page_query": page[3] if page else None,
        "page_bk": page[0].split("?", 1)[0] if page else None,
        "page_title": _text(known("page_title")),
        **{name: _query_param(query, name) for name in _UTM},
        "referrer_url": referrer[0] if referrer else None,
        "referrer_host": referrer[1] if referrer else None,
        "user_agent": user_agent,
        "browser_family": agent.browser_family,
        "browser_version": agent.browser_version,
        "os_family": agent.os_family,
        "os_version": agent.os_version,
        "device_type": agent.device_type,
        "is_bot": agent.is_bot,
        "client_ip_hash": client_ip_hash,
        "received_at": received_at,
        "occurred_at": occurred_at,
        "clock_skew_ms": clock_skew_ms,
        # A valid event without a session gets one from its neighbours: see _derived_session.
        "session_id": session_in,
        "session_derived": session_in is None and not invalid,
        "visitor_id": visitor_id,
        "visitor_derived": visitor_in is None,
        "user_id": _text(known("user_id")),
        "language": _language_tag(_text(known("language"))),
        **{name: _pixels(known(name)) for name in _SIZES},
        "event_properties": Jsonb(data),
    }


def _hash_diff(*values: Any) -> bytes:
    """SHA-256 of a satellite's attributes."""
    return hashlib.sha256(json.dumps(values, default=str).encode()).digest()


# --- the reference design's storage and processing ---------------------------------------------


def store_event(
    conn: Conn,
    tenant_hk: bytes,
    event_id: str,
    payload: dict[str, Any],
    user_agent: str | None,
    client_ip: str | None,
) -> int:
    """Insert one event into the raw layer (single-row INSERT); the raw_event_id holding it."""
    params = {
        "tenant_hk": tenant_hk,
        "event_id": event_id,
        "payload": Jsonb(payload),
        "user_agent": user_agent,
        "client_ip": client_ip,
    }
    row = conn.execute(Q["insert_raw"], params).fetchone()
    if row is None:
        row = conn.execute(Q["existing_raw"], params).fetchone()
    if row is None:
        raise RuntimeError(f"event {event_id!r} neither stored nor found")
    return int(row[0])


def process_event(conn: Conn, raw_event_id: int) -> None:
    """Process one raw event row by row through staging into the business layer (caller's transaction)."""
    row = conn.execute(Q["select_raw"], {"raw_event_id": raw_event_id}).fetchone()
    if row is None or row[7] == "PROCESSED":
        return
    tenant_hk, event_id, payload, received_at, user_agent, client_ip_hash, record_source, _ = row
    tenant_hk = bytes(tenant_hk)
    staged = enrich(
        raw_event_id,
        tenant_hk,
        event_id,
        payload,
        received_at,
        user_agent,
        bytes(client_ip_hash) if client_ip_hash is not None else None,
        record_source,
    )
    if staged["session_derived"]:
        staged["session_id"] = _derived_session(conn, staged)
    keys = conn.execute(Q["insert_staging"], staged).fetchone()
    if keys is not None and staged["validation_status"] != "INVALID":
        event_hk, session_hk, visitor_hk, page_hk, staged["referrer_class"] = keys
        _load_business(conn, staged, bytes(event_hk), bytes(session_hk), bytes(visitor_hk), page_hk)
    conn.execute(Q["mark_raw_processed"], {"raw_event_id": raw_event_id})


def _derived_session(conn: Conn, s: dict[str, Any]) -> str:
    """The session of a staged event without one: the visitor's, unless 30 minutes passed without events.

    That of the visitor's staged event nearest before it within 30 minutes, else nearest after it,
    else a new one named after the visitor and its start."""
    row = conn.execute(Q["adjacent_session"], s).fetchone()
    if row is not None:
        return str(row[0])
    start = s["occurred_at"].astimezone(UTC)
    return f"{s['visitor_id']}:{start:%Y%m%dT%H%M%S}.{start.microsecond // 1000:03d}"


def _load_business(
    conn: Conn, s: dict[str, Any], event_hk: bytes, session_hk: bytes, visitor_hk: bytes, page_hk: Any
) -> None:
    """Hubs, links and satellites of one staged event, one statement at a time."""
    tenant_hk = s["tenant_hk"]
    page_hk = bytes(page_hk) if page_hk is not None else None
    hub = {"tenant_hk": tenant_hk}
    conn.execute(Q["insert_visitor_hub"], hub | {"hk": visitor_hk, "bk": s["visitor_id"]})
    conn.execute(Q["insert_session_hub"], hub | {"hk": session_hk, "bk": s["session_id"]})
    if page_hk is not None:
        conn.execute(Q["insert_page_hub"], hub | {"hk": page_hk, "bk": s["page_bk"]})
    conn.execute(Q["insert_event_hub"], hub | {"hk": event_hk, "bk": s["event_id"]})

    link = {"tenant_hk": tenant_hk, "event_hk": event_hk, "session_hk": session_hk}
    conn.execute(
        Q["insert_event_session_link"], link | {"hk": hashlib.sha256(event_hk + session_hk).digest()}
    )
    if page_hk is not None:
        conn.execute(
            Q["insert_event_page_link"],
            link | {"page_hk": page_hk, "hk": hashlib.sha256(event_hk + page_hk).digest()},
        )
    conn.execute(
        Q["insert_session_visitor_link"],
        link | {"visitor_hk": visitor_hk, "hk": hashlib.sha256(session_hk + visitor_hk).digest()},
    )

    details = s | {
        "event_hk": event_hk,
        "hash_diff": _hash_diff(
            s["event_type"],
            s["occurred_at"],
            s["page_url"],
            s["referrer_url"],
            s["user_id"],
            s["event_properties"].obj,
        ),
    }
    conn.execute(Q["insert_event_details"], details)

    if page_hk is not None:
        current = conn.execute(Q["current_page_details"], {"page_hk": page_hk}).fetchone()
        title = s["page_title"] if s["page_title"] is not None else (current[1] if current else None)
        diff = _hash_diff(s["page_host"], s["page_path"], title)
        if current is None or bytes(current[0]) != diff:
            conn.execute(
                Q["insert_page_details"],
                s | {"page_hk": page_hk, "hash_diff": diff, "page_title": title},
            )

    diff = _hash_diff(
        s["user_id"],
        s["browser_family"],
        s["browser_version"],
        s["os_family"],
        s["os_version"],
        s["device_type"],
        s["is_bot"],
        s["visitor_derived"],
    )
    current = conn.execute(Q["current_visitor_details"], {"visitor_hk": visitor_hk}).fetchone()
    if current is None or bytes(current[0]) != diff:
        conn.execute(
            Q["insert_visitor_details"],
            s | {"visitor_hk": visitor_hk, "hash_diff": diff, "is_derived": s["visitor_derived"]},
        )

    cur = conn.execute(Q["session_aggregate"], {"session_hk": session_hk})
    names = [c.name for c in cur.description or ()]
    values = cur.fetchone()
    if values is not None and values[0] is not None:
        summary = dict(zip(names, values, strict=True))
        diff = _hash_diff(*summary.values())
        current = conn.execute(Q["current_session_summary"], {"session_hk": session_hk}).fetchone()
        if current is None or bytes(current[0]) != diff:
            conn.execute(
                Q["insert_session_summary"],
                summary
                | {
                    "session_hk": session_hk,
                    "hash_diff": diff,
                    "tenant_hk": tenant_hk,
                    "duration_seconds": int(
                        (summary["session_end"] - summary["session_start"]).total_seconds()
                    ),
                    "is_bounce": summary["page_views"] <= 1,
                },
            )

    conn.execute(Q["mark_staging_loaded"], {"raw_event_id": s["raw_event_id"]})


# --- the HTTP side: a new connection and a token query per request ----------------------------


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(conn: Conn, customer_id: str | None, authorization: str | None) -> bytes:
    """The tenant of a request, looked up by the SHA-256 of its bearer token (400/401/403 otherwise)."""
    if not customer_id:
        raise HTTPException(400, "missing X-Customer-ID header")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token")
    row = conn.execute(
        Q["resolve_token"], {"token_hash": hashlib.sha256(token.strip().encode()).digest()}
    ).fetchone()
    if row is None:
        raise _unauthorized("invalid token")
    owner, tenant_hk, active, scopes, expires_at, revoked_at = row
    if revoked_at is not None:
        raise _unauthorized("token revoked")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise _unauthorized("token expired")
    if owner != customer_id:
        raise HTTPException(403, "token does not belong to this customer")
    if not active:
        raise HTTPException(403, "customer is disabled")
    if "track" not in scopes:
        raise HTTPException(403, "token lacks the 'track' scope")
    return bytes(tenant_hk)


def _connect(url: str) -> Conn:
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError:
        raise HTTPException(503, "database unavailable", headers={"Retry-After": "2"}) from None


def process_in_background(url: str, raw_event_ids: list[int]) -> None:
    """Process events one by one on a new connection, one transaction each."""
    with psycopg.connect(url, autocommit=True) as conn:
        for raw_event_id in raw_event_ids:
            try:
                with conn.transaction():
                    process_event(conn, raw_event_id)
            except psycopg.Error as exc:
                logger.warning("naive: processing of %d failed: %s", raw_event_id, type(exc).__name__)
                conn.execute(Q["mark_raw_failed"], {"raw_event_id": raw_event_id, "message": str(exc)})


def _event_id(event: dict[str, Any]) -> str:
    given = event.get("event_id")
    return str(given)[:128] if given else str(uuid.uuid4())


def app() -> FastAPI:
    """The baseline's FastAPI application (a factory: reads SYSTEM_DATABASE_URL)."""
    url = os.environ["SYSTEM_DATABASE_URL"]
    api = FastAPI(title="naive baseline", openapi_url=None)

    @api.get("/health")
    def health() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @api.post("/api/v1/track")
    def track(
        request: Request,
        event: Annotated[dict[str, Any], Body()],
        x_customer_id: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Store one event and process it row by row, all in one transaction."""
        with _connect(url) as conn:
            tenant_hk = authenticate(conn, x_customer_id, authorization)
            event_id = _event_id(event)
            with conn.transaction():
                raw_event_id = store_event(
                    conn, tenant_hk, event_id, event, request.headers.get("user-agent"), _client(request)
                )
                process_event(conn, raw_event_id)
        return {
            "success": True,
            "event_id": event_id,
            "processing": "automatic",
            "pipeline": {"status": "complete"},
        }

    @api.post("/api/v1/track/async")
    def track_async(
        request: Request,
        background: BackgroundTasks,
        event: Annotated[dict[str, Any], Body()],
        x_customer_id: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Store one event, commit, and process it in a background task."""
        with _connect(url) as conn:
            tenant_hk = authenticate(conn, x_customer_id, authorization)
            event_id = _event_id(event)
            with conn.transaction():
                raw_event_id = store_event(
                    conn, tenant_hk, event_id, event, request.headers.get("user-agent"), _client(request)
                )
        background.add_task(process_in_background, url, [raw_event_id])
        return {"success": True, "event_id": event_id, "processing": "background"}

    @api.post("/api/v1/track/batch")
    def track_batch(
        request: Request,
        background: BackgroundTasks,
        body: Annotated[dict[str, Any] | list[Any], Body()],
        x_customer_id: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Store each event with its own INSERT in one transaction, then process each in the background."""
        events = body.get("events") if isinstance(body, dict) else body
        if not isinstance(events, list) or not events:
            raise HTTPException(422, 'body must be {"events": [...]} or a non-empty JSON array')
        results: list[dict[str, Any]] = []
        stored: list[int] = []
        with _connect(url) as conn:
            tenant_hk = authenticate(conn, x_customer_id, authorization)
            agent, client = request.headers.get("user-agent"), _client(request)
            with conn.transaction():
                for index, event in enumerate(events):
                    if not isinstance(event, dict):
                        results.append({"index": index, "status": "rejected", "reason": "not an object"})
                        continue
                    event_id = _event_id(event)
                    stored.append(store_event(conn, tenant_hk, event_id, event, agent, client))
                    results.append({"index": index, "status": "accepted", "event_id": event_id})
        background.add_task(process_in_background, url, stored)
        return {"success": len(stored) == len(events), "accepted": len(stored), "results": results}

    return api


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
