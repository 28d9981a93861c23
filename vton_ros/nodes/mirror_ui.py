"""
mirror_ui: the mirror's kiosk page, served over HTTP with live data over a WebSocket.

A client of the ``tryon`` action and a subscriber of ``image_raw``, ``agnostic_mask``,
``tryon/model`` and ``tryon/live`` with its status (relative names: it works in the stack's
namespace). The page, its server and the shoppers' sessions (one per open page) are
ROS-free (:mod:`vton_ros.ui`); this node only wires them to ROS: frames and masks go to the
camera memory (a mask with pixels means a person is there), the model the server runs and
the live composite to every page. Frames are JPEG-encoded only while a page is open; no
image is written to disk or logged. Its server also serves the mirror's Prometheus metrics
at ``/metrics`` (:mod:`vton_ros.nodes.metrics_feed`), under the page's access rules.
"""

import errno
from functools import partial
import os
from pathlib import Path
import time

from action_msgs.msg import GoalStatus
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vton_interfaces.action import TryOn

from vton_ros.nodes import common, image_conv
from vton_ros.nodes.action_qos import client_options
from vton_ros.nodes.metrics_feed import MetricsFeed, read_model
from vton_ros.nodes.outcome import CODE_NAMES
from vton_ros.nodes.waits import SafeActionClient
from vton_ros.settings import dds
from vton_ros.ui import hub as kinds, images, limits
from vton_ros.ui.app import build_app, check_bind, load_token, WebServer
from vton_ros.ui.catalog import Garments
from vton_ros.ui.frames import Camera
from vton_ros.ui.hub import Hub
from vton_ros.ui.session import GoalSpec, Rules, Session
from vton_ros.ui.sessions import Sessions

SERVER_POLL = 0.5  # seconds between checks of the action server, the waits and the idle reset
CANCEL_WAIT = 5.0  # seconds a shutdown waits for the canceled goal's result
FOCUS_STEP = 0.02  # a move of the person (fraction of the width) the pages are told of
# Its own Fast DDS shared-memory segment (resident as a whole): its largest message is a
# goal, ~3.6 MB from a 640x480 camera with an upload, ~11 MB from a 1080p camera.
SEGMENT_BYTES = 16 << 20


class MirrorUi(common.SchemaNode):
    """Serves the mirror page and runs its pages' try-ons through the ``tryon`` action."""

    def __init__(self) -> None:
        super().__init__('mirror_ui')
        self._token = load_token(self.setting('ui.token_file'), os.environ)
        check_bind(self.setting('ui.host'), self._token)
        self._hub = Hub()
        self._garments = Garments(self.setting('garments.catalog_dir'))
        self._rules = self._read_rules()
        self._sessions = Sessions(self, self._garments, Camera(), self._rules,
                                  self.setting('ui.idle_reset'))
        self._focus = 0.5
        group = ReentrantCallbackGroup()
        self._client = SafeActionClient(self, TryOn, 'tryon', callback_group=group,
                                        **client_options())
        qos = self.image_qos()
        self.create_subscription(Image, 'image_raw', self._frame, qos)
        self.create_subscription(Image, 'agnostic_mask', self._mask, qos)
        self.create_subscription(String, 'tryon/model', self._model, common.LATCHED_QOS)
        self.create_subscription(Image, 'tryon/live', self._live, qos)
        self.create_subscription(String, 'tryon/live/status', self._live_status,
                                 common.LATCHED_QOS)
        self._live_state = {'on': self.setting('live.enabled'), 'status': 'no result',
                            'rerender': self.setting('live.rerender')}
        self._hub.set_live(self._live_state)
        self._diag = common.Diagnostics(self)
        self._rate = common.RateMeter()
        self._metrics = MetricsFeed(self, views=False)  # _live and _model pass them on
        self.create_timer(SERVER_POLL, self._watch)
        app = build_app(self._sessions, self._garments, self._hub, self._token,
                        self.setting('ui.max_upload_bytes'), self.setting('ui.timeout'),
                        metrics=self._metrics.metrics.render)
        self._web = WebServer(app, self._hub, self.setting('ui.timeout'),
                              self.setting('ui.max_connections'),
                              self.setting('ui.max_connections_per_address'))

    def serve(self) -> None:
        """Bind the web server (main calls it after the node is built)."""
        host, wanted = self.setting('ui.host'), self.setting('ui.port')
        try:
            port = self._web.start(host, wanted)
        except OSError as err:  # say so before anyone reads a URL: it is another's page
            if err.errno != errno.EADDRINUSE:
                raise
            raise OSError(f'port {wanted} on {host} is already in use (another mirror page or '
                          f'program): pick another, e.g. PORT={wanted + 1} make mirror or '
                          f'--set ui.port={wanted + 1} (ui.port 0: a free port)') from None
        shown = f'[{host}]' if ':' in host else host
        hint = ' (open it once with ?token=<the token>)' if self._token else ''
        self.get_logger().info(f'mirror page at http://{shown}:{port}/{hint}')
        self._diag.update('ok', 'serving', port=port)

    # ---- images and the model ---------------------------------------------------------
    def _frame(self, msg: Image) -> None:
        start = time.monotonic()
        try:
            rgb = image_conv.to_rgb(msg)
        except ValueError as err:
            self.get_logger().warning(f'unusable camera frame: {err}', throttle_duration_sec=5.0)
            return
        self._sessions.camera.add_frame(_stamp(msg), rgb)
        if self._hub.pages():
            data = images.jpeg(rgb, self.setting('ui.jpeg_quality'), self.setting('ui.max_side'))
            self._hub.send_frame(kinds.FRAME, data)
            self._rate.tick(time.monotonic() - start)

    def _mask(self, msg: Image) -> None:
        try:
            mask = image_conv.to_mono(msg)
        except ValueError as err:
            self.get_logger().warning(f'unusable mask: {err}', throttle_duration_sec=5.0)
            return
        focus = self._sessions.camera.add_mask(_stamp(msg), mask)
        if focus is not None and abs(focus - self._focus) >= FOCUS_STEP:
            self._focus = focus
            self._hub.set_focus(focus)
        if self._hub.overlay_watched():
            self._hub.send_frame(kinds.OVERLAY, images.mask_overlay(mask))

    def _live(self, msg: Image) -> None:
        """Pass the live composite (tryon/live) to the pages."""
        self._metrics.live_frame()
        if not self._hub.pages():
            return
        try:
            rgb = image_conv.to_rgb(msg)
        except ValueError as err:
            self.get_logger().warning(f'unusable live frame: {err}', throttle_duration_sec=5.0)
            return
        data = images.jpeg(rgb, self.setting('ui.jpeg_quality'), self.setting('ui.max_side'))
        self._hub.send_frame(kinds.LIVE, data)

    def _live_status(self, msg: String) -> None:
        self._live_state = dict(self._live_state, status=msg.data[:40])
        self._hub.set_live(self._live_state)

    def _model(self, msg: String) -> None:
        model = read_model(self, msg)
        if model is not None:
            self._metrics.model(model)
            self._hub.set_model(model.kind, model.name[:80])

    def _read_rules(self) -> Rules:
        return Rules(jpeg_quality=self.setting('ui.jpeg_quality'),
                     max_age=self.setting('tryon.pair_max_age'),
                     answer_timeout=self.setting('ui.answer_timeout'),
                     live_cloth_type=self.setting('segmentation.cloth_type'))

    def _watch(self) -> None:
        rules = self._read_rules()
        if rules != self._rules:  # a setting changed (ros2 param set)
            self._rules = rules
            self._sessions.set_rules(rules)
        self._sessions.server_ready(self._client.server_is_ready())
        reset = self._sessions.tick()
        if reset:
            self.get_logger().info(f'nobody in view: {reset} page(s) back to the live view')
        running = self._sessions.running()
        self._diag.update(pages=self._hub.pages(), frames_sent=self._hub.frames_sent,
                          encode_rate_hz=self._rate.rate(), encode_s=self._rate.latency(),
                          state=running.state if running is not None else 'idle')

    # ---- the TryOn action (the sessions' GoalPort) ------------------------------------
    def send(self, session: Session, seq: int, spec: GoalSpec) -> None:
        """Send a session's goal; its answers go to that session."""
        goal = TryOn.Goal(garment_id=spec.garment_id, cloth_type=spec.cloth_type,
                          person_image=image_conv.from_rgb(spec.person))
        if spec.garment_image is not None:
            goal.garment_image = image_conv.from_rgb(spec.garment_image)
        if spec.mask is not None:
            goal.mask = image_conv.from_mono(spec.mask)
        future = self._client.send_goal_async(
            goal, feedback_callback=partial(self._feedback, session, seq))
        future.add_done_callback(partial(self._answered, session, seq))

    def cancel(self, handle) -> None:
        """Ask the server to cancel an accepted goal."""
        handle.cancel_goal_async()

    def _answered(self, session: Session, seq: int, future) -> None:
        if future.exception() is not None:
            self.get_logger().error(f'sending the goal failed: {future.exception()!r}')
            session.on_rejected(seq, 'UNKNOWN')
            return
        handle = future.result()
        if not handle.accepted:
            self.get_logger().info('goal rejected: the server is busy')
            session.on_rejected(seq)
            return
        session.on_accepted(seq, handle)
        handle.get_result_async().add_done_callback(partial(self._ended, session, seq))

    def _feedback(self, session: Session, seq: int, msg) -> None:
        fb = msg.feedback
        preview = None
        if fb.preview.width:
            try:
                preview = image_conv.to_rgb(fb.preview)
            except ValueError:
                pass  # a step without a usable preview still moves the bar
        session.on_feedback(seq, fb.step, fb.total_steps, fb.eta_sec, preview)

    def _ended(self, session: Session, seq: int, future) -> None:
        if future.exception() is not None:
            self.get_logger().error(f'the result did not come: {future.exception()!r}')
            session.on_result(seq, 'UNKNOWN', None, None, 0.0)
            return
        response = future.result()
        result = response.result
        code = CODE_NAMES.get(result.error_code, 'UNKNOWN')
        if response.status == GoalStatus.STATUS_UNKNOWN:
            code = 'UNKNOWN'  # the server forgot the goal: never a success
        image = mask = None
        if code == 'SUCCESS':
            try:
                image = image_conv.to_rgb(result.image)
                mask = image_conv.to_mono(result.mask)
            except ValueError as err:
                self.get_logger().error(f'unusable result image: {err}')
                code = 'PIPELINE_ERROR'
        total = next((t.seconds for t in result.timings if t.name == 'total'), 0.0)
        self.get_logger().info(f'try-on ended {code}')
        session.on_result(seq, code, image, mask, total)

    # ---- life cycle ------------------------------------------------------------------
    def prepare_shutdown(self) -> None:
        """Cancel a running try-on (the server must not work for nobody)."""
        running = self._sessions.running()
        if running is None:
            return
        running.close()
        deadline = time.monotonic() + CANCEL_WAIT
        while self._sessions.running() is running and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Close the pages' WebSockets and stop the web server."""
        self._web.stop()


def _stamp(msg: Image) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def main(args: list[str] | None = None) -> None:
    """Run mirror_ui."""
    limits.return_freed_memory()  # decoded uploads go back to the system once dropped
    profile = dds.write_sized_profile(os.environ, SEGMENT_BYTES)
    if profile is not None:  # the profile in force, with a 16 MiB segment, not 64 MiB
        os.environ[dds.FASTDDS_PROFILE_ENV] = str(profile)
    try:
        common.run(MirrorUi, args, start=partial(_serve, profile))
    finally:
        dds.remove_profile(profile)


def _serve(profile: Path | None, node: MirrorUi) -> None:
    dds.remove_profile(profile)  # read: the participant exists
    node.serve()


if __name__ == '__main__':
    main()
