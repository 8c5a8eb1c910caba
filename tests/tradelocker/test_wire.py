"""The lean order transport (engine.tradelocker.wire) under the faults that decide safety.

Two kinds of server: the real sandbox (sandbox, with its fault injection, an idle keep-alive
timeout, and TLS), and a small scripted HTTP/1.1 server in its own thread for the faults the
sandbox cannot make on purpose (a body cut short, a server closing a connection the client has
not yet noticed). The scripted server is a real socket server, not a mock: it runs in a thread so
a test can hold the client's event loop still while the server acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import uvloop

from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.errors import ConfigError, OutcomeUnknown, RateLimited
from engine.tradelocker.auth import TokenManager
from engine.tradelocker.rest import RestClient
from engine.tradelocker.settings import ConnectionSettings, Timeouts
from engine.tradelocker.venue import AccountSpec, TradeLockerVenue
from engine.tradelocker.wire import NotSent, OrderConnections, SentNoReply, client_ssl_context
from tests.fixtures.tradelocker import started
from tests.fixtures.waiting import eventually
from tests.tradelocker.sandbox import (
    ACCOUNT_IDS,
    EMAIL,
    PASSWORD,
    SERVER,
    Sandbox,
    running_sandbox,
)

ACCOUNT_ID = ACCOUNT_IDS[0]
LEAN = ConnectionSettings(order_transport="lean", order_connections=2)
PING = b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
ORDER = b"POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
OK_REPLY = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"s":"ok"}\n'
)


LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


def on_both_loops(
    scenario: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """Run an async test once on asyncio's loop and once on uvloop's (what the engine runs on):
    their transports differ exactly where this module looks (write failures, socket access)."""

    @pytest.mark.parametrize("loop", list(LOOPS))
    def test(loop: str, *args: Any, **kwargs: Any) -> None:
        LOOPS[loop](scenario(*args, **kwargs))

    signature = inspect.signature(scenario)
    loop_param = inspect.Parameter("loop", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    test.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[loop_param, *signature.parameters.values()]
    )
    test.__name__ = scenario.__name__
    test.__qualname__ = scenario.__qualname__
    test.__doc__ = scenario.__doc__
    return test


# -- the real sandbox, with the server knobs these tests need -----------------------------------


def market(instrument: Instrument, tag: str) -> OrderRequest:
    return OrderRequest(
        "acct", instrument, Side.BUY, OrderType.MARKET, instrument.min_lot, Validity.IOC, tag
    )


@contextlib.contextmanager
def counting_finished_orders(sandbox: Sandbox) -> Iterator[list[int]]:
    """A counter (``[n]``) of order POSTs the sandbox is done with, whether its order book was
    asked to place the order (placed or refused: scripted here to count that; the sandbox asks
    its fault injector nothing when no fault is armed) or it failed on a request whose client had
    gone (it logs that)."""
    finished = [0]
    book = sandbox.state.book
    place = book.place

    def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            return place(*args, **kwargs)
        finally:
            finished[0] += 1

    class FailedOrders(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("sandbox failed on POST") and text.endswith("/orders"):
                finished[0] += 1

    book.place = counting  # type: ignore[method-assign]
    handler = FailedOrders()
    sandbox_log = logging.getLogger("sandbox.app")
    sandbox_log.addHandler(handler)
    try:
        yield finished
    finally:
        sandbox_log.removeHandler(handler)
        book.place = place  # type: ignore[method-assign]


def order_pool(venue: TradeLockerVenue) -> OrderConnections:
    pool = venue.client("acct").orders_transport
    assert pool is not None, "the lean transport is the default"
    return pool


# -- a scripted HTTP/1.1 server in its own thread ----------------------------------------------


@dataclass
class ScriptedServer:
    """Answers each request with ``reply(connection_no, request_no)``: (bytes, then) where then is
    ``"keep"`` (stay open), ``"close"`` (close at once) or ``"close-later"`` (close 50 ms later,
    without a ``Connection: close`` header: the client still believes it is kept alive)."""

    reply: Callable[[int, int], tuple[bytes, str]]
    requests: list[tuple[int, int, bytes]] = field(default_factory=list)
    pipelined: int = 0  # requests that arrived while one was still unanswered
    _sock: socket.socket = field(init=False)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    # Set once the server has closed a connection on its side (a test's marker).
    closed_connection: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(2)
        for t in self._threads:
            t.join(2)
        self._sock.close()

    def _accept_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            n += 1
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, conn_no: int) -> None:
        try:
            self._exchange(conn, conn_no)
        finally:
            conn.close()
            self.closed_connection.set()

    def _exchange(self, conn: socket.socket, conn_no: int) -> None:
        buf = b""
        request_no = 0
        conn.settimeout(0.1)
        with conn:
            while not self._stop.is_set():
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                    continue
                head = buf[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < end + 4 + length:
                    buf += conn.recv(65536)
                request, buf = buf[: end + 4 + length], buf[end + 4 + length :]
                request_no += 1
                self.requests.append((conn_no, request_no, request))
                # A well-behaved client sends nothing more until it has the reply.
                time.sleep(0.01)
                if buf or select.select([conn], [], [], 0)[0]:
                    self.pipelined += 1
                payload, then = self.reply(conn_no, request_no)
                with contextlib.suppress(OSError):
                    conn.sendall(payload)
                if then == "close":
                    return
                if then == "close-later":
                    time.sleep(0.05)
                    return


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[int, int], tuple[bytes, str]]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(reply: Callable[[int, int], tuple[bytes, str]]) -> ScriptedServer:
        server = ScriptedServer(reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


# -- faults from the sandbox -------------------------------------------------------------------


@on_both_loops
async def test_drop_after_accept_is_unknown_one_order_and_the_connection_is_replaced() -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=LEAN)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        opened = pool.opened
        sandbox.state.faults.update({"dropAfterAccept": {"PLACE_ORDER": 1}})
        with pytest.raises(OutcomeUnknown) as caught:
            await venue.place_order(market(instrument, "wdrop1"))
        assert caught.value.strategy_tag == "wdrop1"
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "wdrop1")) == 1
        # The next order goes out once, and the pool is back to its size.
        assert (await venue.place_order(market(instrument, "wdrop2"))).order_id
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "wdrop2")) == 1
        assert pool.discarded == 1
        assert pool.opened == opened + 1
        assert pool.open_count == 2


@on_both_loops
async def test_orders_after_the_server_closed_idle_connections_go_out_once_on_fresh_ones() -> None:
    async with (
        running_sandbox(keepalive_timeout=0.2) as sandbox,
        started(sandbox.venue(connection=LEAN)) as venue,
    ):
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        opened = pool.opened
        # The server's idle keep-alive timeout (0.2 s) closes them: the client's loop sees it.
        await eventually(
            lambda: all(conn.closed for conn in pool._open), "the server closing idle connections"
        )
        for i in range(3):
            placed = await venue.place_order(market(instrument, f"widle{i}"))
            assert placed.order_id
            assert len(sandbox.orders_tagged(ACCOUNT_ID, f"widle{i}")) == 1
        assert pool.opened > opened, "the closed connections were replaced"


@on_both_loops
async def test_a_timed_out_order_is_unknown_and_its_connection_is_never_reused() -> None:
    async with (
        running_sandbox() as sandbox,
        started(sandbox.venue(connection=LEAN, timeouts=Timeouts(order_total=0.2))) as venue,
    ):
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        sandbox.state.faults.update({"latency": {"PLACE_ORDER": 600}})
        with counting_finished_orders(sandbox) as finished:
            with pytest.raises(OutcomeUnknown):
                await venue.place_order(market(instrument, "wslow1"))
            assert pool.discarded == 1
            sandbox.state.faults.clear()
            assert (await venue.place_order(market(instrument, "wslow2"))).order_id
            # Let the slow one finish at the venue, if it does: wait until the sandbox is done
            # with both POSTs (placed, or failed reading the abandoned one).
            await eventually(lambda: finished[0] == 2, "the sandbox done with both order POSTs")
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "wslow1")) <= 1
        assert len(sandbox.orders_tagged(ACCOUNT_ID, "wslow2")) == 1


@on_both_loops
async def test_concurrent_orders_share_the_pinned_connections_without_opening_more() -> None:
    # The pool at a fixed size (its maximum is its minimum): growth on demand is
    # tests/tradelocker/test_order_connections_grow.py.
    fixed = replace(LEAN, order_connections_max=2)
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=fixed)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        pool = order_pool(venue)
        sandbox.state.faults.update({"latency": {"PLACE_ORDER": 10}})
        results = await asyncio.gather(
            *(venue.place_order(market(instrument, f"wconc{i}")) for i in range(12))
        )
        assert len({r.order_id for r in results}) == 12
        assert all(len(sandbox.orders_tagged(ACCOUNT_ID, f"wconc{i}")) == 1 for i in range(12))
        assert (pool.opened, pool.discarded) == (2, 0)


@on_both_loops
async def test_cancel_and_close_position_travel_on_the_lean_connections() -> None:
    async with running_sandbox() as sandbox, started(sandbox.venue(connection=LEAN)) as venue:
        instrument = await venue.instrument("acct", "EURUSD")
        bid, _ = await venue.quote("acct", instrument) or (0.0, 0.0)
        resting = replace(
            market(instrument, "wcancel"),
            type=OrderType.LIMIT,
            validity=Validity.GTC,
            price=round(bid * 0.9, 5),
        )
        placed = await venue.place_order(resting)
        await venue.cancel_order("acct", placed.order_id)
        assert not (await venue.find_by_tag("acct", "wcancel")).orders
        await venue.place_order(market(instrument, "wclose"))
        [position] = (await venue.find_by_tag("acct", "wclose")).positions
        await venue.close_position("acct", position.position_id)
        assert not (await venue.find_by_tag("acct", "wclose")).positions
        assert order_pool(venue).discarded == 0


@on_both_loops
async def test_429_with_retry_after_on_the_lean_path_is_rate_limited_and_sent_once(
    scripted: Callable[..., ScriptedServer],
) -> None:
    # Tokens come from the sandbox; the orders go to a server that answers 429 + Retry-After
    # (the sandbox's 429 carries no Retry-After).
    def reply(conn: int, n: int) -> tuple[bytes, str]:
        if n == 1:  # the warm-up GET /trade/config
            return OK_REPLY, "keep"
        body = b'{"s":"error","errmsg":"Too many requests"}'
        return (
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body,
            "keep",
        )

    server = scripted(reply)
    async with running_sandbox() as sandbox:
        tokens = TokenManager(sandbox.base_url, email=EMAIL, password=PASSWORD, server=SERVER)
        await tokens.start()
        client = RestClient(
            server.url + "/backend-api",
            tokens,
            alias="acct",
            account_id=ACCOUNT_ID,
            acc_num=1,
            connection=replace(LEAN, order_connections=1, warm_on_start=1),
        )
        try:
            await client.start()
            before = len(server.requests)
            with pytest.raises(RateLimited) as caught:
                await client.submit("POST", f"/trade/accounts/{ACCOUNT_ID}/orders", b"{}")
            assert caught.value.retry_after == 3.0
            assert len(server.requests) == before + 1
            # The token went in the header, never into the error.
            assert tokens.bearer.split()[1] not in str(caught.value)
        finally:
            await client.close()
            await tokens.close()


# -- faults from the scripted server -----------------------------------------------------------


@on_both_loops
async def test_a_body_cut_short_is_sent_no_reply_and_never_resent(
    scripted: Callable[..., ScriptedServer],
) -> None:
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"s":"ok","d":{"ord'
    server = scripted(lambda conn, n: (cut, "close") if conn == 1 else (OK_REPLY, "keep"))
    pool = OrderConnections(server.url, size=1)
    await pool.start()
    try:
        with pytest.raises(SentNoReply):
            await pool.round_trip(ORDER, 2.0)
        # A marker through the same one-connection pool: a resend would have gone out before it.
        assert (await pool.round_trip(PING, 2.0)).status == 200
        assert [request for _, _, request in server.requests] == [ORDER, PING]
        assert sum(1 for _, _, request in server.requests if request == ORDER) == 1
    finally:
        await pool.close()


@on_both_loops
async def test_an_unparsable_reply_is_sent_no_reply(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda conn, n: (b"SMTP ready\r\n\r\n", "keep"))
    pool = OrderConnections(server.url, size=1)
    await pool.start()
    try:
        with pytest.raises(SentNoReply):
            await pool.round_trip(ORDER, 2.0)
        assert len(server.requests) == 1
    finally:
        await pool.close()


@on_both_loops
async def test_a_connection_closed_by_the_server_unnoticed_is_not_written_to(
    scripted: Callable[..., ScriptedServer],
) -> None:
    # Each connection answers one request, then the server closes it without saying so: an idle
    # keep-alive timeout of 50 ms. The probe margin must be below it: 0, every write is probed.
    server = scripted(lambda conn, n: (OK_REPLY, "close-later"))
    pool = OrderConnections(server.url, size=1, probe_after_s=0.0)
    await pool.start()
    try:
        assert (await pool.round_trip(ORDER, 2.0)).status == 200
        # Hold the event loop still (on purpose) while the server closes: the FIN waits unread
        # in the kernel, where only the pre-write check can see it. A blocking wait on the
        # server thread's own signal that it closed the connection (a hang guard of 10 s).
        assert server.closed_connection.wait(10)
        reply = await pool.round_trip(ORDER, 2.0)
        assert reply.status == 200
        # The second order went out once, on a new connection; the dead one got nothing.
        assert [(c, n) for c, n, _ in server.requests] == [(1, 1), (2, 1)]
    finally:
        await pool.close()


@on_both_loops
async def test_each_reply_times_out_by_its_own_deadline_on_the_pools_one_timer(
    scripted: Callable[..., ScriptedServer],
) -> None:
    # The server holds every reply until released; the pool's timer was armed for the first
    # request's far deadline when the second, with a near one, is written.
    released = threading.Event()

    def reply(conn: int, n: int) -> tuple[bytes, str]:
        released.wait(10)
        return OK_REPLY, "keep"

    server = scripted(reply)
    pool = OrderConnections(server.url, size=2)
    await pool.start()
    try:
        slow = asyncio.ensure_future(pool.round_trip(ORDER, 30.0))
        await eventually(lambda: len(server.requests) == 1, "the first request at the server")
        with pytest.raises(SentNoReply, match=r"no reply within 0\.2 s"):
            await pool.round_trip(ORDER, 0.2)
        assert not slow.done(), "the far deadline is not expired with the near one"
        released.set()
        assert (await slow).status == 200
        assert len(server.requests) == 2
        assert pool.discarded == 1
    finally:
        released.set()
        await pool.close()


@on_both_loops
async def test_requests_are_never_pipelined_on_one_connection(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda conn, n: (OK_REPLY, "keep"))
    pool = OrderConnections(server.url, size=2)
    await pool.start()
    try:
        replies = await asyncio.gather(*(pool.round_trip(ORDER, 5.0) for _ in range(10)))
        assert [r.status for r in replies] == [200] * 10
        assert server.pipelined == 0
        assert {c for c, _, _ in server.requests} == {1, 2}
    finally:
        await pool.close()


@on_both_loops
async def test_idle_connections_are_pinged_on_the_given_route_and_stay_usable(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(lambda conn, n: (OK_REPLY, "keep"))
    pool = OrderConnections(server.url, size=2, ping_after_s=0.0)
    await pool.start(PING)
    try:
        assert await pool.keep_warm(PING) == 2
        pings = [r for _, _, r in server.requests if r.startswith(b"GET /ping ")]
        assert len(pings) == 4  # two at start, two now
        assert (await pool.round_trip(ORDER, 2.0)).status == 200
        assert pool.opened == 2
    finally:
        await pool.close()


@on_both_loops
async def test_an_unreachable_venue_fails_start_with_not_sent() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = OrderConnections(f"http://127.0.0.1:{port}", size=2, connect_timeout_s=1.0)
    with pytest.raises(NotSent, match="could not open"):
        await pool.start()


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        # A missing tool is a broken environment, not an optional feature: fail, never skip.
        pytest.fail("no openssl binary to make a test certificate; install openssl", pytrace=False)
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    args += " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [openssl, *args.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@on_both_loops
async def test_orders_go_over_verified_tls_to_a_server_with_a_trusted_ca(
    self_signed: tuple[Path, Path],
) -> None:
    cert, key = self_signed
    async with running_sandbox(ssl_context=_server_tls(cert, key)) as sandbox:
        # The login's own session is not under test here; the REST and order connections verify
        # against the test CA.
        venue = TradeLockerVenue(
            [sandbox.login(verify_tls=False)],
            [AccountSpec("acct", "demo", account_id=ACCOUNT_ID)],
            connection=replace(LEAN, tls_ca_file=str(cert)),
        )
        async with started(venue):
            instrument = await venue.instrument("acct", "EURUSD")
            placed = await venue.place_order(market(instrument, "wtls1"))
            assert placed.order_id
            assert order_pool(venue).tls
            assert len(sandbox.orders_tagged(ACCOUNT_ID, "wtls1")) == 1


@on_both_loops
async def test_tls_is_verified_by_default_and_a_self_signed_venue_is_refused(
    self_signed: tuple[Path, Path],
) -> None:
    cert, key = self_signed
    async with running_sandbox(ssl_context=_server_tls(cert, key)) as sandbox:
        pool = OrderConnections(sandbox.base_url, size=1)
        with pytest.raises(NotSent, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.start()
        trusting = OrderConnections(
            sandbox.base_url, size=1, ssl_context=client_ssl_context(ca_file=str(cert))
        )
        await trusting.start()
        await trusting.close()


def test_an_unknown_order_transport_is_a_config_error_naming_the_choices() -> None:
    tokens = TokenManager("http://127.0.0.1:1/backend-api", refresh_token="unused")
    with pytest.raises(ConfigError, match="lean, aiohttp"):
        RestClient(
            "http://127.0.0.1:1/backend-api",
            tokens,
            alias="acct",
            account_id=ACCOUNT_ID,
            acc_num=1,
            connection=ConnectionSettings(order_transport="h2"),
        )
