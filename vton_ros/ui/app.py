"""
The mirror page's web server (aiohttp, no ROS): one page, bundled assets, one WebSocket.

Routes: ``/`` the page, ``/static/*`` its script and style, ``/api/garments`` the
catalogue (JSON) and ``/api/garments/{id}.jpg`` thumbnails, ``POST /api/upload`` a garment
photo of the shopper's own (kept in memory only), ``/ws`` the WebSocket. The WebSocket
sends binary messages (one kind byte, then a JPEG or PNG: see :data:`KINDS`) and JSON
messages (``page``: the page's secret id, which its upload and list requests carry as
``?page=``; ``state``; ``model``; ``focus``); the page sends JSON commands (``try``,
``cancel``, ``live``, ``overlay``). Each WebSocket is one page with its own session.
``/metrics``: the mirror's Prometheus metrics (text format), under the same access rules.

Access: with a token every request must carry it (``?token=`` once, then an HttpOnly
cookie, or an ``X-Mirror-Token`` header); without one, only loopback host names are
served (a web page elsewhere cannot reach the mirror through DNS rebinding). WebSocket
and upload requests from another origin are refused. Every response carries a
Content-Security-Policy that allows this origin only. Nothing is logged per request.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
import hmac
import ipaddress
import json
import logging
from pathlib import Path
import threading
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

from aiohttp import web, WSMsgType

from vton_ros.supervision.metrics import CONTENT_TYPE as METRICS_TYPE
from vton_ros.ui import limits
from vton_ros.ui.catalog import Garments
from vton_ros.ui.hub import Hub

STATIC = Path(__file__).with_name('static')
COOKIE = 'mirror_token'
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff',
           'Referrer-Policy': 'no-referrer', 'Cross-Origin-Resource-Policy': 'same-origin'}
LOOPBACK_NAMES = ('localhost',)
MAX_COMMAND_BYTES = 4096  # a page command is a few dozen bytes of JSON
TOKEN_ENV = 'VTON_MIRROR_TOKEN'  # the token's environment variable (ui.token_file first)
WS_SEND_BOUND = 1 << 20  # unsent bytes past which a page that does not read is dropped
WS_SEND_BUFFER = 256 << 10  # kernel send buffer of a WebSocket (bytes)
UPLOADS_AT_ONCE = 2  # uploads received at once (each up to max_upload_bytes in memory)
_LOG = logging.getLogger(__name__)


class Controller(Protocol):
    """What the pages drive: one try-on session per page (:mod:`vton_ros.ui.sessions`)."""

    def join(self, publish_state: Callable[[dict], None],
             publish_image: Callable[[int, bytes], None], page: str = '') -> Any:
        """
        Start a new page's session (``page`` id, ``try_on``, ``cancel``, ``go_live``).

        ``page``: the id of the page's earlier session, when it reconnects (``/ws?page=``).
        """

    def leave(self, session: Any) -> None:
        """Note that a page's WebSocket closed (its session may resume)."""

    def find(self, page: str) -> Any:
        """Return the session (it has ``touch``) of an open page's id, or None."""


def is_loopback(host: str) -> bool:
    """Tell whether a bind address or host name is this machine only."""
    host = host.strip('[]')
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Raise ValueError when a non-loopback address would be served without a token."""
    if not host:
        raise ValueError('ui.host is empty; use 127.0.0.1 (this machine only)')
    if not is_loopback(host) and not token:
        raise ValueError(f'ui.host {host!r} is not a loopback address: set ui.token_file (or '
                         f'{TOKEN_ENV}) too, or every device on the network could watch the '
                         'camera')


def load_token(token_file: str, environ: Mapping[str, str]) -> str:
    """
    Return the access token: the first line of ``token_file``, else ``$VTON_MIRROR_TOKEN``.

    Never a ROS parameter (any DDS peer may read those). '' = no token. ValueError when the
    file cannot be read or is empty; a file that others may read is logged.
    """
    if not token_file:
        return environ.get(TOKEN_ENV, '').strip()
    path = Path(token_file).expanduser()
    try:
        text = path.read_text(encoding='utf-8')
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f'ui.token_file {token_file!r} cannot be read: '
                         f'{getattr(err, "strerror", None) or err}') from None
    token = text.strip().split('\n', 1)[0].strip()
    if not token:
        raise ValueError(f'ui.token_file {token_file!r} is empty: write the token in it')
    if mode & 0o077:
        _LOG.warning('ui.token_file %s may be read by other users: chmod 600 it', token_file)
    return token


def build_app(controller: Controller, garments: Garments, hub: Hub, token: str = '',
              max_upload_bytes: int = 8 << 20, timeout: float = 10.0,
              metrics: Callable[[], bytes] | None = None) -> web.Application:
    """
    Return the aiohttp application of the mirror page.

    ``timeout``: seconds an upload's body may take to arrive (the wait for headers and
    idle connections is :class:`WebServer`'s). ``metrics``: returns the Prometheus text
    served at ``/metrics`` (None: no such route).
    """
    throttle = limits.LogThrottle(_LOG)
    app = web.Application(middlewares=[_no_traceback(throttle), _guard(token)],
                          client_max_size=max_upload_bytes)
    app.on_response_prepare.append(_security_headers)
    page = Page(controller, garments, hub, throttle, timeout, max_upload_bytes)
    app.router.add_get('/', page.index)
    app.router.add_static('/static', STATIC)
    app.router.add_get('/api/garments', page.garments)
    app.router.add_get('/api/garments/{gid}.jpg', page.thumbnail)
    app.router.add_post('/api/upload', page.upload)
    app.router.add_get('/ws', page.websocket)
    if metrics is not None:
        app.router.add_get('/metrics', partial(_metrics, metrics))
    return app


async def _metrics(render: Callable[[], bytes], _request: web.Request) -> web.Response:
    """Serve the Prometheus text format (version 0.0.4)."""
    return web.Response(body=render(), headers={'Content-Type': METRICS_TYPE})


def _no_traceback(throttle: limits.LogThrottle):
    """Answer a request whose handler failed with a short 500, and one short log line."""
    @web.middleware
    async def no_traceback(request: web.Request, handler):
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except ConnectionError:
            raise web.HTTPBadRequest(text='the request was cut off') from None
        except Exception as err:  # the last line: a short log line, never a traceback
            throttle.note(f'request failed: {type(err).__name__}')
            raise web.HTTPInternalServerError(text='the mirror could not answer') from None
    return no_traceback


def _bytes(text: str) -> bytes:
    """Encode a header or query value as it came (not UTF-8 text is kept, never raised)."""
    return text.encode('utf-8', 'surrogateescape')


def _guard(token: str):
    @web.middleware
    async def guard(request: web.Request, handler):
        if 'Host' not in request.headers:
            raise web.HTTPBadRequest(text='a request must name its Host')
        if token:
            given = (request.query.get('token') or request.cookies.get(COOKIE)
                     or request.headers.get('X-Mirror-Token') or '')
            if not hmac.compare_digest(_bytes(given), _bytes(token)):
                raise web.HTTPUnauthorized(text='this mirror needs its access token')
        elif not is_loopback(urlsplit('//' + request.host).hostname or ''):
            raise web.HTTPForbidden(text='this mirror serves its own machine only')
        if request.method != 'GET' or request.path == '/ws':
            origin = request.headers.get('Origin')
            if origin and origin != f'{request.scheme}://{request.host}':
                raise web.HTTPForbidden(text='requests from another origin are refused')
        response = await handler(request)
        if token and request.query.get('token'):
            response.set_cookie(COOKIE, token, httponly=True, samesite='Strict', path='/')
        return response
    return guard


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    response.headers.setdefault('Cache-Control', 'no-store')


class Page:
    """Request handlers of the page."""

    def __init__(self, controller: Controller, garments: Garments, hub: Hub,
                 throttle: limits.LogThrottle, timeout: float, max_bytes: int) -> None:
        self._controller = controller
        self._garments = garments
        self._hub = hub
        self._throttle = throttle
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._uploads = 0  # uploads being received or decoded now (event loop only)
        self._decoder = ThreadPoolExecutor(1, 'mirror_ui_upload')  # one decode at a time

    async def index(self, _request: web.Request) -> web.FileResponse:
        """Serve the page."""
        return web.FileResponse(STATIC / 'index.html')

    def _owner(self, request: web.Request) -> str:
        """Return the id of the open page that asks (``?page=``), or ''; its shopper is there."""
        session = self._controller.find(request.query.get('page', ''))
        if session is None:
            return ''
        session.touch()
        return session.page

    async def garments(self, request: web.Request) -> web.Response:
        """List the catalogue and the page's uploads: id, name, cloth type, thumbnail URL."""
        return web.json_response({'garments': self._garments.items(self._owner(request))})

    async def thumbnail(self, request: web.Request) -> web.Response:
        """Serve a garment's JPEG thumbnail; an upload's to its own page only."""
        data = self._garments.thumbnail(request.match_info['gid'], self._owner(request))
        if data is None:
            raise web.HTTPNotFound(text='no such garment')
        return web.Response(body=data, content_type='image/jpeg')

    async def upload(self, request: web.Request) -> web.Response:
        """
        Take a garment photo (raw body) and a cloth type; answer its catalogue item.

        At most UPLOADS_AT_ONCE at a time (429 beyond), the body within the timeout (408),
        decoded one at a time; every refusal says why in ``error``.
        """
        limit = self._max_bytes
        if request.content_length is not None and request.content_length > limit:
            return _refuse(413, f'The photo is too large: send at most {limit >> 20} MB.')
        if self._uploads >= UPLOADS_AT_ONCE:
            return _refuse(429, 'Another photo is being checked; try again in a moment.')
        self._uploads += 1
        try:
            data = await asyncio.wait_for(request.read(), self._timeout)
            item = await asyncio.get_running_loop().run_in_executor(
                self._decoder, self._garments.add_upload, data,
                request.query.get('cloth_type', ''), self._owner(request))
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f'The photo is too large: send at most {limit >> 20} MB.')
        except asyncio.TimeoutError:
            return _refuse(408, 'The photo took too long to arrive.')
        except ValueError as err:
            return _refuse(400, str(err))
        finally:
            self._uploads -= 1
        return web.json_response(item)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Push frames and state; take the page's commands until the page goes."""
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_COMMAND_BYTES,
                                   compress=False)  # frames are JPEG: deflate costs CPU only
        await ws.prepare(request)
        limits.small_send_buffer(request.transport, WS_SEND_BUFFER)
        client = await self._hub.join(limits.BoundedSocket(ws, request.transport,
                                                           WS_SEND_BOUND, self._throttle))
        client.session = self._controller.join(partial(self._hub.send_state, client),
                                               partial(self._hub.send_image, client),
                                               request.query.get('page', ''))
        try:
            await ws.send_str(json.dumps({'type': 'page', 'id': client.session.page}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._command(client, msg.data)
        finally:
            self._hub.leave(client)
            self._controller.leave(client.session)
        return ws

    def _command(self, client: Any, text: str) -> None:
        """Run one command of the page; malformed ones are dropped (never trusted)."""
        try:
            command = json.loads(text)
            kind = command['type']
        except (ValueError, TypeError, KeyError, RecursionError):
            self._throttle.note('dropped malformed page commands')
            return
        if kind == 'try' and isinstance(command.get('garment'), str):
            client.session.try_on(command['garment'])
        elif kind == 'cancel':
            client.session.cancel()
        elif kind == 'live':
            client.session.go_live()
        elif kind == 'overlay':
            client.overlay = bool(command.get('on'))
        else:
            self._throttle.note('dropped unknown page commands')


def _refuse(status: int, error: str) -> web.Response:
    """Answer an upload with its error (the page shows ``error``) and close the connection."""
    response = web.json_response({'error': error}, status=status)
    response.force_close()  # the rest of a refused body is not read
    return response


class WebServer:
    """
    Runs an aiohttp application on its own thread and event loop.

    ``timeout``: seconds a connection may take to send a complete request, or stay idle
    between two (aiohttp's ``keepalive_timeout``). At most ``max_connections`` open at
    once, ``per_address`` from one client address; more get a 503 and are closed.
    """

    def __init__(self, app: web.Application, hub: Hub, timeout: float = 10.0,
                 max_connections: int = 64, per_address: int = 16) -> None:
        self._app = app
        self._hub = hub
        self._timeout = timeout
        self._throttle = limits.LogThrottle(_LOG)
        self.gate = limits.ConnectionGate(max_connections, per_address, self._throttle)
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(limits.loop_exception_handler(self._throttle))
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self, host: str, port: int, timeout: float = 30.0) -> int:
        """Bind and serve; return the port (``port`` 0 picks a free one). OSError if taken."""
        future = asyncio.run_coroutine_threadsafe(self._serve(host, port), self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name='mirror_ui_web',
                                        daemon=True)
        self._thread.start()
        self.port = future.result(timeout)
        return self.port

    async def _serve(self, host: str, port: int) -> int:
        self._hub.attach(asyncio.get_running_loop())
        limits.quiet()
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                                     keepalive_timeout=self._timeout)
        await self._runner.setup()
        await limits.GatedSite(self._runner, host, port, self.gate).start()
        return self._runner.addresses[0][1]

    def stop(self, timeout: float = 10.0) -> None:
        """Close every page's WebSocket, stop serving and end the thread."""
        if self._thread is None:
            return
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                future.result(timeout)
            except (TimeoutError, asyncio.TimeoutError):
                _LOG.warning('the web server did not stop in %.0f s', timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()
        self._thread = None

    async def _shutdown(self) -> None:
        await self._hub.close_all()
        await self._runner.cleanup()
