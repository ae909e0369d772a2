"""The naive baseline: the reference design, done naively but correctly, on the same schema.

What the benchmarks compare the service against: a new PostgreSQL connection and a token query
per request, one single-row statement at a time, and every event processed row by row through
staging into the business layer (in the request for `/track`, in a background task otherwise),
under the locks and with the derived data docs/vault.md describes: sessions re-derived on the
visitor's timeline, summaries recomputed from all their events, satellites by applied date,
effectivity rows.
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
from psycopg.rows import dict_row
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
_BLANK = " \t\r\n\f\v"  # what util.canon_id and the user id are trimmed of
_GAP = timedelta(minutes=30)  # inactivity that ends a derived session
_GHOST_PAGE = bytes(32)  # the zero key: the page of events without one (docs/vault.md)


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


def _canon_id(value: Any) -> str | None:
    """A visitor or session id as a business key: trimmed, lower case, None when blank (util.canon_id)."""
    text = _text(value)
    return (text.strip(_BLANK).lower() or None) if text is not None else None


def _hash_key(tenant_hk: bytes, business_key: str) -> bytes:
    """The hash key of a business key (as util.hash_key)."""
    return hashlib.sha256(tenant_hk + business_key.encode()).digest()


def _derived_key(tenant_hk: bytes, business_key: str) -> bytes:
    """The hash key of a key the service derives itself, in its own namespace (as util.derived_key)."""
    return hashlib.sha256(tenant_hk + b"\xff" + business_key.encode()).digest()


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
    visitor_in, session_in = _canon_id(known("visitor_id")), _canon_id(known("session_id"))
    visitor_id = (
        visitor_in
        or "anon-"
        + hashlib.sha256(tenant_hk + (client_ip_hash or b"") + (user_agent or "").encode()).hexdigest()[:32]
    )
    user_id = (_text(known("user_id")) or "").strip(_BLANK) or None
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
        # A valid event without a session gets one on its visitor's timeline: see _derive_session.
        "session_id": session_in,
        "session_derived": session_in is None and not invalid,
        "visitor_id": visitor_id,
        "visitor_derived": visitor_in is None,
        "user_id": user_id,
        "language": _language_tag(_text(known("language"))),
        **{name: _pixels(known(name)) for name in _SIZES},
        "event_properties": Jsonb(data),
        "event_hk": _hash_key(tenant_hk, event_id),
        "session_hk": _hash_key(tenant_hk, session_in) if session_in is not None else None,
        "visitor_hk": (
            _hash_key(tenant_hk, visitor_id)
            if visitor_in is not None
            else _derived_key(tenant_hk, visitor_id)
        ),
        "page_hk": _hash_key(tenant_hk, page[0].split("?", 1)[0]) if page else None,
    }


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
    tenant_hk, event_id, payload, received_at, user_agent, client_ip_hash, record_source, _, lane = row
    staged = enrich(
        raw_event_id,
        bytes(tenant_hk),
        event_id,
        payload,
        received_at,
        user_agent,
        bytes(client_ip_hash) if client_ip_hash is not None else None,
        record_source,
    )
    # The lane staging.process_batch holds: runs sharing a session serialise.
    conn.execute(Q["lock_lane"], {"tenant_hk": bytes(tenant_hk), "lane": lane})
    moved = _derive_session(conn, staged) if staged["session_derived"] else []
    inserted = conn.execute(Q["insert_staging"], staged).fetchone()
    if inserted is not None and staged["validation_status"] != "INVALID":
        staged["referrer_class"] = inserted[0]
        _load_business(conn, staged, record_source, moved)
    conn.execute(Q["mark_raw_processed"], {"tenant_hk": bytes(tenant_hk), "raw_event_id": raw_event_id})


def _iso_ms(moment: datetime) -> str:
    """A moment as UTC ISO 8601 with milliseconds (truncated, as to_char's MS)."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _derive_session(conn: Conn, s: dict[str, Any]) -> list[int]:
    """Give an event without client session its derived session; the staged events that moved.

    The visitor's staged sessions within 30 minutes of the event (the only ones it can extend,
    start earlier or merge) are re-derived with it on the visitor's timeline: a gap of more than
    30 minutes starts a session, named after the visitor and its earliest event. Staged events
    whose session changed are moved, one UPDATE each."""
    first_at = last_at = s["occurred_at"]
    near = {"visitor_hk": s["visitor_hk"], "occurred_at": s["occurred_at"]}
    touched: set[bytes] = set()
    for side in ("nearest_session_before", "nearest_session_after"):
        found = conn.execute(Q[side], near).fetchone()
        if found is not None:
            touched.add(bytes(found[0]))
    for session_hk in sorted(touched):
        span = conn.execute(Q["session_span"], {"session_hk": session_hk}).fetchone()
        if span is not None and span[0] is not None:
            first_at, last_at = min(first_at, span[0]), max(last_at, span[1])

    timeline: list[tuple[datetime, bytes, int, bytes | None, str]] = [
        (occurred_at, bytes(event_hk), int(raw_event_id), bytes(session_hk), str(visitor_id))
        for raw_event_id, occurred_at, event_hk, session_hk, visitor_id in conn.execute(
            Q["visitor_timeline"], {"visitor_hk": s["visitor_hk"], "first_at": first_at, "last_at": last_at}
        )
    ]
    timeline.append((s["occurred_at"], s["event_hk"], s["raw_event_id"], None, s["visitor_id"]))
    timeline.sort(key=lambda event: (event[0], event[1]))

    moved: list[int] = []
    start = previous = timeline[0][0]
    for occurred_at, _, raw_event_id, staged_hk, visitor_id in timeline:
        if occurred_at > previous + _GAP:
            start = occurred_at
        previous = occurred_at
        session_id = f"{visitor_id}@{_iso_ms(start)}"
        session_hk = _derived_key(s["tenant_hk"], session_id)
        if staged_hk is None:
            s["session_id"], s["session_hk"] = session_id, session_hk
        elif staged_hk != session_hk:
            moved_to = {"raw_event_id": raw_event_id, "session_id": session_id, "session_hk": session_hk}
            conn.execute(Q["move_staged_event"], moved_to)
            moved.append(raw_event_id)
    return moved


def _load_business(conn: Conn, s: dict[str, Any], source: str, moved: list[int]) -> None:
    """Hubs, links and satellites of one staged event and the sessions it touched, one statement at a time."""
    found = conn.execute(Q["load_date"]).fetchone()
    assert found is not None
    event_hk, session_hk, visitor_hk, page_hk = s["event_hk"], s["session_hk"], s["visitor_hk"], s["page_hk"]
    row = {"tenant_hk": s["tenant_hk"], "load_date": found[0], "source": source}
    if page_hk is not None:
        conn.execute(Q["insert_page_hub"], row | {"hk": page_hk, "bk": s["page_url"].split("?", 1)[0]})
        if s["page_title"] is not None:
            conn.execute(Q["lock_page"], {"page_hk": page_hk})
    conn.execute(Q["insert_visitor_hub"], row | {"hk": visitor_hk, "bk": s["visitor_id"]})
    conn.execute(Q["insert_session_hub"], row | {"hk": session_hk, "bk": s["session_id"]})
    new_event = conn.execute(Q["insert_event_hub"], row | {"hk": event_hk, "bk": s["event_id"]}).fetchone()
    if new_event is not None:
        link = row | {"event_hk": event_hk, "session_hk": session_hk, "page_hk": page_hk or _GHOST_PAGE}
        conn.execute(Q["insert_event_session_link"], link | {"hk": _sha256(event_hk, session_hk)})
        conn.execute(Q["insert_event_page_link"], link | {"hk": _sha256(event_hk, link["page_hk"])})
        conn.execute(Q["insert_event_details"], s | row)
    holds = row | {"session_hk": session_hk, "visitor_hk": visitor_hk, "hk": _sha256(session_hk, visitor_hk)}
    conn.execute(Q["insert_session_visitor_link"], holds)
    if page_hk is not None and s["page_title"] is not None:
        conn.execute(Q["insert_page_details"], s | row)
    conn.execute(Q["insert_visitor_details"], s | row)

    touched = {session_hk}
    for raw_event_id in moved:
        _move_event(conn, raw_event_id, row["load_date"], touched)
    for hk in sorted(touched):
        _summarise_session(conn, hk, row["load_date"])
    conn.execute(Q["mark_staging_loaded"], {"raw_event_id": s["raw_event_id"]})


def _sha256(*keys: bytes) -> bytes:
    """The hash key of a link: SHA-256 of its hubs' keys."""
    return hashlib.sha256(b"".join(keys)).digest()


def _move_event(conn: Conn, raw_event_id: int, load_date: datetime, touched: set[bytes]) -> None:
    """The link and effectivity row of one staged event moved to another session; both sessions touched."""
    found = conn.execute(Q["moved_event"], {"raw_event_id": raw_event_id}).fetchone()
    assert found is not None
    event_hk, session_hk, tenant_hk = bytes(found[0]), bytes(found[1]), bytes(found[2])
    previous = bytes(found[4]) if found[4] is not None else None
    row = {"tenant_hk": tenant_hk, "load_date": load_date, "source": found[3]}
    link = row | {"event_hk": event_hk, "session_hk": session_hk, "hk": _sha256(event_hk, session_hk)}
    conn.execute(Q["insert_event_session_link"], link)
    if previous != session_hk:
        conn.execute(Q["insert_event_session_eff"], link)
    touched.add(session_hk)
    if previous is not None:
        touched.add(previous)


def _summarise_session(conn: Conn, session_hk: bytes, load_date: datetime) -> None:
    """A session's summary recomputed from all its staged events, and the visitor holding it.

    A session left without events (they moved into another) gets its last summary again, no longer
    in force."""
    key = {"session_hk": session_hk}
    events = conn.cursor(row_factory=dict_row).execute(Q["session_events"], key).fetchall()
    events.sort(key=lambda e: (e["occurred_at"], bytes(e["site_event_hk"])))
    previous = conn.cursor(row_factory=dict_row).execute(Q["current_session_summary"], key).fetchone()
    if events:
        first, last = events[0], events[-1]
        pages = [e["page_url"] for e in events if e["page_url"] is not None]
        summary = {
            "tenant_hk": first["tenant_hk"],
            "session_start": first["occurred_at"],
            "session_end": last["occurred_at"],
            "page_views": sum(1 for e in events if e["event_type"] == "page_view"),
            "event_count": len(events),
            "entry_page": pages[0] if pages else None,
            "exit_page": pages[-1] if pages else None,
            "is_bot": any(e["is_bot"] for e in events),
            **{name: first[name] for name in ("referrer_host", "referrer_class", *_UTM, "record_source")},
            "in_force": True,
        }
    elif previous is not None and previous["in_force"]:
        summary = previous | {"in_force": False}
    else:
        return
    previous_hash_diff = previous["hash_diff"] if previous is not None else None
    conn.execute(
        Q["insert_session_summary"],
        summary | key | {"load_date": load_date, "previous_hash_diff": previous_hash_diff},
    )
    if not events:
        return
    # A session belongs to the visitor of its latest event.
    visitor_hk = bytes(last["site_visitor_hk"])
    holder = conn.execute(Q["current_session_holder"], key).fetchone()
    if holder is None or bytes(holder[0]) != visitor_hk:
        holds = key | {
            "tenant_hk": first["tenant_hk"],
            "load_date": load_date,
            "source": first["record_source"],
            "visitor_hk": visitor_hk,
            "applied_date": last["occurred_at"],
            "hk": _sha256(session_hk, visitor_hk),
        }
        conn.execute(Q["insert_session_visitor_link"], holds)
        conn.execute(Q["insert_session_visitor_eff"], holds)


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
