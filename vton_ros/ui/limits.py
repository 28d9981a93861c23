"""
What one client may cost the mirror page's server: connections, log lines, unsent bytes.

aiohttp brings the timeouts (``keepalive_timeout`` closes a connection that sends no
complete request, or sits idle, for that long) and the size limits (``client_max_size``,
``max_line_size``, ``max_field_size``, ``max_msg_size``). What it leaves to the
application is here: a cap on open connections, in all and per client address
(:class:`GatedSite`; a refused connection gets a short 503 and is closed), log lines a
client can cause at most once per interval each (:class:`LogThrottle`, :func:`quiet`), and
a bound on a WebSocket's unsent bytes past which the page is dropped (:class:`BoundedSocket`).
"""

import asyncio
from collections import Counter
import ctypes
import ctypes.util
import logging
import socket
import threading
import time
from typing import Any, Callable

from aiohttp import web

LOG_INTERVAL = 10.0  # seconds between two log lines of one kind of abuse
MMAP_THRESHOLD = 1 << 20  # bytes: larger allocations are mapped, and unmapped when freed
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8
ARENAS = 2  # malloc arenas at most: each thread's own arena keeps what it freed
REFUSAL = (b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n'
           b'Content-Length: 29\r\nRetry-After: 5\r\nConnection: close\r\n\r\n'
           b'too many connections to this\n')
AIOHTTP_LOGGERS = ('aiohttp.server', 'aiohttp.web', 'aiohttp.websocket', 'aiohttp.internal',
                   'aiohttp.access')
_LOG = logging.getLogger(__name__)


class LogThrottle:
    """
    One warning per kind of event per ``interval`` seconds, saying how many it stands for.

    Kinds are the caller's fixed strings (never client data), so the table stays small.
    """

    def __init__(self, logger: logging.Logger = _LOG, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._count: Counter = Counter()

    def note(self, kind: str) -> bool:
        """Count one event of ``kind``; log it if none was logged in the interval."""
        with self._lock:
            self._count[kind] += 1
            now = self._clock()
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                return False
            count = self._count.pop(kind)
            self._last[kind] = now
        if last is None or count == 1:
            self._logger.warning('%s', kind)
        else:
            self._logger.warning('%s (%d times in %.0f s)', kind, count, now - last)
        return True


class _Quiet(logging.Filter):
    """Let one record per logger and message through per interval, without its traceback."""

    def __init__(self, throttle: LogThrottle) -> None:
        super().__init__()
        self._throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 (logging's name)
        kind = f'{record.name}: {record.msg}' if isinstance(record.msg, str) else record.name
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            kind += f' ({type(exc).__name__})'
        self._throttle.note(kind[:120])
        return False  # the throttle wrote the short line (or none)


def quiet(interval: float = LOG_INTERVAL, names: tuple[str, ...] = AIOHTTP_LOGGERS) -> None:
    """Turn aiohttp's own log lines (tracebacks of bad requests) into throttled short ones."""
    throttle = LogThrottle(_LOG, interval)
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quiet) for f in logger.filters):
            logger.addFilter(_Quiet(throttle))


def loop_exception_handler(throttle: LogThrottle) -> Callable[[Any, dict], None]:
    """Return an event loop exception handler that logs short, throttled lines."""
    def handle(_loop: Any, context: dict) -> None:
        exc = context.get('exception')
        kind = str(context.get('message', 'event loop error'))[:80]
        throttle.note(f'{kind} ({type(exc).__name__})' if exc is not None else kind)
    return handle


class ConnectionGate:
    """Counts open connections, in all and per client address, against their limits."""

    def __init__(self, total: int, per_address: int, throttle: LogThrottle) -> None:
        self.total = total
        self.per_address = per_address
        self._throttle = throttle
        self._open: Counter = Counter()
        self._refused = 0

    @property
    def open(self) -> int:  # noqa: A003 (a count, not the builtin)
        """Return how many connections are open now."""
        return sum(self._open.values())

    @property
    def refused(self) -> int:
        """Return how many connections were refused so far."""
        return self._refused

    def admit(self, address: str) -> bool:
        """Take a new connection from ``address``, or refuse it (False)."""
        if self.open >= self.total:
            why = f'refused connections: {self.total} are open (ui.max_connections)'
        elif self._open[address] >= self.per_address:
            why = (f'refused connections: one address has {self.per_address} open '
                   '(ui.max_connections_per_address)')
        else:
            self._open[address] += 1
            return True
        self._refused += 1
        self._throttle.note(why)
        return False

    def release(self, address: str) -> None:
        """Forget a closed connection."""
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


class _Gated(asyncio.Protocol):
    """A connection that passes the gate before aiohttp's request handler gets it."""

    def __init__(self, gate: ConnectionGate, make_handler: Callable[[], Any]) -> None:
        self._gate = gate
        self._make_handler = make_handler
        self._handler: Any = None
        self._address = ''

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info('peername')
        address = str(peer[0]) if peer else ''
        if not self._gate.admit(address):
            transport.write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._handler = self._make_handler()
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handler is not None:
            self._gate.release(self._address)
            self._handler.connection_lost(exc)
            self._handler = None

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._handler is not None else None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()


class GatedSite(web.BaseSite):
    """A TCP site (like aiohttp's TCPSite) whose connections pass a :class:`ConnectionGate`."""

    __slots__ = ('_host', '_port', '_gate')

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 gate: ConnectionGate) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        """Return the site's URL."""
        return f'http://{self._host}:{self._port}'

    async def start(self) -> None:
        """Listen; every accepted connection goes through the gate."""
        await super().start()
        server = self._runner.server
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(self._gate, server), self._host, self._port,
            backlog=self._backlog, reuse_address=True)


class BoundedSocket:
    """
    A page's WebSocket whose sends stop at ``bound`` unsent bytes: the page is dropped.

    A page that never reads would otherwise keep every message sent to it in memory.
    Passed to the hub instead of the WebSocketResponse (same send and close calls).
    """

    def __init__(self, ws: web.WebSocketResponse, transport: Any, bound: int,
                 throttle: LogThrottle) -> None:
        self._ws = ws
        self._transport = transport
        self._bound = bound
        self._throttle = throttle

    def _check(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError('the page went')
        if transport.get_write_buffer_size() > self._bound:
            self._throttle.note(f'dropped pages that read too slowly (over {self._bound} '
                                'bytes unsent)')
            transport.abort()
            raise ConnectionResetError('the page reads too slowly')

    async def send_str(self, data: str) -> None:
        """Send a text message (ConnectionResetError once the page is dropped)."""
        self._check()
        await self._ws.send_str(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message (ConnectionResetError once the page is dropped)."""
        self._check()
        await self._ws.send_bytes(data)

    async def close(self, **kwargs: Any) -> bool:
        """Close the WebSocket (see WebSocketResponse.close)."""
        return await self._ws.close(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """
    Make glibc map every allocation over ``threshold`` bytes, so freeing it unmaps it.

    By default glibc raises that threshold after the first large free (up to 32 MiB), and
    decoded photos then stay in the heap: a burst of uploads left mirror_ui 130 MiB larger
    for good. It also caps the malloc arenas at ARENAS (the executor's, the event loop's and
    the decoder's threads share them). A process-wide setting: call it from ``main`` only.
    False where the C library is not glibc (nothing changed).
    """
    name = ctypes.util.find_library('c')
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold)
                and mallopt(M_ARENA_MAX, ARENAS))


def small_send_buffer(transport: Any, size: int) -> None:
    """Cap the kernel's send buffer of a connection (a page that never reads holds it)."""
    sock = transport.get_extra_info('socket') if transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
