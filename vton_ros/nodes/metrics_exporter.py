"""
metrics_exporter: the Prometheus metrics of a mirror, at http://HOST:PORT/metrics.

For a stack without the mirror page (whose server serves the same /metrics itself):
``tryon_bringup --metrics-port N`` and the launch argument ``metrics_port:=N`` start it.
What it exports and where each number comes from: :mod:`vton_ros.supervision.metrics`
and :mod:`vton_ros.nodes.metrics_feed`. The HTTP server (prometheus_client's WSGI app in
a threading wsgiref server: both in every prometheus_client version) is bound to
loopback unless ``metrics.host`` names another address (then that network may read the
metrics: counts and timings, never an image).
"""

import errno
import socket
from socketserver import ThreadingMixIn
import threading
from typing import Any
from wsgiref.simple_server import make_server, WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

from vton_ros.nodes import common
from vton_ros.nodes.metrics_feed import MetricsFeed
from vton_ros.ui.app import is_loopback


REQUEST_TIMEOUT = 30.0  # seconds a connection may stay silent (a scrape takes milliseconds)


class _Server(ThreadingMixIn, WSGIServer):
    """A WSGI server answering each scrape in a thread of its own."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop a connection that timed out or broke, without a traceback on stderr."""


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    """No line per request (a scraper asks every few seconds); silent connections end."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, *_args: Any) -> None:
        """Log nothing."""


class MetricsExporter(common.SchemaNode):
    """Feeds the metrics from the stack's topics and serves them over HTTP."""

    def __init__(self) -> None:
        super().__init__('metrics_exporter')
        self._feed = MetricsFeed(self)
        self._diag = common.Diagnostics(self)
        self._httpd: Any = None

    def serve(self) -> None:
        """Bind the HTTP server (main calls it after the node is built)."""
        host, wanted = self.setting('metrics.host'), self.setting('metrics.port')
        if not host:
            raise ValueError('metrics.host is empty; use 127.0.0.1 (this machine only)')
        try:
            self._httpd = make_server(host, wanted, make_wsgi_app(self._feed.metrics.registry),
                                      _V6Server if ':' in host else _Server, _Quiet)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise OSError(f'port {wanted} on {host} is already in use: pick another, e.g. '
                          f'--metrics-port {wanted + 1} (0: a free port)') from None
        threading.Thread(target=self._httpd.serve_forever, name='metrics_http',
                         daemon=True).start()
        port = self._httpd.server_port
        shown = f'[{host}]' if ':' in host else host
        self.get_logger().info(f'metrics at http://{shown}:{port}/metrics')
        if not is_loopback(host):
            self.get_logger().warning(f'metrics.host {host} is not loopback: that network may '
                                      'read the metrics (no token)')
        self._diag.update('ok', 'serving', port=port)

    def close(self) -> None:
        """Stop the HTTP server."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def main(args: list[str] | None = None) -> None:
    """Run metrics_exporter."""
    common.run(MetricsExporter, args, start=MetricsExporter.serve)


if __name__ == '__main__':
    main()
