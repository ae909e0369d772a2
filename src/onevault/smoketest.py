"""`onevault smoke-test`: the deployment acceptance test, run against a live service over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from onevault import __version__

COMPLETE = "✅ Complete Pipeline"
SMOKE_HOST = "smoke-test.onevault.invalid"
SMOKE_EVENT_TYPE = "smoke_test"
POLL_SECONDS = 0.1
MAX_CUSTOMER_ID = 64
REQUIRED_SCOPES = "track, read and process"
STATUS_KEYS = ("raw_pending", "quarantined", "latency_ms_p95")
SUMMARY_KEYS = ("total_events", "processed_to_business", "processing_rate", "error_rate", "p95_latency_ms")
GROWN_KEYS = ("total_events", "processed_to_business")
SMOKE_EVENTS = 2  # checks 3 and 4 each store one event


class CheckFailed(Exception):
    """A check found the deployment wrong; the message says how."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed or not, how long it took and why (or a note)."""

    number: int
    name: str
    passed: bool
    elapsed_ms: float
    reason: str = ""

    def line(self) -> str:
        """The check as one line of the report."""
        verdict = "PASS" if self.passed else "FAIL"
        text = f"{verdict}  {f'{self.number} {self.name}':<30}{round(self.elapsed_ms):>6} ms"
        return f"{text}  {self.reason}" if self.reason else text


@dataclass
class _Run:
    """What the checks share: the client, the caller and what earlier checks learned."""

    client: httpx.Client
    customer_id: str
    token: str
    timeout: float
    baseline: dict[str, int] | None = None
    baseline_error: str = "not read"
    stored_event_ids: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        """Headers authenticating as the customer."""
        return {"X-Customer-ID": self.customer_id, "Authorization": f"Bearer {self.token}"}


def smoke_event() -> dict[str, Any]:
    """A new smoke-test event with a unique event id, recognisable by its page URL and type."""
    event_id = str(uuid.uuid4())
    return {
        "event_id": event_id,
        "page_url": f"https://{SMOKE_HOST}/{event_id}",
        "event_type": SMOKE_EVENT_TYPE,
        "event_data": {"smoke_test": True},
    }


def other_customer_id(customer_id: str) -> str:
    """A valid customer id that differs from `customer_id` (a token of one customer must not fit it)."""
    for suffix in ("-smoke-other", "-smoke-other-2"):
        other = customer_id[: MAX_CUSTOMER_ID - len(suffix)] + suffix
        if other != customer_id:
            return other
    raise AssertionError("unreachable: the two suffixes cannot both reproduce the customer id")


def _detail(response: httpx.Response) -> str:
    """The `detail` of an error body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:200]


def _json_object(response: httpx.Response, expected: int = 200, scope: str | None = None) -> dict[str, Any]:
    """The JSON object answered with status `expected`; CheckFailed otherwise."""
    # Other refusals (a token of another customer, a disabled customer) keep the server's words.
    if response.status_code == 403 and scope is not None and "scope" in _detail(response).lower():
        raise CheckFailed(
            f"HTTP 403: the token lacks the '{scope}' scope; "
            f"the smoke test needs a token with scopes {REQUIRED_SCOPES}"
        )
    if response.status_code != expected:
        raise CheckFailed(f"HTTP {response.status_code}, expected {expected}: {_detail(response)}")
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {response.status_code} but the body is not JSON") from None
    if not isinstance(body, dict):
        raise CheckFailed(f"HTTP {response.status_code} but the body is not a JSON object")
    return body


def _obj(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`body[key]`, which must be a JSON object."""
    value = body.get(key)
    if not isinstance(value, dict):
        raise CheckFailed(f"`{key}` missing or not an object")
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    """`body[key]`, which must be a JSON array."""
    value = body.get(key)
    if not isinstance(value, list):
        raise CheckFailed(f"`{key}` missing or not an array")
    return value


def _count(body: Mapping[str, Any], key: str) -> int:
    """`body[key]`, which must be a non-negative integer."""
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckFailed(f"`{key}` missing or not a count: {value!r}")
    return value


def _finish(problems: list[str]) -> str:
    """Raise CheckFailed with every problem found, or return an empty note."""
    if problems:
        raise CheckFailed("; ".join(problems))
    return ""


def _read_baseline(run: _Run) -> None:
    """Record the dashboard counts before any smoke event is sent (check 6 compares against them)."""
    try:
        response = run.client.get("/api/v1/track/dashboard", params={"limit": 1}, headers=run.auth)
        summary = _obj(_json_object(response, scope="read"), "summary")
        run.baseline = {key: _count(summary, key) for key in GROWN_KEYS}
    except CheckFailed as exc:
        run.baseline_error = str(exc)
    except httpx.HTTPError as exc:
        run.baseline_error = f"{type(exc).__name__}: {exc}"


def check_health(run: _Run) -> str:
    """GET /health: 200, healthy, with a version."""
    body = _json_object(run.client.get("/health"))
    problems = []
    if body.get("status") != "healthy":
        problems.append(f"status is {body.get('status')!r}, expected 'healthy'")
    if not isinstance(body.get("version"), str) or not body["version"]:
        problems.append("no version")
    _finish(problems)
    return f"version {body['version']}"


def check_database(run: _Run) -> str:
    """GET /health/db: every named function and the view available; GET /health/detailed: connected."""
    problems = []
    response = run.client.get("/health/db")
    try:
        body = _json_object(response)
        objects = _obj(body, "objects")
        if not objects:
            problems.append("/health/db lists no objects")
        missing = sorted(name for name, state in objects.items() if state != "available")
        if missing:
            problems.append(f"not available: {', '.join(missing)}")
    except CheckFailed as exc:
        problems.append(f"/health/db: {exc}")
    try:
        detailed = _json_object(run.client.get("/health/detailed"))
        database = _obj(detailed, "database")
        if database.get("status") != "connected":
            problems.append(f"/health/detailed: database is {database.get('status')!r}, expected 'connected'")
    except CheckFailed as exc:
        problems.append(f"/health/detailed: {exc}")
    return _finish(problems)


def _track(run: _Run, path: str, processing: str) -> tuple[str, dict[str, Any]]:
    """Send one smoke event to `path`; check the common answer fields; its event id and the answer."""
    event = smoke_event()
    body = _json_object(run.client.post(path, json=event, headers=run.auth), scope="track")
    run.stored_event_ids.append(event["event_id"])
    problems = []
    if body.get("success") is not True:
        problems.append(f"success is {body.get('success')!r}")
    if body.get("event_id") != event["event_id"]:
        problems.append(f"event_id {body.get('event_id')!r} is not the one sent ({event['event_id']})")
    if body.get("processing") != processing:
        problems.append(f"processing is {body.get('processing')!r}, expected {processing!r}")
    if body.get("duplicate") is True:
        problems.append("answered as a duplicate although the event_id is new")
    _finish(problems)
    return event["event_id"], body


def check_automatic(run: _Run) -> str:
    """POST /api/v1/track: stored and through the whole pipeline when the answer arrives."""
    _, body = _track(run, "/api/v1/track", "automatic")
    pipeline = _obj(body, "pipeline")
    if pipeline.get("status") != "complete":
        detail = f" ({pipeline['detail']})" if pipeline.get("detail") else ""
        raise CheckFailed(f"pipeline status is {pipeline.get('status')!r}, expected 'complete'{detail}")
    return ""


def check_background(run: _Run) -> str:
    """POST /api/v1/track/async, then wait until the dashboard shows the event complete."""
    started = time.monotonic()
    event_id, _ = _track(run, "/api/v1/track/async", "background")
    deadline = started + run.timeout
    last = "not listed on the dashboard"
    while True:
        response = run.client.get("/api/v1/track/dashboard", params={"limit": 50}, headers=run.auth)
        try:
            events = _list(_json_object(response, scope="read"), "events")
        except CheckFailed as exc:
            raise CheckFailed(f"dashboard: {exc}") from None
        row = next((e for e in events if isinstance(e, dict) and e.get("event_id") == event_id), None)
        if row is not None:
            if row.get("business_status") == COMPLETE:
                return f"in the business layer after {(time.monotonic() - started) * 1000:.0f} ms"
            last = f"last seen as {row.get('business_status')!r}"
        now = time.monotonic()
        if now >= deadline:
            raise CheckFailed(f"event not complete after {run.timeout:g} s ({last})")
        time.sleep(min(POLL_SECONDS, deadline - now))


def check_status(run: _Run) -> str:
    """GET /api/v1/track/status: pipeline status with business totals, and the smoke events listed."""
    body = _json_object(run.client.get("/api/v1/track/status", headers=run.auth), scope="read")
    problems = []
    if body.get("status") != "success":
        problems.append(f"status is {body.get('status')!r}, expected 'success'")
    pipeline_status = _obj(body, "pipeline_status")
    total = _count(pipeline_status, "business_events_total")
    if total < SMOKE_EVENTS:
        problems.append(f"business_events_total is {total}, expected at least {SMOKE_EVENTS}")
    absent = [key for key in STATUS_KEYS if key not in pipeline_status]
    if absent:
        problems.append(f"pipeline_status lacks {', '.join(absent)}")
    listed = {e.get("event_id") for e in _list(body, "recent_events") if isinstance(e, dict)}
    if len(run.stored_event_ids) < SMOKE_EVENTS:
        problems.append(
            f"only {len(run.stored_event_ids)} of the {SMOKE_EVENTS} smoke events were stored (checks 3, 4)"
        )
    not_listed = [e for e in run.stored_event_ids if e not in listed]
    if not_listed:
        problems.append(f"recent_events lacks the smoke event(s) {', '.join(not_listed)}")
    return _finish(problems)


def check_dashboard(run: _Run) -> str:
    """GET /api/v1/track/dashboard?limit=5: summary fields, at most 5 events, counts grown by the smoke."""
    body = _json_object(
        run.client.get("/api/v1/track/dashboard", params={"limit": 5}, headers=run.auth), scope="read"
    )
    problems = []
    summary = _obj(body, "summary")
    absent = [key for key in SUMMARY_KEYS if key not in summary]
    if absent:
        problems.append(f"summary lacks {', '.join(absent)}")
    events = _list(body, "events")
    if len(events) > 5:
        problems.append(f"{len(events)} events listed with limit=5")
    if run.baseline is None:
        problems.append(f"no counts from before the smoke events to compare with ({run.baseline_error})")
    else:
        for key in GROWN_KEYS:
            before, after = run.baseline[key], _count(summary, key)
            if after - before < SMOKE_EVENTS:
                problems.append(f"{key} grew from {before} to {after}, expected at least +{SMOKE_EVENTS}")
    return _finish(problems)


def check_manual(run: _Run) -> str:
    """POST /api/v1/track/process: a processing result without errors."""
    body = _json_object(run.client.post("/api/v1/track/process", headers=run.auth), scope="process")
    problems = []
    if body.get("status") != "success":
        problems.append(f"status is {body.get('status')!r}, expected 'success'")
    results = _obj(_obj(body, "result"), "results")
    processed = _count(results, "total_processed")
    if not isinstance(results.get("processing_summary"), str):
        problems.append("results.processing_summary missing or not a string")
    if results.get("total_error_count") != 0:
        problems.append(f"total_error_count is {results.get('total_error_count')!r}, expected 0")
    _finish(problems)
    return f"{processed} event(s) processed"


def _expect_refusal(run: _Run, headers: dict[str, str], expected: int) -> str:
    """A smoke event sent with `headers` is refused with `expected` and a JSON `detail`."""
    response = run.client.post("/api/v1/track", json=smoke_event(), headers=headers)
    if response.status_code != expected:
        raise CheckFailed(f"HTTP {response.status_code}, expected {expected}: {_detail(response)}")
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"HTTP {expected} but the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
        raise CheckFailed(f"HTTP {expected} but the body has no string `detail`")
    return ""


def check_no_token(run: _Run) -> str:
    """No bearer token: 401."""
    return _expect_refusal(run, {"X-Customer-ID": run.customer_id}, 401)


def check_no_customer(run: _Run) -> str:
    """No X-Customer-ID: 400."""
    return _expect_refusal(run, {"Authorization": f"Bearer {run.token}"}, 400)


def check_other_customer(run: _Run) -> str:
    """The token with another customer's id: 403."""
    headers = {**run.auth, "X-Customer-ID": other_customer_id(run.customer_id)}
    return _expect_refusal(run, headers, 403)


CHECKS: tuple[tuple[str, Callable[[_Run], str]], ...] = (
    ("health check", check_health),
    ("database health", check_database),
    ("automatic processing", check_automatic),
    ("background processing", check_background),
    ("status monitoring", check_status),
    ("dashboard data", check_dashboard),
    ("manual trigger", check_manual),
    ("no token (401)", check_no_token),
    ("no customer id (400)", check_no_customer),
    ("other customer (403)", check_other_customer),
)


def _run_one(run: _Run, number: int, name: str, check: Callable[[_Run], str]) -> CheckResult:
    started = time.monotonic()
    try:
        note = check(run)
        passed = True
    except CheckFailed as exc:
        passed, note = False, str(exc)
    except httpx.TimeoutException as exc:
        passed, note = False, f"no answer within {run.timeout:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        passed, note = False, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a check must report, never stop the others
        passed, note = False, f"unexpected {type(exc).__name__}: {exc}"
    elapsed = (time.monotonic() - started) * 1000
    # The token is a secret: it must not reach the report, whatever a server echoes back.
    note = " ".join(note.replace(run.token, "<token>").split()) if run.token else note
    return CheckResult(number, name, passed, elapsed, note)


def run_checks(
    url: str,
    customer_id: str,
    token: str,
    timeout: float = 10.0,
    report: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run every check against the service at `url`, in order; `report` sees each result as it comes."""
    results = []
    with httpx.Client(
        base_url=url.rstrip("/"),
        timeout=timeout,
        headers={"User-Agent": f"onevault-smoke-test/{__version__}"},
    ) as client:
        run = _Run(client, customer_id, token, timeout)
        _read_baseline(run)
        for number, (name, check) in enumerate(CHECKS, start=1):
            result = _run_one(run, number, name, check)
            if report is not None:
                report(result)
            results.append(result)
    return results


def _http_url(_: click.Context, __: click.Parameter, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL")
    return value


@click.command("smoke-test")
@click.option(
    "--url", required=True, callback=_http_url, help="Base URL of the service, e.g. http://localhost:8000."
)
@click.option("--customer-id", required=True, help="The customer the token belongs to.")
@click.option("--token", required=True, help="A token of the customer with scopes track, read and process.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each request and for background processing.",
)
def smoke_test(url: str, customer_id: str, token: str, timeout: float) -> None:
    """Check a running deployment end to end (the deployment acceptance test); exit 1 on any failure."""
    click.echo(f"Smoke test of {url.rstrip('/')} as customer {customer_id}")
    results = run_checks(url, customer_id, token, timeout, report=lambda r: click.echo(r.line()))
    failed = sum(1 for r in results if not r.passed)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)
