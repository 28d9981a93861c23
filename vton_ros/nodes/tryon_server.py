"""
tryon_server: the ``tryon`` action (vton_interfaces/TryOn) around CatVTONPipeline.

Goals without a person image use the latest camera frame + agnostic mask pair. Feedback
every step (a preview every ``tryon.preview_every`` steps, also on ``tryon/preview``);
results also on ``tryon/result`` (latched; JPEG on ``tryon/result/compressed``); the model
on ``tryon/model`` (latched JSON: :mod:`vton_ros.goals.model_identity`). Plumbing only:
admission is :mod:`vton_ros.goals.admission`, image work :mod:`vton_ros.goals.tryon_job`.
Every goal ends with a code and message (INFO log).
"""

from functools import partial
import os
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vton_interfaces.action import TryOn
from vton_interfaces.msg import StageTiming

from vton_ros.goals import tryon_job as core
from vton_ros.goals.admission import Admission, describe, GoalError, PlainGoal, Request, validate
from vton_ros.goals.eta import StepTimes
from vton_ros.goals.model_identity import TOPIC as MODEL_TOPIC
from vton_ros.media.garments import GarmentCatalog
from vton_ros.nodes import action_qos, common, image_conv, managed, outcome
from vton_ros.nodes.compressed import ImageTopic
from vton_ros.nodes.goal_handles import end_goal, GoalClients
from vton_ros.nodes.shelf import Shelf
from vton_ros.nodes.tryon_goal import camera_images, failure as _failure, goal_key as _key, \
    plain_goal, save_goal_result, wait_pair
from vton_ros.pipeline.options import TryOnCancelled
from vton_ros.settings.views import CatVTONCall, CatVTONLoad, MaskerConfig

R = TryOn.Result
SHUTDOWN_WAIT = 30.0  # seconds deactivate/shutdown waits for the goals to end
RESULT_SETTLE = 1.0  # seconds left for the last results to reach their clients


class TryOnServer(managed.ManagedNode):
    """Serves TryOn goals with CatVTON while active."""

    FIXED = ('tryon.action_depth', 'tryon.result_timeout')  # the action server's, for good

    def __init__(self) -> None:
        self._goal_health = ('ok', 'starting')
        self._pairs = core.FramePairs()
        super().__init__('tryon_server')
        self.create_timer(self.setting('diagnostics.period'), self.report)
        self._catalog = self._pipe = self._model = None
        self._maskers = core.Maskers()
        self._admission = Admission(closed='inactive')  # goals get in once active
        self._shelf = Shelf(self, self._maskers, self._admission)  # tryon.prerender
        self._tickets: dict = {}  # id(goal) -> (goal, plain, checked), goal id -> (plain, checked)
        self._stats, self._times = {'succeeded': 0, 'failed': 0}, StepTimes()  # times: ETA
        self._goal_clients = GoalClients(self, 'tryon', self._client_gone)
        self._outcome = outcome.OutcomeTopic(self, self._admission)  # tryon/outcome
        self._server = ActionServer(
            self, TryOn, 'tryon', execute_callback=self.execute_callback,
            goal_callback=self.goal_callback, cancel_callback=self.cancel_callback,
            handle_accepted_callback=self.handle_accepted_callback,
            callback_group=ReentrantCallbackGroup(), **action_qos.server_options(
                self.setting('tryon.action_depth'), self.setting('tryon.result_timeout')))

    def configure(self) -> None:
        """Set torch's process flags, load the models and the catalogue, make the topics."""
        start = time.monotonic()
        catalog_dir = self.setting('garments.catalog_dir')
        self._catalog = GarmentCatalog(catalog_dir) if catalog_dir else None
        load = self.config(CatVTONLoad)
        core.configure_process(load)
        self._pipe, info = core.load_pipeline(load, self.config(CatVTONCall),
                                              self.setting('segmentation.cloth_type'))
        seconds = time.monotonic() - start
        self._model = core.model_identity(load, self._pipe)
        self.get_logger().info(f'model loaded in {seconds:.1f} s: {self._model.label()}; {info}')
        if self._pipe.random_weights:
            self.get_logger().warning('RANDOM TEST WEIGHTS loaded: results are noise, not '
                                      'try-ons (run fetch_weights for the real model)')
        self.diag.update(model=info, load_seconds=seconds, **core.gpu_memory(self._pipe),
                         random_weights=self._pipe.random_weights, model_kind=self._model.kind)
        qos = self.image_qos()
        self.subscription(Image, 'image_raw', self._pairs.frame, qos)
        self.subscription(Image, 'agnostic_mask', self._pairs.mask, qos)
        self._result_pub = ImageTopic(self, 'tryon/result', common.LATCHED_QOS, 'jpeg',
                                      latched=True)
        self._preview_pub = self.publisher(Image, 'tryon/preview', 1)
        self._model_pub = self.publisher(String, MODEL_TOPIC, common.LATCHED_QOS)
        self._shelf.configure(self._pipe, self._catalog, self._pairs)

    def activate(self) -> None:
        """Say which model runs (tryon/model, latched), accept goals."""
        self._model_pub.publish(String(data=self._model.to_json()))
        self._admission.reopen()
        self._shelf.start()

    def deactivate(self, final: bool = False) -> None:
        """Refuse new goals; end running and queued ones (SHUTTING_DOWN), wait (bounded)."""
        self._shelf.stop()  # the background render ends within a step
        waiting, busy = self._admission.shutdown('shutting_down' if final else 'deactivated')
        for handle in waiting:
            handle.execute()
        if busy:
            if not self._admission.wait_idle(SHUTDOWN_WAIT):
                self.get_logger().warning(f'goals still running after {SHUTDOWN_WAIT:g} s')
            time.sleep(RESULT_SETTLE)  # the executor still spins: results reach clients

    def release(self) -> None:
        """Free the models, the mask generator and the last camera pair."""
        self._shelf.stop()
        self._pipe = self._catalog = None
        self._maskers.close()
        self._pairs = core.FramePairs()

    def report(self, level: str | None = None, message: str | None = None, **values) -> None:
        """Update /diagnostics: the last goal's (or lifecycle's) state, worse if pairs are old."""
        if level is not None:
            self._goal_health = (level, message)
        age = self._pairs.age(self.get_clock().now().nanoseconds)
        if age is not None:
            values['pair_age_s'] = age
        self.diag.update(*core.pair_health(age, self.setting('tryon.pair_max_age'),
                                           *self._goal_health), **values)

    # ---- goal admission ---------------------------------------------------------------
    def goal_callback(self, goal: TryOn.Goal) -> GoalResponse:
        """Validate; refuse only when busy (reject policy, full queue) or shutting down."""
        plain, checked = self._validate(goal)
        # noted before the offer, which stops a background render at its next step: the
        # render's log counts the steps from this arrival (after it, a render could read none)
        self._shelf.goal_arrived()
        refusal = self._admission.offer(isinstance(checked, Request),
                                        self.setting('tryon.busy_policy'),
                                        self.setting('tryon.queue_size'))
        if refusal:
            self.get_logger().warning(f'goal rejected: {refusal}')
            return GoalResponse.REJECT
        self._tickets[id(goal)] = (goal, plain, checked)  # an invalid goal is aborted at once
        return GoalResponse.ACCEPT

    def _validate(self, goal: TryOn.Goal) -> tuple[PlainGoal, Request | GoalError]:
        """Decode the goal's images, then check it: (plain goal, request or its error)."""
        side, aspect = self.setting('tryon.min_image_side'), self.setting('tryon.max_aspect_ratio')
        plain = plain_goal(goal, self.setting('tryon.max_image_pixels'), side, aspect)
        try:
            return plain, validate(plain, self.config(CatVTONCall), self._catalog, min_side=side,
                                   max_aspect=aspect,
                                   cloth_type=self.setting('segmentation.cloth_type'))
        except GoalError as err:
            return plain, err

    def handle_accepted_callback(self, goal_handle) -> None:
        """Run now or queue; with preempt, the running and queued goals are stopped."""
        goal, plain, checked = self._tickets.pop(id(goal_handle.request), (None, None, None))
        if goal is not goal_handle.request:  # not the message goal_callback saw
            plain, checked = self._validate(goal_handle.request)
        self._tickets[_key(goal_handle)] = (plain, checked)
        if self.setting('tryon.stop_orphaned_goals'):
            self._goal_clients.add(_key(goal_handle))
        for handle in self._admission.accepted(_key(goal_handle), goal_handle,
                                               isinstance(checked, Request),
                                               self.setting('tryon.busy_policy')):
            handle.execute()

    def cancel_callback(self, goal_handle) -> CancelResponse:
        """Accept unless the goal has ended: running stops within a step, queued at once."""
        accepted, waiting = self._admission.cancel(_key(goal_handle))
        if waiting is not None:
            waiting.execute()
        return CancelResponse.ACCEPT if accepted else CancelResponse.REJECT

    def _client_gone(self, key: bytes) -> None:
        """Stop a goal whose client left the graph (CLIENT_GONE); a queued one ends now."""
        live, waiting = self._admission.abandon(key)
        if live:
            self.get_logger().warning(f'goal {key.hex()[:8]}: its client left; stopping it')
        if waiting is not None:
            waiting.execute()

    # ---- execution ------------------------------------------------------------------
    def execute_callback(self, goal_handle) -> TryOn.Result:
        """Run one goal; always end it with a result, then start the next goal."""
        start = time.monotonic()
        plain, checked = self._tickets.pop(_key(goal_handle))
        try:
            if isinstance(checked, GoalError):
                raise checked
            self._admission.started(_key(goal_handle), start, self.setting('tryon.goal_timeout'))
            self._check_stop(goal_handle)
            with self._shelf.claim():  # a background render stops at its next step
                result = self._run(goal_handle, checked, start)
        except TryOnCancelled:
            result = _failure(self._stop_error(goal_handle))
        except Exception as err:  # noqa: B902 - the goal boundary: never kill the server
            result = _failure(core.goal_error(err))
        canceled, nxt = self._admission.finish(_key(goal_handle))
        self._goal_clients.forget(_key(goal_handle))
        if canceled and result.error_code != R.CANCELED:  # an accepted cancel always wins
            result = R(error_code=R.CANCELED, message='canceled')
        if result.error_code == R.SUCCESS:
            self._deliver(goal_handle, result)
        end_goal(goal_handle, result.error_code)
        self._log_end(goal_handle, describe(plain, checked), result, time.monotonic() - start)
        if nxt is not None:
            nxt.execute()
        return result

    def _stop_error(self, goal_handle) -> GoalError:
        err = self._admission.stop_error(_key(goal_handle), time.monotonic())
        return err or GoalError('SHUTTING_DOWN', 'the server is shutting down')

    def _should_stop(self, goal_handle) -> bool:
        """Return True if the goal was canceled, preempted, timed out, or the node ends."""
        return not self.context.ok() or \
            self._admission.stop_error(_key(goal_handle), time.monotonic()) is not None

    def _check_stop(self, goal_handle) -> None:
        if self._should_stop(goal_handle):
            raise TryOnCancelled('stopped')

    def _deliver(self, goal_handle, result: TryOn.Result) -> None:
        """Publish a successful result on tryon/result; save it when tryon.save_dir is set."""
        self._result_pub.publish(result.image)
        if self.setting('tryon.save_dir'):
            save_goal_result(self.setting('tryon.save_dir'), _key(goal_handle), result,
                             self.get_logger())

    def _log_end(self, goal_handle, summary: str, result: TryOn.Result, seconds: float) -> None:
        self._outcome.publish(result)
        code = outcome.CODE_NAMES[result.error_code]
        self.get_logger().info(
            f'goal {_key(goal_handle).hex()[:8]} ended {code} in {seconds:.2f} s: {summary}: '
            f'{result.message}')
        if result.error_code == R.SUCCESS:
            self._stats['succeeded'] += 1
            self.report('ok', 'last goal succeeded', goals_succeeded=self._stats['succeeded'],
                        **core.gpu_memory(self._pipe))
        else:
            self._stats['failed'] += 1
            self.report('warn', f'last goal ended {code}', last_error=result.message,
                        goals_failed=self._stats['failed'], **core.gpu_memory(self._pipe))

    def _run(self, goal_handle, request: Request, start: float) -> TryOn.Result:
        timings = dict.fromkeys(core.STAGES, 0.0)
        person, mask, person_msg, waited = request.person, request.mask, None, 0.0
        if person is None:
            person_msg, person, mask, waited = self._camera(goal_handle, request)
        if (ready := self._shelf.result(request, person, person_msg, start)) is not None:
            return ready  # rendered in the background before the tap (tryon.prerender)
        if mask is None:
            mask, timings['segmentation'] = self._maskers(self.config(MaskerConfig), person,
                                                          request.cloth_type)
        timings['preprocess'] = time.monotonic() - start - timings['segmentation'] - waited
        every = self.setting('tryon.preview_every')
        feedback = core.StepReporter(partial(self._feedback, goal_handle),
                                     partial(self._should_stop, goal_handle), every,
                                     self._pipe.preview, self._times,
                                     core.run_kind(request, person, every))
        image, binary, notes = core.try_on(self._pipe, request, person, mask, timings, feedback,
                                           attn_version=self.config(CatVTONLoad).attn_version)
        timings['total'] = time.monotonic() - start - waited  # waiting for a frame is not work
        timings['camera_wait'] = waited  # apart from the work: clients split it from messaging
        header = person_msg.header if person_msg is not None else None
        feedback.settle()
        return R(image=image_conv.from_rgb(image, header),
                 mask=image_conv.from_mono(binary, header), seed=request.call.seed,
                 timings=[StageTiming(name=k, seconds=v) for k, v in timings.items()],
                 error_code=R.SUCCESS, message=notes)

    def _camera(self, goal_handle, request: Request) -> tuple:
        """Wait for a fresh camera pair: (frame msg, person, mask or None, seconds waited)."""
        start = time.monotonic()
        pair = wait_pair(self._pairs, self.setting('tryon.pair_wait'),
                         partial(self._check_stop, goal_handle))
        core.check_pair_age(self._pairs.age(self.get_clock().now().nanoseconds),
                            self.setting('tryon.pair_max_age'))
        person, mask = camera_images(pair, request, self.setting('tryon.max_image_pixels'),
                                     self.setting('segmentation.cloth_type'))
        return pair[0], person, mask, time.monotonic() - start

    def _feedback(self, goal_handle, step: int, total: int, elapsed: float, eta: float,
                  preview) -> None:
        fb = TryOn.Feedback(step=step, total_steps=total, elapsed_sec=elapsed, eta_sec=eta)
        if preview is not None:
            fb.preview = image_conv.from_rgb(preview)
            self._preview_pub.publish(fb.preview)
        goal_handle.publish_feedback(fb)


def main(args: list[str] | None = None) -> None:
    """Run tryon_server: declare parameters, configure torch, load the models, serve."""
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    common.run(TryOnServer, args, start=TryOnServer.start_up)


if __name__ == '__main__':
    main()
