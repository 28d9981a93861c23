"""
The mirror page's web server (aiohttp, no ROS): one page, bundled assets, one WebSocket.

Routes: ``/`` the page, ``/static/*`` its script and style, ``/api/garments`` the
catalogue (JSON) and ``/api/garments/{id}.jpg`` thumbnails, ``POST /api/upload`` a garment
photo of the shopper's own (kept in memory only), ``/ws`` the WebSocket. The WebSocket
sends binary messages (one kind byte, then a JPEG or PNG: see :data:`KINDS`) and JSON
messages (``page``: the page's secret id, which its upload and list requests carry as
``?page=``; ``state``; ``model``; ``focus``); the page sends JSON commands (``try``,
``cancel``, ``live``, ``overlay``). Each WebSocket is one page with its own session.

Access: with a token every request must carry it (``?token=`` once, then an HttpOnly
cookie, or an ``X-Mirror-Token`` header); without one, only loopback host names are
served (a web page elsewhere cannot reach the mirror through DNS rebinding). WebSocket
and upload requests from another origin are refused. Every response carries a
Content-Security-Policy that allows this origin only. Nothing is logged per request.
"""

import asyncio
from functools import partial
import hmac
import ipaddress
import json
import logging
from pathlib import Path
import threading
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from aiohttp import web, WSMsgType

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
_LOG = logging.getLogger(__name__)


class Controller(Protocol):
    """What the pages drive: one try-on session per page (:mod:`vton_ros.ui.sessions`)."""

    def join(self, publish_state: Callable[[dict], None],
             publish_image: Callable[[int, bytes], None]) -> Any:
        """Start a new page's session (``page`` id, ``try_on``, ``cancel``, ``go_live``)."""

    def leave(self, session: Any) -> None:
        """End a page's session (the page went)."""

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
        raise ValueError(f'ui.host {host!r} is not a loopback address: set ui.token too, '
                         'or every device on the network could watch the camera')


def build_app(controller: Controller, garments: Garments, hub: Hub, token: str = '',
              max_upload_bytes: int = 8 << 20) -> web.Application:
    """Return the aiohttp application of the mirror page."""
    app = web.Application(middlewares=[_guard(token)], client_max_size=max_upload_bytes)
    app.on_response_prepare.append(_security_headers)
    page = Page(controller, garments, hub)
    app.router.add_get('/', page.index)
    app.router.add_static('/static', STATIC)
    app.router.add_get('/api/garments', page.garments)
    app.router.add_get('/api/garments/{gid}.jpg', page.thumbnail)
    app.router.add_post('/api/upload', page.upload)
    app.router.add_get('/ws', page.websocket)
    return app


def _guard(token: str):
    @web.middleware
    async def guard(request: web.Request, handler):
        if token:
            given = (request.query.get('token') or request.cookies.get(COOKIE)
                     or request.headers.get('X-Mirror-Token') or '')
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPUnauthorized(text='this mirror needs its access token')
        elif not is_loopback(urlsplit('//' + request.host).hostname or ''):
            raise web.HTTPForbidden(text='this mirror serves its own machine only')
        if request.method != 'GET' or request.path == '/ws':
            origin = request.headers.get('Origin')
            if origin and urlsplit(origin).netloc != request.host:
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

    def __init__(self, controller: Controller, garments: Garments, hub: Hub) -> None:
        self._controller = controller
        self._garments = garments
        self._hub = hub

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
        """Take a garment photo (raw body) and a cloth type; answer its catalogue item."""
        try:
            data = await request.read()
            item = await asyncio.get_running_loop().run_in_executor(
                None, self._garments.add_upload, data, request.query.get('cloth_type', ''),
                self._owner(request))
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({'error': 'The photo is too large.'}, status=413)
        except ValueError as err:
            return web.json_response({'error': str(err)}, status=400)
        return web.json_response(item)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Push frames and state; take the page's commands until the page goes."""
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_COMMAND_BYTES)
        await ws.prepare(request)
        client = await self._hub.join(ws)
        client.session = self._controller.join(partial(self._hub.send_state, client),
                                               partial(self._hub.send_image, client))
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
        except (ValueError, TypeError, KeyError):
            _LOG.warning('dropped a malformed page command (%d bytes)', len(text))
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
            _LOG.warning('dropped an unknown page command')


class WebServer:
    """Runs an aiohttp application on its own thread and event loop."""

    def __init__(self, app: web.Application, hub: Hub) -> None:
        self._app = app
        self._hub = hub
        self._loop = asyncio.new_event_loop()
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
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
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
