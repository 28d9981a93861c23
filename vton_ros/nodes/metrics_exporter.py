"""
metrics_exporter: the Prometheus metrics of a mirror, at http://HOST:PORT/metrics.

For a stack without the mirror page (whose server serves the same /metrics itself):
``tryon_bringup --metrics-port N`` and the launch argument ``metrics_port:=N`` start it.
What it exports and where each number comes from: :mod:`vton_ros.supervision.metrics`
and :mod:`vton_ros.nodes.metrics_feed`. The HTTP server is prometheus_client's own, bound
to loopback unless ``metrics.host`` names another address (then that network may read the
metrics: counts and timings, never an image).
"""

import errno
from typing import Any

from prometheus_client import start_http_server

from vton_ros.nodes import common
from vton_ros.nodes.metrics_feed import MetricsFeed
from vton_ros.ui.app import is_loopback


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
            self._httpd, _ = start_http_server(wanted, host, self._feed.metrics.registry)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise OSError(f'port {wanted} on {host} is already in use: pick another, e.g. '
                          f'--metrics-port {wanted + 1} (0: a free port)') from None
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
