"""
vton_soak: N try-on goals from M clients with faults; bounded, on loopback only.

Starts camera_node, segmentation_node and tryon_server under ``tryon_bringup --respawn``
(tiny random weights unless ``--params-file`` names a model). M clients send N goals:
random garments (images and catalogue ids), person from the goal or the camera, steps,
cancels, invalid values; some clients vanish mid-goal; the busy policy changes; camera
and segmentation (and with ``--kill-server`` the server) get SIGKILL at random goals and
come back. After each kill of the server, every client's next goal must succeed once the
restarted server is up (a busy rejection, or preemption by another client's goal, is
retried). Every goal's outcome, each node's RSS, open fds and threads, and the stack's
Fast DDS shared memory over time go to OUT/soak.json and OUT/soak.png. Exit 0 when every
accepted goal was answered (by its result, or by the server's log for a vanished client),
every goal request got a response (none NO_RESPONSE; an accepted goal whose reply was lost
is read from the status topic, as tryon_client does), every after-kill goal succeeded and
no node crashed (a node that needed SIGTERM to stop at the end is noted, with the
supervisor's exit code). Every wait is bounded and says what it waited for.
"""

import argparse
import itertools
import json
import os
from pathlib import Path
import random
import re
import sys
import threading
import time

import cv2
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter
from vton_interfaces.action import TryOn

from vton_ros.cli.tryon_bringup import loopback_env
from vton_ros.media import samples
from vton_ros.media.garments import GarmentCatalog
from vton_ros.nodes import action_qos, image_conv
from vton_ros.nodes.goal_request import GoalRequests
from vton_ros.nodes.outcome import CODE_NAMES
from vton_ros.nodes.runner import destroy
from vton_ros.nodes.waits import SafeActionClient, wait_future, WaitTimeout
from vton_ros.settings import files as param_files
from vton_ros.settings import schema
from vton_ros.supervision import dds_shm
from vton_ros.supervision import procstat
from vton_ros.supervision import soak_report
from vton_ros.supervision.soak_stack import Stack

NODES = ('camera_node', 'segmentation_node', 'tryon_server')
# what a goal does: (cause, weight)
PLANS = (('normal', 60), ('camera', 15), ('cancel', 10), ('vanish', 5), ('invalid', 5),
         ('unknown_garment', 5))
ENDED = re.compile(r'goal ([0-9a-f]{8}) ended ([A-Z_]+) in')
RESPONSE_WAIT = 60.0  # seconds for the accept/reject answer (a goal sent to a dead server)
FEEDBACK_TOPIC = 'tryon/_action/feedback'  # its publishers tell the server processes apart
BUSY_PAUSE = 1.0  # seconds before an after-kill goal rejected as busy is sent again
# seconds the server keeps each finished goal (request and result) for a late result
# request; its memory grows that long after it starts (the default 900 s outlasts a soak)
RESULT_TIMEOUT = 60.0
# its ROS domain unless ROS_DOMAIN_ID names one: outside the tests' 1-200 (a test's server on
# it answered soak goals) and Linux's ephemeral ports (Fast DDS: 7400 + 250 * domain + ...)
DOMAINS = (216, 230)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--goals', type=int, default=1000, help='goals to send (default 1000)')
    parser.add_argument('--clients', type=int, default=4, help='concurrent clients')
    parser.add_argument('--kills', type=int, default=10,
                        help='SIGKILLs of camera/segmentation (and server) over the run')
    parser.add_argument('--kill-server', action='store_true',
                        help='also kill tryon_server (restarted by --respawn)')
    parser.add_argument('--max-steps', type=int, default=6, help='most denoising steps a goal '
                        'asks for')
    parser.add_argument('--params-file', help='config of the stack (default: tiny random '
                        'weights at 64x48, written to OUT)')
    parser.add_argument('--out', default='soak_out', help='folder for soak.json, soak.png, '
                        'logs/ (default soak_out)')
    parser.add_argument('--seed', type=int, default=0, help='seed of every random choice')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads per node process')
    parser.add_argument('--goal-timeout', type=float, default=300.0,
                        help='seconds a goal may take before it counts as unanswered')
    parser.add_argument('--time-limit', type=float, default=4 * 3600.0,
                        help='seconds after which no new goal is sent (bound)')
    parser.add_argument('--sample-period', type=float, default=1.0,
                        help='seconds between RSS/fd/thread samples')
    return parser


def tiny_config(out: Path) -> Path:
    """Write tiny random weights, a garment catalogue and a config for them; return it."""
    from vton_ros.tools.make_test_weights import write_test_weights

    paths = write_test_weights(str(out / 'weights'))
    catalog = out / 'garments'
    catalog.mkdir(parents=True, exist_ok=True)
    for name, kind, colour in (('red_tshirt', 'tshirt', (200, 30, 40)),
                               ('blue_skirt', 'skirt', (30, 40, 200)),
                               ('green_dress', 'dress', (30, 160, 60))):
        cv2.imwrite(str(catalog / f'{name}.png'),
                    cv2.cvtColor(samples.garment(kind, colour, 128, 96), cv2.COLOR_RGB2BGR))
    (catalog / 'catalog.yaml').write_text('red_tshirt: upper\nblue_skirt: lower\n'
                                          'green_dress: overall\n')
    config = {
        'camera_node': {'camera.source': 'sample:astronaut', 'camera.fps': 4.0,
                        'camera.width': 160, 'camera.height': 120},
        'segmentation_node': {'segmentation.device': 'cpu', 'segmentation.max_rate': 4.0},
        'tryon_server': {
            'catvton.base_model': paths['base_model'], 'catvton.vae': paths['vae'],
            'catvton.attn_ckpt': paths['attn_ckpt'], 'catvton.device': 'cpu',
            'catvton.precision': 'fp32', 'catvton.height': 64, 'catvton.width': 48,
            'catvton.num_inference_steps': 4, 'segmentation.device': 'cpu',
            'tryon.busy_policy': 'queue', 'tryon.queue_size': 2, 'tryon.pair_max_age': 30.0,
            'tryon.pair_wait': 5.0, 'garments.catalog_dir': str(catalog),
            'tryon.result_timeout': RESULT_TIMEOUT},
    }
    path = out / 'soak.yaml'
    path.write_text(param_files.dump_yaml(config))
    return path


def result_timeout(params_file: Path) -> float:
    """Seconds the configured server keeps finished goals (its warm-up lasts that long)."""
    server = param_files.load_yaml(str(params_file)).get('tryon_server', {})
    return float(server.get('tryon.result_timeout', schema.param('tryon.result_timeout').default))


def catalogue_ids(params_file: Path) -> list[str]:
    """Garment ids of the configured catalogue (empty without one)."""
    server = param_files.load_yaml(str(params_file))['tryon_server']
    folder = server.get('garments.catalog_dir')
    return GarmentCatalog(folder).ids() if folder else []


class Client:
    """One client: its own rclpy context (a DDS participant that can vanish)."""

    def __init__(self, name: str, domain: int) -> None:
        self.name, self.sent = name, 0  # goals sent so far (0: a new participant's first)
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        # as tryon_client: a goal request is answered by its reply or, when that is late or
        # lost (a reader not yet matched: new clients, a restarted server), the status topic
        self.action = SafeActionClient(self.node, TryOn, 'tryon', **action_qos.client_options())
        self.requests = GoalRequests(self.node, self.action, TryOn, 'tryon')
        self.params = self.node.create_client(SetParameters, '/tryon_server/set_parameters')
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.shm_files = dds_shm.own_files()  # this process's Fast DDS files (ours included)

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except (ExternalShutdownException, InvalidHandle):  # closed while a callback ran
            pass

    def send(self, goal: TryOn.Goal, feedback, give_up, timeout: float = RESPONSE_WAIT):
        """Return the goal's handle (accepted or rejected), None without any answer."""
        return self.requests.send(goal, feedback, timeout, give_up)

    def server_gids(self) -> set[bytes]:
        """Return the endpoint ids of the action server processes this client sees now."""
        return {bytes(info.endpoint_gid) for info in
                self.node.get_publishers_info_by_topic(f'/{FEEDBACK_TOPIC}')}

    def close(self) -> set[str]:
        """Vanish (goals are left to the server); return the ids of its missing goal replies."""
        missing = self.requests.replies_missing()  # none came for goals taken from the status
        self._executor.shutdown()
        self._thread.join(5.0)  # no wait set holds the node any more: it can go at once
        destroy(self.node)  # its action client too: else the participant stays
        rclpy.try_shutdown(context=self.context)
        getattr(self.context, 'destroy', lambda: None)()  # the participant (not in Humble)
        return missing


def wait(future, timeout: float, what: str, give_up=lambda: False):
    """Return the future's result, or None after ``timeout`` s or once ``give_up()``."""
    try:
        return wait_future(future, timeout, what, give_up)
    except WaitTimeout:
        return None


class Soak:
    """The run: goals handed to client threads, faults at chosen goals, samples."""

    def __init__(self, args: argparse.Namespace, stack: Stack, domain: int,
                 garment_ids: list[str]) -> None:
        self.args, self.stack, self.domain = args, stack, domain
        self.rng = random.Random(args.seed)
        self.garment_ids = garment_ids
        self.person = image_conv.from_rgb(  # a real portrait, 120x96
            samples.portrait('astronaut')[::4, 16:-16:4][:120, :96].copy())
        self.goals: list[dict] = []
        self.samples: list[dict] = []
        self.shm: list[dict] = []  # Fast DDS /dev/shm use over the run
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._deadline = time.monotonic() + args.time_limit
        victims = ['camera_node', 'segmentation_node'] + \
            (['tryon_server'] if args.kill_server else [])
        self.faults = {self.rng.randrange(args.goals): ('kill', self.rng.choice(victims))
                       for _ in range(args.kills)}
        for _ in range(max(1, args.goals // 50)):  # short spells of each busy policy
            self.faults.setdefault(self.rng.randrange(args.goals), ('policy', self.rng.choice(
                ('queue', 'queue', 'preempt', 'reject'))))
        self.own_shm: set[str] = set()  # Fast DDS files of the soak's own participants
        self.replies_missing: set[str] = set()  # goals accepted per status, reply never came
        self.operator = self.new_client('soak_operator')
        self.after_kill: list[dict] = []  # per server kill: old server ids, clients to check

    def new_client(self, name: str) -> Client:
        """Return a new client; write down its Fast DDS files (removed after the run)."""
        client = Client(name, self.domain)
        with self._lock:
            self.own_shm.update(client.shm_files)
        return client

    def take(self) -> int | None:
        """Return the next goal index (running its fault first), or None when done."""
        with self._lock:
            index = next(self._next)
        if index >= self.args.goals or time.monotonic() > self._deadline:
            return None
        kind, what = self.faults.get(index, (None, None))
        if kind == 'kill' and what == 'tryon_server':
            old = self.operator.server_gids()
            if self.stack.kill(what):
                with self._lock:
                    self.after_kill.append({'t': time.time(), 'old': old,
                                            'clients': set(range(self.args.clients))})
        elif kind == 'kill':
            self.stack.kill(what)
        elif kind == 'policy':
            request = SetParameters.Request(parameters=[
                Parameter('tryon.busy_policy', value=what).to_parameter_msg()])
            wait(self.operator.params.call_async(request), 30.0,  # none while it restarts
                 'setting the busy policy')
        return index

    def client_loop(self, number: int) -> None:
        """Send goals until none is left; a vanished client is replaced by a new one."""
        rng = random.Random(self.args.seed * 1000 + number)
        client = self.new_client(f'soak_client_{number}')
        while (index := self.take()) is not None:
            cause = rng.choices([p[0] for p in PLANS], [p[1] for p in PLANS])[0]
            check = self._after_kill_due(number)
            if check is not None:
                record = self.run_after_kill(client, index, rng, check)
            else:
                record = self.run_goal(client, index, cause, rng)
            with self._lock:
                self.goals.append(record)
            if cause == 'vanish' and record['accepted']:
                self.replies_missing.update(client.close())
                client = self.new_client(f'soak_client_{number}_{index}')
        self.replies_missing.update(client.close())

    def _after_kill_due(self, number: int) -> dict | None:
        """Return the server kill whose check this client still owes, if any."""
        with self._lock:
            for kill in self.after_kill:
                if number in kill['clients']:
                    kill['clients'].discard(number)
                    return kill
        return None

    def run_after_kill(self, client: Client, index: int, rng: random.Random,
                       kill: dict) -> dict:
        """Send the first goal after a server kill once the new server is seen: it must succeed."""
        deadline = time.monotonic() + self.args.goal_timeout
        while True:  # the killed process leaves the graph (lease) and a new one joins
            gids = client.server_gids()
            if gids and not gids & kill['old']:
                with self._lock:
                    kill.setdefault('up', time.time())  # the server is back from here on
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        attempt = 0
        while True:
            attempt += 1
            record = self.run_goal(client, index, 'after_server_kill', rng)
            record.update(server_kill_t=kill['t'], attempts=attempt)
            unanswered = record.get('note') or (record['accepted'] and not record['code'])
            if unanswered and self._killed_since(kill['t']):
                record['cause'] = 'normal'  # killed again: a newer kill's check replaces this one
                return record
            busy = not record['accepted'] or record['code'] == 'PREEMPTED'
            if not busy or record.get('note') or time.monotonic() > deadline:
                return record  # answered, or no answer at all, or out of time
            # rejected as busy (the others' goals fill the queue), or preempted by another
            # client's goal under busy_policy preempt: the new server did answer; again
            time.sleep(BUSY_PAUSE)

    def _killed_since(self, t: float) -> bool:
        """Whether the server was killed again after time ``t``."""
        with self._lock:
            return any(k['t'] > t for k in self.after_kill)

    def make_goal(self, cause: str, rng: random.Random) -> TryOn.Goal:
        """Return a random goal for ``cause``."""
        kind = rng.choice(samples.GARMENT_KINDS)
        colour = tuple(rng.randrange(256) for _ in range(3))
        goal = TryOn.Goal(num_inference_steps=rng.randint(1, self.args.max_steps),
                          guidance_scale=rng.choice((-1.0, 1.0, 2.5)), seed=rng.randrange(100))
        if self.garment_ids and rng.random() < 0.5:
            goal.garment_id = rng.choice(self.garment_ids)
        else:
            goal.garment_image = image_conv.from_rgb(samples.garment(kind, colour, 96, 72))
        if cause == 'unknown_garment':
            goal.garment_image, goal.garment_id = TryOn.Goal().garment_image, 'no_such_item'
        if cause == 'invalid':
            goal.guidance_scale = float('nan')
        if cause != 'camera':
            goal.person_image = self.person
        return goal

    def run_goal(self, client: Client, index: int, cause: str, rng: random.Random) -> dict:
        """Send one goal and follow it to its end; return its record."""
        goal = self.make_goal(cause, rng)
        record = {'index': index, 'cause': cause, 'steps': goal.num_inference_steps,
                  'accepted': False, 'id': '', 'code': None, 't_start': time.time(),
                  'client': client.name, 'client_goal': client.sent}
        client.sent += 1
        feedback = threading.Event()
        if not client.action.wait_for_server(timeout_sec=self.args.goal_timeout):
            record.update(t_end=time.time(), note='no action server after '
                          f'{self.args.goal_timeout:g} s')
            return record
        killed = self._server_gone(record['t_start'])
        handle = client.send(goal, lambda _: feedback.set(), killed)
        if handle is None:  # not even listed on the status topic: NO_RESPONSE, or LOST
            record.update(t_end=time.time(), note='goal response: ' + (
                'given up (the server was killed)' if killed() else
                f'no answer after {RESPONSE_WAIT:g} s'))
            return record
        record.update(accepted=handle.accepted, id=bytes(handle.goal_id.uuid).hex(),
                      from_status=bytes(handle.goal_id.uuid) in client.requests.from_status)
        if handle.accepted and cause in ('cancel', 'vanish'):
            feedback.wait(rng.uniform(0.0, 2.0))
            if cause == 'vanish':  # its end is the server's (log), or lost with it
                record['t_vanish'] = time.time()
                return record
            wait(handle.cancel_goal_async(), self.args.goal_timeout, 'cancel response', killed)
        if handle.accepted:
            response = wait(handle.get_result_async(), self.args.goal_timeout, 'result', killed)
            if response is not None:
                record['code'] = CODE_NAMES.get(response.result.error_code, 'UNKNOWN')
            elif not killed():  # a live client asked for the result and got none
                record['note'] = f'result: no answer after {self.args.goal_timeout:g} s'
        record['t_end'] = time.time()
        return record

    def _server_gone(self, t: float):
        """Return a test of whether the server was killed (or restarted) since ``t``."""
        pid = self.stack.current().get('tryon_server')
        return lambda: self.stack.current().get('tryon_server') != pid or any(
            k['node'] == 'tryon_server' and k['t'] >= t for k in self.stack.kills)

    def sample_loop(self, stop: threading.Event) -> None:
        """Record each node's RSS, fds and threads (and Fast DDS's /dev/shm) periodically."""
        reported = 0
        while not stop.wait(self.args.sample_period):
            with self._lock:
                done = len(self.goals)
            shm_mb = dds_shm.recorded_bytes(self.stack.records) / 2 ** 20
            self.shm.append({'t': time.time(), 'goals_done': done, 'mb': round(shm_mb, 1)})
            if done >= reported + 100:
                reported = done - done % 100
                print(f'vton_soak: {done}/{self.args.goals} goals sent, '
                      f'{len(self.stack.kills)} kills, Fast DDS /dev/shm {shm_mb:.0f} MB',
                      flush=True)
            for node, pid in self.stack.current().items():
                figures = procstat.stats(pid)
                if figures is not None:
                    self.samples.append(dict(figures, t=time.time(), node=node, pid=pid,
                                             goals_done=done))


def server_ends(log_dir: Path) -> dict[str, str]:
    """Goal id prefix -> code name, from every tryon_server end line (all its processes)."""
    path = log_dir / 'tryon_server.log'
    text = path.read_text(errors='replace') if path.exists() else ''
    return {m[1]: m[2] for m in ENDED.finditer(text)}


def main(argv: list[str] | None = None) -> int:
    """Run the soak; write OUT/soak.json and OUT/soak.png; exit 1 if a goal was lost."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params_file = Path(args.params_file) if args.params_file else tiny_config(out)
    domain = int(os.environ.get('ROS_DOMAIN_ID') or random.SystemRandom().randint(*DOMAINS))
    env = dict(loopback_env(), ROS_DOMAIN_ID=str(domain), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    env[dds_shm.RECORDS_ENV] = str(out / 'shm_records')
    os.environ.update({k: env[k] for k in ('FASTDDS_DEFAULT_PROFILES_FILE',
                                           'ROS_AUTOMATIC_DISCOVERY_RANGE') if k in env})
    stack = Stack(params_file, out, env)
    soak = Soak(args, stack, domain, catalogue_ids(params_file))
    stop = threading.Event()
    sampler = threading.Thread(target=soak.sample_loop, args=(stop,), daemon=True)
    sampler.start()
    workers = [threading.Thread(target=soak.client_loop, args=(n,))
               for n in range(args.clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    sampler.join()
    soak.operator.close()
    record = {'args': vars(args), 'warm_up_s': result_timeout(params_file),
              'goals': sorted(soak.goals, key=lambda g: g['index']),
              'samples': soak.samples, 'kills': stack.kills,
              'supervisor_exit_code': stack.stop(), 'exits': stack.exits,
              'stop_notes': stack.stop_notes, 'dds_shm': soak.shm,
              'dds_shm_after_stop_mb': dds_shm.recorded_bytes(stack.records) / 2 ** 20,
              'dds_ports_after_stop_kb': dds_shm.recorded_bytes(stack.records,
                                                                segments=False) / 2 ** 10,
              'goal_replies_missing': sorted(soak.replies_missing),
              'server_restarts': [{'t': k['t'], 'up': k.get('up')} for k in soak.after_kill],
              # its own participants are closed: Fast DDS leaves their port files behind
              'own_dds_released_kb': dds_shm.release(sorted(soak.own_shm)) / 2 ** 10,
              'server_ends': server_ends(out / 'logs')}
    summary = soak_report.summarize(record, NODES)
    (out / 'soak.json').write_text(json.dumps({'summary': summary, **record}, indent=1))
    soak_report.plot(record, NODES, str(out / 'soak.png'))
    print(json.dumps(summary, indent=1))
    failed = (summary['unanswered'] or summary['crashes'] or summary['no_response']
              or summary['after_server_kill']['failed'])
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
