"""
tryon_bringup: start camera_node, segmentation_node and tryon_server without ros2 launch.

``--ui`` also starts mirror_ui, the kiosk page (launch: ``ui:=true``).
The same config as launch/tryon.launch.py: a ROS parameter file validated against the
settings schema (an unknown key is an error), plus ``--set NAME=VALUE`` overrides. ROS
traffic is loopback-only unless the environment already names a Fast DDS profile.
``--namespace mirror_a`` runs the whole stack under /mirror_a (several mirrors on one
graph). Ctrl-C or SIGTERM stops every node as ros2 launch does (SIGINT, then SIGTERM, then
SIGKILL after grace periods) and exits 0; a node that dies stops the others and bringup
exits 1 naming it and why: the signal that killed it, else its last FATAL/ERROR line
(:mod:`vton_ros.supervision.exit_reasons`; ``--respawn``: it is restarted after a delay and
the others keep running). Children die with this process, however it ends (SIGKILL, a
closed terminal: each gets SIGTERM, see :func:`vton_ros.nodes.entry.die_with_supervisor`),
none is orphaned. A node killed or crashed leaves its Fast DDS shared memory; bringup
gives back that node's own files, and nothing else (:mod:`vton_ros.supervision.dds_shm`).
"""

import argparse
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time

from vton_ros.cli.start_checks import missing_weights, weights_advice
from vton_ros.nodes.entry import SUPERVISOR_ENV
from vton_ros.nodes.runner import ignore_signals
from vton_ros.settings import dds
from vton_ros.settings import files as param_files
from vton_ros.settings import schema
from vton_ros.settings import stack as param_stack
from vton_ros.supervision import dds_shm
from vton_ros.supervision.exit_reasons import exit_reason, LastError

OPTIONAL = ('mirror_ui', 'metrics_exporter')  # started by --ui, --metrics-port
STACK = tuple(n for n in schema.NODES if n not in OPTIONAL)  # started by default
SIGINT_GRACE = 10.0  # seconds after SIGINT before SIGTERM (a goal ends within one step)
SIGTERM_GRACE = 5.0  # seconds after SIGTERM before SIGKILL (launch's sigkill_timeout)


def executable(name: str) -> list[str]:
    """Return the argv that runs an installed node (its entry function as a fallback)."""
    try:
        from ament_index_python.packages import get_package_prefix
        path = Path(get_package_prefix('vton_ros')) / 'lib' / 'vton_ros' / name
        if path.exists():
            return [str(path)]
    except (ImportError, LookupError):
        pass
    return [sys.executable, '-c', f'from vton_ros.nodes.entry import {name}; {name}()']


def loopback_env() -> dict:
    """Return the environment for the nodes: loopback-only DDS unless a profile is set."""
    return dict(os.environ, PYTHONUNBUFFERED='1', **param_stack.dds_environment(os.environ))


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--profile', default=param_stack.DEFAULT_PROFILE,
                        help='overlays of config/tryon.yaml, comma-separated, applied left to '
                             'right: config/<PROFILE>.yaml (cpu, demo, fast, fast_cpu, ...) or '
                             'paths, e.g. cpu,demo; none: tryon.yaml alone '
                             '(default: %(default)s)')
    parser.add_argument('--params-file', action='append', default=[],
                        help='your own ROS parameter file, applied after the profile '
                             '(repeatable; later files win)')
    parser.add_argument('--namespace', default='',
                        help='ROS namespace of every node, e.g. mirror_a (topics, the tryon '
                             'action and parameters then live under /mirror_a/...)')
    parser.add_argument('--nodes', default=','.join(STACK),
                        help='comma-separated nodes to start (default: %(default)s)')
    parser.add_argument('--ui', action='store_true',
                        help='also start mirror_ui, the kiosk page (settings ui.*)')
    parser.add_argument('--metrics-port', type=int, metavar='N',
                        help='also start metrics_exporter: Prometheus metrics at '
                             'http://127.0.0.1:N/metrics (0: a free port, logged; '
                             'metrics.host for another address)')
    parser.add_argument('--camera-source', help='shortcut for --set camera.source=...')
    parser.add_argument('--device', help='shortcut for catvton.device and segmentation.device')
    parser.add_argument('--native-logs', action='store_true',
                        help="keep third-party native logging (mediapipe's absl/TF Lite lines; "
                             'off by default, as VTON_NATIVE_LOGS=1 does for a single node)')
    parser.add_argument('--no-autostart', action='store_true',
                        help='leave the nodes unconfigured for a lifecycle manager '
                             '(shortcut for --set lifecycle.autostart=false)')
    parser.add_argument('--respawn', action='store_true',
                        help='restart a node that dies (after --respawn-delay) while the '
                             'others keep running; default: one dies, all stop, exit 1')
    parser.add_argument('--respawn-delay', type=float, default=2.0, metavar='SECONDS',
                        help='seconds before a dead node is restarted (default 2)')
    parser.add_argument('--lan', metavar='IFACE',
                        help='open the nodes to the LAN of network interface IFACE (plus '
                             'loopback; config/fastdds_lan.xml; images cross unencrypted); '
                             'default: this machine only')
    parser.add_argument('--lan-peer', action='append', default=[], metavar='IP',
                        help='with --lan: a peer to announce to (repeatable); peers that '
                             'announce themselves are answered without it')
    parser.add_argument('--log-dir', help="write each node's output to LOG_DIR/<node>.log "
                        '(default: prefixed with [node] on this output)')
    param_files.add_override_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the nodes and supervise them until Ctrl-C / SIGTERM or a node exits."""
    args = build_parser().parse_args(argv)
    nodes = [n.strip() for n in args.nodes.split(',') if n.strip()]
    if args.ui and 'mirror_ui' not in nodes:
        nodes.append('mirror_ui')
    if args.metrics_port is not None and 'metrics_exporter' not in nodes:
        nodes.append('metrics_exporter')
    try:
        unknown = set(nodes) - set(schema.NODES)
        if unknown:
            raise ValueError(f'unknown node(s) {sorted(unknown)}; valid: {schema.NODES}')
        built = param_stack.build(args.profile, args.params_file, args.namespace,
                                  args.overrides, camera_source=args.camera_source or '',
                                  device=args.device or '',
                                  autostart=False if args.no_autostart else None,
                                  metrics_port=args.metrics_port)
        namespace, config = built.namespace, built.settings
        missing = missing_weights(config['tryon_server']) if 'tryon_server' in nodes else []
        if missing:  # three lines now instead of a long error once the model fails to load
            for line in weights_advice(missing):
                print(f'tryon_bringup: {line}', file=sys.stderr)
            return 2
        if args.lan:
            dds.interface_address(args.lan)
        elif args.lan_peer:
            raise ValueError('--lan-peer needs --lan IFACE')
    except (OSError, ValueError) as err:
        print(f'tryon_bringup: {err}', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix='vton_bringup_') as tmp:
        merged = Path(tmp) / 'params.yaml'
        merged.write_text(param_files.dump_yaml({n: config[n] for n in nodes if config[n]}))
        ros_args = ['--ros-args', '--params-file', str(merged)]
        if namespace != '/':
            ros_args += ['-r', f'__ns:={namespace}']
        env = dict(loopback_env(), **param_stack.profile_environment(args.profile))
        if args.lan:
            profile = dds.write_lan_profile(Path(tmp), args.lan, tuple(args.lan_peer))
            env.update(param_stack.dds_environment(env, str(profile)))
            print(f'tryon_bringup: DDS open to the LAN of {args.lan} ({profile.name})',
                  file=sys.stderr)
        env[SUPERVISOR_ENV] = str(os.getpid())  # the nodes end when this process does
        if not env.get(dds_shm.RECORDS_ENV):  # where the nodes write their DDS files down
            env[dds_shm.RECORDS_ENV] = str(Path(tmp) / 'shm')
        Path(env[dds_shm.RECORDS_ENV]).mkdir(exist_ok=True)
        if args.native_logs:
            env['VTON_NATIVE_LOGS'] = '1'
        return supervise(nodes, ros_args, env, args.log_dir,
                         args.respawn_delay if args.respawn else None)


def emit(line: str, stream=None) -> None:
    """
    Print one whole line (default stdout) while the nodes' output is being forwarded.

    One write per line, one writer at a time: with several threads forwarding (and an
    unbuffered stdout, PYTHONUNBUFFERED) print's separate writes of text and newline
    merged lines of different nodes, most visibly at shutdown.
    """
    stream = stream or sys.stdout
    with Child.OUTPUT:
        stream.write(line + '\n')
        stream.flush()


class Child:
    """One node process; a thread forwards its output and remembers its last error line."""

    OUTPUT = threading.Lock()  # held while a line is written (see emit)

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: str | None) -> None:
        self.name = name
        self.error = LastError()
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        log = None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            log = open(Path(log_dir) / f'{name}.log', 'a', encoding='utf-8')  # respawns add
        self._thread = threading.Thread(target=self._forward, args=(log,), daemon=True)
        self._thread.start()

    def _forward(self, log) -> None:
        for raw in self.popen.stdout:
            line = raw.decode('utf-8', errors='replace').rstrip()
            self.error.feed(line)
            if log is not None:
                log.write(line + '\n')
                log.flush()
            else:
                emit(f'[{self.name}] {line}')
        if log is not None:
            log.close()

    def signal(self, signum: int) -> None:
        """Send a signal to the node's process group (if it still runs)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, deadline: float) -> bool:
        """Wait until the deadline (monotonic); tell whether the process ended."""
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        self._thread.join(5.0)  # the output up to the end
        return True

    def reason(self) -> str:
        """Why the node ended: the signal that killed it, else its last error line."""
        return exit_reason(self.popen.returncode, self.error.line)


def supervise(nodes: list[str], ros_args: list[str], env: dict, log_dir: str | None,
              respawn_delay: float | None = None) -> int:
    """
    Run the node processes; stop all of them when one exits or on SIGINT/SIGTERM.

    With ``respawn_delay`` (seconds) a node that exits is started again after that delay
    and the others keep running, as launch_ros' respawn does. Stopping is what ros2 launch
    does: SIGINT, SIGTERM after SIGINT_GRACE seconds, SIGKILL after SIGTERM_GRACE more.
    Returns 0 after a signal when every node stopped by itself with 0, else 1 (a node that
    died is named with its last error line).
    """
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: terminal closed
        signal.signal(signum, on_signal)
    records = env[dds_shm.RECORDS_ENV]

    def start(name: str) -> Child:
        child = Child(name, executable(name) + ros_args, env, log_dir)
        emit(f'tryon_bringup: started {name} (pid {child.popen.pid})')
        return child

    children = [start(name) for name in nodes]
    restarts: dict[int, float] = {}  # index in children -> when to start it again
    code = 0
    while not stop.wait(0.2):
        dead = [c for c in children if c.popen.poll() is not None]
        if respawn_delay is not None:
            restart_dead(children, restarts, respawn_delay, start, records)
        elif dead:
            for child in dead:
                child.wait(time.monotonic())
                emit(f'tryon_bringup: {child.name} {child.reason()}; stopping the others',
                     sys.stderr)
                free_shm(records, child)
            code = 1
            break
    for signum, grace in ((signal.SIGINT, SIGINT_GRACE), (signal.SIGTERM, SIGTERM_GRACE),
                          (signal.SIGKILL, None)):
        running = [c for c in children if c.popen.poll() is None]
        if not running:
            break
        if signum != signal.SIGINT:
            code = 1
            emit(f'tryon_bringup: {", ".join(c.name for c in running)} still running: '
                 f'sending {signal.Signals(signum).name}', sys.stderr)
        for child in running:
            child.signal(signum)
        deadline = time.monotonic() + (grace if grace is not None else 60.0)
        for child in running:
            child.wait(deadline)
    ignore_signals()  # a late Ctrl-C must not kill the exiting interpreter with -2
    for child in children:
        free_shm(records, child)
    dds_shm.release_all_dead(records)  # ports that peers still mapped when their owner died
    # after a signal: a node that did not stop cleanly (one still starting when our SIGINT
    # came, before its handler existed, ends by SIGINT itself: stopped, not failed)
    failed = [c for c in children if c.popen.returncode not in (0, -signal.SIGINT)] \
        if code == 0 else []
    for child in failed:
        emit(f'tryon_bringup: {child.name} stopped: {child.reason()}', sys.stderr)
    code = code or int(bool(failed))
    emit('tryon_bringup: all nodes stopped')
    return code


def free_shm(records: str, child: Child) -> None:
    """Give back the Fast DDS shared memory an ended node left (a killed one: its segment)."""
    freed = dds_shm.release_dead(records, child.popen.pid)
    if freed >= 2 ** 20:  # a segment: only a killed or crashed process leaves one
        emit(f'tryon_bringup: removed {freed / 2 ** 20:.0f} MB of Fast DDS shared memory '
             f'left by {child.name} (pid {child.popen.pid}, {child.reason()})')


def restart_dead(children: list[Child], restarts: dict[int, float], delay: float,
                 start, records: str) -> None:
    """Schedule each newly dead child for a restart after ``delay``; restart those due."""
    now = time.monotonic()
    for i, child in enumerate(children):
        if child.popen.poll() is None:
            continue
        if i not in restarts:
            child.wait(now)
            restarts[i] = now + delay
            emit(f'tryon_bringup: {child.name} {child.reason()}; restarting it in {delay:g} s',
                 sys.stderr)
            free_shm(records, child)
        elif now >= restarts[i]:
            del restarts[i]
            children[i] = start(child.name)


if __name__ == '__main__':
    sys.exit(main())
