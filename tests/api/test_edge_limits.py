"""The HTTP edge under hostile clients, over real sockets on loopback: header size, slow and silent
connections, the connection limit, and which X-Forwarded-For is believed."""

from __future__ import annotations

import contextlib
import resource
import select
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.helpers.servers import LiveServer, ServeProcess
from tests.helpers.tenants import Tenant

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
# How much later than its deadline a connection may be seen closed (timer, scheduling, polling).
SLACK = 1.5
CHUNK = 64 * 1024
FLOOD_SECONDS = 3.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    """`onevault serve` on this test's database, with short edge timeouts, in its own process."""
    started = ServeProcess(
        tmp_path / "serve.log",
        SYSTEM_DATABASE_URL=db_url,
        ONEVAULT_DATA_DIR=str(tmp_path),
        ONEVAULT_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        ONEVAULT_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        ONEVAULT_PIPELINE_BACKGROUND="false",
        ONEVAULT_MAX_CONNECTIONS="2048",
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """This process may hold 1,200 sockets and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(4096, hard) if hard != resource.RLIM_INFINITY else 4096
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _send_oversized_header(port: int, total: int) -> bytes:
    """Send a request whose one header has `total` bytes, until the server answers or hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        sent = 0
        with contextlib.suppress(OSError):
            while sent < total:
                sock.sendall(b"a" * CHUNK)
                sent += CHUNK
                if select.select([sock], [], [], 0.01)[0]:
                    break
            return sock.recv(4096)
        return b""


def test_oversized_header_is_refused_431_without_growing_memory(service: ServeProcess) -> None:
    """A 1 MB header → 431 and the connection closed; the server's RSS grows by less than 10 MB."""
    pid, port = service.process.pid, _port(service.url)
    _send_oversized_header(port, 32 * 1024)  # code paths warmed up before measuring
    before = _rss_mb(pid)
    answer = _send_oversized_header(port, 1024 * 1024)
    after = _rss_mb(pid)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert after - before < 10, f"RSS {before:.1f} → {after:.1f} MB"
    assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200


def test_header_flood_keeps_memory_bounded_and_health_fast(service: ServeProcess) -> None:
    """10 senders offering ≥ 10 MB of header each: RSS < 300 MB, /health < 100 ms throughout."""
    pid, port = service.process.pid, _port(service.url)
    stop = threading.Event()
    offered = [0] * 10
    answers: list[bytes] = []

    def flood(index: int) -> None:
        # Each sender keeps offering header bytes for FLOOD_SECONDS, connecting again every time
        # the server hangs up (what it does not read stays in the kernel's buffers until the reset).
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"POST /api/v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
                with contextlib.suppress(OSError):
                    while not stop.is_set():
                        sock.sendall(b"a" * CHUNK)
                        offered[index] += CHUNK
                    answers.append(sock.recv(64))

    senders = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(10)]
    latencies: list[float] = []
    peak = _rss_mb(pid)
    with httpx.Client(base_url=service.url, timeout=5) as client:
        client.get("/health")
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            peak = max(peak, _rss_mb(pid))
            time.sleep(0.02)
    stop.set()
    for sender in senders:
        sender.join(timeout=10)
    assert min(offered) >= 10 * 1024 * 1024, f"only {min(offered) / 2**20:.0f} MB offered by one sender"
    assert peak < 300, f"server RSS peaked at {peak:.0f} MB"
    assert len(latencies) >= 10
    assert max(latencies) < 0.1, f"/health took up to {max(latencies) * 1000:.0f} ms"
    assert all(answer.startswith(b"HTTP/1.1 431 ") for answer in answers if answer)


def test_silent_and_slowloris_connections_are_closed_and_others_served(
    service: ServeProcess, tenant: Tenant, many_descriptors: None
) -> None:
    """1,000 silent sockets and 200 sending a header line a second: all closed within the header
    timeout, while normal requests on new connections succeed with p99 ≤ 100 ms."""
    port = _port(service.url)
    silent: dict[socket.socket, float] = {}
    slow: dict[socket.socket, float] = {}
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        silent[sock] = time.monotonic()
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow[sock] = time.monotonic()

    open_socks = {**silent, **slow}
    closed_after: dict[socket.socket, float] = {}
    stop = threading.Event()

    def watch() -> None:
        # Trickle a header line a second on the slow ones; note when the server hangs up on any.
        watched = selectors.DefaultSelector()
        for sock in open_socks:
            watched.register(sock, selectors.EVENT_READ)
        next_line = time.monotonic() + 1
        while open_socks and not stop.is_set():
            for key, _ in watched.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(OSError):
                    if sock.recv(1024):
                        continue
                watched.unregister(sock)
                closed_after[sock] = time.monotonic() - open_socks.pop(sock)
            if time.monotonic() >= next_line:
                next_line += 1
                for sock in [s for s in slow if s in open_socks]:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")
        watched.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    latencies: list[float] = []
    event = {"page_url": "https://shop.example/", "event_type": "page_view"}
    # No keep-alive: every normal request needs a new connection accepted next to the held ones.
    limits = httpx.Limits(max_keepalive_connections=0)
    deadline = time.monotonic() + HEADER_TIMEOUT + SLACK + 1
    try:
        with httpx.Client(base_url=service.url, timeout=5, limits=limits, headers=tenant.headers) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                health = client.get("/health")
                tracked = client.post("/api/v1/track/async", json=event)
                latencies.append((time.perf_counter() - started) / 2)
                assert health.status_code == 200
                assert tracked.status_code in (200, 202), tracked.text
        watcher.join(timeout=HEADER_TIMEOUT + SLACK + 5)
    finally:
        stop.set()
        for sock in [*silent, *slow]:
            sock.close()
    assert not open_socks, f"{len(open_socks)} slow or silent connections still open"
    late = sorted(closed_after.values())[-1]
    assert late <= HEADER_TIMEOUT + SLACK, f"closed after up to {late:.1f} s"
    assert min(closed_after.values()) >= HEADER_TIMEOUT - 0.1
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if len(latencies) >= 100 else latencies[-1]
    assert len(latencies) >= 20
    assert p99 <= 0.1, f"p99 {p99 * 1000:.0f} ms over {len(latencies)} requests"


def test_slow_body_is_cut_off(service: ServeProcess, tenant: Tenant) -> None:
    """A request whose body stops arriving is disconnected once the body timeout has passed."""
    head = "".join(f"{name}: {value}\r\n" for name, value in tenant.headers.items())
    with socket.create_connection(("127.0.0.1", _port(service.url)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/track/async HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + head.encode()
            + b"Content-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while sock.recv(4096):
                pass
        waited = time.monotonic() - started
    assert BODY_TIMEOUT - 0.1 <= waited <= BODY_TIMEOUT + SLACK, f"closed after {waited:.1f} s"


def test_connections_over_the_limit_are_refused_while_open_ones_are_served(db_url: str) -> None:
    """Past max_connections a new connection is answered 503 at once; a connection already open
    keeps being served."""
    with (
        LiveServer(db_url, max_connections=20) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        assert client.get("/health").status_code == 200  # this connection stays open (keep-alive)
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(25)]
        try:
            time.sleep(0.5)
            refused = 0
            for sock in held:
                if select.select([sock], [], [], 0)[0] and sock.recv(64).startswith(b"HTTP/1.1 503 "):
                    refused += 1
            assert refused == 6, f"{refused} of 25 refused with 19 free places"
            assert client.get("/health").status_code == 200
        finally:
            for sock in held:
                sock.close()


def _stored_ip_hash(conn: psycopg.Connection, event_id: str) -> bytes:
    row = conn.execute(
        "SELECT client_ip_hash FROM raw.site_tracking_events_r WHERE event_id = %s", (event_id,)
    ).fetchone()
    assert row is not None
    return bytes(row[0])


def _ip_hash(conn: psycopg.Connection, address: str) -> bytes:
    row = conn.execute(
        "SELECT util.hash_client_ip(%s::inet, util.client_ip_key(now()))", (address,)
    ).fetchone()
    assert row is not None
    return bytes(row[0])


@pytest.mark.parametrize(
    ("trusted", "stored"), [((), "127.0.0.1"), (("127.0.0.1",), "203.0.113.9")], ids=["default", "trusted"]
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    db_url: str, conn: psycopg.Connection, tenant: Tenant, trusted: tuple[str, ...], stored: str
) -> None:
    """By default X-Forwarded-For is ignored, even from loopback; from a trusted proxy it is the client."""
    event_id = str(uuid.uuid4())
    with LiveServer(db_url, forwarded_allow_ips=trusted) as server:
        response = httpx.post(
            f"{server.url}/api/v1/track",
            headers={**tenant.headers, "X-Forwarded-For": "203.0.113.9"},
            json={"page_url": "https://shop.example/", "event_type": "page_view", "event_id": event_id},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert _stored_ip_hash(conn, event_id) == _ip_hash(conn, stored)
