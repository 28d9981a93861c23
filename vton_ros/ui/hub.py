"""
The WebSocket hub: every open page gets the live frames; each its own session's messages.

Sends may come from any thread (ROS callbacks); they are handed to the web server's event
loop. Live frames are dropped for a page that has not taken the previous one yet (a slow
page sees a lower frame rate, never a growing delay); a page's state and try-on images
go to that page only, always. The model the server runs is told to every page, also to
one that connects later.
"""

import asyncio
import json
import threading
from typing import Any

# Binary message kinds (first byte of a binary WebSocket message).
FRAME, OVERLAY, PREVIEW, RESULT, BEFORE, LIVE = 1, 2, 3, 4, 5, 6
KINDS = {FRAME: 'camera frame (JPEG)', OVERLAY: 'mask overlay (PNG, RGBA)',
         PREVIEW: 'try-on preview (JPEG)', RESULT: 'try-on result (JPEG)',
         BEFORE: 'the frozen frame the result was made from (JPEG)',
         LIVE: 'live composite: the last try-on on the moving shopper (JPEG)'}


class Client:
    """One open page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.overlay = False  # the page shows the mask overlay
        self.pending: set[int] = set()  # frame kinds on their way to the page
        self.session: Any = None  # the page's session (the web app sets it)


class Hub:
    """Fan-out of frames and state to the open pages."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._model: dict | None = None  # the model message, for pages to come
        self._live: dict | None = None  # the live-follow message, for pages to come
        self._focus: dict | None = None  # where the person stands, for pages to come
        self.frames_sent = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use the web server's event loop (called on that loop)."""
        self._loop = loop

    def pages(self) -> int:
        """Return how many pages are open (frames are encoded only while one is)."""
        return len(self._clients)

    def overlay_watched(self) -> bool:
        """Tell whether any open page shows the mask overlay."""
        return any(c.overlay for c in list(self._clients))

    def send_frame(self, kind: int, data: bytes) -> None:
        """Send a live frame or mask overlay to the pages ready for one (any thread)."""
        self._call(self._fan_frame, kind, data)

    def send_image(self, client: Client, kind: int, data: bytes) -> None:
        """Send a preview, result or before image to one page (any thread)."""
        self._call(self._one, client, bytes([kind]) + data)

    def send_state(self, client: Client, state: dict) -> None:
        """Send a session's state (a JSON object) to its page (any thread)."""
        self._call(self._one, client, json.dumps(dict(state, type='state')))

    def send_json(self, message: dict) -> None:
        """Send another JSON message (e.g. where the person stands) to every page."""
        self._call(self._fan, json.dumps(message))

    def set_model(self, kind: str, name: str) -> None:
        """Tell every page, now and later, which model the server runs (real, demo, random)."""
        message = {'type': 'model', 'kind': kind, 'name': name}
        with self._lock:
            self._model = message
        self.send_json(message)

    def set_focus(self, x: float) -> None:
        """Tell every page, now and later, where the person stands (0..1 of the width)."""
        message = {'type': 'focus', 'x': round(x, 3)}
        with self._lock:
            self._focus = message
        self.send_json(message)

    def set_live(self, message: dict) -> None:
        """Tell every page, now and later, the live-follow settings and status."""
        message = dict(message, type='live')
        with self._lock:
            self._live = message
        self.send_json(message)

    def _call(self, function, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(function, *args)
            except RuntimeError:  # the loop closed meanwhile: shutting down
                pass

    async def join(self, ws: Any) -> Client:
        """Register a page; tell it the model the server runs and where the person stands."""
        client = Client(ws)
        with self._lock:
            sticky = [m for m in (self._model, self._live, self._focus) if m is not None]
        for message in sticky:
            await ws.send_str(json.dumps(message))
        self._clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        """Forget a page."""
        self._clients.discard(client)

    async def close_all(self) -> None:
        """Close every page's WebSocket (the server is stopping: the pages reconnect)."""
        for client in list(self._clients):
            await client.ws.close(code=1001, message=b'mirror stopping')
        self._clients.clear()

    def _fan(self, payload: str | bytes) -> None:
        for client in list(self._clients):
            asyncio.ensure_future(self._send(client, payload))

    def _one(self, client: Client, payload: str | bytes) -> None:
        if client in self._clients:
            asyncio.ensure_future(self._send(client, payload))

    def _fan_frame(self, kind: int, data: bytes) -> None:
        payload = bytes([kind]) + data
        for client in list(self._clients):
            if kind in client.pending or (kind == OVERLAY and not client.overlay):
                continue
            client.pending.add(kind)
            asyncio.ensure_future(self._send(client, payload, frame=kind))

    async def _send(self, client: Client, payload: str | bytes, frame: int = 0) -> None:
        try:
            if isinstance(payload, str):
                await client.ws.send_str(payload)
            else:
                await client.ws.send_bytes(payload)
            if frame == FRAME:
                self.frames_sent += 1
        except (ConnectionError, RuntimeError):
            self._clients.discard(client)  # the page went; its handler ends too
        finally:
            client.pending.discard(frame)
