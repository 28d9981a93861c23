"""
The WebSocket hub: every open page gets the live frames and the session's state.

Sends may come from any thread (ROS callbacks); they are handed to the web server's event
loop. Live frames are dropped for a page that has not taken the previous one yet (a slow
page sees a lower frame rate, never a growing delay); state and images of the try-on are
always sent, and the last ones are replayed to a page that connects later.
"""

import asyncio
import json
import threading
from typing import Any

# Binary message kinds (first byte of a binary WebSocket message).
FRAME, OVERLAY, PREVIEW, RESULT, BEFORE = 1, 2, 3, 4, 5
KINDS = {FRAME: 'camera frame (JPEG)', OVERLAY: 'mask overlay (PNG, RGBA)',
         PREVIEW: 'try-on preview (JPEG)', RESULT: 'try-on result (JPEG)',
         BEFORE: 'the frozen frame the result was made from (JPEG)'}
REPLAYED = (PREVIEW, RESULT, BEFORE)


class Client:
    """One open page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.overlay = False  # the page shows the mask overlay
        self.pending: set[int] = set()  # frame kinds on their way to the page


class Hub:
    """Fan-out of frames and state to the open pages."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._state: dict = {'type': 'state', 'state': 'offline'}
        self._images: dict[int, bytes] = {}
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

    def send_image(self, kind: int, data: bytes) -> None:
        """Send a preview, result or before image to every page (any thread)."""
        with self._lock:
            if kind == PREVIEW:
                self._images.pop(RESULT, None)
                self._images.pop(BEFORE, None)
            self._images[kind] = data
        self._call(self._fan, bytes([kind]) + data)

    def send_state(self, state: dict) -> None:
        """Send the session's state (a JSON object) to every page (any thread)."""
        with self._lock:
            self._state = dict(state, type='state')
            if state.get('state') in ('sending', 'idle'):
                self._images.clear()
        self._call(self._fan, json.dumps(self._state))

    def send_json(self, message: dict) -> None:
        """Send another JSON message (e.g. the catalogue changed) to every page."""
        self._call(self._fan, json.dumps(message))

    def _call(self, function, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(function, *args)
            except RuntimeError:  # the loop closed meanwhile: shutting down
                pass

    async def join(self, ws: Any) -> Client:
        """Register a page; send it the current state and the try-on images so far."""
        client = Client(ws)
        with self._lock:
            state = json.dumps(self._state)
            images = [bytes([k]) + self._images[k] for k in REPLAYED if k in self._images]
        await ws.send_str(state)
        for image in images:
            await ws.send_bytes(image)
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
